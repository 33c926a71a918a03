"""Stereo frames for evaluation and for the link: pairs from a folder or a split file,
with the evaluation crop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from shared.data.datasets import EvalPairs
from shared.data.pairs import StereoPair, find_pairs, read_split


@dataclass
class Frame:
    """One stereo frame: index (its sequence number on the link), name, and the views
    ``[3, H, W]`` float in [0, 1]."""

    index: int
    name: str
    left: Tensor
    right: Tensor


def source_pairs(
    data: str | Path,
    root: str | Path | None = None,
    layout: str = "auto",
    on_error: str = "error",
) -> list[StereoPair]:
    """The pairs of a source: a folder of pairs in any layout the loaders know, or a
    split file whose relative paths are relative to ``root`` (default: the file's
    folder). DataError names the path when there are none."""
    path = Path(data)
    if path.is_file():
        return read_split(path, root or path.parent, on_error)
    return find_pairs(path, layout, on_error)


def load_frames(
    data: str | Path,
    root: str | Path | None,
    height: int,
    width: int,
    limit: int = 0,
    layout: str = "auto",
) -> list[Frame]:
    """Evaluation frames (evaluation crop, ``height x width``) of a source (see
    :func:`source_pairs`), the first ``limit`` of them when ``limit`` is set."""
    pairs = source_pairs(data, root, layout)
    if limit:
        pairs = pairs[:limit]
    dataset = EvalPairs(pairs, height, width)
    return [
        Frame(i, item["name"], item["left"], item["right"])
        for i, item in enumerate(dataset)
    ]


def mismatched(frames: list[Frame]) -> list[Frame]:
    """Each frame's left view with the next frame's right view (the last takes the
    first's): a second view from another scene, of the same size, to measure what an
    unrelated view costs the first one. Frame names read ``left+right``."""
    shifted = frames[1:] + frames[:1]
    return [
        Frame(f.index, f"{f.name}+{g.name}", f.left, g.right)
        for f, g in zip(frames, shifted)
    ]
