"""Argument helpers shared by the command-line tools."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from shared.config import (
    ChannelConfig,
    Config,
    InferenceConfig,
    config_from_dict,
    section_from_dict,
)
from shared.errors import ConfigError


def parse_snrs(text: str) -> list[float]:
    """SNR list in dB: ``"-5,0,5"``, a range ``"-5:15:2.5"`` (stop included), or both."""
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                start, stop, step = (float(v) for v in part.split(":"))
                if step <= 0:
                    raise ValueError(step)
                count = math.floor((stop - start) / step + 1e-9) + 1
                values += [round(start + i * step, 9) for i in range(count)]
            else:
                values.append(float(part))
        except ValueError:  # float() of a non-number, or a step that is not positive
            raise ConfigError(
                f"SNR list {text!r}: expected numbers like '-5,0,5' or a range "
                "START:STOP:STEP with STEP > 0"
            ) from None
    if not values:
        raise ConfigError(f"SNR list {text!r} is empty")
    for value in values:
        try:
            section_from_dict(ChannelConfig, {"snr_db": value}, "channel")
        except ConfigError as exc:
            raise ConfigError(f"SNR list {text!r}: {exc}") from None
    return values


def attach_negative_values(argv: list[str] | None, flags: tuple[str, ...]) -> list[str]:
    """Let ``--snr -5,0,5`` work: argparse would read ``-5,0,5`` as an option, so a value
    after one of ``flags`` that starts with ``-`` is attached as ``--snr=-5,0,5``."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in flags and i + 1 < len(args) and args[i + 1].startswith("-"):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def channel_config(
    cfg: Config, kind: str | None, csi: str | None, extra: list[str] = ()
) -> Config:
    """``cfg`` with the channel kind / CSI replaced, checked like any override."""
    overrides = list(extra)
    if kind:
        overrides.append(f"channel.kind={kind}")
    if csi:
        overrides.append(f"channel.csi={csi}")
    return config_from_dict(cfg.to_dict(), overrides)


def write_json(obj: Any, out_dir: str | None, name: str) -> Path | None:
    """Write ``obj`` as indented JSON to ``out_dir/name`` (if an out dir is given)."""
    if not out_dir:
        return None
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path


def fail(message: str) -> int:
    """Print an error for the user and return the exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


#: ``--precision`` of the measuring commands (``eval``, ``sweep``, ``energy``): float32,
#: so that their figures do not depend on the machine (under bfloat16 a different batch
#: or CPU flips spikes, and the PSNR moves by hundredths of a dB).
MEASURING_PRECISION = "float32"


def add_inference_arguments(
    parser: argparse.ArgumentParser, precision: str = "auto"
) -> None:
    """``--device``, ``--precision`` (default ``precision``), ``--batch``,
    ``--reference-path`` and ``--dense-convolutions``: the ``infer.*`` settings
    (:class:`~shared.config.InferenceConfig`) of a command."""
    group = parser.add_argument_group("where and how the model runs")
    group.add_argument(
        "--device", default="auto", help="auto (a GPU when torch sees one), cpu, cuda"
    )
    group.add_argument(
        "--precision",
        default=precision,
        help=f"float32, bfloat16 or auto (bfloat16 on a CUDA GPU or a CPU with AMX); "
        f"default {precision}",
    )
    group.add_argument(
        "--batch",
        type=int,
        default=0,
        help="stereo frames per batch (0: 1 on a CPU, 32 on a GPU)",
    )
    group.add_argument(
        "--reference-path",
        action="store_true",
        help="run the reference path (training graph in eval mode), not the fast path",
    )
    group.add_argument(
        "--dense-convolutions",
        action="store_true",
        help="fast path with oneDNN's dense convolutions, not event-driven ones",
    )


def inference_config(args: argparse.Namespace) -> InferenceConfig:
    """The checked ``infer.*`` settings of :func:`add_inference_arguments`' options."""
    values = {
        "device": args.device,
        "precision": args.precision,
        "batch": args.batch,
        "fast": not args.reference_path,
        "event_driven": not args.dense_convolutions,
    }
    return section_from_dict(InferenceConfig, values, "infer")
