"""Additive white Gaussian noise at a given Es/N0 per complex symbol."""

from __future__ import annotations

import torch
from torch import Tensor

from shared.channel.rng import normal


def snr_db_to_noise_var(snr_db: Tensor | float) -> Tensor:
    r"""Noise variance per complex symbol for unit symbol energy.

    .. math:: N_0 = 10^{-\mathrm{SNR_{dB}}/10}

    Input
    -----
    snr_db : scalar or [N], float, Es/N0 in dB

    Output
    ------
    noise_var : same shape as ``snr_db``, float, linear, per complex symbol
    """
    snr = torch.as_tensor(snr_db, dtype=torch.get_default_dtype())
    return torch.pow(10.0, -snr / 10.0)


def noise_var_to_snr_db(noise_var: Tensor) -> Tensor:
    """Inverse of :func:`snr_db_to_noise_var`: ``-10 log10(noise_var)`` in dB."""
    return -10.0 * torch.log10(noise_var)


def expand_per_row(value: Tensor, like: Tensor) -> Tensor:
    """Broadcast a scalar or ``[N]`` tensor over the trailing axes of ``like`` ``[N, ...]``."""
    value = value.to(device=like.device)
    if value.dim() == 0:
        return value
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim()))


def awgn(
    z: Tensor, noise_var: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    r"""Add circular complex Gaussian noise.

    .. math:: y = z + w,\quad w \sim \mathcal{CN}(0, N_0)

    i.e. variance ``noise_var / 2`` on each of the real and imaginary parts.

    Input
    -----
    z : [N, n], complex, channel input
    noise_var : scalar or [N], float, linear noise variance per complex symbol
    generator : torch.Generator or None, source of randomness (CPU generator)

    Output
    ------
    y : [N, n], complex, same dtype as ``z``
    """
    real_dtype = z.real.dtype
    sigma = torch.sqrt(expand_per_row(noise_var, z).to(real_dtype) / 2.0)
    noise = normal(z.shape + (2,), real_dtype, z.device, generator)
    return z + sigma * torch.complex(noise[..., 0], noise[..., 1])
