"""Flat fading: drawing the coefficients is separate from applying them."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shared.channel.rng import normal, uniform

Device = torch.device | str | None


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype


def sample_cn(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: Device = None,
) -> Tensor:
    """Draw ``CN(0, 1)`` samples (variance 1/2 per real part), complex ``shape``."""
    g = normal(shape + (2,), _real_dtype(dtype), device, generator) / math.sqrt(2.0)
    return torch.complex(g[..., 0], g[..., 1])


def sample_rayleigh_block(
    batch: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: Device = None,
) -> Tensor:
    """One ``h ~ CN(0,1)`` per block (slow fading). Output ``h : [N, 1]``, complex."""
    return sample_cn((batch, 1), generator, dtype, device)


def sample_rayleigh_fast(
    batch: int,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: Device = None,
) -> Tensor:
    """A fresh ``h ~ CN(0,1)`` per symbol. Output ``h : [N, n]``, complex."""
    return sample_cn((batch, n), generator, dtype, device)


def sample_rician_block(
    batch: int,
    k_factor: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: Device = None,
) -> Tensor:
    r"""One Rician coefficient per block, E|h|^2 = 1.

    .. math:: h = \sqrt{\tfrac{K}{K+1}} e^{j\phi} + \sqrt{\tfrac{1}{K+1}}\,\mathcal{CN}(0,1),
              \quad \phi \sim U[0, 2\pi)

    Parameters
    ----------
    k_factor : float, K (linear) = power of the line-of-sight part / scattered part

    Output
    ------
    h : [N, 1], complex
    """
    phi = uniform((batch, 1), _real_dtype(dtype), device, generator) * (2 * math.pi)
    los = math.sqrt(k_factor / (k_factor + 1.0)) * torch.complex(
        torch.cos(phi), torch.sin(phi)
    )
    scatter = sample_cn((batch, 1), generator, dtype, device)
    scatter = scatter * math.sqrt(1.0 / (k_factor + 1.0))
    return los + scatter


def apply_fading(z: Tensor, h: Tensor) -> Tensor:
    """``y = h * z`` with ``h`` of shape ``[N, 1]`` (block) or ``[N, n]`` (per symbol)."""
    return h.to(z.device) * z
