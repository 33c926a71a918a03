"""Evaluation crop and stereo-consistent training crops."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize with antialiasing, ``[..., C, H, W]`` float to ``[..., C, h, w]``."""
    if image.shape[-2:] == (height, width):
        return image
    flat = image.reshape((-1,) + tuple(image.shape[-3:]))
    out = F.interpolate(
        flat, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out.reshape(tuple(image.shape[:-2]) + (height, width)).clamp_(0.0, 1.0)


def centre_crop_box(
    height: int, width: int, aspect_h: int, aspect_w: int
) -> tuple[int, int, int, int]:
    """Largest centred box of aspect ``aspect_h:aspect_w``: (top, left, h, w) in pixels."""
    crop_w = min(width, (height * aspect_w) // aspect_h)
    crop_h = min(height, (crop_w * aspect_h) // aspect_w)
    crop_w = (crop_h * aspect_w) // aspect_h
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def eval_crop(image: Tensor, height: int = 128, width: int = 256) -> Tensor:
    """The evaluation protocol: largest centred ``height:width`` crop, then resize.

    On a 1226x370 KITTI frame the crop is 370x740, resized to 128x256 (conventions).

    Input
    -----
    image : [..., 3, H, W], float in [0, 1]
    Output
    ------
    image : [..., 3, height, width], float in [0, 1]
    """
    g = math.gcd(height, width)
    top, left, h, w = centre_crop_box(
        image.shape[-2], image.shape[-1], height // g, width // g
    )
    return resize(image[..., top : top + h, left : left + w], height, width)


def pad_to_multiple(image: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad bottom/right so H and W are multiples; returns the original (H, W)."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        flat = image.reshape((-1,) + tuple(image.shape[-3:]))
        flat = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
        image = flat.reshape(tuple(image.shape[:-2]) + tuple(flat.shape[-2:]))
    return image, (height, width)


def random_scaled_box(
    height: int,
    width: int,
    crop_h: int,
    crop_w: int,
    scale_max: float,
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """A random box that, resized to ``crop_h x crop_w``, downsamples by ``s`` in
    ``[1, scale_max]`` (log-uniform, capped by the image size): (top, left, h, w)."""
    s_cap = min(scale_max, height / crop_h, width / crop_w)
    if s_cap < 1.0:
        raise ValueError(
            f"image {height}x{width} is smaller than the crop {crop_h}x{crop_w}"
        )
    u = torch.rand((), generator=generator).item()
    scale = math.exp(u * math.log(s_cap))
    box_h = min(height, max(crop_h, round(crop_h * scale)))
    box_w = min(width, max(crop_w, round(crop_w * scale)))
    top = int(torch.randint(0, height - box_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - box_w + 1, (), generator=generator))
    return top, left, box_h, box_w


def stereo_flip(left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror a rectified pair horizontally; the mirrored right view becomes the left one,
    so disparities keep their sign."""
    return right.flip(-1), left.flip(-1)
