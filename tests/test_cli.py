"""Every user-facing command answers --help, and eval writes its documented record."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, write_image

from shared.cli import COMMANDS
from shared.cli import main as spikelink
from shared.config import load_config
from shared.data.frames import source_pairs


def pairs_counted(source: Path) -> int:
    return len(source_pairs(source))


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


@pytest.mark.heavy
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


def test_demo_counts_the_pairs_of_any_source(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    """The demo counts pairs with the loaders (a split file, a KITTI tree), and a source
    without pairs is a clear error, not a division by zero."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert spikelink(["demo", "--data", str(empty)]) == 1
    assert "no stereo pairs" in capsys.readouterr().err
    split = tmp_path / "pairs.txt"
    split.write_text(f"{SAMPLES / 'stereo' / 'cones_2003_Q'}\n")
    assert pairs_counted(split) == 1
    kitti = tmp_path / "kitti" / "training"
    for side, folder in (("left", "image_2"), ("right", "image_3")):
        for name in ("000000_10", "000001_10"):
            write_image(kitti / folder / f"{name}.png", 40, 80, seed=len(side))
    assert pairs_counted(tmp_path / "kitti") == 2


@pytest.mark.heavy
def test_demo_runs_the_link_on_a_split_file(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    split = tmp_path / "pairs.txt"
    split.write_text(f"{SAMPLES / 'stereo' / 'cones_2003_Q'}\n")
    out = tmp_path / "demo"
    args = ["--model", str(tiny_checkpoint), "--data", str(split), "--snrs", "10"]
    assert spikelink(["demo", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 stereo pairs" in printed and "10.0" in printed
    assert (out / "link" / "frames" / "000000_left.png").exists()


def test_eval_can_pair_each_view_with_another_scene(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    options = ["--model", str(tiny_checkpoint), "--data", str(SAMPLES / "stereo")]
    options += ["--frames", "3", "--snr", "10", "--pairing", "mismatched"]
    assert spikelink(["eval", *options, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    names = [f["name"] for f in report["results"][0]["frames"]]
    assert report["pairing"] == "mismatched" and len(names) == 3
    assert names[0].split("+")[1] == names[1].split("+")[0]
    assert names[2].split("+")[1] == names[0].split("+")[0]


def test_version(capsys) -> None:
    assert spikelink(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "spikelink 0.1.0"


@pytest.mark.parametrize("command", ["demo", "eval", "energy", "sweep"])
def test_defaults_are_the_bundled_files_wherever_the_command_runs(
    command: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = importlib.import_module(COMMANDS[command][0]).build_parser().parse_args([])
    models = args.model if isinstance(args.model, list) else [args.model]
    assert all(Path(m).is_file() for m in models)
    assert len(source_pairs(args.data)) == 7
    cfg = load_config(None)
    assert Path(cfg.link.model).is_file() and Path(cfg.link.source).is_dir()
    assert Path(cfg.data.val_split).is_file()


def test_eval_runs_from_another_directory(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = ["--model", str(tiny_checkpoint), "--frames", "1", "--snr", "5"]
    assert spikelink(["eval", *options, "--out", "here"]) == 0
    assert json.loads((tmp_path / "here" / "eval.json").read_text())["results"]


def test_link_names_its_source_data_and_still_takes_source(capsys) -> None:
    from shared.commands.link import build_parser, config_from_args

    new = config_from_args(build_parser().parse_args(["--data", "synthetic"]))
    assert new.link.source == "synthetic" and capsys.readouterr().err == ""
    old = config_from_args(build_parser().parse_args(["--source", "synthetic"]))
    assert old.link.source == "synthetic"
    assert "--source is an old name of --data" in capsys.readouterr().err
