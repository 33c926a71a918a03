"""The training campaign of a GPU lease, prepared here and run there as one command.

A lease is short (15 minutes of device time, start-up included) and its machine cannot
see ``../shared/data``, so the work is split in two:

``prepare`` (here): packs the training photos and pairs into ``.gpu/data`` within a size
budget, downloads the wheels the device lacks (spikingjelly, pytorch-msssim, pyzmq for
CPython 3.12) into ``.gpu/wheels``, keeps ``.gpu/`` out of git, checks that the tree that
travels fits the device's 64 MiB, and prints the device command.

``run`` (there, or on any machine): installs the wheels, trains the SNN and its CNN twin
side by side from the named checkpoints (the bundled models by default) with the
committed ``gpu_campaign`` preset, each run's cosine schedule sized to end by the
deadline (``scripts/train_side_by_side.py``), evaluates the starting and the trained
models on the validation pairs (the bundled samples: the validation split cut to the
evaluation crop), and writes to ``--out``: ``snn.pt``, ``cnn.pt`` (the trained weights,
15 MB each), ``campaign.json`` (timings, speeds, steps, PSNR before and after) and the
logs. Bundle a model only if it beats the bundled one on the validation split.

``bench`` (there): installs the wheels and runs ``spikelink bench`` on the device's GPU
(``--device cuda``; the link's transmitter and receiver on it too), killed at the
deadline; writes ``bench_cuda/bench.json``, ``bench.log`` (each timing row as it is
measured, so a run cut short keeps what it measured) and ``bench_run.json`` (install and
bench times, exit status) into ``--out``.

Usage::

    python scripts/gpu_campaign.py prepare --root ../shared/data
    # then, with the device tool: carry [".gpu"], command as printed, e.g.
    python3 scripts/gpu_campaign.py run --pack .gpu --deadline-s 480 --out $OUT
    python3 scripts/gpu_campaign.py bench --pack .gpu --deadline-s 420 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The packages the device image lacks (docs: the device tool's KINDS.md), as pinned here.
DEVICE_WHEELS = ("spikingjelly==0.0.0.0.14", "pytorch-msssim==1.0.0", "pyzmq==27.3.0")
DEVICE_PYTHON = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
TRAVEL_LIMIT_MB = 64.0
SNRS = "-5,0,5,10"


# ------------------------------------------------------------------ prepare


def tracked_mb() -> float:
    """Size of the files git tracks, which travel with every device call."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names if n) / 2**20


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def exclude_from_git(name: str) -> None:
    exclude = REPO / ".git" / "info" / "exclude"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if name not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([*lines, name]) + "\n")


def download_wheels(target: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            DEVICE_PYTHON,
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(target),
            *DEVICE_WHEELS,
        ],
        check=True,
    )


def prepare(args: argparse.Namespace) -> int:
    pack = REPO / args.pack
    exclude_from_git(f"/{args.pack}/")
    if (pack / "data").exists():
        shutil.rmtree(pack / "data")
    keep = [arg for item in args.keep for arg in ("--keep", item)]
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "pack_training_data.py"),
            "--root",
            args.root,
            "--out",
            str(pack / "data"),
            "--quality",
            str(args.quality),
            *keep,
        ],
        check=True,
    )
    download_wheels(pack / "wheels")
    total = tracked_mb() + folder_mb(pack)
    print(
        f"travels: {tracked_mb():.1f} MB tracked + {folder_mb(pack):.1f} MB in {pack}"
    )
    if total > TRAVEL_LIMIT_MB:
        print(
            f"error: {total:.1f} MB > {TRAVEL_LIMIT_MB:.0f} MiB; keep fewer photos "
            "(--keep FOLDER=N) or lower --quality",
            file=sys.stderr,
        )
        return 1
    for job, deadline in (("run", 480), ("bench", 420)):
        print(
            f"device command, {job} (carry ['{args.pack}']): PYTHONUNBUFFERED=1 python3 "
            f"scripts/gpu_campaign.py {job} --pack {args.pack} --deadline-s {deadline} "
            "--out $OUT"
        )
    return 0


# ------------------------------------------------------------------ run


def install_wheels(wheels: Path, site: Path) -> dict[str, str]:
    """Install the carried wheels into ``site``; returns the environment that sees them."""
    env = dict(os.environ)
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--upgrade",
                "--target",
                str(site),
                *map(str, found),
            ],
            check=True,
        )
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), str(REPO), env.get("PYTHONPATH", "")) if p
        )
    else:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def evaluate(model: Path, args: argparse.Namespace, out: Path, env: dict) -> dict:
    """``spikelink eval`` of ``model`` on the validation pairs: PSNR / MS-SSIM per SNR."""
    cmd = [
        sys.executable,
        "-m",
        "shared.cli",
        "eval",
        "--model",
        str(model),
        "--data",
        args.val,
        f"--snr={SNRS}",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "eval.json").read_text())
    return {
        f"{r['snr_db']:g} dB": {
            "psnr": r["psnr_db"]["mean"],
            "ms_ssim": r["ms_ssim"]["mean"],
        }
        for r in report["results"]
    }


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    pack = REPO / args.pack
    env = install_wheels(pack / "wheels", Path(args.site))
    timings = {"install_s": time.monotonic() - start}
    data = pack / "data"
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))  # the device runs the checkout, not an installed copy
    from shared.data.frames import source_pairs

    val_split = work / "val_split.txt"
    val_split.write_text(
        "".join(f"{p.left} {p.right}\n" for p in source_pairs(REPO / args.val))
    )
    common = [
        "--config",
        args.config,
        "--set",
        f"data.root={data}",
        "--set",
        f"data.train_split={data / 'train_pairs.txt'}",
        "--set",
        f"data.val_split={val_split}",
        *[arg for item in args.set for arg in ("--set", item)],
    ]
    runs = {"snn": ["--init-from", args.snn], "cnn": ["--init-from", args.twin]}
    runs["cnn"] += ["--set", "model.kind=cnn"]
    side_by_side = [
        sys.executable,
        str(REPO / "scripts" / "train_side_by_side.py"),
        "--out",
        str(work),
        "--deadline-s",
        str(args.deadline_s - (time.monotonic() - start) - args.eval_s),
        "--probe-minutes",
        str(args.probe_minutes),
        "--restart-s",
        str(args.restart_s),
        "--common",
        shlex.join(common),
        *[
            arg
            for name, r in runs.items()
            for arg in ("--run", f"{name}={shlex.join(r)}")
        ],
    ]
    t_train = time.monotonic()
    with open(out / "campaign.log", "w") as log:
        log.write(shlex.join(side_by_side) + "\n")
        log.flush()
        trained = subprocess.run(
            side_by_side, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    timings["train_s"] = time.monotonic() - t_train
    summary = json.loads((work / "summary.json").read_text())
    t_eval = time.monotonic()
    result: dict[str, object] = {"runs": summary["runs"], "eval": {}}
    for name, start_from in (("snn", args.snn), ("cnn", args.twin)):
        model = work / name / "model.pt"
        if not model.exists():
            continue
        shutil.copyfile(model, out / f"{name}.pt")
        for which, path in (("start", Path(start_from)), ("trained", model)):
            result["eval"][f"{name}_{which}"] = evaluate(
                path, args, work / f"eval_{name}_{which}", env
            )
    timings["eval_s"] = time.monotonic() - t_eval
    for name in runs:
        log = work / f"{name}.log"
        if log.exists():
            shutil.copyfile(log, out / f"{name}.log")
    result["timings"] = {**timings, "total_s": time.monotonic() - start}
    result["command"] = shlex.join(sys.argv)
    (out / "campaign.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return trained.returncode


# ------------------------------------------------------------------ bench


def bench(args: argparse.Namespace) -> int:
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = install_wheels(REPO / args.pack / "wheels", Path(args.site))
    record: dict[str, object] = {"install_s": time.monotonic() - start}
    extra = [a for a in args.bench_args if a != "--"]
    cmd = [
        sys.executable,
        "-m",
        "shared.cli",
        "bench",
        "--device",
        args.device,
        "--out",
        str(out / f"bench_{args.device}"),
        *extra,
    ]
    left_s = args.deadline_s - (time.monotonic() - start)
    t_bench = time.monotonic()
    with open(out / "bench.log", "w") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        job = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        record["session"] = job.pid  # the bench's process group and session
        try:
            status = job.wait(timeout=max(left_s, 1.0))
            record["timed_out"] = False
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)  # the bench and the link it started
            job.wait()
            status, record["timed_out"] = 124, True
    record.update(
        bench_s=time.monotonic() - t_bench,
        returncode=status,
        command=shlex.join(cmd),
        total_s=time.monotonic() - start,
    )
    (out / "bench_run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="pack data and wheels here")
    p.add_argument("--root", default="../shared/data", help="the training photos")
    p.add_argument("--pack", default=".gpu", help="folder that travels (git-ignored)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the pack")
    p.add_argument(
        "--keep",
        action="append",
        default=["mono/bsds500=60", "mono/urban100=20"],
        metavar="FOLDER=N",
        help="photos kept per folder (default: what fits beside the bundled models)",
    )
    r = commands.add_parser("run", help="train, evaluate and time, on the device")
    r.add_argument("--pack", default=".gpu")
    r.add_argument(
        "--out", required=True, help="folder for weights, logs, campaign.json"
    )
    r.add_argument("--work", default="/tmp/campaign", help="folder of the runs")
    r.add_argument("--site", default="/tmp/site", help="where the wheels are installed")
    r.add_argument("--config", default="gpu_campaign", help="trainer preset or YAML")
    r.add_argument("--snn", default="models/snn_v4.pt", help="SNN to start from")
    r.add_argument("--twin", default="models/cnn_twin_v2.pt", help="twin to start from")
    r.add_argument("--val", default="samples/stereo", help="validation pairs")
    r.add_argument("--deadline-s", type=float, default=480.0)
    r.add_argument("--probe-minutes", type=float, default=0.5)
    r.add_argument(
        "--restart-s",
        type=float,
        default=30.0,
        help="seconds a resumed run needs to start and to validate at the end",
    )
    r.add_argument(
        "--eval-s", type=float, default=40.0, help="seconds kept for the evaluation"
    )
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    b = commands.add_parser("bench", help="spikelink bench on the device's GPU")
    b.add_argument("--pack", default=".gpu")
    b.add_argument("--out", required=True, help="folder for bench_<device>/, the log")
    b.add_argument("--site", default="/tmp/site", help="where the wheels are installed")
    b.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    b.add_argument(
        "--deadline-s", type=float, default=420.0, help="install and bench end by then"
    )
    b.add_argument(
        "bench_args",
        nargs=argparse.REMAINDER,
        help="after --: options of spikelink bench (e.g. -- --repeats 3)",
    )
    args = parser.parse_args(argv)
    jobs = {"prepare": prepare, "run": run, "bench": bench}
    return jobs[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
