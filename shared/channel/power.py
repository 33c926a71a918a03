"""Real/complex packing and per-block power normalisation (Es = 1)."""

from __future__ import annotations

import torch
from torch import Tensor

POWER_EPS = 1e-12


def real_to_complex(x: Tensor) -> Tensor:
    """Pair consecutive real values into complex symbols (I, Q).

    Input
    -----
    x : [N, 2n], float, real latent values

    Output
    ------
    z : [N, n], complex (complex64 for float32 input)
    """
    if x.shape[-1] % 2:
        raise ValueError(
            f"need an even number of real values per block, got {x.shape[-1]}"
        )
    pairs = x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2))
    return torch.complex(pairs[..., 0].contiguous(), pairs[..., 1].contiguous())


def complex_to_real(z: Tensor) -> Tensor:
    """Inverse of :func:`real_to_complex`: ``[N, n]`` complex to ``[N, 2n]`` real."""
    return torch.view_as_real(z.resolve_conj()).reshape(
        z.shape[:-1] + (2 * z.shape[-1],)
    )


def normalize_power(z: Tensor, eps: float = POWER_EPS) -> Tensor:
    r"""Scale each block to unit average energy per complex symbol.

    .. math:: \tilde z = z / \sqrt{\max(\tfrac{1}{n}\sum_i |z_i|^2, \epsilon)}

    An all-zero block stays all zeros (no division by zero, no NaN).

    Input
    -----
    z : [N, n], complex, one block (one view of one frame) per row

    Output
    ------
    z_norm : [N, n], complex, mean |z|^2 = 1 per row (0 for an all-zero row)
    """
    power = z.real.square().add(z.imag.square()).mean(dim=-1, keepdim=True)
    return z * torch.rsqrt(power.clamp_min(eps))
