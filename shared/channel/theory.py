"""Closed-form references: Q function, uncoded bit error rates, Shannon capacity."""

from __future__ import annotations

import math


def qfunc(x: float) -> float:
    r"""Gaussian tail :math:`Q(x) = \tfrac12 \mathrm{erfc}(x/\sqrt2)`."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ebno_db_to_esno_db(
    ebno_db: float, bits_per_symbol: float, code_rate: float = 1.0
) -> float:
    r""":math:`E_s/N_0 = E_b/N_0 + 10\log_{10}(\text{bits per symbol} \cdot \text{rate})`."""
    return ebno_db + 10.0 * math.log10(bits_per_symbol * code_rate)


def ber_bpsk_awgn(ebno_db: float) -> float:
    r"""Uncoded BPSK (and Gray QPSK) over AWGN: :math:`Q(\sqrt{2 E_b/N_0})`."""
    return qfunc(math.sqrt(2.0 * 10.0 ** (ebno_db / 10.0)))


def ber_bpsk_rayleigh(ebno_db: float) -> float:
    r"""Uncoded BPSK over Rayleigh fading with perfect CSI:
    :math:`\tfrac12 (1 - \sqrt{\gamma / (1 + \gamma)})`, :math:`\gamma = E_b/N_0`."""
    g = 10.0 ** (ebno_db / 10.0)
    return 0.5 * (1.0 - math.sqrt(g / (1.0 + g)))


def capacity_bits(channel_uses: int, snr_db: float) -> float:
    r"""Bits through ``n`` complex channel uses at an ideal code:
    :math:`n \log_2(1 + \mathrm{SNR})`."""
    return channel_uses * math.log2(1.0 + 10.0 ** (snr_db / 10.0))
