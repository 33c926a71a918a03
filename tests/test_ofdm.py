"""The ``ofdm_tdl`` channel: OFDM over Sionna's 3GPP TDL models, seeded per view, through
the same code path as the other channels (training, evaluation, baselines)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_ON_SAMPLES

from shared.baselines import instantaneous_snr_db
from shared.channel.ofdm import OfdmTdl
from shared.channel.power import real_to_complex
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.config import load_config
from shared.model.checkpoint import load_checkpoint
from trainer.__main__ import main as train_main
from trainer.logs import read_records

#: 100 OFDM symbols of 72 subcarriers for each of 32 views.
VIEWS, SYMBOLS = 32, 100


def grid(settings: OfdmTdl, seq: int = 1) -> torch.Tensor:
    """``[VIEWS, SYMBOLS, subcarriers]`` frequency response of ``settings``."""
    h = settings.draw(VIEWS, SYMBOLS * settings.subcarriers, generator_for(0, seq, 0))
    return h.reshape(VIEWS, SYMBOLS, settings.subcarriers)


def correlation(h: torch.Tensor, lag: int, axis: int) -> float:
    """``|E[h h*]|`` of resource elements ``lag`` apart along ``axis`` (1: OFDM symbols,
    2: subcarriers), over the mean power."""
    a, b = (
        h.narrow(axis, lag, h.shape[axis] - lag),
        h.narrow(axis, 0, h.shape[axis] - lag),
    )
    return float((a * b.conj()).mean().abs() / h.abs().square().mean())


def test_a_views_channel_is_its_generators_and_has_unit_power() -> None:
    settings = OfdmTdl()
    h = grid(settings)
    assert torch.equal(h, grid(settings))
    assert not torch.equal(h, grid(settings, seq=2))
    assert float(h.abs().square().mean()) == pytest.approx(1.0, abs=1e-3)


def test_frequency_selectivity_follows_the_delay_spread() -> None:
    narrow = grid(OfdmTdl(delay_spread_ns=30.0))
    wide = grid(OfdmTdl(delay_spread_ns=1000.0))
    assert correlation(narrow, 1, 2) > 0.99
    assert correlation(wide, 36, 2) < correlation(narrow, 36, 2) - 0.2


def test_the_channel_varies_over_time_only_when_the_terminal_moves() -> None:
    still = grid(OfdmTdl(speed_mps=0.0))
    moving = grid(OfdmTdl(speed_mps=30.0))
    assert torch.allclose(still[:, 1:], still[:, :-1])
    assert correlation(moving, 50, 1) < 0.9


def test_each_resource_element_is_equalised_with_its_own_coefficient() -> None:
    """Noise-free (80 dB) the MMSE receiver gives back what was sent, element by element."""
    channel = WirelessChannel("ofdm_tdl")
    sent = channel.transmit(torch.randn(2, 2 * 300))
    use = channel.propagate(sent, torch.tensor([80.0, 80.0]), generator_for(0, 0, 0))
    assert use.h.shape == (2, 300) and float(use.h.abs().std()) > 0.05
    assert torch.allclose(real_to_complex(channel.receive(use)), sent, atol=1e-3)


def test_the_capacity_baseline_uses_the_views_own_resource_elements() -> None:
    uses = 720
    h = WirelessChannel("ofdm_tdl").draw_fading(1, uses, generator_for(3, 5, 1))
    bits = torch.log2(1 + h.abs().square().double() * 10**0.5).mean()
    expected = 10 * math.log10(2 ** float(bits) - 1)
    assert instantaneous_snr_db("ofdm_tdl", 5.0, 3, 5, 1, uses) == pytest.approx(
        expected
    )


def test_a_bad_tdl_setting_names_its_key() -> None:
    with pytest.raises(Exception, match="channel.tdl_model"):
        load_config("tiny", ["channel.tdl_model=F"])


@pytest.mark.heavy
def test_the_trainer_trains_through_ofdm_tdl(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = train_main(
        [
            *TINY_ON_SAMPLES,
            "--set",
            "channel.kind=ofdm_tdl",
            "--set",
            "channel.speed_mps=10",
            "--set",
            "train.steps=3",
            "--set",
            "train.log_every=1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert load_checkpoint(out / "model.pt")["config"]["channel"]["kind"] == "ofdm_tdl"
    losses = [r["loss"] for r in read_records(out, "train")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
