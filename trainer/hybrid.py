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


def merge_bit_planes(
    twin: dict[str, torch.Tensor], snn: dict[str, torch.Tensor], planes: int
) -> dict[str, torch.Tensor]:
    """The twin's weights with each latent-head tensor mapped to the SNN's shape.

    With a latent of several planes per neuron (spike-BPSK: one bit per time step) the
    twin's latent head emits ``planes x C`` channels, plane-major (``[T * C, ...]``, as
    :meth:`shared.latent.LatentCode.from_rates` reads them), and the SNN's emits ``C``,
    whose spikes over the T steps are the planes. The SNN's head starts from the mean
    over the planes of the twin's filters and BatchNorm parameters: the drive whose
    firing rate is the twin's mean bit. Tensors of matching shape pass unchanged.
    """
    if planes == 1:
        return twin
    merged = dict(twin)
    for key, value in twin.items():
        own = snn.get(key)
        if (
            own is not None
            and own.dim()
            and value.shape == (planes * own.shape[0], *own.shape[1:])
        ):
            merged[key] = value.reshape(planes, *own.shape).mean(0)
    return merged


def init_from_twin(model: nn.Module, path: str, cfg: Config, bn_scale: float) -> None:
    """Copy a CNN twin's weights into ``model`` (the SNN), or an earlier stage's into a
    further stage, and scale BN affine parameters.

    The two model configs must agree except on neuron settings and the fusion gate; the
    parameters the checkpoint lacks (PLIF time constants, fusion gates) keep their
    initial values; a latent head whose twin emits one channel per plane of the code
    starts from their mean (:func:`merge_bit_planes`). ``bn_scale`` multiplies every
    BatchNorm weight and bias, which moves the membrane inputs relative to the threshold.
    """
    ckpt = load_checkpoint(path)
    check_stage_config(ckpt, cfg, f"--init-from {path}")
    weights = evaluated_weights(ckpt)
    if cfg.model.kind == "snn" and stored_config(ckpt).model.kind == "cnn":
        weights = merge_bit_planes(weights, model.state_dict(), model.code.planes)
    load_state_strict(
        model, weights, f"--init-from {path}", ignore_missing=_NEW_PARAMETERS
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.mul_(bn_scale)
                module.bias.mul_(bn_scale)
