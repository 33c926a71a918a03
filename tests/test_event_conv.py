"""Event-driven spike convolutions: the same sums as the dense convolution, a dense
fallback wherever they do not apply, and the native build's cache and failure path."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_kernels
from torch import nn

from shared.config import InferenceConfig
from shared.model import native
from shared.model.checkpoint import load_model
from shared.model.event_conv import (
    GATHER,
    SCATTER,
    EventConv2d,
    use_event_convolutions,
)
from shared.model.inference import accelerate, describe


def spikes(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) < rate).float()
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def conv_with_bias(c_in: int, c_out: int, stride: int, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, 3, stride, padding=1)
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    return conv


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "c_in, c_out, stride, upscale, size, batch, rate",
    [
        (4, 32, 1, 1, (5, 7), 3, 0.2),
        (5, 16, 1, 1, (6, 3), 2, 0.4),
        (8, 64, 2, 1, (6, 10), 2, 0.3),
        (7, 96, 2, 1, (7, 5), 1, 0.5),
        (16, 48, 1, 1, (4, 4), 2, 1.0),
        (8, 4 * 32, 1, 2, (5, 6), 2, 0.15),
        (6, 4 * 16, 1, 2, (3, 4), 1, 0.0),
        (8, 6, 1, 1, (5, 7), 4, 0.3),
        (8, 20, 1, 1, (4, 6), 2, 0.3),
        (8, 20, 2, 1, (6, 9), 2, 0.3),
    ],
)
def test_event_convolution_equals_the_dense_one(
    threads, c_in, c_out, stride, upscale, size, batch, rate
) -> None:
    conv = conv_with_bias(c_in, c_out, stride, seed=c_out)
    event = EventConv2d.from_conv(conv, upscale)
    assert event is not None
    lanes = native.spike_kernels().spike_lanes()
    computed = -(-c_out // lanes) * lanes  # whole vectors, the extra ones dropped
    few = (stride, upscale, computed) == (1, 1, 2 * lanes)
    assert event.order == (SCATTER if few else GATHER)
    x = spikes((batch, c_in, *size), rate, seed=c_in)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = event(x)
            want = conv(x)
    finally:
        torch.set_num_threads(before)
    if upscale > 1:
        want = F.pixel_shuffle(want, upscale)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert event.input_events == int(x.sum())


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "steps, views, c_in, c_out, stride, upscale",
    [
        (4, 2, 8, 64, 1, 1),
        (2, 3, 16, 48, 2, 1),
        (4, 1, 16, 4 * 32, 1, 2),
        (5, 2, 20, 64, 1, 1),
        (6, 1, 16, 48, 2, 1),
        (3, 2, 8, 4 * 16, 1, 2),
    ],
)
def test_groups_of_time_steps_give_the_dense_sums(
    threads, steps, views, c_in, c_out, stride, upscale
) -> None:
    """Consecutive steps of a view share their weight loads in groups of four and of
    two (a last odd step alone); spikes that persist from one step to the next (and some
    that do not) all count, each once."""
    conv = conv_with_bias(c_in, c_out, stride, seed=steps + c_out)
    event = EventConv2d.from_conv(conv, upscale)
    event.steps = steps
    first = spikes((views, c_in, 6, 10), 0.3, seed=1)
    flips = spikes((steps, views, c_in, 6, 10), 0.2, seed=2)
    x = (first[None] + flips) % 2  # [T, views, ...]: step t flips some spikes of t - 1
    x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got, want = event(x), conv(x)
    finally:
        torch.set_num_threads(before)
    if upscale > 1:
        want = F.pixel_shuffle(want, upscale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert event.input_events == int(x.sum())


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c_out", [32, 64])
def test_a_shortcut_is_added_as_the_model_adds_it(threads, c_out) -> None:
    """A residual path added by the kernels as they store (gather; scatter after its
    sums) gives the bits of ``shortcut + conv(x)``, for channels-last steps and a
    time-expanded shortcut; one laid out otherwise is added by torch."""
    conv = conv_with_bias(8, c_out, 1, seed=5)
    event = EventConv2d.from_conv(conv)
    event.steps = 4
    x = spikes((8, 8, 6, 10), 0.3, seed=6)
    u = torch.randn(4, 2, c_out, 6, 10, generator=torch.Generator().manual_seed(7))
    steps = u.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(u.shape)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            plain = event(x)
            for shortcut in (steps, steps[:1].expand(4, -1, -1, -1, -1), u):
                want = (shortcut + plain.unflatten(0, (4, 2))).flatten(0, 1)
                assert torch.equal(event(x, shortcut=shortcut), want)
                assert event.input_events == int(x.sum())
    finally:
        torch.set_num_threads(before)


@needs_kernels
def test_an_input_that_is_not_spikes_gets_the_dense_convolution() -> None:
    conv = conv_with_bias(16, 32, 1, seed=3)
    event = EventConv2d.from_conv(conv)
    x = spikes((2, 16, 6, 6), 0.3, seed=4) * 0.5
    shortcut = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(event(x), conv(x))
        torch.testing.assert_close(event(x, shortcut=shortcut), shortcut + conv(x))
    with torch.enable_grad():
        assert event(x).requires_grad  # training takes the dense (autograd) path


@needs_kernels
def test_convolutions_the_kernel_does_not_fit_stay_dense() -> None:
    assert EventConv2d.from_conv(nn.Conv2d(16, 4 * 6, 3, padding=1), upscale=2) is None
    assert EventConv2d.from_conv(nn.Conv2d(16, 32, 3, padding=1, groups=2)) is None
    assert EventConv2d.from_conv(nn.Conv2d(16, 32, 3, padding=0)) is None
    assert EventConv2d.from_conv(nn.Conv2d(16, 32, (3, 1), padding=(1, 0))) is None


@needs_kernels
def test_the_fast_path_of_a_model_is_event_driven(tiny_checkpoint: Path) -> None:
    """The tiny SNN: its convolutions behind neurons become event-driven (the pixel
    shuffle fused), and it decodes what the dense fast path decodes."""
    settings = InferenceConfig(device="cpu", precision="float32")
    dense, _ = load_model(tiny_checkpoint)
    accelerate(dense, dataclasses.replace(settings, event_driven=False))
    event, _ = load_model(tiny_checkpoint)
    accelerate(event, settings)
    assert describe(event).endswith("fast path, event-driven")
    assert not describe(dense).endswith("event-driven")
    converted = [m for m in event.modules() if isinstance(m, EventConv2d)]
    assert converted and any(m.upscale == 2 for m in converted)
    assert use_event_convolutions(event) == 0  # nothing left to convert
    x = spikes((1, 3, 64, 128), 0.5, seed=1) * 0.8
    latent = dense.encode(x, x.flip(-1))["latent"]
    assert torch.equal(event.encode(x, x.flip(-1))["latent"], latent)


def test_without_a_compiler_the_fast_path_stays_dense(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("SPIKELINK_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    native.spike_kernels.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.spike_kernels() is None
        assert "event-driven spike convolutions unavailable" in caplog.text
        model, _ = load_model(tiny_checkpoint)
        accelerate(model, InferenceConfig(device="cpu", precision="float32"))
        assert describe(model) == "cpu, float32, fast path"
    finally:
        native.spike_kernels.cache_clear()


@needs_kernels
def test_the_kernels_are_built_once_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPIKELINK_CACHE", str(tmp_path))
    native.spike_kernels.cache_clear()
    try:
        assert native.spike_kernels() is not None
        built = list(tmp_path.glob("spike_conv-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        native.spike_kernels.cache_clear()
        assert native.spike_kernels() is not None
        assert built[0].stat().st_mtime_ns == stamp
        assert list(tmp_path.iterdir()) == built  # no temporary file left behind
        monkeypatch.setenv("SPIKELINK_CFLAGS", "-DSPIKELINK_TEST_BUILD")
        native.spike_kernels.cache_clear()
        assert native.spike_kernels() is not None
        assert len(list(tmp_path.glob("spike_conv-*.so"))) == 2  # other flags: rebuilt
    finally:
        native.spike_kernels.cache_clear()


@needs_kernels
@pytest.mark.skipif(
    "avx512f" not in native._cpu_flags(),
    reason="the CPU has no AVX-512 to build without",
)
def test_the_avx2_build_gives_the_same_sums(tmp_path: Path, monkeypatch) -> None:
    """On an AVX-512 CPU, the kernels built without it (256-bit vectors, the scalar
    spike lists, groups of two and four steps) are the ones an AVX2 machine runs."""
    monkeypatch.setenv("SPIKELINK_CACHE", str(tmp_path))
    monkeypatch.setenv("SPIKELINK_CFLAGS", "-mno-avx512f")
    native.spike_kernels.cache_clear()
    try:
        assert native.spike_kernels().spike_lanes() == 8
        x = spikes((4, 16, 5, 9), 0.25, seed=9)
        for c_out, upscale, order, steps in (
            (4 * 24, 2, GATHER, 1),
            (64, 1, GATHER, 2),
            (48, 1, GATHER, 4),
            (16, 1, SCATTER, 1),
        ):
            conv = conv_with_bias(16, c_out, 1, seed=8)
            event = EventConv2d.from_conv(conv, upscale)
            event.steps = steps
            assert event.order == order
            with torch.no_grad():
                want = conv(x)
                if upscale > 1:
                    want = F.pixel_shuffle(want, upscale)
                torch.testing.assert_close(event(x), want, rtol=1e-5, atol=1e-5)
    finally:
        native.spike_kernels.cache_clear()
