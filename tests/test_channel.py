"""Channel maths against closed-form theory (conventions: Es/N0 per complex symbol)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.channel import (
    WirelessChannel,
    awgn,
    bsc,
    complex_to_real,
    equalize,
    erasure,
    generator_for,
    normalize_power,
    real_to_complex,
    sample_rayleigh_block,
    sample_rayleigh_fast,
    sample_rician_block,
    snr_db_to_noise_var,
)
from shared.channel.theory import (
    ber_bpsk_awgn,
    ber_bpsk_rayleigh,
    capacity_bits,
    ebno_db_to_esno_db,
)
from shared.errors import ConfigError
from shared.latent import pam_from_counts


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def through(
    channel: WirelessChannel,
    x: torch.Tensor,
    snr_db: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The channel's three stages on channel input ``x``: soft values and known SNR."""
    use = channel.propagate(channel.transmit(x), snr_db, generator)
    return channel.receive(use), channel.snr_known_db(snr_db, use)


def assert_ber_close(
    errors: float, bits: int, expected: float, samples: int = 0
) -> None:
    """Binomial tolerance: 5 standard deviations over ``samples`` independent draws
    (default: every bit), plus a small floor."""
    sigma = math.sqrt(expected * (1 - expected) / (samples or bits))
    assert abs(errors / bits - expected) < 5 * sigma + 1e-5, (errors / bits, expected)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 3.0, 10.0])
def test_awgn_variance_matches_the_snr(snr_db: float) -> None:
    z = torch.zeros(1, 1_000_000, dtype=torch.complex128)
    y = awgn(z, snr_db_to_noise_var(torch.tensor([snr_db], dtype=torch.float64)), gen())
    noise_var = 10 ** (-snr_db / 10)
    assert y.abs().square().mean().item() == pytest.approx(noise_var, rel=1e-2)
    # half of it on each real component: a 3 dB slip in the convention fails here
    assert y.real.var().item() == pytest.approx(noise_var / 2, rel=1e-2)
    assert y.imag.var().item() == pytest.approx(noise_var / 2, rel=1e-2)


def test_unit_power_after_normalisation_and_zero_block() -> None:
    z = torch.randn(8, 500, dtype=torch.complex128) * torch.rand(8, 1) * 7
    power = normalize_power(z).abs().square().mean(dim=1)
    assert torch.allclose(power, torch.ones(8, dtype=torch.float64), atol=1e-5)
    zero = torch.zeros(2, 64, dtype=torch.complex64, requires_grad=True)
    out = normalize_power(zero)
    assert torch.equal(out, torch.zeros_like(out))
    out.abs().sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_real_complex_packing_round_trip() -> None:
    x = torch.randn(3, 10)
    z = real_to_complex(x)
    assert z.shape == (3, 5) and z[0, 0] == torch.complex(x[0, 0], x[0, 1])
    assert torch.equal(complex_to_real(z), x)
    with pytest.raises(ValueError, match="even"):
        real_to_complex(torch.randn(2, 5))


@pytest.mark.parametrize("kind", ["rayleigh_block", "rayleigh_fast", "rician_block"])
def test_fading_has_unit_mean_power(kind: str) -> None:
    g = gen(1)
    if kind == "rayleigh_block":
        h = sample_rayleigh_block(1_000_000, g, torch.complex128)
    elif kind == "rayleigh_fast":
        h = sample_rayleigh_fast(100, 10_000, g, torch.complex128)
    else:
        h = sample_rician_block(1_000_000, 3.0, g, torch.complex128)
    assert h.abs().square().mean().item() == pytest.approx(1.0, abs=5e-3)


def test_rician_power_spread_matches_k_factor() -> None:
    k = 10.0
    h = sample_rician_block(1_000_000, k, gen(2), torch.complex128)
    expected = (1 + 2 * k) / (
        k + 1
    ) ** 2  # Var|h|^2 of a Rician channel with E|h|^2 = 1
    assert h.abs().square().var().item() == pytest.approx(expected, rel=2e-2)


def test_theory_reference_values() -> None:
    assert ber_bpsk_awgn(0.0) == pytest.approx(7.87e-2, rel=1e-2)
    assert ber_bpsk_awgn(10.0) == pytest.approx(3.87e-6, rel=1e-2)
    assert ber_bpsk_rayleigh(10.0) == pytest.approx(2.33e-2, rel=1e-2)
    assert ebno_db_to_esno_db(0.0, 2) == pytest.approx(3.0103, abs=1e-4)
    assert capacity_bits(100, 0.0) == pytest.approx(100.0)


@pytest.mark.parametrize("ebno_db", [0.0, 4.0, 7.0])
def test_qpsk_ber_over_awgn(ebno_db: float) -> None:
    """Spike-BPSK pairs bits on I and Q (Gray QPSK): Es/N0 = Eb/N0 + 3.01 dB."""
    bits = (torch.rand(20, 50_000, generator=gen(3)) < 0.5).float()
    channel = WirelessChannel("awgn", "bits")
    esno = ebno_db_to_esno_db(ebno_db, 2)
    soft, _ = through(channel, bits, torch.full((20,), esno), gen(4))
    errors = ((soft > 0).float() != bits).sum().item()
    assert_ber_close(errors, bits.numel(), ber_bpsk_awgn(ebno_db))


@pytest.mark.parametrize("ebno_db", [0.0, 6.0])
def test_bpsk_ber_over_awgn(ebno_db: float) -> None:
    """Plain BPSK, one bit per complex symbol on the real axis: Es = Eb."""
    bits = (torch.rand(1, 1_000_000, generator=gen(5)) < 0.5).double()
    z = normalize_power(torch.complex(2 * bits - 1, torch.zeros_like(bits)))
    y = awgn(
        z, snr_db_to_noise_var(torch.tensor([ebno_db], dtype=torch.float64)), gen(6)
    )
    errors = ((y.real > 0).double() != bits).sum().item()
    assert_ber_close(errors, bits.numel(), ber_bpsk_awgn(ebno_db))


@pytest.mark.parametrize("kind", ["rayleigh_fast", "rayleigh_block"])
def test_bpsk_ber_over_rayleigh_with_perfect_csi(kind: str) -> None:
    ebno_db = 10.0
    blocks, per_block = (40, 25_000) if kind == "rayleigh_fast" else (100_000, 10)
    bits = (torch.rand(blocks, per_block, generator=gen(7)) < 0.5).float()
    channel = WirelessChannel(kind, "bits", csi="perfect")
    soft, _ = through(
        channel, bits, torch.full((blocks,), ebno_db_to_esno_db(ebno_db, 2)), gen(8)
    )
    errors = ((soft > 0).float() != bits).sum().item()
    # block fading: errors are correlated within a block, so use blocks as samples
    assert_ber_close(
        errors,
        bits.numel(),
        ber_bpsk_rayleigh(ebno_db),
        samples=0 if kind == "rayleigh_fast" else blocks,
    )


def test_equalisers_recover_the_symbols_without_noise() -> None:
    z = normalize_power(torch.randn(4, 100, dtype=torch.complex64))
    h = sample_rayleigh_fast(4, 100, gen(9))
    noise_var = torch.full((4,), 1e-12)
    assert torch.allclose(equalize(h * z, h, noise_var, "zf"), z, atol=1e-4)
    assert torch.allclose(equalize(h * z, h, noise_var, "mmse"), z, atol=1e-4)
    with pytest.raises(ValueError, match="zf"):
        equalize(z, h, noise_var, "lmmse")


def test_analog_channel_stages_and_known_snr() -> None:
    x = torch.randn(6, 64)
    snr = torch.full((6,), 12.0)
    block = WirelessChannel("rayleigh_block", "analog", csi="perfect", equalizer="zf")
    use = block.propagate(block.transmit(x), snr, gen(10))
    assert use.h.shape == (6, 1)
    gain_db = 10 * torch.log10(use.h.abs().square()[:, 0])
    assert torch.allclose(block.snr_known_db(snr, use), snr + gain_db, atol=1e-4)
    blind = WirelessChannel("rayleigh_block", "analog", csi="none")
    use_blind = blind.propagate(blind.transmit(x), snr, gen(10))
    assert use_blind.h is None and blind.snr_known_db(snr, use_blind) is None
    assert torch.equal(blind.receive(use_blind), complex_to_real(use_blind.y))
    awgn_channel = WirelessChannel("awgn", "analog")
    soft, known = through(awgn_channel, x, torch.full((6,), 60.0), gen(11))
    scale = (
        x.square().mean(dim=1, keepdim=True).mul(2).rsqrt()
    )  # Es = 1 per complex symbol
    assert torch.allclose(soft, x * scale, atol=1e-2)
    assert torch.equal(known, torch.full((6,), 60.0))


def test_channel_is_reproducible_from_its_seed() -> None:
    channel = WirelessChannel("rician_block", "analog")
    x, snr = torch.randn(3, 40), torch.zeros(3)
    a, _ = through(channel, x, snr, generator_for(7, 1, 0))
    b, _ = through(channel, x, snr, generator_for(7, 1, 0))
    c, _ = through(channel, x, snr, generator_for(7, 1, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bsc_and_erasure_rates_and_gradient() -> None:
    bits = (torch.rand(1, 1_000_000, generator=gen(12)) < 0.5).float().requires_grad_()
    flipped = bsc(bits, 0.1, gen(13))
    assert ((flipped != bits).float().mean().item()) == pytest.approx(0.1, abs=2e-3)
    flipped.sum().backward()
    assert set(bits.grad.unique().tolist()) == {-1.0, 1.0}  # d(b xor e)/db = 1 - 2e
    _, erased = erasure(bits.detach(), 0.2, gen(14))
    assert erased.float().mean().item() == pytest.approx(0.2, abs=2e-3)
    channel = WirelessChannel("erasure", "bits", erasure_prob=0.3)
    soft, known = through(channel, bits.detach()[:, :1000], torch.zeros(1), gen(15))
    assert set(soft.unique().tolist()) <= {-1.0, 0.0, 1.0} and known is None
    with pytest.raises(ConfigError, match="channel.kind.*bit-level.*spike_bpsk"):
        WirelessChannel("bsc", "analog")


def test_count_pam_levels() -> None:
    counts = torch.arange(5, dtype=torch.uint8)
    amplitude = pam_from_counts(counts, 4)
    assert amplitude.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
