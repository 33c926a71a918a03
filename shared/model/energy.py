"""Compute-only energy model of a spiking network (conventions: Horowitz, ISSCC 2014).

A layer whose input is real-valued (the image, received symbols, rates) costs one multiply-
accumulate (MAC, 4.6 pJ) per connection; a layer whose input is spikes costs one accumulate
(AC, 0.9 pJ) per spike per fan-out, i.e. its MAC count times the input firing rate times the
number of time steps over which the spikes arrive. Memory traffic is excluded.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from shared.config import ModelConfig
from shared.model.fusion import ParallaxAttention
from shared.model.registry import build_model

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


def is_binary(x: Tensor) -> bool:
    """Whether every element of ``x`` is 0 or 1. One row along the last axis is tried
    first: a real-valued input almost always fails there, without a pass over all of it
    (3 ms for the decoder's readout input at 128x256)."""
    probe = x[(0,) * (x.dim() - 1)] if x.dim() > 1 else x
    if not bool(((probe == 0) | (probe == 1)).all()):
        return False
    return bool(((x == 0) | (x == 1)).all())


@dataclass
class LayerCount:
    """Running totals of one layer: operations and the input firing rate seen."""

    macs: float = 0.0
    sops: float = 0.0
    rate_sum: float = 0.0
    calls: int = 0
    spiking_input: bool = False


@dataclass
class EnergyMeter:
    """Context manager that counts MACs and synaptic operations of every Conv2d / Linear
    (and the attention products of :class:`ParallaxAttention`) while it is active.

    Modules that read the time-mean of spikes carry ``spike_steps = T``; their input counts
    as ``T`` steps of spikes at the mean rate. A module that has counted the spikes of its
    last input (``input_events``, an event-driven convolution) is not read again.
    """

    model: nn.Module
    frames: int = 0
    layers: dict[str, LayerCount] = field(
        default_factory=lambda: defaultdict(LayerCount)
    )

    def __enter__(self) -> "EnergyMeter":
        self.spiking = (
            getattr(self.model, "cfg", None) is not None
            and self.model.cfg.kind == "snn"
        )
        self._handles = []
        for name, module in self.model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self._handles.append(
                    module.register_forward_hook(self._layer_hook(name))
                )
            elif isinstance(module, ParallaxAttention):
                self._handles.append(
                    module.register_forward_hook(self._attention_hook(name))
                )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                fan_in = (
                    module.in_channels
                    // module.groups
                    * module.kernel_size[0]
                    * module.kernel_size[1]
                )
            else:
                fan_in = module.in_features
            macs = float(output.numel()) * fan_in
            count = self.layers[name]
            steps = getattr(module, "spike_steps", 0)
            events = getattr(module, "input_events", None)
            binary = self.spiking and (events is not None or is_binary(x))
            count.calls += 1
            if steps or binary:
                rate = (
                    events / x.numel()
                    if events is not None
                    else float(x.float().mean())
                )
                count.sops += macs * rate * (steps or 1)
                count.rate_sum += rate
                count.spiking_input = True
            else:
                count.macs += macs

        return hook

    def _attention_hook(self, name: str):
        def hook(
            module: ParallaxAttention, inputs: tuple[Tensor, ...], output: Tensor
        ) -> None:
            self.layers[name + ".attention"].macs += module.last_matmul_macs
            self.layers[name + ".attention"].calls += 1

        return hook

    def summary(self) -> dict[str, object]:
        """Per-frame totals (a frame = both views), split by encoder and decoder."""
        frames = max(self.frames, 1)
        parts: dict[str, dict[str, float]] = defaultdict(
            lambda: {"macs": 0.0, "sops": 0.0}
        )
        layers = []
        for name, c in self.layers.items():
            part = "encoder" if name.startswith("encoder") else "decoder"
            parts[part]["macs"] += c.macs / frames
            parts[part]["sops"] += c.sops / frames
            layers.append(
                {
                    "layer": name,
                    "macs": c.macs / frames,
                    "sops": c.sops / frames,
                    "input_rate": c.rate_sum / c.calls if c.spiking_input else None,
                }
            )
        out: dict[str, object] = {"frames": self.frames, "layers": layers}
        total_macs = total_sops = 0.0
        for part, v in sorted(parts.items()):
            out[part] = {**v, "energy_pj": v["macs"] * E_MAC_PJ + v["sops"] * E_AC_PJ}
            total_macs += v["macs"]
            total_sops += v["sops"]
        out["macs"], out["sops"] = total_macs, total_sops
        out["energy_pj"] = total_macs * E_MAC_PJ + total_sops * E_AC_PJ
        return out


def twin_macs_per_frame(cfg: ModelConfig, height: int, width: int) -> float:
    """MACs per stereo frame of the CNN twin of a model config (``kind='cnn'``)."""
    twin = build_model(dataclasses.replace(cfg, kind="cnn")).eval()
    x = torch.rand(1, 3, height, width)
    with EnergyMeter(twin) as meter, torch.no_grad():
        twin(x, x, torch.zeros(1))
        meter.frames = 1
    return float(meter.summary()["macs"])
