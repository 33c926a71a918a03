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
from shared.channel.pilots import PilotGrid, layout, layout_of
from shared.channel.power import real_to_complex
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.config import load_config
from shared.errors import ConfigError
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


@pytest.mark.parametrize("n", [71, 1536, 6144])
def test_pilots_take_channel_uses_on_their_grid(n: int) -> None:
    """A view of ``n`` data symbols takes ``n`` plus the pilots before its last data
    symbol: every 4th subcarrier of every 7th OFDM symbol, unit-power QPSK."""
    grid, k = PilotGrid(), 72
    pilots = layout(grid, k, n)
    m = pilots.channel_uses
    positions = torch.arange(m)
    symbol, subcarrier = positions // k, positions % k
    is_pilot = (symbol % 7 == 0) & (subcarrier % 4 == 0)
    assert torch.equal(pilots.pilot, torch.nonzero(is_pilot)[:, 0])
    assert torch.equal(pilots.data, torch.nonzero(~is_pilot)[:, 0])
    assert pilots.data.numel() == n and pilots.data[-1] == m - 1
    assert torch.allclose(pilots.pilot_values.abs(), torch.ones(()))
    assert WirelessChannel("ofdm_tdl", csi="estimated").channel_uses(n) == m
    assert layout_of(grid, k, m) is pilots
    with pytest.raises(ValueError, match="not a view"):  # it would end on a pilot
        layout_of(grid, k, 1)
    z = torch.randn(2, n, dtype=torch.complex64)
    sent = pilots.insert(z)
    assert torch.equal(sent[:, pilots.data], z)
    assert torch.equal(sent[:, pilots.pilot], pilots.pilot_values.expand(2, -1))


def estimation_error(
    snr_db: float, interpolation: str = "lin_time_avg"
) -> tuple[float, float]:
    """The mean squared error of the channel estimated at the data symbols of 16 views
    of 6144 symbols over TDL-A, and the error variance the estimator predicts."""
    channel = WirelessChannel(
        "ofdm_tdl", csi="estimated", pilots=PilotGrid(interpolation=interpolation)
    )
    sent = channel.place(torch.ones(16, 6144, dtype=torch.complex64))
    generator = generator_for(0, 3, 0)
    h = channel.draw_fading(*sent.shape, generator_for(0, 3, 0))
    use = channel.propagate(sent, torch.full((16,), snr_db), generator)
    estimated = channel.estimate(use)
    truth = h[:, layout(channel.pilots, 72, 6144).data]
    assert estimated.error_var.shape == truth.shape and (estimated.error_var > 0).all()
    error = float((estimated.h - truth).abs().square().mean())
    return error, float(estimated.error_var.mean())


def test_the_channel_estimate_approaches_the_channel_as_the_snr_rises() -> None:
    """Its error falls with the SNR; where noise dominates, the error variance the
    equaliser is told is the one measured (time averaging over 13 pilot symbols)."""
    (low, low_told), (mid, mid_told), (high, _) = (
        estimation_error(snr) for snr in (0.0, 10.0, 30.0)
    )
    assert low > mid > high and high < 1e-3
    assert low_told == pytest.approx(low, rel=0.2)
    assert mid_told == pytest.approx(mid, rel=0.2)
    assert estimation_error(10.0, "nn")[0] > mid


def test_estimated_csi_nears_perfect_csi_and_beats_none() -> None:
    """The mean squared error of the equalised symbols at 10 dB: estimated CSI within
    30 % of perfect CSI and far below no CSI; gradients reach the sent values."""
    x = torch.randn(8, 2 * 1536, requires_grad=True)
    data = WirelessChannel("ofdm_tdl").transmit(x.detach())
    errors = {}
    for csi in ("perfect", "estimated", "none"):
        channel = WirelessChannel("ofdm_tdl", csi=csi)
        use = channel.propagate(
            channel.transmit(x), torch.full((8,), 10.0), generator_for(0, 9, 1)
        )
        soft = real_to_complex(channel.receive(use))
        errors[csi] = float((soft.detach() - data).abs().square().mean())
        if csi == "estimated":
            soft.abs().sum().backward()
    assert errors["estimated"] < 1.3 * errors["perfect"]
    assert errors["none"] > 5 * errors["estimated"]
    assert float(x.grad.abs().sum()) > 0


def test_estimated_csi_needs_a_channel_with_pilots() -> None:
    with pytest.raises(ConfigError, match="channel.csi"):
        WirelessChannel("rayleigh_block", csi="estimated")
    with pytest.raises(ConfigError, match="channel.pilot_symbol_step"):
        WirelessChannel(
            "ofdm_tdl", csi="estimated", pilots=PilotGrid(1, 1)
        ).channel_uses(100)
    with pytest.raises(ConfigError, match="channel.pilot_interpolation"):
        load_config("tiny", ["channel.pilot_interpolation=cubic"])


@pytest.mark.heavy
def test_the_trainer_trains_through_ofdm_tdl_with_estimated_csi(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = train_main(
        [
            *TINY_ON_SAMPLES,
            "--set",
            "channel.kind=ofdm_tdl",
            "--set",
            "channel.speed_mps=10",
            "--set",
            "channel.csi=estimated",
            "--set",
            "channel.pilot_interpolation=lin",
            "--set",
            "train.steps=3",
            "--set",
            "train.log_every=1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    channel = load_checkpoint(out / "model.pt")["config"]["channel"]
    assert (channel["kind"], channel["csi"]) == ("ofdm_tdl", "estimated")
    losses = [r["loss"] for r in read_records(out, "train")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
