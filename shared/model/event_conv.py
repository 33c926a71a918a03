"""Event-driven convolutions for the fast path: each convolution that reads spikes adds
the weights of the inputs that fired, and skips the rest.

The bundled SNN's spiking convolutions see 4-31 % of their inputs fire (docs/RESULTS.md);
oneDNN computes them densely, every zero included. :class:`EventConv2d` computes them with
the native kernels of :mod:`shared.model.native` on a CPU in float32 without autograd,
splitting the images of a batch over the kernel threads (:mod:`shared.model.kernel_threads`),
and falls back to the dense convolution everywhere else (and for an input that is not a
spike map). It is the same convolution: the sums differ from oneDNN's only in their
rounding order.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.model.blocks import SpikingConv, SpikingUpsample
from shared.model.kernel_threads import split_over_threads
from shared.model.native import spike_kernels
from shared.model.neurons import is_spiking

#: The summation orders of ``spike_order`` in spike_conv.c.
NO_ORDER, GATHER, SCATTER = 0, 1, 2


def _address(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


class EventConv2d(nn.Conv2d):
    """A ``Conv2d`` (with the pixel shuffle by ``upscale`` behind it fused in) that is
    computed event-driven on spike inputs.

    Input ``x : [N, C_in, H, W]`` in {0, 1}; output ``[N, C_out / r^2, H' r, W' r]``
    (channels-last) for ``upscale = r``, as ``pixel_shuffle(conv(x), r)``.
    Build it with :meth:`from_conv`; the weights stay shared with the original module.
    """

    upscale: int = 1
    #: Output channels the kernels compute: ``out_channels`` rounded up to whole vectors
    #: (the extra ones have zero weights and are dropped) where there is no shuffle.
    kernel_channels: int = 0
    #: The kernel's summation order (:data:`GATHER` or :data:`SCATTER`).
    order: int = NO_ORDER
    #: Weights laid out for that order (``[chunks, k, k, C_in, chunk]`` to gather,
    #: ``[C_in, k * k, C_out]`` to scatter) and the bias in the kernel's channel order;
    #: None: dense only.
    event_weight: Tensor | None = None
    event_bias: Tensor | None = None
    #: Time steps of the model whose images the batch holds (time-major): groups of
    #: consecutive steps share their weight loads (set by :func:`use_event_convolutions`).
    steps: int = 1
    #: Spikes in the last input when it ran event-driven (None after a dense run): the
    #: energy meter reads its rate from here instead of from the input again.
    input_events: int | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, upscale: int = 1) -> EventConv2d | None:
        """``conv`` as an event-driven convolution; None where the kernels are missing or
        do not fit it (groups, dilation, non-square kernel, channel count). Without a
        shuffle any channel count fits: the kernels compute it rounded up to whole
        vectors."""
        kernels = spike_kernels()
        k = conv.kernel_size[0]
        if (
            kernels is None
            or conv.groups != 1
            or conv.dilation != (1, 1)
            or conv.kernel_size != (k, k)
            or conv.stride[0] != conv.stride[1]
            or conv.padding != (k // 2, k // 2)
            or conv.padding_mode != "zeros"
            or conv.out_channels % upscale**2
        ):
            return None
        channels = conv.out_channels
        if upscale == 1:
            lanes = kernels.spike_lanes()
            channels = -(-channels // lanes) * lanes
        order = kernels.spike_order(k, conv.stride[0], channels, upscale)
        if order == NO_ORDER:
            return None
        event = cls(
            conv.in_channels,
            conv.out_channels,
            k,
            conv.stride,
            conv.padding,
            bias=False,
        )
        event.weight = conv.weight
        event.bias = conv.bias
        event.upscale, event.order, event.kernel_channels = upscale, order, channels
        run = channels // upscale  # contiguous output channels, one row
        chunk = kernels.spike_lanes() * kernels.spike_chunk_vectors(run)
        event._lay_out(order, chunk)
        return event

    @torch.no_grad()
    def _lay_out(self, order: int, chunk: int) -> None:
        """Fill :attr:`event_weight` and :attr:`event_bias` for ``order``, in chunks of
        ``chunk`` output channels (gather)."""
        r2, k = self.upscale**2, self.kernel_size[0]
        # Output channel c * r^2 + s (pixel shuffle's order) goes to s * C + c.
        channels = torch.arange(self.out_channels).reshape(-1, r2).t().reshape(-1)
        weight = self.weight.detach().float()[channels]
        bias = (
            self.bias if self.bias is not None else weight.new_zeros(self.out_channels)
        )
        extra = self.kernel_channels - self.out_channels  # zero weights, dropped
        weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, extra))
        self.event_bias = F.pad(bias.detach().float()[channels], (0, extra))
        if order == SCATTER:  # [C_in, k * k, C_out]
            self.event_weight = weight.permute(1, 2, 3, 0).contiguous()
            return
        chunks = self.kernel_channels // chunk  # GATHER: [chunks, k, k, C_in, chunk]
        self.event_weight = (
            weight.permute(2, 3, 1, 0)
            .reshape(k, k, self.in_channels, chunks, chunk)
            .permute(3, 0, 1, 2, 4)
            .contiguous()
        )

    def _lists(self, entries: int, offsets: int, groups: int) -> tuple[Tensor, ...]:
        """Scratch space for the spike lists, their offsets and the groups' spike counts
        (kept: a fresh block of this size costs a page fault per 4 KB on every call)."""
        scratch = getattr(self, "_scratch", None)
        sizes = (entries, offsets, groups)
        if scratch is None or any(t.numel() < n for t, n in zip(scratch, sizes)):
            scratch = (
                torch.empty(entries, dtype=torch.int32),
                torch.empty(offsets, dtype=torch.int64),
                torch.empty(groups, dtype=torch.int64),
            )
            self._scratch = scratch
        return scratch

    def _dense(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return F.pixel_shuffle(y, self.upscale) if self.upscale > 1 else y

    def forward(self, x: Tensor, shortcut: Tensor | None = None) -> Tensor:
        """The convolution of ``x``, plus ``shortcut`` (``[*lead, C_out, H', W']`` with
        the leading dims making up N: a residual path, added in the model's order) where
        given; the kernels add a shortcut laid out like their output as they store it."""
        self.input_events = None
        if (
            self.event_weight is None
            or torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
        ):
            return _plus(shortcut, self._dense(x))
        fused = _per_image(shortcut, x.shape[0]) if self._fits(shortcut) else None
        out = self._events(x, fused)
        if out is None:  # not a spike map
            return _plus(shortcut, self._dense(x))
        return out if fused is not None else _plus(shortcut, out)

    def _fits(self, shortcut: Tensor | None) -> bool:
        """Whether the kernels can add ``shortcut``: float32, each image's map laid out
        like their output (channels-last, no dropped channels)."""
        if shortcut is None or self.kernel_channels != self.out_channels:
            return False
        c, h, w = shortcut.shape[-3:]
        return (
            shortcut.dtype == torch.float32
            and shortcut.device.type == "cpu"
            and shortcut.stride()[-3:] == (1, w * c, c)
        )

    def _geometry(self) -> tuple[int, int, int, int]:
        """Kernel size, stride, padding and shuffle factor."""
        return self.kernel_size[0], self.stride[0], self.padding[0], self.upscale

    def _events(
        self, x: Tensor, shortcut: tuple[Tensor, Tensor] | None
    ) -> Tensor | None:
        """The event-driven convolution of ``x`` (plus ``shortcut``, a tensor and each
        image's offset into it, where given); None where ``x`` is not a spike map."""
        spikes = x.permute(0, 2, 3, 1).contiguous()
        n, h, w, c = spikes.shape
        k, stride, pad, r = self._geometry()
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        out = torch.empty(n, ho * r, wo * r, self.kernel_channels // r**2)
        if self.order == SCATTER:
            groups = [torch.arange(n, dtype=torch.int64).view(n, 1)]
        else:
            groups = step_groups(n, self.steps)
        events = 0
        for group in groups:
            fired = self._run_groups(spikes, group, out, ho, wo, shortcut)
            if fired is None:
                return None
            events += fired
        self.input_events = events
        if self.kernel_channels > self.out_channels:
            out = out[..., : self.out_channels].contiguous()
        return out.permute(0, 3, 1, 2)

    def _run_groups(
        self,
        spikes: Tensor,
        groups: Tensor,
        out: Tensor,
        ho: int,
        wo: int,
        shortcut: tuple[Tensor, Tensor] | None,
    ) -> int | None:
        """The outputs of the images of ``groups`` (``[P, G]`` image indices into
        ``spikes [N, H, W, C]``) into ``out``, plus ``shortcut`` (a tensor and each
        image's offset into it, in floats) where given, groups split over the kernel
        threads; the number of spikes in them, or None (nothing usable computed) where
        the input is not a spike map."""
        kernels = spike_kernels()
        _, h, w, c = spikes.shape
        items, size = groups.shape
        nodes = 2 * size - 1
        entries = items * (size * h * w * c + kernels.spike_slack())
        idx, first, fired = self._lists(entries, items * (nodes * h * w + 1), items)
        lists = (_address(idx), _address(first))
        weights = (_address(self.event_weight), _address(self.event_bias))
        added = (None, None) if shortcut is None else tuple(map(_address, shortcut))
        k, stride, pad, r = self._geometry()

        def run(i0: int, i1: int) -> int:
            bad = kernels.spike_index(
                _address(spikes),
                _address(groups),
                size,
                i0,
                i1,
                h * w,
                c,
                *lists,
                _address(fired),
            )
            if bad:
                return bad
            if self.order == SCATTER:
                shape = (h, w, *weights, k, stride, self.kernel_channels, r)
                kernels.spike_scatter(*lists, i0, i1, *shape, _address(out), *added)
            else:
                shape = (h, w, *weights, k, c, self.kernel_channels, stride, pad, r)
                kernels.spike_gather(
                    *lists,
                    _address(groups),
                    size,
                    i0,
                    i1,
                    *shape,
                    _address(out),
                    ho,
                    wo,
                    *added,
                )
            return 0

        if split_over_threads(run, items):
            return None
        return int(fired[:items].sum())


def _plus(shortcut: Tensor | None, out: Tensor) -> Tensor:
    """``shortcut + out`` for ``out [N, ...]`` and ``shortcut [*lead, ...]`` whose leading
    dims make up N, as ``[N, ...]``; ``out`` without a shortcut."""
    if shortcut is None:
        return out
    lead = shortcut.shape[:-3]
    return (shortcut + out.unflatten(0, lead)).flatten(0, len(lead) - 1)


def _per_image(shortcut: Tensor, images: int) -> tuple[Tensor, Tensor]:
    """``shortcut [*lead, C, H, W]`` (leading dims making up ``images``, any strides,
    zero ones of a time-expanded tensor too) and the offset of each image's map from its
    start, in floats (int64 ``[images]``)."""
    offsets = torch.zeros((), dtype=torch.int64)
    for size, stride in zip(shortcut.shape[:-3], shortcut.stride()):
        offsets = offsets[..., None] + stride * torch.arange(size, dtype=torch.int64)
    return shortcut, offsets.reshape(images)


def step_groups(images: int, steps: int) -> list[Tensor]:
    """The groups of images that gather together, each ``[P, G]`` int64 for G = 4 and
    G = 2 (those present). For a batch of ``steps`` time steps (time-major: image
    ``t * views + v``), steps ``t .. t + 3`` of each view, and steps ``t, t + 1`` for the
    last two or three (a last odd step paired with itself); a batch that does not hold
    whole steps pairs consecutive images (the last odd one with itself)."""
    if steps < 2 or images % steps:
        pairs = [(a, min(a + 1, images - 1)) for a in range(0, images, 2)]
        return [torch.tensor(pairs, dtype=torch.int64)]
    views = images // steps
    quads = steps // 4 * 4
    groups = [
        [
            [(t + j) * views + v for j in range(4)]
            for t in range(0, quads, 4)
            for v in range(views)
        ],
        [
            [t * views + v, min(t + 1, steps - 1) * views + v]
            for t in range(quads, steps, 2)
            for v in range(views)
        ],
    ]
    return [torch.tensor(g, dtype=torch.int64) for g in groups if g]


def use_event_convolutions(model: nn.Module, steps: int = 1) -> int:
    """Replace, in place, every convolution that reads a neuron's spikes (of
    :class:`SpikingConv` and :class:`SpikingUpsample`, with its pixel shuffle) by an
    :class:`EventConv2d` for batches of ``steps`` time steps (the twin's, which read
    real-valued rates, stay as they are); needs BatchNorm folded first. Output: how many
    were replaced."""
    replaced = 0
    for block in model.modules():
        if not isinstance(block, (SpikingConv, SpikingUpsample)) or not is_spiking(
            block.neuron
        ):
            continue
        layers = block.conv
        if isinstance(layers[0], EventConv2d):
            continue
        shuffle = len(layers) > 1 and isinstance(layers[1], nn.PixelShuffle)
        upscale = layers[1].upscale_factor if shuffle else 1
        event = EventConv2d.from_conv(layers[0], upscale)
        if event is None:
            continue
        event.steps = steps
        layers[0] = event
        if shuffle:
            layers[1] = nn.Identity()
        if isinstance(block, SpikingConv):
            block.shortcut_into_conv = all(
                isinstance(m, nn.Identity) for m in list(layers)[1:]
            )
        replaced += 1
    return replaced
