"""The fused LIF backend against SpikingJelly's reference, and the twin's activation."""

from __future__ import annotations

import itertools

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from shared.config import ModelConfig
from shared.model.neurons import (
    FusedLIFNode,
    FusedParametricLIFNode,
    RateActivation,
    make_neuron,
)


@pytest.mark.parametrize(
    "v_reset, detach, kind, sg",
    list(
        itertools.product(
            [0.0, None], [True, False], ["lif", "plif"], ["atan", "sigmoid"]
        )
    ),
)
def test_fused_equals_the_torch_backend(v_reset, detach, kind, sg) -> None:
    surrogate_fn = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}[sg]
    kw = dict(v_reset=v_reset, detach_reset=detach, step_mode="m")
    if kind == "lif":
        ref = neuron.LIFNode(tau=2.0, surrogate_function=surrogate_fn(), **kw)
        fused = FusedLIFNode(
            tau=2.0, surrogate_function=surrogate_fn(), backend="fused", **kw
        )
    else:
        ref = neuron.ParametricLIFNode(
            init_tau=3.0, surrogate_function=surrogate_fn(), **kw
        )
        fused = FusedParametricLIFNode(
            init_tau=3.0, surrogate_function=surrogate_fn(), backend="fused", **kw
        )
    x = (torch.randn(6, 4, 33, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    weights = torch.randn(6, 4, 33, dtype=torch.float64)
    out_ref = ref(x)
    (out_ref * weights).sum().backward()
    grad_ref = x.grad.clone()
    x.grad = None
    out = fused(x)
    (out * weights).sum().backward()
    assert torch.equal(out, out_ref)
    assert torch.allclose(x.grad, grad_ref, atol=1e-12)
    assert torch.allclose(fused.v, ref.v)
    if kind == "plif":
        assert ref.w.grad.abs().item() > 0
        assert torch.allclose(fused.w.grad, ref.w.grad, atol=1e-10)


def test_multi_step_equals_single_step() -> None:
    cfg = ModelConfig()
    multi = make_neuron(cfg)
    single = neuron.LIFNode(
        tau=cfg.tau, surrogate_function=surrogate.ATan(), step_mode="s"
    )
    x = torch.randn(5, 2, 16) + 1.0
    expected = torch.stack([single(x[t]) for t in range(5)])
    assert torch.equal(multi(x), expected)
    assert multi.rate.item() == pytest.approx(expected.mean().item())
    functional.reset_net(multi)
    assert multi.v == 0.0


def test_state_carries_over_between_calls_until_reset() -> None:
    node = make_neuron(ModelConfig())
    x = torch.full((2, 1, 3), 1.2)  # fires only at the third step overall
    first = node(x)
    second = node(x)  # membrane potential continues from the last step
    assert not torch.equal(first, second)
    functional.reset_net(node)
    assert torch.equal(node(x), first)


def test_rate_activation_follows_the_lif_rate_curve() -> None:
    act = RateActivation(v_threshold=1.0)
    x = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0])
    assert act(x).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert isinstance(make_neuron(ModelConfig(kind="cnn")), RateActivation)


def _rate_slope(act: RateActivation, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    out = act(x)
    out.sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("sg", ["atan", "sigmoid", "erf"])
def test_twin_surrogate_gradient_keeps_the_forward_and_reaches_idle_units(
    sg: str,
) -> None:
    exact = make_neuron(ModelConfig(kind="cnn", twin_gradient="exact"))
    smoothed = make_neuron(
        ModelConfig(kind="cnn", twin_gradient="surrogate", surrogate=sg)
    )
    x = torch.tensor([0.5, 0.95, 1.5, 2.05, 2.5])
    out_exact, slope_exact = _rate_slope(exact, x)
    out_smoothed, slope_smoothed = _rate_slope(smoothed, x)
    assert torch.equal(out_exact, out_smoothed)
    assert slope_exact.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    # silent (x < V_th) and saturated (x > 2 V_th) units still get gradient
    assert (slope_smoothed > 0).all()
    assert slope_smoothed[2] == slope_smoothed.max()


def test_twin_surrogate_slope_has_the_area_of_the_exact_slope() -> None:
    x = torch.linspace(-20.0, 20.0, 40001, dtype=torch.float64)
    for twin_gradient in ("exact", "surrogate"):
        act = make_neuron(
            ModelConfig(
                kind="cnn",
                v_threshold=0.5,
                surrogate="sigmoid",
                surrogate_alpha=4.0,
                twin_gradient=twin_gradient,
            )
        )
        _, slope = _rate_slope(act, x)
        area = torch.trapezoid(slope, x).item()
        assert area == pytest.approx(1.0, abs=1e-3)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        FusedLIFNode(step_mode="s", backend="fused")
