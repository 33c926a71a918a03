"""Training throughput of the SNN and its CNN twin on this machine, through the trainer.

Each model trains ``--steps`` steps with the trainer itself (``python -m trainer``, no
validation, no checkpoints until the end) in a temporary folder, from a fresh
initialisation. Its throughput is the median of the ``pairs_per_s`` the trainer logs every
``--log-every`` steps, leaving out the first interval (start-up, first data reads). The
figures count stereo pairs of training crops per second, data loading included, as a
training run sees them. One JSON record per model goes to stdout, and to ``--out`` as a
JSON list when given.

Usage::

    python scripts/bench_train.py --root ../shared/data --steps 60
    python scripts/bench_train.py --root ../shared/data --set train.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.config import override_arguments
from shared.model.checkpoint import git_commit, load_checkpoint
from trainer.logs import read_records

#: Settings that keep the benchmark to training steps: no validation, one checkpoint.
BENCH_SETS = ("data.val_split=", "train.val_every=1000000000")


def bench(
    kind: str, args: argparse.Namespace, out_dir: Path
) -> dict[str, float | int | str]:
    """Train ``args.steps`` steps of model ``kind``; its throughput record."""
    sets = [
        *BENCH_SETS,
        f"data.root={args.root}",
        f"model.kind={kind}",
        f"train.steps={args.steps}",
        f"train.log_every={args.log_every}",
        f"train.ckpt_every={args.steps}",
        *args.set,
    ]
    cmd = [sys.executable, "-m", "trainer", "--config", args.config]
    cmd += ["--out", str(out_dir), *override_arguments(sets)]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {kind} run failed:\n{done.stderr[-3000:]}")
    records = read_records(out_dir, "train")
    rates = [r["pairs_per_s"] for r in records[1:]]
    if not rates:
        raise SystemExit(
            f"the {kind} run logged {len(records)} interval(s); --steps must be at "
            "least twice --log-every"
        )
    config = load_checkpoint(out_dir / "last.pt")["config"]
    return {
        "kind": kind,
        "pairs_per_s": statistics.median(rates),
        "pairs_per_s_min": min(rates),
        "pairs_per_s_max": max(rates),
        "intervals": len(rates),
        "steps": args.steps,
        "batch_size": config["train"]["batch_size"],
        "crop": f"{config['data']['crop_height']}x{config['data']['crop_width']}",
        "threads": config["train"]["threads"],
        "wall_s": round(time.monotonic() - start, 1),
        "commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="data.root of the training data")
    parser.add_argument("--config", default="default")
    parser.add_argument("--kinds", default="snn,cnn", help="models to time, in order")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override",
    )
    parser.add_argument("--out", type=Path, help="write the records here (JSON)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for kind in args.kinds.split(","):
            record = bench(kind, args, Path(tmp) / kind)
            print(json.dumps(record), flush=True)
            results.append(record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
