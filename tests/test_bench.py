"""``spikelink bench`` on tiny models: every figure of bench.json measured and sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import calibrated_tiny

from shared.cli import main as spikelink
from shared.model.inference import fast_bfloat16


@pytest.mark.heavy
def test_bench_writes_every_figure(tmp_path: Path, tiny_checkpoint: Path) -> None:
    twin = calibrated_tiny(tmp_path / "twin", "model.kind=cnn")
    out = tmp_path / "bench"
    options = [
        "--repeats",
        "1",
        "--frames",
        "2",
        "--threads",
        "1",
        "--link-repeat",
        "1",
    ]
    status = spikelink(
        ["bench", "--model", str(tiny_checkpoint), "--twin", str(twin), *options]
        + ["--batch-study", "2", "--out", str(out)]
    )
    assert status == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["device"] == "cpu"
    fast = fast_bfloat16(torch.device("cpu"))
    assert report["precision"] == ("bfloat16" if fast else "float32")
    assert report["snn_over_twin"] > 0 and report["snn_over_twin_reference"] > 0
    assert report["link_fps"] > 0 and report["twin_link_fps"] > 0
    assert report["link"]["snn"]["frames_lost"] == 0
    assert report["psnr_delta_db"] < 0.05
    assert {r["snr_db"] for r in report["psnr_check"]} == {0.0, 10.0}
    for system in ("snn", "twin"):
        stages = report["stages"][system]
        for stage in ("encode", "channel", "decode", "serialization", "transport"):
            assert stages[f"{stage}_ms"] > 0
        assert report["eval_fps"][system] > 0
    rows = {(r["system"], r["path"], r["batch"]) for r in report["timings"]}
    assert rows == {
        (kind, path, batch)
        for kind in ("snn", "cnn")
        for path in ("reference", "fast")
        for batch in (1, 2)
    }


def test_bench_refuses_a_twin_that_is_not_one(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    status = spikelink(
        ["bench", "--model", str(tiny_checkpoint), "--twin", str(tiny_checkpoint)]
        + ["--out", str(tmp_path)]
    )
    assert status == 1
    assert "--twin a CNN twin" in capsys.readouterr().err
