"""Stereo pairs made from single images: warping by a disparity field, and a procedural
generator of layered scenes for tests.

Rendering a right view (rectified, left camera as reference): a left pixel at column ``x``
with disparity ``d`` appears at ``x - d`` in the right view. The left disparity is splatted
to the right view with a z-buffer (the nearest surface, largest ``d``, wins); columns that no
left pixel reaches (disocclusions) take the disparity of the background next to them, on their
right; the right view is then sampled from the left image bilinearly. This follows the
forward-warping recipe of Watson et al., "Learning Stereo from Single Images", ECCV 2020.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _splat_disparity(disparity: Tensor) -> Tensor:
    """Right-view disparity ``[N, H, W]`` from the left-view one; holes filled from the right.

    Input ``disparity : [N, H, W]``, float pixels >= 0. Output ``[N, H, W]``.
    """
    n, h, w = disparity.shape
    cols = torch.arange(w, device=disparity.device).expand(n, h, w)
    target = torch.round(cols - disparity).long()
    valid = (target >= 0) & (target < w)
    flat_target = target.clamp(0, w - 1) + w * torch.arange(
        n * h, device=disparity.device
    ).reshape(n, h, 1)
    right = torch.full(
        (n * h * w,), -1.0, dtype=disparity.dtype, device=disparity.device
    )
    right.scatter_reduce_(0, flat_target[valid], disparity[valid], reduce="amax")
    right = right.reshape(n, h, w)
    hole = right < 0
    # Fill each hole with the nearest valid value to its right (the background side):
    # scan from the right keeping the index of the last valid column.
    idx = torch.where(hole, torch.full_like(cols, w), cols).flip(-1)
    nearest = torch.cummin(idx, dim=-1).values.flip(-1)
    no_right = nearest >= w
    # Holes with nothing valid to their right take the nearest valid value on their left.
    idx_left = torch.where(hole, torch.full_like(cols, -1), cols)
    nearest_left = torch.cummax(idx_left, dim=-1).values
    source = torch.where(no_right, nearest_left, nearest).clamp(0, w - 1)
    filled = torch.gather(right, -1, source)
    return torch.where(hole, filled.clamp_min(0.0), right)


def render_right_view(left: Tensor, disparity: Tensor) -> Tensor:
    """Warp a left view into the right view of a rectified pair.

    Input
    -----
    left : [N, 3, H, W], float in [0, 1]
    disparity : [N, H, W], float, left-view disparity in pixels (>= 0)

    Output
    ------
    right : [N, 3, H, W], float in [0, 1]
    """
    n, _, h, w = left.shape
    d_right = _splat_disparity(disparity)
    xs = torch.arange(w, dtype=left.dtype, device=left.device).expand(n, h, w) + d_right
    ys = (
        torch.arange(h, dtype=left.dtype, device=left.device)
        .reshape(1, h, 1)
        .expand(n, h, w)
    )
    grid = torch.stack((2.0 * xs / (w - 1) - 1.0, 2.0 * ys / (h - 1) - 1.0), dim=-1)
    right = F.grid_sample(
        left, grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return right.clamp_(0.0, 1.0)


def _smooth_noise(
    n: int, h: int, w: int, cells: tuple[int, int], generator: torch.Generator
) -> Tensor:
    """Low-frequency noise in [0, 1], ``[N, H, W]``."""
    coarse = torch.rand((n, 1) + cells, generator=generator)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return field[:, 0].clamp(0.0, 1.0)


def _ellipses(
    n: int, h: int, w: int, count: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``count`` random filled ellipses per image: masks ``[N, count, H, W]`` (bool) and
    their relative depths ``[N, count]`` in [0, 1] (1 = nearest)."""
    ys = torch.linspace(0, 1, h).reshape(1, 1, h, 1)
    xs = torch.linspace(0, 1, w).reshape(1, 1, 1, w)
    params = torch.rand((n, count, 5), generator=generator)
    cy, cx = params[..., 0, None, None], params[..., 1, None, None]
    ry = 0.08 + 0.3 * params[..., 2, None, None]
    rx = 0.05 + 0.25 * params[..., 3, None, None]
    masks = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
    return masks, params[..., 4]


def random_disparity(
    n: int, h: int, w: int, max_disparity_px: float, generator: torch.Generator
) -> Tensor:
    """A smooth random scene depth with a few nearer objects, as disparity in pixels.

    The background is low-frequency noise plus a ground-plane ramp (nearer at the bottom);
    up to three ellipses in front of it give depth discontinuities, hence occlusions.

    Output ``disparity : [N, H, W]``, float in [0, max_disparity_px].
    """
    ramp_weight = torch.rand((n, 1, 1), generator=generator)
    ramp = torch.linspace(0, 1, h).reshape(1, h, 1)
    base = 0.6 * (
        0.5 * _smooth_noise(n, h, w, (3, 5), generator) + 0.5 * ramp_weight * ramp
    )
    masks, depth = _ellipses(n, h, w, 3, generator)
    keep = torch.rand((n, 3), generator=generator) < 0.6
    near = 0.6 + 0.4 * depth
    objects = torch.where(
        masks & keep[..., None, None], near[..., None, None], torch.zeros(())
    )
    return torch.maximum(base, objects.amax(dim=1)) * max_disparity_px


def mono_to_stereo(
    image: Tensor, width: int, max_disparity_px: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A stereo pair from a mono crop that is ``ceil(max_disparity_px)`` columns wider.

    The extra columns on the right supply what the right view sees beyond the left
    view's border; both views are cut to ``width``.

    Input
    -----
    image : [N, 3, H, width + ceil(max_disparity_px)], float in [0, 1]

    Output
    ------
    left, right : [N, 3, H, width], float in [0, 1]
    """
    n, _, h, wide = image.shape
    if wide < width + math.ceil(max_disparity_px):
        raise ValueError(
            f"mono crop of width {wide} < {width} + max disparity {max_disparity_px:g}"
        )
    disparity = random_disparity(n, h, wide, max_disparity_px, generator)
    right = render_right_view(image, disparity)
    return image[..., :width], right[..., :width]


def synthetic_stereo(
    n: int, height: int, width: int, seed: int, max_disparity_px: float = 8.0
) -> tuple[Tensor, Tensor]:
    """Procedural stereo pairs for tests: textured layered scenes, deterministic per seed.

    Each scene has a smooth colour background and several textured ellipses at random
    depths; the right view is rendered by :func:`render_right_view`.

    Output
    ------
    left, right : [n, 3, height, width], float in [0, 1]
    """
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand((n, 3, 2, 3), generator=g)
    background = F.interpolate(
        colours, size=(height, width), mode="bilinear", align_corners=True
    )
    masks, depth = _ellipses(n, height, width, 6, g)
    order = torch.argsort(depth, dim=1)
    fy, fx = (torch.rand((n, 6, 2), generator=g) * 40 + 4).unbind(-1)
    ys = torch.arange(height).reshape(1, 1, height, 1).float()
    xs = torch.arange(width).reshape(1, 1, 1, width).float()
    texture = 0.5 + 0.5 * torch.sin(ys / fy[..., None, None]) * torch.cos(
        xs / fx[..., None, None]
    )
    tint = torch.rand((n, 6, 3), generator=g)
    image, disparity = background.clone(), torch.zeros(n, height, width)
    for rank in range(6):
        k = order[:, rank]
        sel = torch.arange(n)
        mask = masks[sel, k]
        colour = tint[sel, k][..., None, None] * texture[sel, k][:, None]
        image = torch.where(mask[:, None], colour, image)
        disparity = torch.where(
            mask,
            (0.3 + 0.7 * depth[sel, k])[:, None, None] * max_disparity_px,
            disparity,
        )
    image = image.clamp(0.0, 1.0)
    return image, render_right_view(image, disparity)
