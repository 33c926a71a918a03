"""Feature distillation: the SNN's time-averaged feature maps pulled towards those of a
trained teacher of the same topology, its CNN twin (``train.distill_from``).

The membrane-shortcut blocks carry real values between them (:mod:`shared.model.blocks`),
and the twin's rate activation matches the LIF's rate, so the twin's weights transfer to
the SNN (hybrid training). Its feature maps are then a target for the SNN's features
averaged over the T steps, at every point where the two stream the same quantity: the
output of each encoder stage, the latent layer's spikes (rates in the twin), and the
output of each decoder scale's residual blocks and up-sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shared.config import Config
from shared.errors import CheckpointError
from shared.model.blocks import time_mean
from shared.model.checkpoint import evaluated_weights, load_checkpoint, stored_config
from shared.model.jscc import StereoJSCC
from shared.model.registry import build_model
from trainer.hybrid import check_stage_config

#: Keeps the relative error finite for a feature map that is zero everywhere.
_EPS = 1e-8


def feature_points(model: StereoJSCC) -> list[nn.Module]:
    """The modules whose outputs are compared, in forward order: every non-empty encoder
    stage and the latent neuron of each distinct encoder, then every decoder scale's
    non-empty residual blocks and its up-sampling."""
    points: list[nn.Module] = []
    for encoder in dict.fromkeys((model.encoder_left, model.encoder_right)):
        points += [stage for stage in encoder.stages if len(stage)]
        points.append(encoder.latent_neuron)
    for scale in model.decoder.scales:
        if len(scale.blocks):
            points.append(scale.blocks)
        if scale.up is not None:
            points.append(scale.up)
    return points


class _Recorder:
    """Forward hooks that keep the last output of each feature point."""

    def __init__(self, points: list[nn.Module]) -> None:
        self.outputs: list[Tensor | None] = [None] * len(points)
        for i, module in enumerate(points):
            module.register_forward_hook(self._hook(i))

    def _hook(self, index: int):
        def keep(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            self.outputs[index] = output

        return keep

    def take(self) -> list[Tensor]:
        """The recorded outputs (``[T, N, ...]`` each), forgotten afterwards."""
        outputs, self.outputs = self.outputs, [None] * len(self.outputs)
        if any(o is None for o in outputs):
            raise RuntimeError("a feature point did not run in the last forward pass")
        return outputs


class FeatureDistiller:
    """The distillation term of the training loss.

    Parameters
    ----------
    student : the model in training (its feature points get forward hooks)
    path : checkpoint of the teacher; its model config must agree with the student's
        except for the neuron settings (as for ``--init-from``)
    cfg : the run's config
    device : where the teacher runs (frozen, in eval mode)
    """

    def __init__(
        self, student: StereoJSCC, path: str, cfg: Config, device: torch.device
    ) -> None:
        ckpt = load_checkpoint(path)
        check_stage_config(ckpt, cfg, f"train.distill_from {path}")
        teacher_cfg = stored_config(ckpt)
        self.teacher = build_model(teacher_cfg.model, cfg.channel)
        self.teacher.load_state_dict(evaluated_weights(ckpt))
        self.teacher.to(device).eval().requires_grad_(False)
        if self.teacher.latent_channels != student.latent_channels:
            raise CheckpointError(
                f"train.distill_from {path}: the teacher's latent has "
                f"{self.teacher.latent_channels} channels per view, this model's "
                f"{student.latent_channels} (model.time_steps sizes a spike_bpsk latent)"
            )
        self.student_features = _Recorder(feature_points(student))
        self.teacher_features = _Recorder(feature_points(self.teacher))

    def loss(
        self,
        x_left: Tensor,
        x_right: Tensor,
        snr_db: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """Mean over the feature points of the relative squared error
        ``||mean_t s - t||^2 / ||t||^2`` between the student's features of its last
        forward pass and the teacher's on the same batch.

        Input
        -----
        x_left, x_right : [N, 3, H, W] float in [0, 1], the batch the student just saw
        snr_db : [N] float, its SNRs
        generator : the channel's generator, seeded as the student's was, so that the
            teacher's latent meets the same channel draws

        Output
        ------
        scalar tensor (dimensionless; 0 when the features agree)
        """
        with torch.no_grad():
            self.teacher(x_left, x_right, snr_db, generator)
        errors = []
        for s, t in zip(
            self.student_features.take(), self.teacher_features.take(), strict=True
        ):
            target = time_mean(t.float())
            error = torch.sum((time_mean(s.float()) - target) ** 2)
            errors.append(error / (torch.sum(target**2) + _EPS))
        return torch.stack(errors).mean()
