"""What each hop of the link sends, built and checked in one place.

==================  ===========================================================
transmitter -> ch   ``data``: one view's latent, ``counts`` (|u1, [C, h, w], values
                    0..T) or ``spikes`` (|u1 bit-packed, [T, C, h, w]); meta: latent mode,
                    T, image and original size, frame name, encoder rate / energy.
channel -> rx       ``data``: received block ``y`` (<c8 [n], or <f4 [L] for bit
                    channels), ``h`` (<c8, only with perfect CSI), ``latent_shape``;
                    meta: the transmitter's meta plus the channel settings used.
transmitter -> rx   ``data`` on the reference socket: the view itself (|u1 when 8 bits
                    hold it exactly, else <f4), for measurement only; it never passes
                    through the channel.
any -> next         ``eos`` (meta ``frames_sent``), ``hb`` when idle.
control (REQ/REP)   ``ctrl`` meta ``cmd`` = ``set`` | ``stats`` | ``stop``.
==================  ===========================================================

Parsing raises :class:`ProtocolError` (a :class:`WireError` of kind ``protocol``) for a
well-formed message whose content does not make sense for the hop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from shared.channel.modulation import LATENT_MODES
from shared.channel.wireless import ChannelUse
from shared.config import ChannelConfig, ConfigError, section_from_dict
from shared.wire import Message, WireError

LEFT, RIGHT = 0, 1

#: Channel settings as message meta and control fields: field name -> ChannelConfig key.
CHANNEL_FIELDS = {
    "snr_db": "snr_db",
    "channel": "kind",
    "csi": "csi",
    "equalizer": "equalizer",
    "rician_k": "rician_k",
    "flip_prob": "flip_prob",
    "erasure_prob": "erasure_prob",
    "seed": "seed",
}

#: What the transmitter says about each view (it travels on to the receiver): name -> type.
SOURCE_META: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "height": int,
    "width": int,
    "orig_height": int,
    "orig_width": int,
    "enc_rate_sum": (int, float),
    "enc_layers": int,
    "enc_energy_pj": (int, float),
    "model_kind": str,
}


class ProtocolError(WireError):
    """A valid frame with content that does not fit the hop."""

    def __init__(self, detail: str) -> None:
        super().__init__("protocol", detail)


def _require(
    meta: Mapping[str, object], name: str, kind: type | tuple[type, ...]
) -> object:
    value = meta.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"meta {name!r} missing or not {kind}")
    return value


def _latent_mode(meta: Mapping[str, object]) -> tuple[str, int]:
    """The latent mode and T that a view's meta declares."""
    mode = meta.get("latent")
    if mode not in LATENT_MODES:
        raise ProtocolError(f"latent mode {mode!r}, allowed {LATENT_MODES}")
    steps = _require(meta, "time_steps", int)
    if not 1 <= steps <= 255:
        raise ProtocolError(f"time_steps {steps} outside 1..255")
    return mode, steps


def _check_source_meta(meta: Mapping[str, object]) -> None:
    for name, kind in SOURCE_META.items():
        _require(meta, name, kind)
    for side in ("height", "width"):
        if not 1 <= meta[f"orig_{side}"] <= meta[side]:
            raise ProtocolError(
                f"meta orig_{side} {meta[f'orig_{side}']} is not in 1..{side} "
                f"{meta[side]}"
            )


def describe_channel(cfg: ChannelConfig) -> dict[str, object]:
    """Channel settings as message meta (field names of :data:`CHANNEL_FIELDS`)."""
    return {name: getattr(cfg, key) for name, key in CHANNEL_FIELDS.items()}


def channel_config_from_meta(meta: Mapping[str, object]) -> ChannelConfig:
    """The settings a channel message was sent with, checked like a config section."""
    missing = [name for name in CHANNEL_FIELDS if name not in meta]
    if missing:
        raise ProtocolError(f"meta {missing[0]!r} missing")
    try:
        return section_from_dict(
            ChannelConfig,
            {key: meta[name] for name, key in CHANNEL_FIELDS.items()},
            "channel",
        )
    except ConfigError as exc:
        raise ProtocolError(f"channel settings: {exc}") from None


# ------------------------------------------------------------------ transmitter -> channel


def latent_message(
    stream: int,
    seq: int,
    view: int,
    latent: np.ndarray,
    mode: str,
    time_steps: int,
    meta: Mapping[str, object],
) -> tuple[Message, set[str]]:
    """One view's latent; returns the message and the names of arrays to bit-pack."""
    name = "counts" if mode == "count_pam" else "spikes"
    msg = Message(
        type="data",
        stream=stream,
        seq=seq,
        view=view,
        t_send=time.time(),
        meta={"latent": mode, "time_steps": time_steps, **meta},
        arrays={name: latent},
    )
    return msg, {"spikes"}


def parse_latent(msg: Message) -> tuple[Tensor, str, int]:
    """The latent of a transmitter message as ``[1, ...]`` uint8, its mode and T."""
    mode, steps = _latent_mode(msg.meta)
    if msg.view not in (LEFT, RIGHT):
        raise ProtocolError(f"view {msg.view} is not left (0) or right (1)")
    _check_source_meta(msg.meta)
    name, ndim, top = ("counts", 3, steps) if mode == "count_pam" else ("spikes", 4, 1)
    arr = msg.arrays.get(name)
    if arr is None or set(msg.arrays) != {name}:
        raise ProtocolError(f"a {mode} message carries exactly one array {name!r}")
    if arr.dtype != np.uint8 or arr.ndim != ndim or (arr.size and arr.max() > top):
        raise ProtocolError(
            f"array {name!r}: need uint8 of {ndim} dims with values "
            f"0..{top}, got {arr.dtype} {arr.shape}"
        )
    if mode == "spike_bpsk" and arr.shape[0] != steps:
        raise ProtocolError(f"spikes: {arr.shape[0]} time steps, meta says {steps}")
    if arr.size == 0 or arr.size % 2:
        raise ProtocolError(
            f"array {name!r}: an even, non-zero number of values is needed"
        )
    return torch.from_numpy(arr)[None], mode, steps


# ------------------------------------------------------------------ channel -> receiver


def channel_message(
    source: Message,
    use: ChannelUse,
    latent_shape: tuple[int, ...],
    settings: Mapping[str, object],
) -> Message:
    """The received block of one view, with what the receiver needs to demodulate."""
    arrays = {
        "y": use.y[0].detach().cpu().numpy(),
        "latent_shape": np.asarray(latent_shape, dtype="<i4"),
    }
    if use.h is not None:
        arrays["h"] = use.h[0].detach().cpu().numpy().astype(np.complex64)
    meta = {
        **source.meta,
        **settings,
        "noise_var": float(use.noise_var[0]),
        "t_tx": source.t_send,
    }
    return Message(
        type="data",
        stream=source.stream,
        seq=source.seq,
        view=source.view,
        t_send=time.time(),
        meta=meta,
        arrays=arrays,
    )


def parse_channel(
    msg: Message,
) -> tuple[ChannelUse, tuple[int, ...], dict[str, object], ChannelConfig]:
    """Channel output of one view: ``ChannelUse`` with batch 1, latent shape, meta and the
    channel settings it went through."""
    if msg.view not in (LEFT, RIGHT):
        raise ProtocolError(f"view {msg.view} is not left (0) or right (1)")
    _latent_mode(msg.meta)
    _require(msg.meta, "t_tx", (int, float))
    _check_source_meta(msg.meta)
    settings = channel_config_from_meta(msg.meta)
    y, shape = msg.arrays.get("y"), msg.arrays.get("latent_shape")
    if y is None or shape is None or y.ndim != 1 or shape.ndim != 1:
        raise ProtocolError("arrays 'y' and 'latent_shape' (1-D) are required")
    if y.dtype not in (np.complex64, np.float32):
        raise ProtocolError(f"'y' has dtype {y.dtype}, need complex64 or float32")
    if (shape < 1).any():
        raise ProtocolError(f"latent_shape {shape.tolist()} has non-positive sizes")
    values = int(np.prod(shape))
    per_symbol = 2 if y.dtype == np.complex64 else 1
    if y.size * per_symbol != values:
        raise ProtocolError(
            f"'y' holds {y.size * per_symbol} values, latent_shape "
            f"{shape.tolist()} needs {values}"
        )
    h = msg.arrays.get("h")
    if h is not None and (
        h.dtype != np.complex64 or h.ndim != 1 or h.size not in (1, y.size)
    ):
        raise ProtocolError("'h' must be complex64 of size 1 or len(y)")
    noise_var = _require(msg.meta, "noise_var", float)
    if not noise_var > 0:
        raise ProtocolError(f"noise_var {noise_var} is not positive")
    use = ChannelUse(
        y=torch.from_numpy(y)[None],
        noise_var=torch.tensor([noise_var], dtype=torch.float32),
        h=None if h is None else torch.from_numpy(h)[None],
    )
    return use, tuple(int(s) for s in shape), dict(msg.meta), settings


# ------------------------------------------------------------------ transmitter -> receiver


def reference_message(
    stream: int, seq: int, view: int, image: Tensor, meta: Mapping[str, object]
) -> Message:
    """A view for measurement: uint8 when that is exact, float32 otherwise."""
    scaled = image * 255.0
    exact = torch.equal(scaled.round(), scaled)
    arr = (scaled.round().to(torch.uint8) if exact else image.float()).cpu().numpy()
    return Message(
        type="data",
        stream=stream,
        seq=seq,
        view=view,
        t_send=time.time(),
        meta=dict(meta),
        arrays={"image": arr},
    )


def parse_reference(msg: Message) -> Tensor:
    """The reference view as float ``[3, H, W]`` in [0, 1]."""
    image = msg.arrays.get("image")
    if (
        image is None
        or image.ndim != 3
        or image.shape[0] != 3
        or msg.view not in (0, 1)
    ):
        raise ProtocolError("a reference carries 'image' of shape [3, H, W] and a view")
    if image.dtype == np.uint8:
        return torch.from_numpy(image).float() / 255.0
    if image.dtype != np.float32 or image.min() < 0 or image.max() > 1:
        raise ProtocolError("reference 'image' must be uint8 or float32 in [0, 1]")
    return torch.from_numpy(image)


# ------------------------------------------------------------------ control and markers


def eos_message(stream: int, frames_sent: int) -> Message:
    return Message(
        type="eos",
        stream=stream,
        seq=frames_sent,
        t_send=time.time(),
        meta={"frames_sent": frames_sent},
    )


def parse_eos(msg: Message) -> int:
    """The number of frames an end-of-stream marker says were sent."""
    frames_sent = _require(msg.meta, "frames_sent", int)
    if frames_sent < 0:
        raise ProtocolError(f"frames_sent {frames_sent} is negative")
    return frames_sent


def heartbeat(stream: int) -> Message:
    return Message(type="hb", stream=stream, t_send=time.time())


def control_message(cmd: str, **fields: object) -> Message:
    return Message(type="ctrl", t_send=time.time(), meta={"cmd": cmd, **fields})
