"""Shared fixtures: deterministic seeds, paths to the bundled samples, small image trees."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.channel import WirelessChannel, generator_for
from shared.config import dump_config, load_config
from shared.data.synthesis import synthetic_stereo
from shared.link.hop import send
from shared.link.messages import ChannelView, LatentView, SourceInfo
from shared.measure.activity import Activity
from shared.model import native
from shared.model.registry import build_model
from shared.wire import WIRE_VERSION

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"

#: Marks a test of the native kernels, which need a C compiler to be built.
needs_kernels = pytest.mark.skipif(
    native.spike_kernels() is None, reason="no C compiler: the kernels cannot be built"
)


#: The environment of the processes a test starts: unbuffered output, no warnings.
PROCESS_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}


#: Trainer arguments of a tiny run on the bundled sample pairs, without validation.
TINY_ON_SAMPLES = [
    "--config",
    "tiny",
    "--set",
    f"data.root={SAMPLES}",
    "--set",
    "data.stereo=[stereo]",
    "--set",
    "data.val_split=",
]


def start_process(module: str, cfg, folder: Path) -> subprocess.Popen:
    """``python -m module`` with ``cfg`` (written to ``folder``), output piped."""
    path = folder / f"{module}.yaml"
    path.write_text(dump_config(cfg))
    return subprocess.Popen(
        [sys.executable, "-m", module, "--config", str(path)],
        cwd=REPO,
        env=PROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.05)


class OutputLines:
    """The output lines of a running process, collected by a thread as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        with proc.stdout:
            for line in proc.stdout:
                self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        wait_until(lambda: any(text in line for line in self.lines), timeout_s, text)

    def text(self) -> str:
        """Everything so far (after the process ended: everything)."""
        self.thread.join(timeout=5)
        return "".join(self.lines)


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


def calibrated_tiny(folder: Path, *overrides: str) -> Path:
    """A calibrated (untrained) tiny model with ``overrides``, saved in ``folder``."""
    from shared.model.checkpoint import save_checkpoint

    cfg = load_config("tiny", list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.channel)
    left, right = synthetic_stereo(4, 64, 128, seed=3)
    calibrate(model, left, right)
    path = folder / "tiny.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A calibrated (untrained) tiny model: enough to check that the link is exact."""
    return calibrated_tiny(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def tiny_bpsk_checkpoint(tmp_path_factory) -> Path:
    """The tiny model with the spike-BPSK latent (T = 2: 3 latent channels)."""
    return calibrated_tiny(
        tmp_path_factory.mktemp("bpsk"), "model.latent=spike_bpsk", "model.time_steps=2"
    )


#: The source and encoder activity of the test's link messages (64x128 frames).
SOURCE = SourceInfo("pair", 64, 128, 64, 128)
ACTIVITY = Activity(1.5e9, 3.2, 12)


def synthetic_frame(seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The views ``[1, 3, 64, 128]`` of the test's synthetic frame ``seq``."""
    return synthetic_stereo(1, 64, 128, seed=seq)


def latent_view(code, seq: int = 0, view: int = 0, model=None) -> LatentView:
    """A transmitter message of the synthetic frame ``seq``: the model's latent of the
    view, or random values of the code without a model."""
    if model is not None:
        latent = model.encode(*synthetic_frame(seq))["latent"][view, 0].numpy()
    else:
        shape = code.shape(3, 16, 32)
        latent = np.random.default_rng(seq).integers(
            0, code.max_value + 1, shape, dtype=np.uint8
        )
    return LatentView(1, seq, view, code, latent, SOURCE, "snn", ACTIVITY)


def delivered(
    sent: LatentView,
    kind: str = "rayleigh_block",
    snr_db: float = 4.0,
    csi: str = "perfect",
) -> ChannelView:
    """What the channel delivers for ``sent`` over ``kind`` at ``snr_db`` (seed 0)."""
    settings = dataclasses.replace(
        load_config("tiny").channel, kind=kind, snr_db=snr_db, csi=csi
    )
    channel = WirelessChannel.for_code(settings, sent.code)
    use = send(
        sent.code,
        channel,
        torch.from_numpy(sent.latent)[None],
        torch.tensor([snr_db]),
        generator_for(0, sent.seq, sent.view),
    )
    return ChannelView.after(sent, use, settings)
