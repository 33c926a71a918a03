"""Latent codes: each owns its sizes, latent, channel input, decoder input, lost-view fill
and wire form, and a new code is one class plus its registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import calibrate

from shared.channel import WirelessChannel, generator_for
from shared.config import load_config
from shared.errors import ConfigError, ProtocolError
from shared.latent import (
    LATENT_CODES,
    CountPAM,
    SpikeBPSK,
    latent_code,
    register,
)
from shared.link.hop import DecoderInput, lost_view, receive, send
from shared.link.messages import LatentView, SourceInfo
from shared.measure.activity import Activity
from shared.model.registry import build_model
from shared.wire import decode_message


def test_channels_per_position_give_the_bandwidth_ratio() -> None:
    assert CountPAM(4).channels(1 / 16, 3) == 6  # 6 * rho * 4^2
    assert SpikeBPSK(2).channels(1 / 16, 3) == 3  # ... / T
    assert SpikeBPSK(4).channels(1 / 16, 4) == 6
    with pytest.raises(ConfigError, match="model.cbr.*1.5 latent channels"):
        SpikeBPSK(4).channels(1 / 16, 3)


def test_latent_from_spikes_and_twin_rates() -> None:
    spikes = (torch.rand(4, 2, 3, 5, 7) < 0.4).float()
    counts = CountPAM(4).from_spikes(spikes)
    assert counts.shape == (2, 3, 5, 7) and torch.equal(counts, spikes.sum(0))
    bits = SpikeBPSK(4).from_spikes(spikes)
    assert bits.shape == (2, 4, 3, 5, 7) and torch.equal(bits[:, 1], spikes[1])
    rates = torch.rand(2, 3, 5, 7, requires_grad=True)
    twin = CountPAM(4).from_rates(rates)
    assert torch.equal(twin, torch.round(rates * 4))
    twin.sum().backward()
    assert torch.equal(rates.grad, torch.full_like(rates, 4.0))  # straight-through
    twin_bits = SpikeBPSK(4).from_rates(torch.rand(2, 12, 5, 7))
    assert twin_bits.shape == (2, 4, 3, 5, 7)
    assert set(twin_bits.unique().tolist()) <= {0.0, 1.0}


def test_channel_input_and_decoder_input() -> None:
    counts = torch.tensor([[[[0, 1], [2, 4]]]], dtype=torch.uint8)
    pam = CountPAM(4).channel_input(counts)
    assert pam.tolist() == [[-1.0, -0.5, 0.0, 1.0]] and pam.dtype == torch.float32
    bits = torch.randint(0, 2, (1, 2, 3, 4, 5), dtype=torch.uint8)
    x = SpikeBPSK(2).channel_input(bits)
    assert x.shape == (1, 120) and torch.equal(x, bits.flatten(1).float())
    soft = torch.randn(1, 120)
    r = SpikeBPSK(2).decoder_input(soft, (2, 3, 4, 5))
    assert r.shape == (1, 6, 4, 5) and torch.equal(r.flatten(1), soft)


@pytest.mark.parametrize("code", [CountPAM(4), SpikeBPSK(2)], ids=lambda c: c.name)
def test_wire_form_round_trips_and_is_checked(code) -> None:
    shape = code.shape(3, 4, 8)
    latent = np.random.default_rng(0).integers(
        0, code.max_value + 1, shape, dtype=np.uint8
    )
    arrays = code.to_wire(latent)
    assert set(arrays) == {code.wire_array}
    assert np.array_equal(code.from_wire(arrays), latent)
    bad = [
        {},
        {code.wire_array: latent, "extra": latent},
        {code.wire_array: latent.astype(np.float32)},
        {code.wire_array: latent[0]},
        {code.wire_array: np.full(shape, code.max_value + 1, np.uint8)},
        {code.wire_array: np.zeros(shape[:-1] + (0,), np.uint8)},
    ]
    if code.planes > 1:
        bad.append({code.wire_array: np.zeros((code.planes + 1, 3, 4, 8), np.uint8)})
    for arrays in bad:
        with pytest.raises(ProtocolError):
            code.from_wire(arrays)


def test_each_code_fills_a_lost_view_its_own_way() -> None:
    """Count-PAM stands in the arrived view (a zero would be the middle count level, not
    an erasure); spike-BPSK erases (soft bits 0)."""
    arrived = DecoderInput(torch.randn(1, 6, 4, 8), torch.tensor([7.0]))
    pam = lost_view(CountPAM(4), arrived)
    assert torch.equal(pam.soft, arrived.soft) and pam.soft is not arrived.soft
    bits = lost_view(SpikeBPSK(2), arrived)
    assert torch.equal(bits.soft, torch.zeros_like(arrived.soft))
    for fill in (pam, bits):
        assert torch.equal(fill.snr_db, arrived.snr_db)


def test_unknown_code_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.latent.*count_pam, spike_bpsk"):
        latent_code("count_qam", 4)
    with pytest.raises(ConfigError, match="model.latent"):
        load_config("tiny", ["model.latent=count_qam"])


class SignedCountPAM(CountPAM):
    """A third code for the test: the count as the amplitude 1 - 2n/T (mirrored PAM)."""

    name = "signed_count_pam"

    def channel_input(self, latent: torch.Tensor) -> torch.Tensor:
        return -super().channel_input(latent)


def test_a_third_code_is_one_class_and_its_registration(sample_pair) -> None:
    register(SignedCountPAM)
    try:
        cfg = load_config("tiny", ["model.latent=signed_count_pam"])
        left, right = (x[..., :64, :128] for x in sample_pair)
        model = calibrate(build_model(cfg.model, cfg.channel), left, right)
        assert isinstance(model.code, SignedCountPAM)
        coded = model.encode(left, right)
        latent = coded["latent"][0]
        snr = torch.tensor([10.0])
        channel = WirelessChannel.for_code(cfg.channel, model.code)
        use = send(model.code, channel, latent, snr, generator_for(0, 0, 0))
        received = receive(model.code, channel, use, snr, coded["shape"])
        out = model.decode(DecoderInput.cat([received, received]))
        assert out["x_hat_left"].shape == (1, 3, 64, 128)
        source = SourceInfo("pair", 64, 128, 64, 128)
        sent = LatentView(
            1, 0, 0, model.code, latent[0].numpy(), source, "snn", Activity(0, 0, 1)
        )
        back = LatentView.read(decode_message(sent.encode()))
        assert back.code == model.code and np.array_equal(back.latent, sent.latent)
    finally:
        del LATENT_CODES[SignedCountPAM.name]
