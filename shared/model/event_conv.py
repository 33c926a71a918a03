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
    #: The kernel's summation order (:data:`GATHER` or :data:`SCATTER`).
    order: int = NO_ORDER
    #: Weights laid out for that order (``[chunks, k, k, C_in, chunk]`` to gather,
    #: ``[C_in, k * k, C_out]`` to scatter) and the bias in the kernel's channel order;
    #: None: dense only.
    event_weight: Tensor | None = None
    event_bias: Tensor | None = None
    #: Time steps of the model whose images the batch holds (time-major): pairs of
    #: consecutive steps share their weight loads (set by :func:`use_event_convolutions`).
    steps: int = 1
    #: Spikes in the last input when it ran event-driven (None after a dense run): the
    #: energy meter reads its rate from here instead of from the input again.
    input_events: int | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, upscale: int = 1) -> EventConv2d | None:
        """``conv`` as an event-driven convolution; None where the kernels are missing or
        do not fit it (groups, dilation, non-square kernel, channel count)."""
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
        order = kernels.spike_order(k, conv.stride[0], conv.out_channels, upscale)
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
        event.upscale, event.order = upscale, order
        run = conv.out_channels // upscale  # contiguous output channels, one row
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
        self.event_bias = bias.detach().float()[channels].contiguous()
        if order == SCATTER:  # [C_in, k * k, C_out]
            self.event_weight = weight.permute(1, 2, 3, 0).contiguous()
            return
        chunks = self.out_channels // chunk  # GATHER: [chunks, k, k, C_in, chunk]
        self.event_weight = (
            weight.permute(2, 3, 1, 0)
            .reshape(k, k, self.in_channels, chunks, chunk)
            .permute(3, 0, 1, 2, 4)
            .contiguous()
        )

    def _lists(self, entries: int, offsets: int) -> tuple[Tensor, Tensor]:
        """Scratch space for the spike lists (kept: a fresh block of this size costs a
        page fault per 4 KB on every call)."""
        scratch = getattr(self, "_scratch", None)
        if (
            scratch is None
            or scratch[0].numel() < entries
            or scratch[1].numel() < offsets
        ):
            scratch = (
                torch.empty(entries, dtype=torch.int32),
                torch.empty(offsets, dtype=torch.int64),
            )
            self._scratch = scratch
        return scratch

    def _dense(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return F.pixel_shuffle(y, self.upscale) if self.upscale > 1 else y

    def forward(self, x: Tensor) -> Tensor:
        self.input_events = None
        if (
            self.event_weight is None
            or torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
        ):
            return self._dense(x)
        return self._events(x)

    def _events(self, x: Tensor) -> Tensor:
        kernels = spike_kernels()
        spikes = x.permute(0, 2, 3, 1).contiguous()
        n, h, w, c = spikes.shape
        k, stride, pad, r = (
            self.kernel_size[0],
            self.stride[0],
            self.padding[0],
            self.upscale,
        )
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        out = torch.empty(n, ho * r, wo * r, self.out_channels // r**2)
        weights = (_address(self.event_weight), _address(self.event_bias))
        scatter = self.order == SCATTER
        pairs = None if scatter else step_pairs(n, self.steps)
        items = n if scatter else pairs.shape[0]
        per_item = 1 if scatter else 2  # images in a work item
        entries = items * (per_item * h * w * c + kernels.spike_slack())
        offsets = items * (per_item * 2 - 1) * h * w + items
        idx, first = self._lists(entries, offsets)
        lists = (_address(idx), _address(first))

        def run(i0: int, i1: int) -> int:
            if scatter:
                bad = kernels.spike_index(_address(spikes), i0, i1, h * w, c, *lists)
                if not bad:
                    at = (
                        h,
                        w,
                        *weights,
                        k,
                        stride,
                        self.out_channels,
                        r,
                        _address(out),
                    )
                    kernels.spike_scatter(*lists, i0, i1, *at)
                return bad
            bad = kernels.spike_index_pairs(
                _address(spikes), _address(pairs), i0, i1, h * w, c, *lists
            )
            if not bad:
                at = (h, w, *weights, k, c, self.out_channels, stride, pad, r)
                kernels.spike_gather(
                    *lists, _address(pairs), i0, i1, *at, _address(out), ho, wo
                )
            return bad

        if split_over_threads(run, items):
            return self._dense(x)
        self.input_events = _count_events(first[:offsets], items, pairs)
        return out.permute(0, 3, 1, 2)


def step_pairs(images: int, steps: int) -> Tensor:
    """The image pairs that gather together, ``[P, 2]`` int64: for a batch of ``steps``
    time steps (time-major: image ``t * views + v``), steps ``t`` and ``t + 1`` of each
    view; a last odd step, or a batch that does not hold whole steps, pairs consecutive
    images and the last odd one with itself."""
    if steps > 1 and images % steps == 0:
        views = images // steps
        first = [t * views + v for t in range(0, steps, 2) for v in range(views)]
        pairs = [(a, a + views if a + views < images else a) for a in first]
    else:
        pairs = [(a, min(a + 1, images - 1)) for a in range(0, images, 2)]
    return torch.tensor(pairs, dtype=torch.int64)


def _count_events(first: Tensor, items: int, pairs: Tensor | None) -> int:
    """Spikes in the spike lists of ``items`` images or pairs whose offsets are ``first``:
    per image (``pairs`` None), the length of its lists; per pair of distinct images, the
    shared list twice and the others once (an image paired with itself has only the
    shared list)."""
    if pairs is None:
        per_image = first.view(items, -1)
        return int((per_image[:, -1] - per_image[:, 0]).sum())
    lists = first.view(items, -1)
    lengths = (lists[:, 1:] - lists[:, :-1]).view(items, -1, 3).sum(dim=1)
    distinct = (pairs[:, 0] != pairs[:, 1]).to(lengths.dtype)
    return int((lengths[:, 0] * (1 + distinct) + lengths[:, 1] + lengths[:, 2]).sum())


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
        replaced += 1
    return replaced
