"""Stereo and mono loaders on small trees of every layout; crops, flips and synthesis."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from conftest import SAMPLES, write_image

from shared.config import DataConfig
from shared.data.crops import centre_crop_box, eval_crop, pad_to_multiple, stereo_flip
from shared.data.datasets import EvalPairs, TrainBatches, training_sources
from shared.data.images import read_image
from shared.data.pairs import find_images, find_pairs, read_split
from shared.data.synthesis import (
    _splat_disparity,
    mono_to_stereo,
    render_right_view,
    synthetic_stereo,
)
from shared.errors import DataError


def pair(root: Path, left: str, right: str, seed: int = 0, size=(20, 30)) -> None:
    write_image(root / left, *size, seed=seed)
    write_image(root / right, *size, seed=seed + 100)


LAYOUT_TREES = {
    "kitti2012": [
        ("training/colored_0/000000_10.png", "training/colored_1/000000_10.png"),
        ("training/colored_0/000000_11.png", "training/colored_1/000000_11.png"),
    ],
    "kitti2015": [("training/image_2/000001_10.png", "training/image_3/000001_10.png")],
    "kitti_raw": [
        (
            "2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png",
            "2011_09_26/2011_09_26_drive_0001_sync/image_03/data/0000000000.png",
        ),
        (
            "2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000001.png",
            "2011_09_26/2011_09_26_drive_0001_sync/image_03/data/0000000001.png",
        ),
    ],
    "instereo2k": [("train/part1/000001/left.png", "train/part1/000001/right.png")],
    "middlebury": [
        ("trainingH/Motorcycle/im0.png", "trainingH/Motorcycle/im1.png"),
        ("trainingH/Piano/im0.png", "trainingH/Piano/im1.png"),
    ],
    "generic": [("a/b/left.png", "a/b/right.png"), ("c/left.png", "c/right.png")],
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_TREES))
def test_each_layout_finds_its_pairs(tmp_path: Path, layout: str) -> None:
    for i, (left, right) in enumerate(LAYOUT_TREES[layout]):
        pair(tmp_path, left, right, seed=i)
    found = find_pairs(tmp_path, layout)
    expected = sorted((tmp_path / a, tmp_path / b) for a, b in LAYOUT_TREES[layout])
    assert [(p.left, p.right) for p in found] == expected
    assert find_pairs(tmp_path, "auto") == found


def test_auto_finds_every_layout_at_once(tmp_path: Path) -> None:
    for layout, pairs in LAYOUT_TREES.items():
        for i, (left, right) in enumerate(pairs):
            pair(tmp_path / layout, left, right, seed=i)
    assert len(find_pairs(tmp_path)) == sum(len(v) for v in LAYOUT_TREES.values())


def test_the_bundled_samples_are_a_generic_tree() -> None:
    pairs = find_pairs(SAMPLES / "stereo", "generic")
    assert len(pairs) == 7
    item = EvalPairs(pairs)[0]
    assert item["left"].shape == (3, 128, 256) and item["right"].shape == (3, 128, 256)


def test_missing_view_is_an_error_or_skipped(tmp_path: Path, caplog) -> None:
    pair(tmp_path, "training/colored_0/1.png", "training/colored_1/1.png")
    write_image(tmp_path / "training/colored_0/2.png", 20, 30)
    with pytest.raises(DataError, match=r"missing right view for .*colored_0/2.png"):
        find_pairs(tmp_path, "kitti2012")
    with caplog.at_level(logging.WARNING):
        assert len(find_pairs(tmp_path, "kitti2012", on_error="skip")) == 1
    assert "colored_0/2.png" in caplog.text


def test_unreadable_and_mismatched_pairs(tmp_path: Path) -> None:
    write_image(tmp_path / "bad/left.png", 20, 30)
    (tmp_path / "bad/right.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot be read: .*bad/right.png"):
        find_pairs(tmp_path)
    (tmp_path / "bad/right.png").unlink()
    write_image(tmp_path / "bad/right.png", 21, 30)
    with pytest.raises(
        DataError, match=r"size mismatch: .*left.png is 30x20 .*right.png"
    ):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="not found"):
        find_pairs(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no stereo pairs"):
        find_pairs(tmp_path, "middlebury")
    with pytest.raises(DataError, match="unknown stereo layout"):
        find_pairs(tmp_path, "eth3d")


def test_split_file_forms_and_errors(tmp_path: Path) -> None:
    pair(tmp_path, "x/left.png", "x/right.png")
    pair(tmp_path, "m/im0.png", "m/im1.png")
    pair(tmp_path, "k/l.png", "k/r.png")
    split = tmp_path / "split.txt"
    split.write_text("# comment\nx\nm  # Middlebury naming\nk/l.png k/r.png\n\n")
    names = [p.name for p in read_split(split, tmp_path)]
    assert names == ["x", "m", "k/l.png"]
    split.write_text("x\nk/l.png k/missing.png\n")
    with pytest.raises(
        DataError, match=r"split.txt:2: image file not found: .*missing.png"
    ):
        read_split(split, tmp_path)
    assert len(read_split(split, tmp_path, on_error="skip")) == 1
    split.write_text("a b c\n")
    with pytest.raises(DataError, match="split.txt:1"):
        read_split(split, tmp_path)


def test_image_modes_become_rgb(tmp_path: Path) -> None:
    grey = read_image(write_image(tmp_path / "g.png", 5, 6, mode="L"))
    assert grey.shape == (3, 5, 6) and torch.equal(grey[0], grey[2])
    assert read_image(write_image(tmp_path / "a.png", 5, 6, mode="RGBA")).shape == (
        3,
        5,
        6,
    )
    assert read_image(write_image(tmp_path / "j.jpg", 5, 6)).dtype == torch.uint8
    assert len(find_images(tmp_path)) == 3
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "none.png")


def test_evaluation_crop_geometry() -> None:
    assert centre_crop_box(370, 1226, 1, 2) == (0, 243, 370, 740)
    assert centre_crop_box(376, 1241, 1, 2) == (0, 244, 376, 752)
    assert centre_crop_box(768, 512, 1, 2) == (256, 0, 256, 512)
    image = torch.zeros(3, 370, 1226)
    image[:, :, 243:983] = 1.0  # exactly the crop window
    out = eval_crop(image)
    assert out.shape == (3, 128, 256) and out.min().item() == pytest.approx(1.0)
    same = torch.rand(3, 128, 256)
    assert torch.equal(eval_crop(same), same)
    padded, size = pad_to_multiple(torch.rand(1, 3, 30, 61), 4)
    assert padded.shape == (1, 3, 32, 64) and size == (30, 61)


def test_flip_keeps_disparity_positive() -> None:
    left, right = torch.zeros(1, 10, 40), torch.zeros(1, 10, 40)
    left[..., 20], right[..., 15] = 1.0, 1.0  # disparity 5
    new_left, new_right = stereo_flip(left, right)
    x_left = int(new_left[0, 0].argmax())
    x_right = int(new_right[0, 0].argmax())
    assert x_left - x_right == 5


def test_warp_with_constant_disparity_is_a_shift() -> None:
    left = torch.rand(1, 3, 8, 40)
    right = render_right_view(left, torch.full((1, 8, 40), 3.0))
    assert torch.allclose(right[..., :37], left[..., 3:], atol=1e-5)


def test_occlusions_take_the_background_disparity() -> None:
    disparity = torch.full((1, 1, 30), 2.0)
    disparity[..., 10:15] = 6.0  # a near object
    right = _splat_disparity(disparity)[0, 0]
    assert (right >= 2.0).all()
    # the object lands at 4..8; 9..12 is seen only by the right camera: background
    assert right[4:9].tolist() == [6.0] * 5
    assert right[9:13].tolist() == [2.0] * 4


def test_mono_to_stereo_and_synthetic_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    left, right = mono_to_stereo(torch.rand(2, 3, 16, 40), 32, 8.0, g)
    assert left.shape == right.shape == (2, 3, 16, 32)
    assert not torch.equal(left, right)
    a_left, a_right = synthetic_stereo(2, 32, 64, seed=5)
    b_left, b_right = synthetic_stereo(2, 32, 64, seed=5)
    assert torch.equal(a_left, b_left) and torch.equal(a_right, b_right)
    assert a_left.min() >= 0 and a_left.max() <= 1 and not torch.equal(a_left, a_right)
    with pytest.raises(ValueError, match="max disparity"):
        mono_to_stereo(torch.rand(1, 3, 16, 33), 32, 8.0, g)


def test_training_stream_is_reproducible_and_mixed(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / f"mono/{i}.png", 50, 90, seed=i)
    cfg = DataConfig(
        root=str(tmp_path),
        stereo=(),
        mono=("mono",),
        val_split="",
        crop_height=16,
        crop_width=32,
        scale_max=2.0,
    )
    cfg_stereo = samples_config(mono_fraction=0.5)
    pairs, _ = training_sources(cfg_stereo)
    _, mono = training_sources(cfg)
    batches = TrainBatches(pairs, mono, cfg_stereo, batch_size=4, seed=1)
    first = batches[3]
    assert first["left"].shape == (4, 3, 16, 32)
    assert torch.equal(first["left"], batches[3]["left"])
    assert not torch.equal(first["left"], batches[4]["left"])
    assert not torch.equal(
        first["left"], TrainBatches(pairs, mono, cfg_stereo, 4, 2)[3]["left"]
    )
    with pytest.raises(DataError, match="no training images"):
        TrainBatches([], [], cfg, 4, 0)


def samples_config(**settings: object) -> DataConfig:
    """Training on the bundled sample pairs alone, 16x32 crops."""
    return DataConfig(
        root=str(SAMPLES),
        stereo=("stereo",),
        mono=(),
        val_split="",
        crop_height=16,
        crop_width=32,
        **settings,
    )


def tree_config(root: Path, **settings: object) -> DataConfig:
    """Data settings for a test tree with ``stereo/`` pairs and ``mono/`` photos, 16x32
    training crops."""
    return DataConfig(
        root=str(root),
        stereo=("stereo",),
        mono=("mono",),
        val_split="",
        crop_height=16,
        crop_width=32,
        **settings,
    )


def truncate(path: Path) -> Path:
    """Keep the header of an image file and cut its pixel data short."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_images_that_fail_to_decode_stop_or_are_skipped(tmp_path: Path, caplog) -> None:
    """A file whose header opens but whose data is cut short passes the pair check; it
    must stop the stream with its name, or be skipped under ``on_error='skip'``."""
    write_image(tmp_path / "mono/good.png", 40, 80, seed=1)
    bad = truncate(write_image(tmp_path / "mono/cut.png", 40, 80, seed=2))
    write_image(tmp_path / "stereo/a/left.png", 40, 80, seed=3)
    write_image(tmp_path / "stereo/a/right.png", 40, 80, seed=4)
    write_image(tmp_path / "stereo/b/left.png", 40, 80, seed=5)
    truncate(write_image(tmp_path / "stereo/b/right.png", 40, 80, seed=6))
    for on_error in ("error", "skip"):
        cfg = tree_config(tmp_path, on_error=on_error)
        pairs, mono = training_sources(cfg)
        assert len(pairs) == 2 and len(mono) == 2
        batches = TrainBatches(pairs, mono, cfg, batch_size=8, seed=0)
        if on_error == "error":
            with pytest.raises(DataError, match="cannot be decoded"):
                [batches[step] for step in range(4)]
            continue
        with caplog.at_level(logging.WARNING):
            shapes = {tuple(batches[step]["left"].shape) for step in range(4)}
        assert shapes == {(8, 3, 16, 32)}
        assert caplog.text.count(str(bad)) == 1
        assert caplog.text.count("b/right.png") == 1


def test_validation_split_is_excluded_from_training(tmp_path: Path) -> None:
    split = tmp_path / "val.txt"
    split.write_text("stereo/cones_2003_Q\n")
    cfg = DataConfig(
        root=str(SAMPLES), stereo=("stereo",), mono=(), val_split=str(split)
    )
    pairs, mono = training_sources(cfg)
    assert len(pairs) == 6 and not mono
    assert all("cones" not in p.name for p in pairs)


def test_images_smaller_than_the_crop_are_left_out(tmp_path: Path, caplog) -> None:
    """A mono photo needs the crop plus the disparity margin (32 + ceil(0.25 * 32) = 40
    columns here); photos and pairs that cannot hold it are left out with a warning that
    names them, and the stream then draws only from the others."""
    write_image(tmp_path / "mono/wide.png", 20, 40, seed=1)
    write_image(tmp_path / "mono/narrow.png", 40, 39, seed=2)
    write_image(tmp_path / "stereo/a/left.png", 15, 80, seed=3)
    write_image(tmp_path / "stereo/a/right.png", 15, 80, seed=4)
    cfg = tree_config(tmp_path, max_disparity=0.25)
    pairs, mono = training_sources(cfg)
    with caplog.at_level(logging.WARNING):
        batches = TrainBatches(pairs, mono, cfg, batch_size=8, seed=0)
    assert [p.name for p in batches.mono] == ["wide.png"] and not batches.pairs
    assert "2 of 3 training images" in caplog.text
    assert "narrow.png (40x39)" in caplog.text and "left.png (15x80)" in caplog.text
    assert {tuple(batches[step]["left"].shape) for step in range(3)} == {(8, 3, 16, 32)}

    too_large = dataclasses.replace(cfg, crop_height=32, crop_width=64)
    with pytest.raises(DataError, match="data.crop_height"):
        TrainBatches(pairs, mono, too_large, batch_size=8, seed=0)


def test_a_share_of_training_pairs_gets_another_scenes_right_view() -> None:
    """``data.mismatch_fraction`` replaces right views with other samples' right views;
    at 0 the stream is the one of a config without the key (no extra random draws)."""
    pairs, _ = training_sources(samples_config())
    matched = TrainBatches(pairs, [], samples_config(), 8, seed=3)[0]
    never, always = (
        TrainBatches(pairs, [], samples_config(mismatch_fraction=f), 8, seed=3)[0]
        for f in (0.0, 1.0)
    )
    assert torch.equal(matched["right"], never["right"])
    swapped = always
    assert torch.equal(swapped["left"][0], matched["left"][0])
    assert not torch.equal(swapped["right"][0], matched["right"][0])
    assert swapped["right"].shape == matched["right"].shape
