"""Training loss on both views: MSE, optionally mixed with (1 - MS-SSIM)."""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor

from shared.config import TrainConfig
from shared.metrics import MSSSIM_WIN_SIZE


def stereo_loss(
    output: dict[str, object], batch: dict[str, Tensor], cfg: TrainConfig
) -> dict[str, Tensor]:
    """Named loss terms; ``"loss"`` is the total that is minimised.

    Input
    -----
    output : model output with ``x_hat_left``, ``x_hat_right`` [N, 3, H, W]
    batch : ``left``, ``right`` [N, 3, H, W] float in [0, 1]

    Output
    ------
    loss, mse : scalar tensors (mse is the mean over both views); ms_ssim when used
    """
    x_hat = torch.cat((output["x_hat_left"], output["x_hat_right"])).float()
    x = torch.cat((batch["left"], batch["right"]))
    mse = torch.mean((x_hat - x) ** 2)
    terms = {"mse": mse}
    if cfg.loss == "mse_msssim":
        similarity = ms_ssim(x_hat, x, data_range=1.0, win_size=MSSSIM_WIN_SIZE)
        terms["ms_ssim"] = similarity
        terms["loss"] = (1.0 - cfg.msssim_weight) * mse + cfg.msssim_weight * (
            1.0 - similarity
        )
    else:
        terms["loss"] = mse
    return terms
