"""What each hop of the link carries: typed messages, built and checked in one place.

==================  ===========================================================
transmitter -> ch   :class:`LatentView`: one view's latent in its code's wire form
                    (``counts`` |u1 [C, h, w], or ``spikes`` |u1 bit-packed [T, C, h, w]),
                    the frame's :class:`SourceInfo` and the encoder's
                    :class:`~shared.measure.activity.Activity` (measurement only).
channel -> rx       :class:`ChannelView`: the received block (``y`` <c8 [n], or <f4 [L]
                    for bit channels), ``h`` (<c8, only with perfect CSI) and the latent
                    shape, with the same source and activity and the channel settings used.
transmitter -> rx   :class:`ReferenceView` on the reference socket: the view itself (|u1
                    when 8 bits hold it exactly, else <f4), for measurement only; it never
                    passes through the channel.
any -> next         :class:`EndOfStream` (frames sent), :class:`Heartbeat` when idle.
control (REQ/REP)   :class:`SetRequest` | :class:`StatsRequest` | :class:`StopRequest`,
                    answered by a :class:`ControlReply`.
==================  ===========================================================

Each class encodes itself into one wire frame (``encode``) and is read back, from the
decoded :class:`~shared.wire.Message`, by the ``read_*`` function of the socket it
arrives on. Reading raises
:class:`~shared.errors.ProtocolError` for a well-formed message whose content does not fit
the hop; :mod:`shared.wire` has already rejected anything malformed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from shared.channel.wireless import ChannelUse, WirelessChannel
from shared.config import ChannelConfig, section_from_dict
from shared.errors import ConfigError, ProtocolError
from shared.latent import LatentCode, latent_code
from shared.measure.activity import Activity
from shared.wire import Message, Scalar, encode_message

LEFT, RIGHT = 0, 1
VIEWS = (LEFT, RIGHT)

#: Channel settings as message meta and control fields: field name -> ChannelConfig key.
CHANNEL_FIELDS = {
    "snr_db": "snr_db",
    "channel": "kind",
    "csi": "csi",
    "equalizer": "equalizer",
    "rician_k": "rician_k",
    "flip_prob": "flip_prob",
    "erasure_prob": "erasure_prob",
    "tdl_model": "tdl_model",
    "delay_spread_ns": "delay_spread_ns",
    "speed_mps": "speed_mps",
    "subcarriers": "subcarriers",
    "subcarrier_spacing_khz": "subcarrier_spacing_khz",
    "carrier_ghz": "carrier_ghz",
    "pilot_subcarrier_step": "pilot_subcarrier_step",
    "pilot_symbol_step": "pilot_symbol_step",
    "pilot_interpolation": "pilot_interpolation",
    "seed": "seed",
}

Number = (int, float)


def _require(
    meta: Mapping[str, object], name: str, kind: type | tuple[type, ...]
) -> object:
    value = meta.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"meta {name!r} missing or not {kind}")
    return value


def _check_view(view: int) -> int:
    if view not in VIEWS:
        raise ProtocolError(f"view {view} is not left (0) or right (1)")
    return view


def _reject_other_types(msg: Message, allowed: tuple[str, ...], hop: str) -> None:
    if msg.type not in allowed:
        raise ProtocolError(f"a {msg.type!r} message on the {hop} socket")


# ------------------------------------------------------------------ what a view carries


@dataclass(frozen=True)
class SourceInfo:
    """What the transmitter says about a view's frame; it travels on to the receiver.

    name : the frame's name (its pair's)
    height, width : size of the coded image, a multiple of the model stride
    orig_height, orig_width : size of the original view inside it (native-size frames
        are padded; evaluation crops are not)
    """

    name: str
    height: int
    width: int
    orig_height: int
    orig_width: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def orig_size(self) -> tuple[int, int]:
        return self.orig_height, self.orig_width

    def meta(self) -> dict[str, Scalar]:
        return {
            "name": self.name,
            "height": self.height,
            "width": self.width,
            "orig_height": self.orig_height,
            "orig_width": self.orig_width,
        }

    @staticmethod
    def read(meta: Mapping[str, object]) -> SourceInfo:
        info = SourceInfo(
            _require(meta, "name", str),
            _require(meta, "height", int),
            _require(meta, "width", int),
            _require(meta, "orig_height", int),
            _require(meta, "orig_width", int),
        )
        for side in ("height", "width"):
            orig, coded = getattr(info, f"orig_{side}"), getattr(info, side)
            if not 1 <= orig <= coded:
                raise ProtocolError(
                    f"meta orig_{side} {orig} is not in 1..{side} {coded}"
                )
        return info


def _view_meta(
    code: LatentCode, source: SourceInfo, kind: str, activity: Activity
) -> dict[str, Scalar]:
    """What a view's message says of itself on both hops: code, source and activity."""
    return {
        "latent": code.name,
        "time_steps": code.time_steps,
        **source.meta(),
        "model_kind": kind,
        "enc_energy_pj": activity.energy_pj,
        "enc_rate_sum": activity.rate_sum,
        "enc_layers": activity.layers,
    }


def _read_activity(meta: Mapping[str, object]) -> tuple[str, Activity]:
    """The model kind and the encoder's activity that a view's meta declares."""
    return _require(meta, "model_kind", str), Activity(
        float(_require(meta, "enc_energy_pj", Number)),
        float(_require(meta, "enc_rate_sum", Number)),
        _require(meta, "enc_layers", int),
    )


def _read_code(meta: Mapping[str, object]) -> LatentCode:
    """The latent code and T that a view's meta declares."""
    steps = _require(meta, "time_steps", int)
    if not 1 <= steps <= 255:
        raise ProtocolError(f"time_steps {steps} outside 1..255")
    try:
        return latent_code(_require(meta, "latent", str), steps)
    except ConfigError as exc:
        raise ProtocolError(f"latent mode: {exc}") from None


def channel_meta(cfg: ChannelConfig) -> dict[str, Scalar]:
    """Channel settings as message meta and control fields (:data:`CHANNEL_FIELDS`)."""
    return {name: getattr(cfg, key) for name, key in CHANNEL_FIELDS.items()}


def _read_settings(meta: Mapping[str, object]) -> ChannelConfig:
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


@dataclass(frozen=True)
class LatentView:
    """One view's latent as the transmitter sends it.

    latent : [*shape] uint8 numpy array, the code's latent of the view
    model_kind : 'snn' or 'cnn', the transmitter's model
    activity : the encoder's work on the frame (both views), measurement only
    """

    stream: int
    seq: int
    view: int
    code: LatentCode
    latent: np.ndarray
    source: SourceInfo
    model_kind: str
    activity: Activity
    t_sent: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        """The wire frame; a bit code's spikes travel bit-packed."""
        msg = Message(
            type="data",
            stream=self.stream,
            seq=self.seq,
            view=self.view,
            t_send=self.t_sent,
            meta=_view_meta(self.code, self.source, self.model_kind, self.activity),
            arrays=self.code.to_wire(self.latent),
        )
        packed = {self.code.wire_array} if self.code.bit_packed else set()
        return encode_message(msg, packed)

    @staticmethod
    def read(msg: Message) -> LatentView:
        code = _read_code(msg.meta)
        view = _check_view(msg.view)
        source = SourceInfo.read(msg.meta)
        kind, activity = _read_activity(msg.meta)
        latent = code.from_wire(msg.arrays)
        return LatentView(
            msg.stream, msg.seq, view, code, latent, source, kind, activity, msg.t_send
        )


# ------------------------------------------------------------------ channel -> receiver


@dataclass(frozen=True)
class ChannelView:
    """One view as the channel delivers it: the block that left the channel (batch 1)
    with everything the receiver needs to demodulate and decode it.

    t_tx : when the transmitter sent the view (seconds since the epoch), for latency
    """

    stream: int
    seq: int
    view: int
    code: LatentCode
    latent_shape: tuple[int, ...]
    source: SourceInfo
    model_kind: str
    activity: Activity
    settings: ChannelConfig
    use: ChannelUse
    t_tx: float
    t_sent: float = field(default_factory=time.time)

    @staticmethod
    def after(
        sent: LatentView, use: ChannelUse, settings: ChannelConfig
    ) -> ChannelView:
        """What the channel sends on for ``sent``, which it passed through ``settings``."""
        return ChannelView(
            sent.stream,
            sent.seq,
            sent.view,
            sent.code,
            tuple(sent.latent.shape),
            sent.source,
            sent.model_kind,
            sent.activity,
            settings,
            use,
            sent.t_sent,
        )

    def encode(self) -> bytes:
        arrays = {
            "y": self.use.y[0].detach().cpu().numpy(),
            "latent_shape": np.asarray(self.latent_shape, dtype="<i4"),
        }
        if self.use.h is not None:
            arrays["h"] = self.use.h[0].detach().cpu().numpy().astype(np.complex64)
        msg = Message(
            type="data",
            stream=self.stream,
            seq=self.seq,
            view=self.view,
            t_send=self.t_sent,
            meta={
                **_view_meta(self.code, self.source, self.model_kind, self.activity),
                **channel_meta(self.settings),
                "noise_var": float(self.use.noise_var[0]),
                "t_tx": self.t_tx,
            },
            arrays=arrays,
        )
        return encode_message(msg)

    @staticmethod
    def read(msg: Message) -> ChannelView:
        view, code = _check_view(msg.view), _read_code(msg.meta)
        t_tx = float(_require(msg.meta, "t_tx", Number))
        source, (kind, activity) = SourceInfo.read(msg.meta), _read_activity(msg.meta)
        settings = _read_settings(msg.meta)
        y, shape = msg.arrays.get("y"), msg.arrays.get("latent_shape")
        if y is None or shape is None or y.ndim != 1 or shape.ndim != 1:
            raise ProtocolError("arrays 'y' and 'latent_shape' (1-D) are required")
        if y.dtype not in (np.complex64, np.float32):
            raise ProtocolError(f"'y' has dtype {y.dtype}, need complex64 or float32")
        if shape.dtype != np.int32 or (shape < 1).any():
            raise ProtocolError(
                f"latent_shape {shape.tolist()} is not int32 of positive sizes"
            )
        values = int(np.prod(shape.astype(np.int64)))
        per_symbol = 2 if y.dtype == np.complex64 else 1
        try:
            channel = WirelessChannel.for_code(settings, code)
        except ConfigError as exc:
            raise ProtocolError(f"channel settings: {exc}") from None
        symbols = channel.channel_uses(values // per_symbol)
        if values % per_symbol or y.size != symbols:
            raise ProtocolError(
                f"'y' holds {y.size} symbols, latent_shape {shape.tolist()} needs "
                f"{symbols} on channel {settings.kind!r} with {settings.csi} CSI"
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
        return ChannelView(
            msg.stream,
            msg.seq,
            view,
            code,
            tuple(int(s) for s in shape),
            source,
            kind,
            activity,
            settings,
            use,
            t_tx,
            msg.t_send,
        )


# ------------------------------------------------------------------ transmitter -> receiver


@dataclass(frozen=True)
class ReferenceView:
    """A view for measurement: ``image [3, H, W]`` float in [0, 1]."""

    stream: int
    seq: int
    view: int
    image: Tensor

    def encode(self) -> bytes:
        """uint8 on the wire when that is exact, float32 otherwise."""
        scaled = self.image * 255.0
        exact = torch.equal(scaled.round(), scaled)
        image = scaled.round().to(torch.uint8) if exact else self.image.float()
        msg = Message(
            type="data",
            stream=self.stream,
            seq=self.seq,
            view=self.view,
            t_send=time.time(),
            arrays={"image": image.cpu().numpy()},
        )
        return encode_message(msg)

    @staticmethod
    def read(msg: Message) -> ReferenceView:
        image = msg.arrays.get("image")
        if image is None or image.ndim != 3 or image.shape[0] != 3 or not image.size:
            raise ProtocolError(
                "a reference carries 'image' of shape [3, H, W], H, W > 0"
            )
        view = _check_view(msg.view)
        if image.dtype == np.uint8:
            return ReferenceView(
                msg.stream, msg.seq, view, torch.from_numpy(image).float() / 255.0
            )
        if image.dtype != np.float32 or image.min() < 0 or image.max() > 1:
            raise ProtocolError("reference 'image' must be uint8 or float32 in [0, 1]")
        return ReferenceView(msg.stream, msg.seq, view, torch.from_numpy(image))


# ------------------------------------------------------------------ markers


@dataclass(frozen=True)
class EndOfStream:
    """The last message of a stream: how many frames the transmitter sent."""

    stream: int
    frames_sent: int

    def encode(self) -> bytes:
        msg = Message(
            type="eos",
            stream=self.stream,
            seq=self.frames_sent,
            t_send=time.time(),
            meta={"frames_sent": self.frames_sent},
        )
        return encode_message(msg)

    @staticmethod
    def read(msg: Message) -> EndOfStream:
        frames_sent = _require(msg.meta, "frames_sent", int)
        if frames_sent < 0:
            raise ProtocolError(f"frames_sent {frames_sent} is negative")
        return EndOfStream(msg.stream, frames_sent)


@dataclass(frozen=True)
class Heartbeat:
    """Sent by the channel when it has had nothing to send for a while."""

    stream: int

    def encode(self) -> bytes:
        return encode_message(
            Message(type="hb", stream=self.stream, t_send=time.time())
        )


def check_stream(msg: Message, stream: int) -> None:
    """ProtocolError unless ``msg`` belongs to ``stream`` (``link.stream``)."""
    if msg.stream != stream:
        raise ProtocolError(
            f"a message of stream {msg.stream}; this link carries {stream}"
        )


def read_from_transmitter(msg: Message) -> LatentView | EndOfStream | Heartbeat:
    """A message on the channel's input socket."""
    _reject_other_types(msg, ("data", "eos", "hb"), "channel input")
    return _read_stream_message(msg, LatentView.read)


def read_from_channel(msg: Message) -> ChannelView | EndOfStream | Heartbeat:
    """A message on the receiver's data socket."""
    _reject_other_types(msg, ("data", "eos", "hb"), "receiver data")
    return _read_stream_message(msg, ChannelView.read)


def read_reference(msg: Message) -> ReferenceView | EndOfStream | Heartbeat:
    """A message on the receiver's reference socket."""
    _reject_other_types(msg, ("data", "eos", "hb"), "reference")
    return _read_stream_message(msg, ReferenceView.read)


def _read_stream_message(msg: Message, read_data):
    if msg.type == "eos":
        return EndOfStream.read(msg)
    if msg.type == "hb":
        return Heartbeat(msg.stream)
    return read_data(msg)


# ------------------------------------------------------------------ control


@dataclass(frozen=True)
class SetRequest:
    """Change channel settings (control field names of :data:`CHANNEL_FIELDS`), now or
    from frame ``from_seq`` on."""

    fields: Mapping[str, Scalar]
    from_seq: int | None = None

    def encode(self) -> bytes:
        extra = {} if self.from_seq is None else {"from_seq": self.from_seq}
        return _control("set", {**self.fields, **extra})


@dataclass(frozen=True)
class StatsRequest:
    """Ask for the channel's counters and settings."""

    def encode(self) -> bytes:
        return _control("stats", {})


@dataclass(frozen=True)
class StopRequest:
    """Ask the channel process to stop."""

    def encode(self) -> bytes:
        return _control("stop", {})


ControlRequest = SetRequest | StatsRequest | StopRequest


def _control(cmd: str, fields: Mapping[str, Scalar]) -> bytes:
    return encode_message(
        Message(type="ctrl", t_send=time.time(), meta={"cmd": cmd, **fields})
    )


def read_request(msg: Message) -> ControlRequest:
    """A request on the channel's control socket."""
    _reject_other_types(msg, ("ctrl",), "control")
    fields = dict(msg.meta)
    cmd = fields.pop("cmd", None)
    if cmd == "set":
        from_seq = fields.pop("from_seq", None)
        if from_seq is not None and (
            not isinstance(from_seq, int) or isinstance(from_seq, bool) or from_seq < 0
        ):
            raise ProtocolError(f"from_seq {from_seq!r} is not a sequence number")
        return SetRequest(fields, from_seq)
    if cmd in ("stats", "stop") and not fields:
        return StatsRequest() if cmd == "stats" else StopRequest()
    raise ProtocolError(
        f"control command {cmd!r} with fields {sorted(fields)}; allowed: set (with "
        "channel fields), stats, stop"
    )


@dataclass(frozen=True)
class ControlReply:
    """The channel's answer: ``ok``, an ``error`` when refused, and ``values`` (the
    settings now in force, or the counters)."""

    ok: bool
    values: Mapping[str, Scalar] = field(default_factory=dict)
    error: str | None = None

    def encode(self) -> bytes:
        meta = {"ok": self.ok, **self.values}
        if self.error is not None:
            meta["error"] = self.error
        return encode_message(Message(type="ctrl", t_send=time.time(), meta=meta))

    @staticmethod
    def read(msg: Message) -> ControlReply:
        _reject_other_types(msg, ("ctrl",), "control reply")
        values = dict(msg.meta)
        ok, error = values.pop("ok", None), values.pop("error", None)
        if not isinstance(ok, bool) or not (error is None or isinstance(error, str)):
            raise ProtocolError("a control reply carries 'ok' (bool) and 'error' (str)")
        return ControlReply(ok, values, error)
