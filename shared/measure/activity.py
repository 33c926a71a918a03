"""What a part of the model did for a frame: energy and firing rates (no model code, so
the link's messages can carry it)."""

from __future__ import annotations

from dataclasses import dataclass

PARTS = ("encoder", "decoder")


@dataclass(frozen=True)
class Activity:
    """The work of one part of the model (or of several together) on one stereo frame.

    energy_pj : compute energy per the energy model of ``docs/CONVENTIONS.md``, pJ
    rate_sum : sum over the neuron layers of their mean firing rates (SNN) or mean
        activations (CNN twin)
    layers : number of those neuron layers
    """

    energy_pj: float
    rate_sum: float
    layers: int

    def __add__(self, other: Activity) -> Activity:
        return Activity(
            self.energy_pj + other.energy_pj,
            self.rate_sum + other.rate_sum,
            self.layers + other.layers,
        )

    @property
    def firing_rate(self) -> float:
        """Mean firing rate over the layers (0 for none)."""
        return self.rate_sum / self.layers if self.layers else 0.0
