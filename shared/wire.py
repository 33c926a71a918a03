"""The link's message format: one msgpack map per message plus a CRC-32 trailer.

Frame layout (one ZeroMQ frame)::

    msgpack map {
        "v": int            format version (WIRE_VERSION)
        "type": str         "data" | "eos" | "hb" | "ctrl"
        "stream": int       stream id, >= 0
        "seq": int          frame sequence number, >= 0
        "view": int         0 = left, 1 = right, -1 = not a view
        "t_send": float     sender's wall clock (time.time(), seconds)
        "meta": {str: scalar}                what the next hop needs (mode, T, SNR, ...)
        "arrays": {str: {"dtype": str, "shape": [int], "pack": "raw"|"bits",
                         "data": bytes}}     C-order buffers; "bits" = np.packbits
    }
    + 4 bytes: CRC-32 (little endian) of the msgpack bytes

``dtype`` is numpy's ``dtype.str`` (endianness explicit) from a whitelist. Spike counts travel
as ``|u1``, binary spikes bit-packed, received symbols as ``<c8``. Nothing is ever pickled.
:func:`decode_message` validates every field and raises :class:`WireError` (and only that)
for anything malformed, truncated, mutated, oversized or of another version.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import msgpack
import numpy as np

from shared.errors import WireError

#: 2: a channel view's settings carry the OFDM TDL fields of ``ofdm_tdl``; 3: and its
#: pilot fields (``csi: estimated``), whose pilots travel in ``y``.
WIRE_VERSION = 3
MESSAGE_TYPES = ("data", "eos", "hb", "ctrl")
VIEWS = (-1, 0, 1)
DTYPES = frozenset({"|u1", "<u2", "<i4", "<f2", "<f4", "<f8", "<c8"})
PACKINGS = ("raw", "bits")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_NDIM = 8
MAX_META_ITEMS = 64
MAX_ARRAYS = 16
MAX_NAME_LEN = 64
MAX_TEXT_LEN = 4096
_HEADER_KEYS = frozenset(
    {"v", "type", "stream", "seq", "view", "t_send", "meta", "arrays"}
)
_ARRAY_KEYS = frozenset({"dtype", "shape", "pack", "data"})
_CRC_BYTES = 4

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Message:
    """One decoded message.

    Attributes
    ----------
    type : 'data' | 'eos' | 'hb' | 'ctrl'
    stream, seq : int, stream id and frame sequence number
    view : int, 0 left, 1 right, -1 not a view
    t_send : float, seconds since the epoch at the sender
    meta : mapping of short names to scalars
    arrays : mapping of names to numpy arrays (C-contiguous, writable copies)
    """

    type: str
    stream: int = 0
    seq: int = 0
    view: int = -1
    t_send: float = 0.0
    meta: Mapping[str, Scalar] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)


def encode_message(msg: Message, bit_packed: Collection[str] = ()) -> bytes:
    """Serialise ``msg``; arrays named in ``bit_packed`` (values in {0, 1}) are packed 8/byte.

    Raises ``ValueError`` for a message this side must not send (bad dtype, non-binary
    values to bit-pack); the checks on the receiving side are in :func:`decode_message`.
    """
    arrays = {}
    for name, arr in msg.arrays.items():
        arr = np.asarray(arr, order="C")
        dtype = arr.dtype.str
        if dtype not in DTYPES:
            raise ValueError(
                f"array {name!r}: dtype {dtype} is not in {sorted(DTYPES)}"
            )
        if name in bit_packed:
            if dtype != "|u1" or (arr.size and arr.max() > 1):
                raise ValueError(
                    f"array {name!r}: bit-packing needs uint8 values in {{0,1}}"
                )
            data, pack = np.packbits(arr.reshape(-1)).tobytes(), "bits"
        else:
            data, pack = arr.tobytes(), "raw"
        arrays[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "pack": pack,
            "data": data,
        }
    body = msgpack.packb(
        {
            "v": WIRE_VERSION,
            "type": msg.type,
            "stream": int(msg.stream),
            "seq": int(msg.seq),
            "view": int(msg.view),
            "t_send": float(msg.t_send),
            "meta": dict(msg.meta),
            "arrays": arrays,
        },
        use_bin_type=True,
    )
    return body + zlib.crc32(body).to_bytes(_CRC_BYTES, "little")


def frame_of(obj: object) -> bytes:
    """Any msgpack-able object as a frame with a correct CRC, whatever it holds (for
    testing the validators of :func:`decode_message` with malformed headers)."""
    body = msgpack.packb(obj, use_bin_type=True)
    return body + zlib.crc32(body).to_bytes(_CRC_BYTES, "little")


def decode_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse and validate one frame; raise :class:`WireError` for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("malformed", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise WireError("oversized", f"{len(data)} bytes > limit {max_bytes}")
    if len(data) <= _CRC_BYTES:
        raise WireError("truncated", f"only {len(data)} bytes")
    body, crc = data[:-_CRC_BYTES], int.from_bytes(data[-_CRC_BYTES:], "little")
    if zlib.crc32(body) != crc:
        raise WireError("checksum", "CRC-32 mismatch (truncated or corrupted frame)")
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # any msgpack failure is a malformed frame
        raise WireError("malformed", f"not msgpack: {type(exc).__name__}") from None
    return _validate(obj, max_bytes)


def _validate(obj: object, max_bytes: int) -> Message:
    if not isinstance(obj, dict) or set(obj) != _HEADER_KEYS:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise WireError("schema", f"header keys {keys}, need {sorted(_HEADER_KEYS)}")
    version = obj["v"]
    if not _is_int(version) or version != WIRE_VERSION:
        raise WireError(
            "version", f"format version {version!r}, this side speaks {WIRE_VERSION}"
        )
    if obj["type"] not in MESSAGE_TYPES:
        raise WireError(
            "type", f"message type {obj['type']!r}, allowed {MESSAGE_TYPES}"
        )
    stream, seq, view, t_send = obj["stream"], obj["seq"], obj["view"], obj["t_send"]
    if not (_is_int(stream) and 0 <= stream < 2**32):
        raise WireError("schema", f"stream {stream!r} is not an integer in [0, 2^32)")
    if not (_is_int(seq) and 0 <= seq < 2**63):
        raise WireError("schema", f"seq {seq!r} is not an integer in [0, 2^63)")
    if not (_is_int(view) and view in VIEWS):
        raise WireError("schema", f"view {view!r}, allowed {VIEWS}")
    if not (isinstance(t_send, float) and math.isfinite(t_send)):
        raise WireError("schema", f"t_send {t_send!r} is not a finite float")
    return Message(
        type=obj["type"],
        stream=stream,
        seq=seq,
        view=view,
        t_send=t_send,
        meta=_validate_meta(obj["meta"]),
        arrays=_validate_arrays(obj["arrays"], max_bytes),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LEN:
        raise WireError("schema", f"name {name!r} is not a string of 1..{MAX_NAME_LEN}")
    return name


def _validate_meta(meta: object) -> dict[str, Scalar]:
    if not isinstance(meta, dict) or len(meta) > MAX_META_ITEMS:
        raise WireError(
            "schema", f"meta must be a map of at most {MAX_META_ITEMS} items"
        )
    out: dict[str, Scalar] = {}
    for name, value in meta.items():
        _validate_name(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise WireError("payload", f"meta {name!r} is not finite")
        if isinstance(value, str) and len(value) > MAX_TEXT_LEN:
            raise WireError("schema", f"meta {name!r} is longer than {MAX_TEXT_LEN}")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise WireError(
                "schema",
                f"meta {name!r} is a {type(value).__name__}, "
                "allowed: bool, int, float, str, null",
            )
        out[name] = value
    return out


def _validate_arrays(arrays: object, max_bytes: int) -> dict[str, np.ndarray]:
    if not isinstance(arrays, dict) or len(arrays) > MAX_ARRAYS:
        raise WireError("schema", f"arrays must be a map of at most {MAX_ARRAYS} items")
    return {
        _validate_name(name): _validate_array(name, spec, max_bytes)
        for name, spec in arrays.items()
    }


def _validate_array(name: str, spec: object, max_bytes: int) -> np.ndarray:
    if not isinstance(spec, dict) or set(spec) != _ARRAY_KEYS:
        raise WireError("schema", f"array {name!r} needs keys {sorted(_ARRAY_KEYS)}")
    dtype, shape, pack, data = spec["dtype"], spec["shape"], spec["pack"], spec["data"]
    if dtype not in DTYPES:
        raise WireError(
            "dtype", f"array {name!r}: dtype {dtype!r} not in {sorted(DTYPES)}"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(_is_int(s) and s >= 0 for s in shape)
    ):
        raise WireError(
            "shape",
            f"array {name!r}: shape {shape!r} is not a list of at "
            f"most {MAX_NDIM} non-negative integers",
        )
    if pack not in PACKINGS or not isinstance(data, bytes):
        raise WireError(
            "schema",
            f"array {name!r}: pack {pack!r} / data of type {type(data).__name__}",
        )
    count = math.prod(shape)
    np_dtype = np.dtype(dtype)
    if count * np_dtype.itemsize > max_bytes:
        raise WireError(
            "oversized", f"array {name!r} of shape {shape} exceeds the limit"
        )
    if pack == "bits":
        if dtype != "|u1":
            raise WireError("dtype", f"array {name!r}: bit-packed arrays are |u1")
        if len(data) != (count + 7) // 8:
            raise WireError(
                "shape",
                f"array {name!r}: {len(data)} bytes cannot hold {count} packed bits",
            )
        arr = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count)
        return arr.reshape(shape)
    if len(data) != count * np_dtype.itemsize:
        raise WireError(
            "shape", f"array {name!r}: {len(data)} bytes for shape {shape} of {dtype}"
        )
    arr = np.frombuffer(data, dtype=np_dtype).reshape(shape).copy()
    if np_dtype.kind in "fc" and not np.isfinite(arr).all():
        raise WireError("payload", f"array {name!r} holds NaN or inf")
    return arr
