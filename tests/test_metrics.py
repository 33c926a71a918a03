"""PSNR and MS-SSIM per image, with the conventions' settings."""

from __future__ import annotations

import math

import pytest
import torch

from shared.measure.quality import distinct_values
from shared.metrics import mean_and_sem, ms_ssim, psnr


def test_psnr_per_image_and_clamping() -> None:
    a = torch.full((2, 3, 8, 8), 0.5)
    b = a.clone()
    b[0] += 0.1
    out = psnr(b, a)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(20.0, abs=1e-5)
    assert math.isinf(out[1].item())
    assert (
        psnr(torch.full((1, 3, 4, 4), 1.7), torch.ones(1, 3, 4, 4))[0].item()
        == math.inf
    )


def test_ms_ssim_settings() -> None:
    x = torch.rand(2, 3, 128, 256)
    assert ms_ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert (ms_ssim(noisy, x) < 1).all()
    with pytest.raises(ValueError, match="97 pixels"):
        ms_ssim(torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128))


def test_mean_and_standard_error() -> None:
    assert mean_and_sem([1.0, 3.0]) == (2.0, 1.0)
    assert mean_and_sem([5.0, float("inf")]) == (5.0, 0.0)


def test_distinct_values_counts_as_unique_does() -> None:
    levels = torch.rand(37)
    x = levels[torch.randint(0, 37, (1, 3, 16, 24))]
    assert distinct_values(x) == x.unique().numel() == 37
    assert distinct_values(x[..., :5, :7]) == x[..., :5, :7].unique().numel()
    assert distinct_values(torch.tensor([0.0, -0.0, 1.0, 0.5, 0.5])) == 3
