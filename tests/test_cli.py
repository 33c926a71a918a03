"""Every user-facing command answers --help, and eval writes its documented record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

from shared.cli import COMMANDS
from shared.cli import main as spikelink


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        spikelink([command, "--help"])
    assert info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_top_level_usage_and_unknown_command(capsys) -> None:
    assert spikelink(["--help"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert spikelink(["teleport"]) == 2


@pytest.mark.parametrize(
    "module", ["transmitter", "channel_sim", "receiver", "trainer"]
)
def test_process_modules_run_with_python_m(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "usage" in proc.stdout


def test_eval_writes_the_documented_record(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    code = spikelink(
        [
            "eval",
            "--model",
            str(tiny_checkpoint),
            "--data",
            str(SAMPLES / "stereo"),
            "--snr",
            "0,10",
            "--frames",
            "2",
            "--channel",
            "rayleigh_block",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [r["snr_db"] for r in report["results"]] == [0.0, 10.0]
    record = report["results"][0]
    for key in (
        "distinct_values_min",
        "silent_layers",
        "snr_db",
        "channel",
        "psnr_db",
        "ms_ssim",
        "rho",
        "firing_rate",
        "energy_pj_per_frame",
        "pairs",
    ):
        assert key in record, key
    assert record["channel"] == "rayleigh_block" and record["pairs"] == 2
    assert set(record["psnr_db"]) >= {"left", "right", "mean"}
    assert set(record["energy_pj_per_frame"]) >= {"snn", "cnn_twin"}
    assert record["rho"] == pytest.approx(1 / 16)


def test_eval_reports_bad_input_clearly(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    assert spikelink(["eval", "--model", str(tmp_path / "none.pt")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert spikelink(["eval", "--model", str(tiny_checkpoint), "--channel", "bsc"]) == 1
    assert "spike_bpsk" in capsys.readouterr().err
