"""Hybrid training: initialise the SNN from its trained CNN twin."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shared.config import Config
from shared.errors import CheckpointError
from shared.model.checkpoint import (
    config_differences,
    evaluated_weights,
    load_checkpoint,
    load_state_strict,
    stored_config,
)

#: Keys of the model config that may differ between the checkpoint and the model it
#: initialises (or teaches): the neuron settings (twin -> SNN), the time steps (the
#: weights do not depend on T; a latent code whose size does is refused by the shapes),
#: and the fusion gate, which starts open when the checkpoint has none.
_STAGE_KEYS = (
    "kind",
    "time_steps",
    "tau",
    "reset",
    "neuron",
    "surrogate",
    "surrogate_alpha",
    "detach_reset",
    "twin_gradient",
    "fusion_gate",
)
#: Parameters a checkpoint may lack: PLIF time constants (from a twin) and fusion gates.
_NEW_PARAMETERS = (".w", ".gate.weight", ".gate.bias")


def check_stage_config(ckpt: dict[str, Any], cfg: Config, source: str) -> None:
    """CheckpointError naming the keys unless the loaded checkpoint's model config
    agrees with ``cfg``'s except on :data:`_STAGE_KEYS`."""
    diffs = [
        d
        for d in config_differences(
            stored_config(ckpt).to_dict()["model"], cfg.to_dict()["model"]
        )
        if d.split(":")[0] not in _STAGE_KEYS
    ]
    if diffs:
        raise CheckpointError(
            f"{source}: the twin's model config differs: " + "; ".join(diffs)
        )


def init_from_twin(model: nn.Module, path: str, cfg: Config, bn_scale: float) -> None:
    """Copy a CNN twin's weights into ``model`` (the SNN), or an earlier stage's into a
    further stage, and scale BN affine parameters.

    The two model configs must agree except on neuron settings and the fusion gate; the
    parameters the checkpoint lacks (PLIF time constants, fusion gates) keep their
    initial values. ``bn_scale`` multiplies every
    BatchNorm weight and bias, which moves the membrane inputs relative to the threshold.
    """
    ckpt = load_checkpoint(path)
    check_stage_config(ckpt, cfg, f"--init-from {path}")
    load_state_strict(
        model,
        evaluated_weights(ckpt),
        f"--init-from {path}",
        ignore_missing=_NEW_PARAMETERS,
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.mul_(bn_scale)
                module.bias.mul_(bn_scale)
