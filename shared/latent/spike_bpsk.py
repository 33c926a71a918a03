"""Spike-BPSK: every spike of the latent layer sent as one antipodal symbol."""

from __future__ import annotations

import torch
from torch import Tensor

from shared.latent.base import LatentCode
from shared.latent.registry import register


@register
class SpikeBPSK(LatentCode):
    """T channel values per latent neuron: its binary spikes, sent as antipodal symbols
    (two per complex symbol, Gray QPSK); the receiver passes soft bits E[2b - 1] to the
    decoder. The latent is ``[N, T, C, h, w]`` in {0, 1}; on the wire ``spikes``,
    bit-packed. A lost view is an erasure (soft bits 0, LLR 0, as the erasure channel
    gives)."""

    name = "spike_bpsk"
    signalling = "bits"
    wire_array = "spikes"
    bit_packed = True

    @property
    def planes(self) -> int:
        return self.time_steps

    @property
    def max_value(self) -> int:
        return 1

    def from_spikes(self, spikes: Tensor) -> Tensor:
        return spikes.transpose(0, 1)

    def from_rates(self, rates: Tensor) -> Tensor:
        bits = rates + ((rates > 0.5).to(rates) - rates).detach()
        n, _, h, w = bits.shape
        return bits.reshape(n, self.time_steps, -1, h, w)

    def channel_input(self, latent: Tensor) -> Tensor:
        flat = latent.flatten(1)
        return flat if flat.is_floating_point() else flat.to(torch.get_default_dtype())
