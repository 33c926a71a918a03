"""Hybrid training: initialise the SNN from its trained CNN twin."""

from __future__ import annotations

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

#: Keys of the model config that may differ between the twin and the SNN.
_NEURON_KEYS = (
    "kind",
    "tau",
    "reset",
    "neuron",
    "surrogate",
    "surrogate_alpha",
    "detach_reset",
    "twin_gradient",
)


def init_from_twin(model: nn.Module, path: str, cfg: Config, bn_scale: float) -> None:
    """Copy a CNN twin's weights into ``model`` (the SNN) and scale BN affine parameters.

    The two model configs must agree except on neuron settings; the SNN's own neuron
    parameters (PLIF time constants) keep their initial values. ``bn_scale`` multiplies every
    BatchNorm weight and bias, which moves the membrane inputs relative to the threshold.
    """
    ckpt = load_checkpoint(path)
    twin_model = stored_config(ckpt).to_dict()["model"]
    ours = cfg.to_dict()["model"]
    diffs = [
        d
        for d in config_differences(twin_model, ours)
        if d.split(":")[0] not in _NEURON_KEYS
    ]
    if diffs:
        raise CheckpointError(
            f"--init-from {path}: the twin's model config differs: " + "; ".join(diffs)
        )
    load_state_strict(
        model, evaluated_weights(ckpt), f"--init-from {path}", ignore_missing=(".w",)
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.mul_(bn_scale)
                module.bias.mul_(bn_scale)
