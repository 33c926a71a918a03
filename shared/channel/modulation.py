"""Antipodal signalling of bits and their soft values at the receiver."""

from __future__ import annotations

import torch
from torch import Tensor

from shared.channel.awgn import expand_per_row


def bpsk(bits: Tensor) -> Tensor:
    """Antipodal amplitudes ``2b - 1`` (real) for bits in {0, 1}."""
    return 2.0 * bits - 1.0


def bpsk_llr(matched: Tensor, amplitude: float, noise_var: Tensor) -> Tensor:
    r"""Log-likelihood ratio ``log p(y|b=1) / p(y|b=0)`` of antipodal bits, per real part.

    Each real dimension of a complex symbol carries ``±A``; with
    :math:`y = h x + w`, :math:`w \sim \mathcal{CN}(0, N_0)`, the matched filter
    :math:`r = h^* y` gives, for its real and imaginary parts,

    .. math:: \mathrm{LLR} = \frac{4 A\, r}{N_0}

    Input
    -----
    matched : [N, L], float, real and imaginary parts of ``h^* y`` (``y`` when h = 1)
    amplitude : float, A, the amplitude per real dimension after power normalisation
    noise_var : scalar or [N], float, noise variance per complex symbol

    Output
    ------
    llr : [N, L], float
    """
    return (4.0 * amplitude) * matched / expand_per_row(noise_var, matched)


def soft_bits(llr: Tensor) -> Tensor:
    r"""Expected antipodal value :math:`E[2b-1] = \tanh(\mathrm{LLR}/2) \in [-1, 1]`."""
    return torch.tanh(llr / 2.0)
