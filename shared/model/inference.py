"""The inference fast path: the same trained model, arranged to run fast outside training.

:func:`accelerate` turns a model loaded for evaluation (``model.eval()``) into its fast
path, in place:

- every BatchNorm is folded into the convolution in front of it (also across a pixel
  shuffle); the BatchNorm becomes an ``Identity``, so module names, and with them the
  energy accounting, stay as they are;
- the LIF layers run :func:`shared.model.neurons.lif_inference` when autograd is off;
- on a CPU in float32, the convolutions that read spikes are event-driven
  (:mod:`shared.model.event_conv`) unless ``infer.event_driven`` is false, and during
  each pass torch runs its own operations on one thread while the native kernels split
  their work over the threads torch was set to (:mod:`shared.model.kernel_threads`);
- tensors between layers are channels-last, which the CPU's oneDNN convolutions read
  1.1-1.8x faster than contiguous ones;
- the model moves to the configured device, and runs under bfloat16 autocast where the
  precision setting asks for it;
- on a CPU, glibc keeps freed memory for reuse (:func:`keep_freed_memory`).

The fast path computes the same function up to float rounding: ``spikelink bench``
measures its PSNR difference from the reference path, and ``tests/test_inference.py``
bounds it on a bundled pair.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from shared.config import Config, InferenceConfig
from shared.errors import ConfigError
from shared.model.checkpoint import load_model
from shared.model.event_conv import EventConv2d, use_event_convolutions
from shared.model.jscc import StereoJSCC
from shared.model.neurons import is_neuron


def resolve_device(name: str) -> torch.device:
    """The torch device of an ``infer.device`` setting (``auto`` takes a visible GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key 'infer.device': got 'cuda'; allowed here: 'auto' or 'cpu' "
            "(this torch sees no CUDA GPU)"
        )
    return torch.device(name)


def fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 runs faster than float32 on ``device``: a CUDA GPU with bfloat16,
    or a CPU with AMX tiles, whose oneDNN kernels compute it in hardware. A CPU with
    AVX512-BF16 but no AMX also has native bfloat16, yet there the bundled SNN took 1.8x
    and its twin 1.7x the float32 time (docs/RESULTS.md), so it counts as not fast."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_amx_tile_supported())


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype of an ``infer.precision`` setting on ``device``."""
    if name == "auto":
        return torch.bfloat16 if fast_bfloat16(device) else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


#: Stereo frames per batch of ``infer.batch: 0`` on a GPU.
GPU_BATCH = 32


def batch_frames(settings: InferenceConfig) -> int:
    """Stereo frames per batch of in-process evaluation under ``settings``."""
    if settings.batch:
        return settings.batch
    return GPU_BATCH if resolve_device(settings.device).type == "cuda" else 1


def inference_overrides(settings: InferenceConfig) -> list[str]:
    """``settings`` as ``infer.key=value`` overrides (for the link's processes)."""
    plain = {
        "device": settings.device,
        "precision": settings.precision,
        "fast": str(settings.fast).lower(),
        "event_driven": str(settings.event_driven).lower(),
        "batch": settings.batch,
    }
    return [f"infer.{key}={value}" for key, value in plain.items()]


#: glibc's ``mallopt`` parameters.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (true where it agreed).

    By default glibc serves blocks above a few MB with fresh pages from the system and
    gives them back on free, so every activation of a layer (8-33 MB for the bundled SNN)
    is faulted in page by page again: 20 % of the SNN's time on this CPU
    (docs/RESULTS.md). With every block on the heap (no separate mappings; the mapping
    threshold alone is capped at 32 MB, below a batch's activations and the event-driven
    convolutions' 33.5 MB outputs) and no trimming, the process keeps its peak memory and
    reuses it. Without glibc nothing changes.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trimmed = libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    return bool(trimmed and libc.mallopt(M_MMAP_MAX, 0))


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d, repeat: int) -> None:
    """Fold ``bn`` (over ``conv``'s output channels grouped by ``repeat``) into ``conv``."""
    stats = [bn.running_mean, bn.running_var, bn.weight, bn.bias]
    stats = [s.repeat_interleave(repeat) for s in stats]
    mean, var, gamma, beta = stats
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, mean, var, bn.eps, gamma, beta
    )
    conv.weight, conv.bias = weight, bias


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``Conv2d -> [PixelShuffle(r) ->] BatchNorm2d`` of a sequential container
    into the convolution; the BatchNorm is replaced by ``nn.Identity``.

    Needs the BatchNorm statistics of evaluation (running mean and variance, affine).
    Output: the number of BatchNorms folded.
    """
    folded = 0
    for container in model.modules():
        if not isinstance(container, nn.Sequential):
            continue
        layers = list(container)
        for i, bn in enumerate(layers):
            if not isinstance(bn, nn.BatchNorm2d) or i == 0:
                continue
            before = layers[i - 1]
            repeat = 1
            if isinstance(before, nn.PixelShuffle) and i >= 2:
                repeat, before = before.upscale_factor**2, layers[i - 2]
            if isinstance(before, nn.Conv2d):
                _fold_pair(before, bn, repeat)
                container[i] = nn.Identity()
                folded += 1
    return folded


def accelerate(model: StereoJSCC, settings: InferenceConfig) -> StereoJSCC:
    """The fast path of ``model`` (in place) on the configured device and precision; with
    ``settings.fast`` false only the device and precision apply."""
    device = resolve_device(settings.device)
    model.eval().to(device)
    model.inference_dtype = resolve_precision(settings.precision, device)
    if settings.fast:
        with torch.no_grad():
            fold_batchnorm(model)
        model.memory_format = torch.channels_last
        model.to(memory_format=torch.channels_last)
        if device.type == "cpu":
            keep_freed_memory()
            if settings.event_driven and model.inference_dtype == torch.float32:
                with torch.no_grad():
                    use_event_convolutions(model, model.steps)
                model.event_driven = any(
                    isinstance(m, EventConv2d) for m in model.modules()
                )
        for module in model.modules():
            if is_neuron(module) and hasattr(module, "fast_inference"):
                module.fast_inference = True
    return model


def describe(model: StereoJSCC) -> str:
    """Where and how ``model`` runs, for a log line: ``cpu, float32, fast path``, with
    ``, event-driven`` where its spiking convolutions are."""
    device = next(model.parameters()).device
    dtype = str(model.inference_dtype).removeprefix("torch.")
    fast = model.memory_format == torch.channels_last
    path = f"{'fast' if fast else 'reference'} path"
    return f"{device}, {dtype}, {path}{', event-driven' if model.event_driven else ''}"


def load_for_inference(
    path: str | Path, settings: InferenceConfig
) -> tuple[StereoJSCC, Config]:
    """A checkpoint's model, accelerated with ``settings``, and its stored config."""
    model, cfg = load_model(path)
    return accelerate(model, settings), cfg
