"""The helper scripts: the GPU-lease training-data pack, the side-by-side deadline trainer
and the benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, calibrated_tiny, wait_until, write_image
from PIL import Image

from shared.config import DataConfig
from shared.data.datasets import TrainBatches, training_sources

#: Every test here starts processes or trains (left out of ``make test-fast``).
pytestmark = pytest.mark.heavy


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pack_re_encodes_thins_and_lists_the_training_pairs(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(4):
        write_image(root / f"mono/set/{i}.png", 40, 60, seed=i)
    write_image(root / "kodak/k.jpg", 40, 60, seed=9)
    for name in ("a", "b"):
        write_image(root / f"stereo/{name}/left.png", 40, 60, seed=1)
        write_image(root / f"stereo/{name}/right.png", 40, 60, seed=2)
    split = tmp_path / "val.txt"
    split.write_text("stereo/b\n")
    out = tmp_path / "pack"
    done = _script(
        "pack_training_data.py",
        "--root",
        str(root),
        "--out",
        str(out),
        "--val-split",
        str(split),
        "--keep",
        "mono/set=2",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "mono/set").iterdir()) == ["0.jpg", "2.jpg"]
    assert (out / "kodak/k.jpg").read_bytes() == (root / "kodak/k.jpg").read_bytes()
    with Image.open(out / "mono/set/0.jpg") as img:
        assert img.format == "JPEG" and img.size == (60, 40)
    cfg = DataConfig(
        root=str(out),
        stereo=(),
        mono=("mono", "kodak"),
        train_split=str(out / "train_pairs.txt"),
        val_split="",
        crop_height=16,
        crop_width=32,
    )
    pairs, mono = training_sources(cfg)
    assert [p.left.parent.name for p in pairs] == ["a"] and len(mono) == 3
    assert TrainBatches(pairs, mono, cfg, 2, 0)[0]["left"].shape == (2, 3, 16, 32)

    again = _script("pack_training_data.py", "--root", str(root), "--out", str(out))
    assert again.returncode != 0 and "exists" in again.stderr


def test_side_by_side_runs_are_sized_to_the_deadline(tmp_path: Path) -> None:
    common = (
        f"--config tiny --set data.root={SAMPLES} --set data.stereo=[stereo] "
        "--set data.val_split= --set train.log_every=1"
    )
    done = _script(
        "train_side_by_side.py",
        "--out",
        str(tmp_path),
        "--deadline-s",
        "25",
        "--restart-s",
        "5",
        "--probe-minutes",
        "0.05",
        "--common",
        common,
        "--run",
        "snn=--set train.seed=1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())["runs"]["snn"]
    assert summary["probe_exit"] == 0 and summary["main_exit"] == 0, summary
    assert summary["probe_steps_per_s"] > 0, summary
    # The main phase ends at its step count, or at its time limit on a loaded machine.
    assert summary["steps"] >= summary["final_step"] > summary["probe_step"] > 0, (
        summary
    )
    assert (tmp_path / "snn" / "model.pt").exists()


def test_bench_train_times_both_models_through_the_trainer(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _script(
        "bench_train.py",
        "--root",
        str(SAMPLES),
        "--config",
        "tiny",
        "--set",
        "data.stereo=[stereo]",
        "--steps",
        "6",
        "--log-every",
        "2",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    assert [r["kind"] for r in records] == ["snn", "cnn"]
    for record in records:
        assert record["pairs_per_s"] > 0 and record["intervals"] == 2
        assert (record["batch_size"], record["crop"]) == (8, "32x64")


def test_the_gpu_campaign_trains_evaluates_and_times_in_one_command(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The lease's one command, on this CPU with the tiny models: both runs fine-tune
    from their checkpoints by the deadline, and ``--out`` gets the weights, the logs
    and ``campaign.json`` with the validation before and after."""
    twin = calibrated_tiny(tmp_path / "twin", "model.kind=cnn")
    data = tmp_path / "pack" / "data"
    for name in ("a", "b"):
        for side, seed in (("left", 1), ("right", 2)):
            write_image(data / f"stereo/{name}/{side}.jpg", 80, 160, seed=seed)
    (data / "train_pairs.txt").write_text(
        "".join(f"stereo/{n}/left.jpg stereo/{n}/right.jpg\n" for n in "ab")
    )
    out = tmp_path / "out"
    done = _script(
        "gpu_campaign.py",
        "run",
        "--pack",
        str(tmp_path / "pack"),
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
        "--config",
        "tiny",
        "--snn",
        str(tiny_checkpoint),
        "--twin",
        str(twin),
        "--deadline-s",
        "45",
        "--probe-minutes",
        "0.05",
        "--restart-s",
        "5",
        "--eval-s",
        "10",
        "--set",
        "train.threads=1",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((out / "campaign.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "campaign.json",
        "campaign.log",
        "cnn.log",
        "cnn.pt",
        "snn.log",
        "snn.pt",
    ]
    for name in ("snn", "cnn"):
        assert result["runs"][name]["final_step"] > result["runs"][name]["probe_step"]
        for which in ("start", "trained"):
            psnr = result["eval"][f"{name}_{which}"]["10 dB"]["psnr"]
            assert 5 < psnr < 60
    assert result["timings"]["total_s"] < 120


def _campaign_bench(tmp_path: Path, model: Path, twin: Path, *extra: str):
    out = tmp_path / "out"
    done = _script(
        "gpu_campaign.py",
        "bench",
        "--pack",
        str(tmp_path / "pack"),
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
        "--",
        "--model",
        str(model),
        "--twin",
        str(twin),
        "--frames",
        "1",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--batch-study",
        "0",
        "--link-repeat",
        "1",
    )
    return done, out, json.loads((out / "bench_run.json").read_text())


def test_the_lease_bench_writes_bench_json_and_its_log(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The lease's bench command, here on the CPU: bench.json, each timing row in the
    log as it was measured, and the run's record."""
    twin = calibrated_tiny(tmp_path / "twin", "model.kind=cnn")
    done, out, record = _campaign_bench(tmp_path, tiny_checkpoint, twin)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "bench_cpu" / "bench.json").read_text())
    assert report["device"] == "cpu" and report["link_fps"] > 0
    rows = [
        json.loads(line)
        for line in (out / "bench.log").read_text().splitlines()
        if line.startswith('{"system"')
    ]
    assert len(rows) == len(report["timings"]) == 4
    assert record["returncode"] == 0 and not record["timed_out"]


def _in_session(session: int) -> list[int]:
    """Processes of ``session`` still alive (field 6 of /proc/PID/stat)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_the_lease_bench_stops_at_its_deadline_and_says_so(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Cut short (here in its timing rows or its link), the bench and every process it
    started end: the lease's command must return before the device's own limit."""
    twin = calibrated_tiny(tmp_path / "twin", "model.kind=cnn")
    done, out, record = _campaign_bench(
        tmp_path, tiny_checkpoint, twin, "--deadline-s", "6"
    )
    assert done.returncode == 124 and record["timed_out"]
    assert not (out / "bench_cpu" / "bench.json").exists()
    assert (out / "bench.log").read_text().startswith(sys.executable)
    wait_until(  # a killed child can take a moment to exit
        lambda: _in_session(record["session"]) == [], 10, "the bench's processes to end"
    )


def test_bench_lif_times_the_native_kernel_and_the_torch_passes() -> None:
    done = _script("bench_lif.py", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["shape"][1] for r in records] == [32, 64, 192]
    assert all(r["native_ms"] > 0 and r["torch_passes_ms"] > 0 for r in records)
