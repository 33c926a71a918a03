"""Mapping spike-coded latents to channel symbols and back to soft values."""

from __future__ import annotations

import torch
from torch import Tensor

from shared.channel.awgn import expand_per_row


def pam_from_counts(counts: Tensor, time_steps: int) -> Tensor:
    r"""(T+1)-level PAM of spike counts: :math:`a = 2n/T - 1 \in [-1, 1]`.

    Input
    -----
    counts : [...], integer or float, spike counts n in {0..T}
    Output
    ------
    amplitude : [...], float
    """
    if not counts.is_floating_point():
        counts = counts.to(torch.get_default_dtype())
    return counts * (2.0 / time_steps) - 1.0


def counts_from_pam(amplitude: Tensor, time_steps: int) -> Tensor:
    """Hard decision back to spike counts: nearest level, ``[...]`` uint8 in {0..T}."""
    n = torch.round((amplitude + 1.0) * (time_steps / 2.0)).clamp(0, time_steps)
    return n.to(torch.uint8)


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


LATENT_MODES = ("count_pam", "spike_bpsk")


def signalling_for(latent_mode: str) -> str:
    """How a latent mode uses the channel: 'analog' amplitudes or 'bits'."""
    if latent_mode not in LATENT_MODES:
        raise ValueError(f"latent mode {latent_mode!r}; allowed: {LATENT_MODES}")
    return "analog" if latent_mode == "count_pam" else "bits"


def channel_input_from_latent(
    latent: Tensor, latent_mode: str, time_steps: int
) -> Tensor:
    """Flatten one view's spike-coded latent into the channel input of its block.

    Input
    -----
    latent : [N, ...], spike counts in {0..T} (count_pam) or spikes in {0, 1} (spike_bpsk);
        integer, or float with gradients during training

    Output
    ------
    x : [N, L], float: PAM amplitudes ``2n/T - 1`` (count_pam) or bits (spike_bpsk)
    """
    flat = latent.flatten(1)
    if signalling_for(latent_mode) == "analog":
        return pam_from_counts(flat, time_steps)
    return flat if flat.is_floating_point() else flat.to(torch.get_default_dtype())
