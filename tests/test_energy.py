"""Energy accounting: MACs for real inputs, synaptic operations for spikes."""

from __future__ import annotations

import pytest
import torch
from conftest import calibrate
from torch import nn

from shared.config import load_config
from shared.data.frames import Frame
from shared.evaluation import evaluate
from shared.model.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    EnergyMeter,
    is_binary,
    twin_macs_per_frame,
)
from shared.model.registry import build_model


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cfg = load_config("tiny").model
        self.conv = nn.Conv2d(2, 4, 3, padding=1)


def test_spike_input_costs_accumulates_at_its_rate() -> None:
    net = Wrapper()
    spikes = (torch.rand(1, 2, 10, 10) < 0.25).float()
    real = torch.rand(1, 2, 10, 10)
    with EnergyMeter(net) as meter:
        net.conv(spikes)
        net.conv(real)
    count = meter.layers["conv"]
    macs = 4 * 10 * 10 * 2 * 9
    assert count.macs == macs
    assert count.sops == pytest.approx(macs * spikes.mean().item())


def test_evaluation_reports_energy_per_frame(sample_pair) -> None:
    cfg = load_config("tiny")
    left, right = (x[..., :64, :128] for x in sample_pair)
    model = calibrate(build_model(cfg.model), left, right)
    frame = Frame(0, "kitti", left[0], right[0])
    record = evaluate(model, [frame], [5.0], model.channel)[0]
    energy = record["energy_pj_per_frame"]
    assert energy["snn"] == pytest.approx(
        energy["macs"] * E_MAC_PJ + energy["sops"] * E_AC_PJ
    )
    assert energy["sops"] > 0 and energy["cnn_twin"] > 0
    assert energy["cnn_twin"] == pytest.approx(
        twin_macs_per_frame(model.cfg, 64, 128) * E_MAC_PJ
    )
    assert 0 < record["firing_rate"] < 1


def test_a_spike_map_is_binary_and_a_real_map_is_not() -> None:
    spikes = (torch.rand(2, 8, 5, 6) < 0.3).float()
    assert is_binary(spikes.contiguous(memory_format=torch.channels_last))
    assert is_binary(torch.zeros(7))
    assert not is_binary(torch.rand(2, 8, 5, 6))
    late = spikes.clone()
    late[1, 3, 4, 2] = 0.5  # the first row is spikes; the value that is not comes later
    assert not is_binary(late)
