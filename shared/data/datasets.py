"""Torch datasets: evaluation crops of real pairs, and a reproducible training stream."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from shared.channel.rng import generator_for
from shared.config import DataConfig
from shared.data.crops import eval_crop, random_scaled_box, resize, stereo_flip
from shared.data.images import image_size, read_image, to_float
from shared.data.pairs import (
    StereoPair,
    exclude_pairs,
    find_images,
    find_pairs,
    read_split,
    skip_or_raise,
)
from shared.data.synthesis import mono_to_stereo
from shared.errors import DataError

#: Draws a training sample may take when images fail to decode (``on_error='skip'``).
MAX_REDRAWS = 100

log = logging.getLogger(__name__)


def mono_crop_width(cfg: DataConfig) -> int:
    """Width of the crop a mono photo gives: the training crop plus the disparity margin
    that :func:`mono_to_stereo` shifts into view (pixels)."""
    return cfg.crop_width + math.ceil(cfg.max_disparity * cfg.crop_width)


def large_enough_sources(
    pairs: list[StereoPair], mono: list[Path], cfg: DataConfig
) -> tuple[list[StereoPair], list[Path]]:
    """The pairs and mono photos that hold a training crop (read from the file headers).

    The others are left out with one warning that counts them and names a few; a header
    that does not open stops or is skipped by ``cfg.on_error``.
    """
    needs = {
        "stereo": (cfg.crop_height, cfg.crop_width),
        "mono": (cfg.crop_height, mono_crop_width(cfg)),
    }
    small: list[str] = []

    def fits(path: Path, kind: str) -> bool:
        try:
            height, width = image_size(path)
        except DataError as exc:
            skip_or_raise(str(exc), cfg.on_error)
            return False
        if height >= needs[kind][0] and width >= needs[kind][1]:
            return True
        small.append(f"{path} ({height}x{width})")
        return False

    kept_pairs = [p for p in pairs if fits(p.left, "stereo")]
    kept_mono = [p for p in mono if fits(p, "mono")]
    if small:
        log.warning(
            "%d of %d training images are smaller than the crop (%dx%d, mono photos "
            "%dx%d with the disparity margin) and are left out, e.g. %s",
            len(small),
            len(pairs) + len(mono),
            *needs["stereo"],
            *needs["mono"],
            ", ".join(small[:3]),
        )
    return kept_pairs, kept_mono


class EvalPairs(Dataset):
    """Real stereo pairs with the evaluation crop (largest centred H:W crop, resized).

    Item: ``{"left": [3, H, W], "right": [3, H, W]`` float in [0, 1], ``"name": str}``.
    """

    def __init__(
        self, pairs: list[StereoPair], height: int = 128, width: int = 256
    ) -> None:
        self.pairs, self.height, self.width = pairs, height, width

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        pair = self.pairs[index]
        left = eval_crop(to_float(read_image(pair.left)), self.height, self.width)
        right = eval_crop(to_float(read_image(pair.right)), self.height, self.width)
        return {"left": left, "right": right, "name": pair.name}


class TrainBatches(Dataset):
    """Batch number ``step`` of an endless training stream, reproducible from the seed.

    Each sample is either a random crop of a real pair (same box in both views) or a pair
    synthesised from a mono photo (:func:`mono_to_stereo`), with probability
    ``cfg.mono_fraction``. Crops downsample by a log-uniform factor in ``[1, scale_max]``;
    half of the samples are mirrored with :func:`stereo_flip`. A share
    ``cfg.mismatch_fraction`` of the samples gets the right view of another sample (another
    scene), so that the decoder learns not to trust a second view that does not match.
    Batch ``step`` depends only on ``(seed, rank, step)``, so a resumed run sees exactly
    the batches it would have seen.

    Item: ``{"left": [B, 3, h, w], "right": [B, 3, h, w]}`` float in [0, 1].
    """

    def __init__(
        self,
        pairs: list[StereoPair],
        mono: list[Path],
        cfg: DataConfig,
        batch_size: int,
        seed: int,
        rank: int = 0,
    ) -> None:
        if not pairs and not mono:
            raise DataError(
                "no training images: both the stereo and mono lists are empty"
            )
        pairs, mono = large_enough_sources(pairs, mono, cfg)
        if not pairs and not mono:
            raise DataError(
                f"no training image holds the crop {cfg.crop_height}x{cfg.crop_width} "
                "(config keys 'data.crop_height', 'data.crop_width'); use a smaller crop"
            )
        self.pairs, self.mono, self.cfg = pairs, mono, cfg
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self._cache: dict[Path, Tensor] = {}
        self._skipped: set[str] = set()

    def __len__(self) -> int:
        return 2**62

    def _image(self, path: Path) -> Tensor:
        if path not in self._cache:
            self._cache[path] = read_image(path)
        return self._cache[path]

    def _crop(
        self, image: Tensor, box: tuple[int, int, int, int], height: int, width: int
    ) -> Tensor:
        top, left, h, w = box
        return resize(to_float(image[:, top : top + h, left : left + w]), height, width)

    def _stereo_sample(self, g: torch.Generator) -> tuple[Tensor, Tensor]:
        pair = self.pairs[int(torch.randint(len(self.pairs), (), generator=g))]
        left, right = self._image(pair.left), self._image(pair.right)
        box = random_scaled_box(
            left.shape[1],
            left.shape[2],
            self.cfg.crop_height,
            self.cfg.crop_width,
            self.cfg.scale_max,
            g,
        )
        return (
            self._crop(left, box, self.cfg.crop_height, self.cfg.crop_width),
            self._crop(right, box, self.cfg.crop_height, self.cfg.crop_width),
        )

    def _mono_sample(self, g: torch.Generator) -> tuple[Tensor, Tensor]:
        image = self._image(
            self.mono[int(torch.randint(len(self.mono), (), generator=g))]
        )
        max_disp = self.cfg.max_disparity * self.cfg.crop_width
        wide = mono_crop_width(self.cfg)
        box = random_scaled_box(
            image.shape[1],
            image.shape[2],
            self.cfg.crop_height,
            wide,
            self.cfg.scale_max,
            g,
        )
        crop = self._crop(image, box, self.cfg.crop_height, wide)[None]
        left, right = mono_to_stereo(crop, self.cfg.crop_width, max_disp, g)
        return left[0], right[0]

    def _sample(self, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """One pair; with ``on_error='skip'`` an image that fails to decode is logged
        once and another draw is made."""
        for _ in range(MAX_REDRAWS):
            use_mono = bool(self.mono) and (
                not self.pairs
                or torch.rand((), generator=g).item() < self.cfg.mono_fraction
            )
            try:
                return self._mono_sample(g) if use_mono else self._stereo_sample(g)
            except DataError as exc:
                if str(exc) not in self._skipped:  # each file is reported once
                    skip_or_raise(str(exc), self.cfg.on_error)
                    self._skipped.add(str(exc))
        raise DataError(f"no decodable training image in {MAX_REDRAWS} draws")

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        g = generator_for(self.seed, "batch", self.rank, step)
        lefts, rights = [], []
        mismatch = self.cfg.mismatch_fraction
        for _ in range(self.batch_size):
            left, right = self._sample(g)
            if torch.rand((), generator=g).item() < 0.5:
                left, right = stereo_flip(left, right)
            if mismatch and torch.rand((), generator=g).item() < mismatch:
                right = self._sample(g)[1]
            lefts.append(left)
            rights.append(right)
        return {"left": torch.stack(lefts), "right": torch.stack(rights)}


def _under_root(cfg: DataConfig, path: str) -> Path:
    return Path(cfg.root) / path if cfg.root else Path(path)


def validation_pairs(cfg: DataConfig) -> list[StereoPair]:
    """Pairs of ``data.val_split`` (paths in the split relative to ``data.root``)."""
    if not cfg.val_split:
        raise DataError("config key 'data.val_split' is empty; name a split file")
    return read_split(cfg.val_split, cfg.root, cfg.on_error)


def training_sources(cfg: DataConfig) -> tuple[list[StereoPair], list[Path]]:
    """Stereo pairs (minus the validation split) and mono photos named by the config."""
    if cfg.train_split:
        pairs = read_split(cfg.train_split, cfg.root, cfg.on_error)
    else:
        pairs = [
            p
            for d in cfg.stereo
            for p in find_pairs(_under_root(cfg, d), cfg.layout, cfg.on_error)
        ]
    if cfg.val_split:
        pairs = exclude_pairs(pairs, validation_pairs(cfg))
    mono = [p for d in cfg.mono for p in find_images(_under_root(cfg, d))]
    return pairs, mono
