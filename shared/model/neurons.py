"""Spiking neurons (SpikingJelly LIF / PLIF with a fused multi-step pass) and the CNN
twin's rate activation.

SpikingJelly's ``torch`` backend runs a multi-step LIF as T single steps, each a handful of
autograd nodes; on a CPU that is most of an SNN's training time. ``backend='fused'`` runs the
whole ``[T, N, *]`` sequence in one autograd node: the forward pass is a plain loop that keeps
only the membrane potentials, and the backward pass is written out (backpropagation through
time with the surrogate gradient). It gives the same spikes and gradients as the ``torch``
backend (``tests/test_neurons.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn

from shared.config import ModelConfig
from shared.model.kernel_threads import split_over_threads
from shared.model.native import spike_kernels

#: The fewest neurons (per step) the native LIF gives one thread: smaller layers stay on
#: one thread, where handing them to another costs more than it saves.
LIF_GRAIN = 1 << 15

SURROGATES: dict[str, type[surrogate.SurrogateFunctionBase]] = {
    "atan": surrogate.ATan,
    "sigmoid": surrogate.Sigmoid,
    "erf": surrogate.Erf,
}


class _MultiStepLIF(torch.autograd.Function):
    r"""Multi-step LIF with decaying input; hard (to ``v_reset``) or soft reset.

    .. math::
        H_t = V_{t-1} + k\,(X_t - (V_{t-1} - V_{reset})),\quad
        S_t = \Theta(H_t - V_{th}),\quad
        V_t = H_t (1 - S_t) + V_{reset} S_t \;\text{(hard)}\;\text{or}\; H_t - V_{th} S_t

    with :math:`k = 1/\tau` (for soft reset :math:`V_{reset}` is 0 in the charge equation).
    """

    @staticmethod
    def forward(
        ctx,
        x_seq: Tensor,
        v0: Tensor,
        decay: Tensor,
        v_threshold: float,
        v_reset: float | None,
        detach_reset: bool,
        surrogate_grad: Callable[[Tensor, Tensor, float], Tensor],
        alpha: float,
    ) -> tuple[Tensor, Tensor]:
        k = float(decay)
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        v = v0
        for t in range(x_seq.shape[0]):
            # In place into the saved tensors; for a reset to 0 or a soft reset with
            # the torch backend's rounding of h = v + (x - (v - v_reset)) * k.
            h, spike = h_seq[t], s_seq[t]
            torch.sub(x_seq[t], v, out=h)
            if v_reset:
                h.add_(v_reset)
            h.mul_(k).add_(v)
            torch.ge(h, v_threshold, out=spike)
            if v_reset is None:
                v = torch.sub(h, spike, alpha=v_threshold)
            elif v_reset == 0.0:
                v = torch.addcmul(h, h, spike, value=-1.0)
            else:
                v = torch.where(spike.bool(), v_reset, h)
        ctx.decay_needs_grad = decay.requires_grad
        kept_x = x_seq if ctx.decay_needs_grad else x_seq.new_empty(0)
        ctx.save_for_backward(kept_x, v0, h_seq, s_seq)
        ctx.k, ctx.v_threshold, ctx.v_reset = k, v_threshold, v_reset
        ctx.detach_reset, ctx.surrogate_grad, ctx.alpha = (
            detach_reset,
            surrogate_grad,
            alpha,
        )
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s: Tensor, grad_v_last: Tensor):
        x_seq, v0, h_seq, s_seq = ctx.saved_tensors
        k, v_th, v_reset = ctx.k, ctx.v_threshold, ctx.v_reset
        reset_to = 0.0 if v_reset is None else v_reset
        grad_x = torch.empty_like(grad_s)
        grad_v = grad_v_last if grad_v_last is not None else torch.zeros_like(grad_s[0])
        grad_k = torch.zeros((), dtype=grad_s.dtype, device=grad_s.device)
        for t in range(grad_s.shape[0] - 1, -1, -1):
            h, spike = h_seq[t], s_seq[t]
            sg = ctx.surrogate_grad(torch.ones_like(h), h - v_th, ctx.alpha)
            if v_reset is None:
                dv_dh = torch.ones_like(h)
                if not ctx.detach_reset:
                    dv_dh = dv_dh - v_th * sg
            else:
                dv_dh = 1.0 - spike
                if not ctx.detach_reset:
                    dv_dh = dv_dh + (v_reset - h) * sg
            grad_h = grad_s[t] * sg + grad_v * dv_dh
            grad_x[t] = grad_h * k
            if ctx.decay_needs_grad:
                v_prev = (
                    v0
                    if t == 0
                    else _after_reset(h_seq[t - 1], s_seq[t - 1], v_th, v_reset)
                )
                grad_k = grad_k + (grad_h * (x_seq[t] - (v_prev - reset_to))).sum()
            grad_v = grad_h * (1.0 - k)
        return grad_x, None, grad_k if ctx.decay_needs_grad else None, *(None,) * 5


def lif_inference(
    x_seq: Tensor,
    v0: Tensor | float,
    decay: float,
    v_threshold: float,
    soft_reset: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The multi-step LIF of :class:`_MultiStepLIF` for inference, with a hard reset to 0
    or a soft reset: the same spikes with nothing kept for a backward pass.

    On a CPU in float32 it is one pass of the native kernel (``lif_steps`` in
    ``spike_conv.c``) over all T steps, with the training kernel's rounding; elsewhere three
    in-place passes per step (charge as one ``lerp``, compare into the spike tensor, reset
    as one multiply-add).

    Input ``x_seq : [T, N, C, H, W]`` float (any strides, a time-expanded input too),
    ``v0`` the membrane before the first step (broadcastable to ``x_seq[0]``, or one value
    for every neuron: a fresh layer's, which the native kernel writes as it goes). Output
    ``s_seq`` like ``x_seq`` in {0, 1}, each step stored channels-last (what the next
    convolution reads fastest on a CPU), the last membrane potential, and the mean firing
    rate (a 0-d tensor; the native kernel counts the spikes as it writes them).
    """
    steps, rest = x_seq.shape[0], x_seq.shape[1:]
    s_seq = torch.empty(
        (steps * rest[0], *rest[1:]),
        dtype=x_seq.dtype,
        device=x_seq.device,
        memory_format=torch.channels_last,
    ).view(x_seq.shape)
    v = torch.empty_like(s_seq[0])
    fresh = not isinstance(v0, Tensor)
    if not fresh:
        v.copy_(v0.expand_as(v))
    fired = _native_lif(
        x_seq, v, v0 if fresh else None, decay, v_threshold, soft_reset, s_seq
    )
    if fired is not None:
        return s_seq, v, torch.tensor(fired / s_seq.numel(), dtype=s_seq.dtype)
    if fresh:
        v.fill_(v0)
    for t in range(steps):
        spikes = s_seq[t]
        v.lerp_(x_seq[t], decay)
        torch.ge(v, v_threshold, out=spikes)
        if soft_reset:
            v.sub_(spikes, alpha=v_threshold)
        else:
            v.addcmul_(v, spikes, value=-1.0)
    return s_seq, v, s_seq.mean()


def _native_lif(
    x_seq: Tensor,
    v: Tensor,
    v_start: float | None,
    decay: float,
    v_threshold: float,
    soft_reset: bool,
    s_seq: Tensor,
) -> int | None:
    """:func:`lif_inference` by the native kernel, into ``v`` (from ``v_start`` at every
    neuron, or from what ``v`` holds where it is None) and ``s_seq``: the number of
    spikes; None (nothing done) unless the input is float32 on a CPU with every step laid
    out like ``v`` and the kernels are built."""
    step = x_seq[0]
    if (
        x_seq.device.type != "cpu"
        or x_seq.dtype != torch.float32
        or x_seq.dim() != 5
        or not step.is_contiguous(memory_format=torch.channels_last)
        or (x_seq.shape[0] > 1 and x_seq.stride(0) not in (0, step.numel()))
    ):
        return None
    kernels = spike_kernels()
    if kernels is None:
        return None

    steps, count = x_seq.shape[0], step.numel()
    step_stride = x_seq.stride(0) if steps > 1 else 0

    def run(begin: int, end: int) -> int:
        return kernels.lif_steps(
            step.data_ptr(),
            step_stride,
            steps,
            count,
            begin,
            end,
            v.data_ptr(),
            int(v_start is not None),
            0.0 if v_start is None else v_start,
            decay,
            v_threshold,
            int(soft_reset),
            s_seq.data_ptr(),
        )

    return split_over_threads(run, count, LIF_GRAIN)


def _after_reset(
    h: Tensor, spike: Tensor, v_threshold: float, v_reset: float | None
) -> Tensor:
    if v_reset is None:
        return h - spike * v_threshold
    return h * (1.0 - spike) + v_reset * spike


class _FusedMixin:
    """Adds ``backend='fused'`` to a SpikingJelly LIF-type node and records firing rates."""

    rate: Tensor | None = None
    #: Set by :func:`shared.model.inference.accelerate`: without autograd, run
    #: :func:`lif_inference` instead of the training kernel.
    fast_inference: bool = False

    @property
    def supported_backends(self) -> tuple[str, ...]:
        if self.step_mode == "m":
            return ("torch", "fused")
        return ("torch",)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in self.supported_backends:
            raise ValueError(
                f"backend {value!r} with step_mode {self.step_mode!r}; "
                f"allowed: {self.supported_backends}"
            )
        self._backend = value

    def _decay(self, like: Tensor) -> Tensor:
        raise NotImplementedError

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:
        rate = None
        if self.backend != "fused":
            spikes = super().multi_step_forward(x_seq)
        elif (
            self.fast_inference
            and not torch.is_grad_enabled()
            and self.v_reset in (None, 0.0)
        ):
            spikes, self.v, rate = lif_inference(
                x_seq,
                self.v,  # a float for a fresh layer
                float(self._decay(x_seq)),
                self.v_threshold,
                soft_reset=self.v_reset is None,
            )
        else:
            self.v_float_to_tensor(x_seq[0])
            sg = self.surrogate_function
            spikes, v_last = _MultiStepLIF.apply(
                x_seq,
                self.v.detach(),
                self._decay(x_seq),
                self.v_threshold,
                self.v_reset,
                self.detach_reset,
                type(sg).backward,
                sg.alpha,
            )
            self.v = v_last
        self.rate = spikes.detach().mean() if rate is None else rate
        return spikes


class FusedLIFNode(_FusedMixin, neuron.LIFNode):
    """SpikingJelly ``LIFNode`` with the extra ``'fused'`` multi-step backend."""

    def _decay(self, like: Tensor) -> Tensor:
        return torch.tensor(1.0 / self.tau, dtype=like.dtype)


class FusedParametricLIFNode(_FusedMixin, neuron.ParametricLIFNode):
    """SpikingJelly ``ParametricLIFNode`` (learnable tau) with the ``'fused'`` backend."""

    def _decay(self, like: Tensor) -> Tensor:
        return self.w.sigmoid()


def _rate_curve(x: Tensor, v_threshold: float) -> Tensor:
    """The twin's firing rate for membrane input ``x``, in [0, 1]."""
    return (x / v_threshold - 1.0).clamp(0.0, 1.0)


class _RateWithSurrogateGradient(torch.autograd.Function):
    r"""The rate curve :math:`f(x) = \mathrm{clamp}(x / V_{th} - 1, 0, 1)` with a smoothed
    gradient.

    The exact derivative is the box :math:`1 / V_{th}` on :math:`[V_{th}, 2 V_{th}]` and
    zero elsewhere: a unit below threshold or saturated gets no gradient, and once there it
    stays there. The surrogate replaces both edges of the box by the smooth step
    :math:`\sigma` of the SNN's surrogate function (its primitive),

    .. math::
        f'(x) \approx \frac{\sigma(z) - \sigma(z - 1)}{V_{th}},\quad z = x / V_{th} - 1,

    which has the box's area and, like the LIF's surrogate, tails on both sides.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        v_threshold: float,
        smooth_step: Callable[[Tensor, float], Tensor],
        alpha: float,
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.v_threshold, ctx.smooth_step, ctx.alpha = v_threshold, smooth_step, alpha
        return _rate_curve(x, v_threshold)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        z = x / ctx.v_threshold - 1.0
        step = ctx.smooth_step
        slope = (step(z, ctx.alpha) - step(z - 1.0, ctx.alpha)) / ctx.v_threshold
        return grad_out * slope, None, None, None


class RateActivation(nn.Module):
    r"""The CNN twin's stand-in for a LIF layer: its firing rate as a function of a
    constant input, :math:`f(x) = \mathrm{clamp}(x / V_{th} - 1, 0, 1)`.

    For tau = 2 and T = 4 a hard-reset LIF is silent below about :math:`1.07 V_{th}`, fires
    at rate 1/4 to 1/2 up to :math:`2 V_{th}` and at every step above it; ``f`` follows that
    curve, which keeps the twin's activations on the scale the SNN's thresholds expect, so
    its weights initialise the SNN (hybrid training).

    ``surrogate_function`` (a SpikingJelly surrogate) gives the backward pass the smoothed
    slope of :class:`_RateWithSurrogateGradient`, as the SNN's surrogate gradient does for
    its spikes; without it the gradient is the exact one of the clamp. The forward pass is
    the same either way.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
    ) -> None:
        super().__init__()
        self.v_threshold = v_threshold
        self.surrogate_function = surrogate_function
        self.rate: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        sg = self.surrogate_function
        if sg is None:
            out = _rate_curve(x, self.v_threshold)
        else:
            out = _RateWithSurrogateGradient.apply(
                x,
                self.v_threshold,
                type(sg).primitive_function,
                sg.alpha,
            )
        self.rate = out.detach().mean()
        return out

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}"


def make_neuron(cfg: ModelConfig) -> nn.Module:
    """A multi-step spiking layer (``cfg.kind == 'snn'``) or the twin's activation."""
    sg = SURROGATES[cfg.surrogate](alpha=cfg.surrogate_alpha)
    if cfg.kind == "cnn":
        smoothed = sg if cfg.twin_gradient == "surrogate" else None
        return RateActivation(cfg.v_threshold, smoothed)
    v_reset = 0.0 if cfg.reset == "hard" else None
    common = dict(
        v_threshold=cfg.v_threshold,
        v_reset=v_reset,
        surrogate_function=sg,
        detach_reset=cfg.detach_reset,
        step_mode="m",
        backend="fused",
    )
    if cfg.neuron == "plif":
        return FusedParametricLIFNode(init_tau=cfg.tau, **common)
    return FusedLIFNode(tau=cfg.tau, **common)


def is_neuron(module: nn.Module) -> bool:
    """True for the layers whose outputs are spikes (or the twin's rates)."""
    return isinstance(module, (_FusedMixin, RateActivation))


def is_spiking(module: nn.Module) -> bool:
    """True for the layers whose outputs are spikes (not the twin's rates)."""
    return isinstance(module, _FusedMixin)
