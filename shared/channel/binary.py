"""Bit-level channels for binary spikes: binary symmetric and binary erasure."""

from __future__ import annotations

import torch
from torch import Tensor

from shared.channel.rng import uniform


def bsc(
    bits: Tensor, flip_prob: float, generator: torch.Generator | None = None
) -> Tensor:
    r"""Binary symmetric channel: each bit flips with probability ``p``.

    Written as :math:`b \oplus e = b + e - 2be`, which is differentiable in ``b``
    (gradient ``1 - 2e``), so training can pass through it.

    Input
    -----
    bits : [...], float in {0, 1}
    Output
    ------
    bits_out : [...], float in {0, 1}
    """
    flips = (uniform(bits.shape, bits.dtype, bits.device, generator) < flip_prob).to(
        bits
    )
    return bits + flips - 2.0 * bits * flips


def erasure(
    bits: Tensor, erasure_prob: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Binary erasure channel.

    Output
    ------
    bits_out : [...], float, the input bits (values at erased places are kept but unusable)
    erased : [...], bool, True where the bit was erased (probability ``e``)
    """
    erased = uniform(bits.shape, bits.dtype, bits.device, generator) < erasure_prob
    return bits, erased
