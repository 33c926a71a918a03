"""The native kernels' threads: torch on one thread during an event-driven pass, the
kernels' work split over the threads torch was set to, with the same results as on one."""

from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path

import pytest
import torch
from conftest import calibrated_tiny, needs_kernels

from shared.config import InferenceConfig
from shared.evaluation import batch_through_channel
from shared.link.process import process_kernel_threads
from shared.model.checkpoint import load_model
from shared.model.event_conv import EventConv2d
from shared.model.inference import accelerate
from shared.model.kernel_threads import (
    kernel_threads,
    native_threading,
    set_kernel_threads,
    split_over_threads,
)
from shared.model.neurons import LIF_GRAIN, lif_inference


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_native_threading_moves_torch_to_one_thread_and_back(two_threads) -> None:
    with native_threading():
        assert (torch.get_num_threads(), kernel_threads()) == (1, 2)
        with native_threading():
            assert (torch.get_num_threads(), kernel_threads()) == (1, 2)
        assert (torch.get_num_threads(), kernel_threads()) == (1, 2)
    assert (torch.get_num_threads(), kernel_threads()) == (2, 2)
    with pytest.raises(RuntimeError), native_threading():
        raise RuntimeError("a failing pass")
    assert torch.get_num_threads() == 2


def test_a_process_can_give_the_kernels_more_threads_than_torch(two_threads) -> None:
    """A link process: torch on half the cores, the kernels on all of them."""

    def in_a_process() -> None:
        torch.set_num_threads(1)
        set_kernel_threads(3)
        assert kernel_threads() == 3
        with native_threading():
            assert (torch.get_num_threads(), kernel_threads()) == (1, 3)
        assert (torch.get_num_threads(), kernel_threads()) == (1, 3)

    contextvars.copy_context().run(in_a_process)
    assert kernel_threads() == torch.get_num_threads()
    assert process_kernel_threads(0) == os.cpu_count()
    assert process_kernel_threads(5) == 5


def test_split_over_threads_covers_every_item_once(two_threads) -> None:
    seen: list[tuple[int, int, str]] = []

    def run(i0: int, i1: int) -> int:
        seen.append((i0, i1, threading.current_thread().name))
        return i1 - i0

    assert split_over_threads(run, 1001) == 1001
    ranges = sorted((i0, i1) for i0, i1, _ in seen)
    assert ranges == [(0, 500), (500, 1001)]
    assert all(name.startswith("spikes") for *_, name in seen)
    seen.clear()
    assert split_over_threads(run, 1001, grain=600) == 1001  # too few for two
    assert [(i0, i1) for i0, i1, _ in seen] == [(0, 1001)]


@needs_kernels
def test_the_native_lif_on_two_threads_fires_as_on_one(two_threads) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 16, 33, 65, generator=g) * 2.0
    x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    assert x[0].numel() > 2 * LIF_GRAIN
    v0 = torch.zeros(())
    split = lif_inference(x, v0, 0.5, 1.0, soft_reset=False)
    torch.set_num_threads(1)
    single = lif_inference(x, v0, 0.5, 1.0, soft_reset=False)
    for got, want in zip(split, single):
        assert torch.equal(got, want)


@needs_kernels
def test_an_event_driven_pass_runs_torch_on_one_thread(
    tiny_checkpoint: Path, two_threads
) -> None:
    """Inside encode and decode torch has one thread; afterwards its two again; and the
    frame comes out as it does on one thread throughout."""
    model, _ = load_model(tiny_checkpoint)
    accelerate(model, InferenceConfig(device="cpu", precision="float32"))
    assert model.event_driven
    during: list[int] = []
    model.decoder.readout.register_forward_hook(
        lambda *_: during.append(torch.get_num_threads())
    )
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 64, 128, generator=g)
    latent = model.encode(x, x.flip(-1))["latent"]
    received = batch_through_channel(model, model.channel, latent, 5.0, 0, [0])
    split = model.decode(received)
    assert during == [1] and torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert torch.equal(model.encode(x, x.flip(-1))["latent"], latent)
    single = model.decode(received)
    for side in ("x_hat_left", "x_hat_right"):
        assert torch.equal(split[side], single[side])


def test_the_twin_is_not_event_driven(tmp_path: Path) -> None:
    """The twin's convolutions read rates, not spikes: they stay oneDNN's, and torch
    keeps all its threads for them."""
    model, _ = load_model(calibrated_tiny(tmp_path, "model.kind=cnn"))
    accelerate(model, InferenceConfig(device="cpu", precision="float32"))
    assert not model.event_driven
    assert not any(isinstance(m, EventConv2d) for m in model.modules())
