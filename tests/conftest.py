"""Shared fixtures: deterministic seeds, paths to the bundled samples, small image trees."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.wire import WIRE_VERSION

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def raw_frame(obj: object) -> bytes:
    """A wire frame around any msgpack object, with a correct CRC (for malformed headers)."""
    import zlib

    import msgpack

    body = msgpack.packb(obj, use_bin_type=True)
    return body + zlib.crc32(body).to_bytes(4, "little")


def valid_header(**changes: object) -> dict:
    header = {
        "v": WIRE_VERSION,
        "type": "data",
        "stream": 0,
        "seq": 0,
        "view": 0,
        "t_send": 0.0,
        "meta": {},
        "arrays": {},
    }
    header.update(changes)
    return header


def write_image(
    path: Path, height: int, width: int, seed: int = 0, mode: str = "RGB"
) -> Path:
    """A random image file (PNG unless the suffix says otherwise)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path


@pytest.fixture
def sample_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real KITTI pair from the bundled samples, ``[1, 3, 128, 256]`` each."""
    from shared.data.images import read_image, to_float

    folder = SAMPLES / "stereo" / "kitti2012_000000_10"
    return (
        to_float(read_image(folder / "left.png"))[None],
        to_float(read_image(folder / "right.png"))[None],
    )


def calibrate(
    model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, snr_db: float = 5.0
) -> torch.nn.Module:
    """Set BatchNorm running statistics from a few passes over real views, then eval mode
    (an untrained model's running statistics are the defaults 0 / 1)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(left, right, torch.full((left.shape[0],), snr_db))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A calibrated (untrained) tiny model: enough to check that the link is exact."""
    from shared.config import load_config
    from shared.data.synthesis import synthetic_stereo
    from shared.model.checkpoint import save_checkpoint
    from shared.model.registry import build_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    left, right = synthetic_stereo(4, 64, 128, seed=3)
    calibrate(model, left, right)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return path
