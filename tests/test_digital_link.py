"""The digital baseline (codec + 5G NR LDPC + QAM through the link's channel) and the
cross-checks of the project's channel maths against Sionna's."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SAMPLES
from sionna.phy.channel import AWGN, RayleighBlockFading

from shared.baselines import decode_file, file_at_budget, mean_colour
from shared.channel.awgn import awgn, snr_db_to_noise_var
from shared.channel.fading import sample_rayleigh_block
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.data.frames import load_frames
from shared.digital_link import (
    MAX_INFO_BITS,
    SCHEMES,
    CodewordLayout,
    DigitalLink,
    Scheme,
    send_view,
    through_channel,
)

#: Channel uses of a 64x128 view at rho = 1/16 (the tiny models' operating point).
USES = 64 * 128 * 3 // 16
SIXTEEN_QAM_3_4 = next(s for s in SCHEMES if s.label == "16-QAM 3/4")


@pytest.fixture(scope="module")
def view() -> torch.Tensor:
    """The bundled KITTI sample's left view, ``[3, 64, 128]``."""
    return load_frames(str(SAMPLES / "stereo"), None, 64, 128, limit=1)[0].left


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.label)
def test_every_scheme_fills_the_channel_uses_at_its_rate(scheme: Scheme) -> None:
    for uses in (USES, 6144):
        layout = CodewordLayout.of(scheme, uses)
        assert layout.info_bits <= MAX_INFO_BITS
        assert layout.codewords * layout.coded_bits <= uses * scheme.bits_per_symbol
        assert layout.info_bits / layout.coded_bits == pytest.approx(
            float(scheme.code_rate), abs=1e-3
        )
        assert layout.payload_bytes > 0


def test_a_view_arrives_intact_above_the_threshold_and_is_lost_below(view) -> None:
    link = DigitalLink(SIXTEEN_QAM_3_4, USES)
    quality, file = file_at_budget(view, "jpeg2000", link.layout.payload_bytes)
    assert quality is not None
    for channel in (
        WirelessChannel("awgn"),
        WirelessChannel("rayleigh_block"),
        WirelessChannel("ofdm_tdl", csi="estimated"),
    ):
        shown, arrived = send_view(
            view, file, link, channel, 30.0, generator_for(0, 1, 0)
        )
        assert arrived and torch.equal(shown, decode_file(file))
        shown, arrived = send_view(
            view, file, link, channel, -5.0, generator_for(0, 1, 0)
        )
        assert not arrived and torch.equal(shown, mean_colour(view))


def test_the_decoder_fails_above_capacity_where_the_baseline_skips_it(view) -> None:
    """16-QAM 3/4 carries 3 bits per use; at 7 dB the capacity is 2.55 bits: belief
    propagation does not recover the codewords, which the baseline assumes without
    decoding. A few dB above the capacity limit (8.45 dB) it recovers them."""
    link = DigitalLink(SIXTEEN_QAM_3_4, USES)
    bits = link.info_bits(
        file_at_budget(view, "jpeg2000", link.layout.payload_bytes)[1]
    )
    for snr_db, recovered in ((7.0, False), (14.0, True)):
        for seq in range(3):
            y, noise_var = through_channel(
                link.transmit(bits),
                WirelessChannel("awgn"),
                snr_db,
                generator_for(0, seq, 0),
            )
            assert torch.equal(link.receive(y, noise_var), bits) == recovered


def test_the_digital_link_sees_the_jscc_models_noise() -> None:
    """Same seed, same view: the QAM symbols get the very noise the link's channel adds
    to a JSCC latent of the same length."""
    link = DigitalLink(SCHEMES[0], USES)
    x = link.transmit(link.info_bits(b"spikelink"))
    channel = WirelessChannel("awgn")
    y, _ = through_channel(x, channel, 3.0, generator_for(7, 2, 1))
    use = channel.propagate(x, torch.tensor([3.0]), generator_for(7, 2, 1))
    assert torch.equal(y, use.y)


def test_payloads_round_trip_through_the_length_header() -> None:
    link = DigitalLink(SCHEMES[2], USES)
    for payload in (
        b"",
        b"\x00\xff" * 10,
        bytes(range(256))[: link.layout.payload_bytes],
    ):
        assert link.payload_of(link.info_bits(payload)) == payload
    with pytest.raises(ValueError, match="do not fit"):
        link.info_bits(bytes(link.layout.payload_bytes + 1))


def test_awgn_matches_sionna_statistic_for_statistic() -> None:
    """Noise variance N0 per complex symbol, N0 / 2 per real dimension, circular: ours
    and Sionna's AWGN on the same unit-power symbols at 3 dB."""
    torch.manual_seed(0)
    n, snr_db = 400_000, 3.0
    x = torch.polar(torch.ones(1, n), 2 * math.pi * torch.rand(1, n))
    no = snr_db_to_noise_var(torch.tensor([snr_db]))
    ours = awgn(x, no, torch.Generator().manual_seed(1)) - x
    theirs = AWGN()(x, float(no)) - x
    for w in (ours, theirs):
        assert float(w.abs().square().mean()) == pytest.approx(float(no), rel=0.01)
        assert float(w.real.var()) == pytest.approx(float(no) / 2, rel=0.01)
        assert float(w.imag.var()) == pytest.approx(float(no) / 2, rel=0.01)
        assert abs(float((w.real * w.imag).mean())) < 0.005
    assert float(ours.abs().square().mean()) == pytest.approx(
        float(theirs.abs().square().mean()), rel=0.01
    )


def test_rayleigh_block_fading_matches_sionna_statistic_for_statistic() -> None:
    """E|h|^2 = 1, |h|^2 exponential, uniform phase: our block draw and Sionna's
    RayleighBlockFading (one antenna each way, one path), quantile for quantile."""
    n = 200_000
    ours = sample_rayleigh_block(n, torch.Generator().manual_seed(2))[:, 0]
    a, _ = RayleighBlockFading(1, 1, 1, 1)(n, 1)
    theirs = a.reshape(n)
    probs = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    expected = -torch.log1p(-probs)
    for h in (ours, theirs):
        gain = h.abs().square()
        assert float(gain.mean()) == pytest.approx(1.0, rel=0.01)
        assert torch.allclose(torch.quantile(gain, probs), expected, rtol=0.03)
        assert abs(float(h.mean().abs())) < 0.01
    assert torch.allclose(
        torch.quantile(ours.abs().square(), probs),
        torch.quantile(theirs.abs().square(), probs),
        rtol=0.03,
    )
