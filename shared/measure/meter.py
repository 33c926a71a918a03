"""Energy and firing rates of a model part while it runs (hooks on the real model)."""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import nn

from shared.config import ModelConfig
from shared.measure.activity import Activity
from shared.model.energy import E_MAC_PJ, EnergyMeter, twin_macs_per_frame

Part = Literal["encoder", "decoder"]


def layer_rates(model: nn.Module, part: Part) -> dict[str, float]:
    """Firing rate of each neuron layer of ``part`` in the model's last pass."""
    return {
        name: float(rate)
        for name, rate in model.firing_rates().items()
        if name.startswith(part)
    }


class PartMeter:
    """Counts the operations of one part of ``model`` while active (a context manager
    around :class:`~shared.model.energy.EnergyMeter`).

    ``activity(frames)`` gives the energy per frame of what ran inside and the firing
    rates of the part's layers in the last pass.
    """

    def __init__(self, model: nn.Module, part: Part, enabled: bool = True) -> None:
        self.model, self.part = model, part
        self.meter = EnergyMeter(model) if enabled else None

    def __enter__(self) -> PartMeter:
        if self.meter is not None:
            self.meter.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.meter is not None:
            self.meter.__exit__(*exc)

    def counts(self, frames: int) -> dict[str, float]:
        """MACs, synaptic operations and energy (pJ) of the part per frame."""
        self.meter.frames = frames
        empty = {"macs": 0.0, "sops": 0.0, "energy_pj": 0.0}
        return self.meter.summary().get(self.part, empty)

    def activity(self, frames: int = 1) -> Activity:
        """Energy per frame (0 when the meter was disabled) and the layers' rates of
        the last pass."""
        rates = layer_rates(self.model, self.part)
        energy = self.counts(frames)["energy_pj"] if self.meter is not None else 0.0
        return Activity(energy, sum(rates.values()), len(rates))


@functools.cache
def twin_energy_pj(cfg: ModelConfig, height: int, width: int) -> float:
    """Energy per stereo frame of the CNN twin of a model config (MACs x E_MAC), for
    ``height x width`` views; computed once per config and size."""
    with torch.no_grad():
        return twin_macs_per_frame(cfg, height, width) * E_MAC_PJ


def encode_measured(
    model: nn.Module, left: torch.Tensor, right: torch.Tensor
) -> tuple[torch.Tensor, Activity]:
    """``model.encode`` of one frame with the encoder's activity for it.

    Input ``left, right : [1, 3, H, W]``. Output the latent ``[2, 1, *shape]`` uint8
    and the encoder's :class:`Activity` (energy of both views, pJ).
    """
    with PartMeter(model, "encoder") as meter:
        latent = model.encode(left, right)["latent"]
    return latent, meter.activity()


def decode_measured(model: nn.Module, received) -> tuple[dict, Activity]:
    """``model.decode`` of one frame's :class:`~shared.link.hop.DecoderInput` with the
    decoder's activity for it."""
    with PartMeter(model, "decoder") as meter:
        out = model.decode(received)
    return out, meter.activity()
