"""Sweep: capacity budgets, the 'nothing fits' rule, link and in-process modes agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SAMPLES

from shared.baselines import (
    CODECS,
    budget_bytes,
    code_at_budget,
    instantaneous_snr_db,
)
from shared.channel import WirelessChannel, generator_for
from shared.channel.theory import capacity_bits
from shared.commands.common import parse_snrs
from shared.commands.sweep import main as sweep_main
from shared.config import InferenceConfig
from shared.data.frames import load_frames
from shared.digital_link import SCHEMES
from shared.errors import ConfigError
from shared.model.checkpoint import load_model
from shared.sweep import SweepSpec, sweep_baseline, sweep_in_process, sweep_link


def test_bits_per_view_follow_capacity() -> None:
    # rho = 1/16 at 128x256: n = 6144 complex channel uses per view
    assert capacity_bits(6144, 10.0) == pytest.approx(6144 * math.log2(11.0))
    assert budget_bytes(6144, 10.0) == 2656
    assert budget_bytes(6144, 0.0) == 768
    assert budget_bytes(6144, -5.0) == int(6144 * math.log2(1 + 10**-0.5) // 8)


def test_block_fading_uses_the_instantaneous_snr() -> None:
    assert instantaneous_snr_db("awgn", 5.0, 0, 1, 0, 64) == 5.0
    faded = [
        instantaneous_snr_db("rayleigh_block", 5.0, 0, seq, 0, 64)
        for seq in range(2000)
    ]
    assert faded[0] == instantaneous_snr_db("rayleigh_block", 5.0, 0, 0, 0, 64)
    gains = torch.tensor([10 ** ((f - 5.0) / 10) for f in faded])
    assert gains.mean().item() == pytest.approx(1.0, abs=0.08)  # E|h|^2 = 1
    with pytest.raises(ConfigError, match="bsc"):
        instantaneous_snr_db("bsc", 5.0, 0, 0, 0, 64)


@pytest.mark.parametrize("codec", CODECS)
def test_codec_fits_the_budget_or_sends_the_mean(codec: str) -> None:
    image = load_frames(str(SAMPLES / "stereo"), None, 128, 256, limit=1)[0].left
    coded, info = code_at_budget(image, codec, 3000)
    assert 0 < info["bytes"] <= 3000 and info["quality"] is not None
    assert (coded - image).abs().mean() < 0.1
    nothing, info = code_at_budget(image, codec, 40)
    assert info == {"quality": None, "bytes": 0}
    mean = image.mean(dim=(1, 2))
    assert torch.allclose(nothing, mean[:, None, None].expand_as(image))


def test_negative_snr_values_follow_their_flag() -> None:
    from shared.commands.common import attach_negative_values

    assert attach_negative_values(["--snr", "-5,0", "--out", "x"], ("--snr",)) == [
        "--snr=-5,0",
        "--out",
        "x",
    ]


def test_snr_lists_and_ranges() -> None:
    assert parse_snrs("-5:15:2.5") == [-5.0, -2.5, 0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]
    assert parse_snrs("0, 3,7") == [0.0, 3.0, 7.0]
    with pytest.raises(ConfigError, match="START:STOP:STEP"):
        parse_snrs("0:10:0")
    with pytest.raises(ConfigError, match="SNR list"):
        parse_snrs("loud")
    with pytest.raises(ConfigError, match=r"'0,500'.*snr_db.*<= 80"):
        parse_snrs("0,500")
    with pytest.raises(ConfigError, match="finite"):
        parse_snrs("nan")


def tiny_model_and_samples(checkpoint: Path, pairs: int) -> tuple:
    """The model of ``checkpoint`` and the first ``pairs`` bundled sample pairs at its
    image size."""
    model, cfg = load_model(checkpoint)
    size = (cfg.data.image_height, cfg.data.image_width)
    return model, load_frames(str(SAMPLES / "stereo"), None, *size, limit=pairs)


@pytest.mark.heavy
def test_link_and_in_process_modes_agree(tmp_path: Path, tiny_checkpoint: Path) -> None:
    model, frames = tiny_model_and_samples(tiny_checkpoint, 2)
    spec = SweepSpec(
        (("awgn", 0.0), ("rayleigh_block", 5.0), ("ofdm_tdl", 5.0)),
        "perfect",
        3,
        len(frames),
        passes=2,
        infer=InferenceConfig(precision="float32"),
    )
    direct = sweep_in_process(model, "tiny", frames, spec)
    linked = sweep_link(
        str(tiny_checkpoint), str(SAMPLES / "stereo"), None, spec, tmp_path
    )
    for a, b in zip(direct, linked):
        assert (a["channel"], a["snr_db"]) == (b["channel"], b["snr_db"])
        assert a["frames"] == b["frames"] == 4 and b["frames_lost"] == 0
        for side in ("left", "right", "mean"):
            assert abs(a["psnr_db"][side] - b["psnr_db"][side]) < 1e-4


def test_pilots_count_in_every_systems_channel_uses(tiny_checkpoint: Path) -> None:
    """Under estimated CSI a model's records and a codec's budget both count the
    pilots: the same n and rho for every system."""
    model, frames = tiny_model_and_samples(tiny_checkpoint, 1)
    spec = SweepSpec((("ofdm_tdl", 5.0),), "estimated", 3, 1)
    n = WirelessChannel("ofdm_tdl", csi="estimated").channel_uses(1536)
    coded = sweep_baseline("jpeg", frames, spec, 1536, 24576)
    for record in sweep_in_process(model, "tiny", frames, spec) + coded:
        assert (record["channel_uses"], record["rho"]) == (n, n / 24576)
    with pytest.raises(ConfigError, match="channel.csi"):
        sweep_in_process(
            model, "tiny", frames, SweepSpec((("awgn", 5.0),), "estimated", 3, 1)
        )


@pytest.mark.heavy
def test_sweep_writes_every_output(tmp_path: Path, tiny_checkpoint: Path) -> None:
    code = sweep_main(
        [
            "--model",
            str(tiny_checkpoint),
            "--snrs",
            "0,10",
            "--frames",
            "1",
            "--channels",
            "awgn,rician_block,ofdm_tdl",
            "--baselines",
            "jpeg2000,jpeg2000+ldpc",
            "--mode",
            "inprocess",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    for name in (
        "sweep.json",
        "sweep.csv",
        "psnr.png",
        "energy.png",
        "examples.png",
        "report.md",
    ):
        assert (tmp_path / name).exists(), name
    records = json.loads((tmp_path / "sweep.json").read_text())["records"]
    assert len(records) == 18  # (model + 2 baselines) x 3 channels x 2 SNRs
    assert {r["system"] for r in records} == {"tiny", "jpeg2000", "jpeg2000+ldpc"}
    digital = [r for r in records if r["system"] == "jpeg2000+ldpc"]
    for r in digital:
        assert set(r["schemes"]) == {s.label for s in SCHEMES}
        assert r["psnr_db"]["mean"] == max(r["schemes"].values())
        assert r["scheme"] in r["schemes"] and 0 <= r["views_lost"] <= 2
    csv_lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("system,kind,channel,csi,snr_db,psnr_left")
    assert len(csv_lines) == 19
    report = (tmp_path / "report.md").read_text()
    assert "| awgn | tiny |" in report and "best scheme at each SNR" in report
    assert "| ofdm_tdl | jpeg2000+ldpc |" in report and "TDL-A, delay spread" in report
    for bad in (["--baselines", "png"], ["--baselines", "png+ldpc"], ["--passes", "0"]):
        assert (
            sweep_main(["--model", str(tiny_checkpoint), *bad, "--out", str(tmp_path)])
            == 1
        )


def test_block_fading_baselines_see_the_links_own_fading() -> None:
    """The capacity baseline of a view uses the |h|^2 that the channel process draws for
    that view (the same seeded generator, first draw)."""
    for kind in ("rayleigh_block", "rician_block"):
        channel = WirelessChannel(kind, "analog", csi="perfect")
        for seq, view in ((0, 0), (5, 1), (123, 0)):
            x = torch.randn(1, 64)
            use = channel.propagate(
                channel.transmit(x), torch.tensor([5.0]), generator_for(3, seq, view)
            )
            gain_db = 10 * math.log10(float(use.h.abs().square()[0, 0]))
            assert instantaneous_snr_db(kind, 5.0, 3, seq, view, 64) == pytest.approx(
                5.0 + gain_db, abs=1e-6
            )


def test_a_sweep_without_frames_or_points_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one stereo pair"):
        SweepSpec((("awgn", 0.0),), "perfect", 0, 0)
    with pytest.raises(ConfigError, match="point"):
        SweepSpec((), "perfect", 0, 3)
