"""An exponential moving average of the model weights (``train.ema_decay``).

After each optimiser step the averaged copy moves towards the trained model:
``w_avg <- decay * w_avg + (1 - decay) * w``, so it averages over about
``1 / (1 - decay)`` steps. Floating-point buffers (BatchNorm running statistics) are
averaged the same way; integer buffers (BatchNorm's batch count) are copied.
Validation, ``best.pt`` and the exported ``model.pt`` use the average; ``--resume``
restores both the trained weights and the average.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import torch

from shared.model.checkpoint import load_state_strict
from shared.model.jscc import StereoJSCC


def _tensors(model: StereoJSCC) -> Iterator[torch.Tensor]:
    """Each parameter and buffer once (a shared encoder appears under two names in the
    state dict, but must be averaged once per step)."""
    return itertools.chain(model.parameters(), model.buffers())


class WeightAverage:
    """The averaged copy of ``model``, starting from its current weights."""

    def __init__(self, model: StereoJSCC, decay: float) -> None:
        self.model: StereoJSCC = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: StereoJSCC) -> None:
        """Move the average one step towards ``model``'s weights and buffers."""
        for avg, cur in zip(_tensors(self.model), _tensors(model), strict=True):
            if avg.is_floating_point():
                avg.lerp_(cur, 1.0 - self.decay)
            else:
                avg.copy_(cur)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the number of updates, for a checkpoint."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        """Restore what :meth:`state_dict` gave (``source`` names it in errors)."""
        load_state_strict(self.model, state["model"], source)
        self.updates = int(state["updates"])
