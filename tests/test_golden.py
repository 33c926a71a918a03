"""The JSON that ``eval``, ``energy`` and ``sweep`` write, against golden files in
``tests/expected/``. Run with ``GENERATE_EXPECTED=1`` to write them anew after a change
that is meant to alter the outputs (and say why in the commit)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

from shared.cli import main as spikelink

EXPECTED = REPO / "tests" / "expected"
#: Keys whose values depend on where the test runs (paths) rather than on the code.
VOLATILE = {"model", "data", "args", "root", "out"}


def normalised(value: object) -> object:
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def assert_same(got: object, want: object, where: str) -> None:
    """Equal structure and strings; numbers within 1e-3 (relative or absolute), since
    float results may differ in the last bits between CPUs."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), where
        assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-3), (where, got, want)
    else:
        assert got == want, (where, got, want)


def check_golden(name: str, produced: Path) -> None:
    got = normalised(json.loads(produced.read_text()))
    path = EXPECTED / f"{name}.json"
    if os.environ.get("GENERATE_EXPECTED") == "1":
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        return
    assert_same(got, json.loads(path.read_text()), name)


def run_on_samples(command: str, checkpoint: Path, out: Path, *options: str) -> None:
    """``spikelink <command>`` with the tiny model on the bundled samples."""
    source = ("--model", str(checkpoint), "--data", str(SAMPLES / "stereo"))
    assert spikelink([command, *source, *options, "--out", str(out)]) == 0


def test_eval_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = ("--frames", "2", "--snr", "0,10", "--channel", "rayleigh_block")
    run_on_samples("eval", tiny_checkpoint, tmp_path, *options)
    check_golden("eval", tmp_path / "eval.json")


def test_energy_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run_on_samples("energy", tiny_checkpoint, tmp_path, "--frames", "1")
    check_golden("energy", tmp_path / "energy.json")


@pytest.mark.heavy
def test_sweep_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = ("--frames", "1", "--snrs", "0,10", "--channels", "awgn,rayleigh_block")
    options += ("--baselines", "jpeg", "--mode", "inprocess")
    run_on_samples("sweep", tiny_checkpoint, tmp_path, *options)
    check_golden("sweep", tmp_path / "sweep.json")
