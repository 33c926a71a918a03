"""Train several configurations side by side on one GPU, each sized to end by a deadline.

A short GPU lease has a fixed number of seconds, and a model's speed on the GPU is not known
in advance. Each run therefore goes through two phases:

1. probe: the run starts with an open-ended step count and pauses after ``--probe-minutes``
   (``train.max_minutes``), saving ``last.pt``;
2. main: it resumes with ``train.steps`` set from its measured steps/s, so that its cosine
   schedule ends by ``--deadline-s`` seconds after this script started, with three
   validations on the way and one at the end.

The runs share the GPU and the CPU cores (their data workers), which keeps a small model's
GPU busier than one run alone. ``<out>/summary.json`` gives each run's speed, steps and
validation PSNR. docs/RESULTS.md has the command that trained the bundled models.

Usage::

    python scripts/train_side_by_side.py --out runs/gpu --deadline-s 520 \\
        --common "--set data.root=DATA --set train.batch_size=32" \\
        --run "snn=--init-from models/snn_v4.pt --set train.lr=0.0005" \\
        --run "cnn=--set model.kind=cnn"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from shared.config import override_arguments
from shared.model.checkpoint import load_checkpoint
from trainer.logs import read_records

#: Settings of the probe phase: no validation, a step count the probe never reaches.
PROBE_SETS = ("train.steps=100000000", "train.val_every=100000000")
#: Train records skipped when measuring speed (the first includes the start-up).
WARM_RECORDS = 1


def _launch(out: Path, name: str, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer", "--out", str(out / name), *args]
    with open(out / f"{name}.log", "a") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _saved_step(out: Path, name: str) -> int:
    """The step of the run's ``last.pt`` (0 when there is none)."""
    path = out / name / "last.pt"
    return load_checkpoint(path)["step"] if path.exists() else 0


def steps_per_second(records: list[dict]) -> tuple[float, int]:
    """Speed over the logged train records after the first, and the last logged step."""
    if not records:
        return 0.0, 0
    if len(records) <= WARM_RECORDS + 1:
        last = records[-1]
        return last["step"] / last["elapsed_s"], last["step"]
    first, last = records[WARM_RECORDS], records[-1]
    span = max(last["elapsed_s"] - first["elapsed_s"], 1e-9)
    return (last["step"] - first["step"]) / span, last["step"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the runs")
    parser.add_argument("--deadline-s", type=float, required=True)
    parser.add_argument("--probe-minutes", type=float, default=0.75)
    parser.add_argument(
        "--restart-s",
        type=float,
        default=30.0,
        help="seconds a resumed run needs to start (imports, data, CUDA) and to "
        "validate at the end",
    )
    parser.add_argument("--common", default="", help="trainer arguments of every run")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=ARGS")
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for item in args.run:
        name, sep, rest = item.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--run wants NAME=ARGS with NAME a plain word, got {item!r}")
        runs[name] = shlex.split(args.common) + shlex.split(rest)

    probe_sets = [*PROBE_SETS, f"train.max_minutes={args.probe_minutes}"]
    probes = {
        name: _launch(out, name, [*run, *override_arguments(probe_sets)])
        for name, run in runs.items()
    }
    summary: dict[str, dict] = {
        name: {"probe_exit": p.wait()} for name, p in probes.items()
    }
    resume_at = time.monotonic() - start
    left_s = args.deadline_s - resume_at - args.restart_s
    mains = {}
    for name, record in summary.items():
        rate, step = steps_per_second(read_records(out / name, "train"))
        if step == 0:  # too slow to log: the probe's own step count over its minutes
            step = _saved_step(out, name)
            rate = step / (60.0 * args.probe_minutes)
        steps = step + int(rate * left_s)
        record.update(probe_steps_per_s=rate, probe_step=step, steps=steps)
        if record["probe_exit"] != 0 or rate <= 0 or left_s <= 0:
            continue
        sets = [
            f"train.steps={steps}",
            f"train.val_every={max((steps - step) // 3, 1)}",
            f"train.max_minutes={(left_s + args.restart_s / 2) / 60.0:.3f}",
        ]
        resume = ["--resume", str(out / name / "last.pt")]
        mains[name] = _launch(out, name, [*resume, *override_arguments(sets)])
    for name, proc in mains.items():
        record = summary[name]
        record["main_exit"] = proc.wait()
        record["steps_per_s"] = steps_per_second(read_records(out / name, "train"))[0]
        record["final_step"] = _saved_step(out, name)
        record["val"] = [
            {
                "step": v["step"],
                **{f"{r['snr_db']:g} dB": r["psnr_db"]["mean"] for r in v["per_snr"]},
            }
            for v in read_records(out / name, "val")
        ]
    result = {"wall_s": time.monotonic() - start, "runs": summary}
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    failed = [n for n, r in summary.items() if r.get("main_exit", 1) != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
