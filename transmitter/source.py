"""Where the transmitter's stereo frames come from: a folder or split file of pairs (any
layout the loaders know), or the procedural generator (``source: synthetic``)."""

from __future__ import annotations

from collections.abc import Iterator

from shared.config import Config
from shared.data.crops import eval_crop, pad_to_multiple
from shared.data.frames import Frame, source_pairs
from shared.data.images import read_image, to_float
from shared.data.pairs import StereoPair, skip_or_raise
from shared.data.synthesis import synthetic_stereo
from shared.errors import DataError

SYNTHETIC = "synthetic"
SYNTHETIC_SEED = 1234
DEFAULT_SYNTHETIC_FRAMES = 8


def _pairs(cfg: Config) -> list[StereoPair]:
    return source_pairs(
        cfg.link.source, cfg.link.source_root, cfg.data.layout, cfg.data.on_error
    )


def count_frames(cfg: Config) -> int:
    """Frames in one pass over the source (after the ``link.frames`` limit)."""
    if cfg.link.source == SYNTHETIC:
        return cfg.link.frames or DEFAULT_SYNTHETIC_FRAMES
    total = len(_pairs(cfg))
    return min(total, cfg.link.frames) if cfg.link.frames else total


def frames(cfg: Config, stride: int) -> Iterator[tuple[Frame, tuple[int, int]]]:
    """One pass: (frame, original (H, W)); frames are eval-cropped, or padded to ``stride``
    in ``native`` mode. Frame indices count from 0 within the pass. An image that fails to
    decode stops the pass, or with ``data.on_error: skip`` drops its frame with a warning."""
    height, width = cfg.data.image_height, cfg.data.image_width
    if cfg.link.source == SYNTHETIC:
        n = count_frames(cfg)
        left, right = synthetic_stereo(n, height, width, SYNTHETIC_SEED)
        for i in range(n):
            yield Frame(i, f"synthetic_{i:04d}", left[i], right[i]), (height, width)
        return
    for i, pair in enumerate(_pairs(cfg)[: count_frames(cfg)]):
        try:
            left, right = read_image(pair.left), read_image(pair.right)
        except DataError as exc:
            skip_or_raise(str(exc), cfg.data.on_error)
            continue
        left, right = to_float(left), to_float(right)
        if cfg.link.crop == "eval":
            left, right = (
                eval_crop(left, height, width),
                eval_crop(right, height, width),
            )
            yield Frame(i, pair.name, left, right), (height, width)
        else:
            size = tuple(left.shape[-2:])
            left, _ = pad_to_multiple(left, stride)
            right, _ = pad_to_multiple(right, stride)
            yield Frame(i, pair.name, left, right), size
