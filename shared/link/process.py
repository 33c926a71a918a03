"""The frame of a link process: its command line, logging, threads and error reporting."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

import torch

from shared.config import Config, add_config_arguments, dump_config, load_config
from shared.errors import ConfigError, SpikeLinkError
from shared.signals import StopFlag

#: The counters and settings the channel process ends with, in ``link.out_dir``.
CHANNEL_STATS_FILE = "channel_stats.json"


def setup_logging(name: str) -> logging.Logger:
    """Log lines to stderr, prefixed with the process name."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        force=True,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    return logging.getLogger(name)


def process_threads(configured: int) -> int:
    """Torch threads of one link process: as configured, or (0) half the CPU cores, since
    the transmitter and the receiver compute at the same time."""
    return configured or max(1, (os.cpu_count() or 2) // 2)


def process_kernel_threads(configured: int) -> int:
    """Native kernel threads of a link process that runs a model (the transmitter and
    the receiver set them with :func:`shared.model.kernel_threads.set_kernel_threads`):
    as configured, or (0) all the CPU cores; they sleep when idle, so the receiver's
    kernels can use what the transmitter leaves free."""
    return configured or os.cpu_count() or 1


ProcessBody = Callable[[Config, logging.Logger, StopFlag], int]


def run_process(
    name: str,
    module: str,
    doc: str,
    example: str,
    argv: list[str] | None,
    body: ProcessBody,
) -> int:
    """Entry point shared by the link processes.

    Parses ``--config`` / ``--set``, stops with status 2 on a bad configuration before
    anything is bound, logs the resolved configuration, then runs ``body``. The
    project's typed errors (a bad model file, data, values) end with status 1 and one log
    line; anything else is a bug and is logged with its traceback.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, example)
    args = parser.parse_args(argv)
    log = setup_logging(name)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    log.info("resolved config:\n%s", dump_config(cfg))
    torch.set_grad_enabled(False)
    torch.set_num_threads(process_threads(cfg.link.threads))
    try:
        return body(cfg, log, StopFlag())
    except SpikeLinkError as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("stopped by an unexpected error")
        return 1
