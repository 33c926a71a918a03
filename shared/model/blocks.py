"""Time-first building blocks (``[T, N, C, H, W]``) in the membrane-shortcut style.

The stream between blocks carries real values (membrane inputs); every convolution reads
spikes from the neuron in front of it, and residual paths add real values, as in MS-ResNet
(Hu et al., "Advancing Spiking Neural Networks Toward Deep Residual Learning", TNNLS 2024).
BatchNorm runs over time and batch together (threshold-dependent BN, Zheng et al., AAAI 2021).
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import Tensor, nn

from shared.config import ModelConfig
from shared.model.neurons import make_neuron


def time_mean(u: Tensor) -> Tensor:
    """Mean of ``u : [T, ...]`` over time, ``[...]``, summed step by step.

    A running sum keeps each step's memory layout; ``u.mean(dim=0)`` of a sequence whose
    steps are channels-last takes 15x longer on a CPU (a strided reduction), and gives
    the same values (the same additions in the same order).
    """
    total = u[0].clone()
    for step in u[1:]:
        total.add_(step)
    return total / u.shape[0]


def conv_bn(in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> nn.Module:
    """Conv (no bias) + BatchNorm applied to each time step (``[T, N, ...]``)."""
    return layer.SeqToANNContainer(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class SpikingConv(nn.Module):
    """neuron -> conv -> BN: ``[T, N, in_ch, H, W]`` real to ``[T, N, out_ch, H/s, W/s]``,
    plus a ``shortcut`` of the output's shape where one is given (a residual path)."""

    #: Whether the convolution itself adds the shortcut as it stores its outputs (set by
    #: the fast path where it is event-driven and BatchNorm is folded into it).
    shortcut_into_conv: bool = False

    def __init__(
        self, cfg: ModelConfig, in_ch: int, out_ch: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.neuron = make_neuron(cfg)
        self.conv = conv_bn(in_ch, out_ch, stride)

    def forward(self, u: Tensor, shortcut: Tensor | None = None) -> Tensor:
        spikes = self.neuron(u)
        if shortcut is None:
            return self.conv(spikes)
        if not self.shortcut_into_conv:
            return shortcut + self.conv(spikes)
        out = self.conv[0](spikes.flatten(0, 1), shortcut=shortcut)
        return out.unflatten(0, spikes.shape[:2])


class ResBlock(nn.Module):
    """Membrane-shortcut residual block: ``u + SpikingConv(SpikingConv(u))``."""

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            SpikingConv(cfg, channels, channels), SpikingConv(cfg, channels, channels)
        )

    def forward(self, u: Tensor) -> Tensor:
        first, last = self.body
        return last(first(u), shortcut=u)


class SpikingUpsample(nn.Module):
    """neuron -> conv to 4x channels -> pixel shuffle -> BN: doubles H and W."""

    def __init__(self, cfg: ModelConfig, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.neuron = make_neuron(cfg)
        self.conv = layer.SeqToANNContainer(
            nn.Conv2d(in_ch, 4 * out_ch, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, u: Tensor) -> Tensor:
        return self.conv(self.neuron(u))


class SNRGate(nn.Module):
    """Channel-wise modulation by the channel SNR (attention feature module of ADJSCC,
    Xu et al., "Wireless Image Transmission Using Deep Source Channel Coding With
    Attention Modules", IEEE TCSVT 2022).

    The gate is ``2 * sigmoid(MLP([mean(u), snr_db / 10, known]))``; it starts at 1 (the
    last layer is zero-initialised). An unknown SNR (no CSI) enters as ``(0, 0)``.

    Input
    -----
    u : [T, N, C, H, W], float
    snr_db : [N] float, or None when the receiver does not know the SNR

    Output
    ------
    u_gated : [T, N, C, H, W], float
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 8)
        self.mlp = nn.Sequential(
            nn.Linear(channels + 2, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, u: Tensor, snr_db: Tensor | None) -> Tensor:
        pooled = time_mean(u).mean(dim=(2, 3))
        if snr_db is None:
            side = pooled.new_zeros(pooled.shape[0], 2)
        else:
            snr = snr_db.to(pooled).reshape(-1, 1) / 10.0
            side = torch.cat((snr, torch.ones_like(snr)), dim=1)
        gate = 2.0 * self.mlp(torch.cat((pooled, side), dim=1)).sigmoid()
        return u * gate[None, :, :, None, None]
