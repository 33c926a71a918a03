"""``python -m trainer --config C [--set k=v ...] [--resume [CKPT]] [--init-from CKPT]``.

Runs on one device, or on several GPUs with
``torchrun --standalone --nproc_per_node=K -m trainer ...`` (DDP; rank 0 logs and saves).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from shared.config import (
    Config,
    add_config_arguments,
    config_from_dict,
    dump_config,
    load_config,
)
from shared.errors import CheckpointError, ConfigError, SpikeLinkError
from shared.model.checkpoint import (
    config_differences,
    load_checkpoint,
    previous_path,
    stored_config,
)
from shared.signals import StopFlag
from trainer.distributed import setup, teardown
from trainer.train import train

log = logging.getLogger("trainer")

#: What a run writes that a new run in the same folder would replace.
CHECKPOINT_FILES = ("last.pt", "best.pt", "model.pt")

#: Keys that may change when a run is resumed; any other change is refused.
RESUMABLE_KEYS = (
    "train.steps",
    "train.max_minutes",
    "train.out_dir",
    "train.val_every",
    "train.log_every",
    "train.ckpt_every",
    "train.threads",
    "train.device",
    "train.memory_format",
    "data.workers",
    "data.root",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikelink train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(
        parser,
        "train.steps=100",
        config_help="YAML file or preset name in shared/configs (default: 'default', or "
        "the checkpoint's own config with --resume)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="continue from CKPT (default: <train.out_dir>/last.pt)",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="initialise the SNN from a trained CNN twin (hybrid training)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (same as --set train.out_dir=DIR)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an output folder that holds an earlier run's checkpoints, "
        "replacing them (without it such a folder is refused)",
    )
    return parser


def check_fresh_out_dir(out_dir: Path) -> None:
    """Refuse to start a new run over the checkpoints of an earlier one."""
    found = [name for name in CHECKPOINT_FILES if (out_dir / name).exists()]
    if found:
        raise CheckpointError(
            f"{out_dir} holds {', '.join(found)} of an earlier run; continue it with "
            "--resume, choose another --out, or pass --overwrite to replace it"
        )


def resolve_config(args: argparse.Namespace) -> tuple[Config, dict | None]:
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    if args.init_from:
        overrides.append(f"train.init_from={args.init_from}")
    cfg = load_config(args.config or "default", overrides)
    if args.resume is None:
        if not args.overwrite:
            check_fresh_out_dir(Path(cfg.train.out_dir))
        return cfg, None
    path = (
        Path(cfg.train.out_dir) / "last.pt"
        if args.resume == "auto"
        else Path(args.resume)
    )
    ckpt = load_checkpoint(path)
    stored = stored_config(ckpt).to_dict()
    resumed = config_from_dict(stored, overrides)
    requested = cfg if args.config else resumed
    changed = [
        d
        for d in config_differences(stored, requested.to_dict())
        if not d.split(":")[0].startswith(RESUMABLE_KEYS)
    ]
    if changed:
        raise CheckpointError(
            f"cannot resume {path} with a different config: " + "; ".join(changed)
        )
    return resumed, ckpt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s trainer %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        cfg, ckpt = resolve_config(args)
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.overwrite and ckpt is None:
        for name in CHECKPOINT_FILES:
            path = Path(cfg.train.out_dir) / name
            path.unlink(missing_ok=True)
            previous_path(path).unlink(missing_ok=True)
    try:
        runtime = setup(cfg.train.device)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if runtime.is_main:
            log.info("resolved config:\n%s", dump_config(cfg))
        with StopFlag() as stop:
            result = train(cfg, runtime, stop, ckpt)
    except SpikeLinkError as exc:
        log.error("%s", exc)
        return 1
    finally:
        teardown(runtime)
    if result["status"] == "interrupted":
        return 128 + signal.Signals[stop.reason].value
    return 0 if result["status"] in ("finished", "paused") else 1


if __name__ == "__main__":
    sys.exit(main())
