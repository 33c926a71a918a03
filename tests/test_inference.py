"""The inference fast path: folded BatchNorm, the inference LIF kernel, precision, device
and batched evaluation, each against the reference path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import synthetic_stereo
from torch import nn

from shared.assets import BUNDLED_SNN
from shared.config import InferenceConfig, load_config
from shared.data.frames import Frame
from shared.errors import ConfigError
from shared.evaluation import evaluate
from shared.model.checkpoint import load_model
from shared.model.inference import (
    accelerate,
    batch_frames,
    fold_batchnorm,
    resolve_device,
    resolve_precision,
)
from shared.model.neurons import make_neuron

CPU = InferenceConfig(device="cpu")


def random_statistics(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn


def test_batchnorm_folds_into_the_convolution_also_across_a_pixel_shuffle() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)),
        nn.Sequential(
            nn.Conv2d(8, 4 * 5, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
            random_statistics(nn.BatchNorm2d(5)),
        ),
    ).eval()
    random_statistics(model[0][1])
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 2
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model[1][2], nn.Identity)  # names kept: model.1.0 is the conv
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides", [[], ["model.reset=soft"], ["model.neuron=plif"]])
def test_inference_lif_gives_the_training_kernels_spikes(overrides) -> None:
    cfg = load_config("tiny", overrides).model
    reference, fast = make_neuron(cfg), make_neuron(cfg)
    fast.fast_inference = True
    x = 1.5 * torch.randn(4, 3, 5, 6, 7)
    expanded = x[:1].expand(4, -1, -1, -1, -1)
    # Channels-last steps, as the fast path has them: the native kernel on a CPU.
    steps = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    with torch.no_grad():
        for inputs in (x, expanded, steps, steps[:1].expand(4, -1, -1, -1, -1)):
            for _ in range(2):  # from a fresh layer, then from the membrane it left
                want = reference(inputs)
                got = fast(inputs)
                torch.testing.assert_close(got, want, rtol=0, atol=0)
                torch.testing.assert_close(fast.v, reference.v, rtol=1e-6, atol=1e-6)
                assert got[0].is_contiguous(memory_format=torch.channels_last)
            reference.reset()
            fast.reset()


def test_the_fast_kernel_leaves_training_alone() -> None:
    cfg = load_config("tiny").model
    neuron = make_neuron(cfg)
    neuron.fast_inference = True
    x = torch.randn(4, 2, 3, 4, 4, requires_grad=True)
    neuron(x + 1.0).sum().backward()  # the training kernel: a surrogate gradient
    assert x.grad is not None and x.grad.abs().sum() > 0


def mean_psnr(records: list[dict]) -> list[float]:
    return [r["psnr_db"]["mean"] for r in records]


@pytest.mark.heavy
def test_fast_path_of_the_bundled_snn_stays_within_0_05_db(sample_pair) -> None:
    """The bundled SNN on a bundled KITTI pair at 5 dB: the fast path's PSNR within
    0.05 dB of the reference path's, its energy within 0.5 %."""
    left, right = sample_pair
    frames = [Frame(0, "kitti", left[0], right[0])]
    reference, _ = load_model(BUNDLED_SNN)
    fast, _ = load_model(BUNDLED_SNN)
    accelerate(fast, CPU)
    want = evaluate(reference, frames, [5.0], reference.channel)
    got = evaluate(fast, frames, [5.0], fast.channel)
    for a, b in zip(want, got):
        assert abs(a["psnr_db"]["mean"] - b["psnr_db"]["mean"]) < 0.05
        e_ref, e_fast = a["energy_pj_per_frame"]["snn"], b["energy_pj_per_frame"]["snn"]
        assert abs(e_fast - e_ref) < 0.005 * e_ref


def tiny_frames(count: int) -> list[Frame]:
    left, right = synthetic_stereo(count, 64, 128, seed=5)
    return [Frame(i, f"f{i}", left[i], right[i]) for i in range(count)]


def test_batched_evaluation_equals_frame_by_frame(tiny_checkpoint: Path) -> None:
    model, _ = load_model(tiny_checkpoint)
    accelerate(model, dataclasses.replace(CPU, precision="float32"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    frames = tiny_frames(5)
    one = evaluate(model, frames, [0.0, 10.0], model.channel)
    batched = evaluate(model, frames, [0.0, 10.0], model.channel, batch_size=2)
    for a, b in zip(one, batched):
        assert abs(a["psnr_db"]["mean"] - b["psnr_db"]["mean"]) < 1e-4
        assert b["energy_pj_per_frame"]["snn"] == pytest.approx(
            a["energy_pj_per_frame"]["snn"], rel=1e-4
        )
        assert b["firing_rate"] == pytest.approx(a["firing_rate"], rel=1e-4)


def test_bfloat16_stays_close_to_float32(tiny_checkpoint: Path) -> None:
    frames = tiny_frames(2)
    results = {}
    for precision in ("float32", "bfloat16"):
        model, _ = load_model(tiny_checkpoint)
        accelerate(model, dataclasses.replace(CPU, precision=precision))
        results[precision] = mean_psnr(evaluate(model, frames, [10.0], model.channel))
    assert abs(results["bfloat16"][0] - results["float32"][0]) < 0.3


def test_device_and_precision_settings() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("float32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bfloat16", torch.device("cpu")) == torch.bfloat16
    amx = torch.cpu._is_amx_tile_supported()
    auto = resolve_precision("auto", torch.device("cpu"))
    assert auto == (torch.bfloat16 if amx else torch.float32)
    assert batch_frames(InferenceConfig(device="cpu")) == 1
    assert batch_frames(InferenceConfig(device="cpu", batch=6)) == 6
    with pytest.raises(ConfigError, match="infer.device"):
        load_config(None, ["infer.device=tpu"])
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="infer.device.*no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_gives_the_cpus_figures(tiny_checkpoint: Path) -> None:
    """Seeded channel draws come from CPU generators, so the frames on a GPU are the
    CPU's up to float rounding."""
    frames = tiny_frames(3)
    figures = {}
    for device in ("cpu", "cuda"):
        model, _ = load_model(tiny_checkpoint)
        settings = InferenceConfig(device=device, precision="float32")
        accelerate(model, settings)
        figures[device] = mean_psnr(
            evaluate(
                model,
                frames,
                [0.0, 10.0],
                model.channel,
                batch_size=batch_frames(settings),
            )
        )
    for cpu, gpu in zip(figures["cpu"], figures["cuda"]):
        assert abs(cpu - gpu) < 0.01
