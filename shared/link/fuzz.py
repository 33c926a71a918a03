"""Bad messages for an input socket: random bytes, truncated, oversized and other-version
frames, and frames with a valid CRC whose fields or payloads are mutated, so that every
validator of the hop sees them. Each one is checked to be rejected by the hop's reader
before it is handed out, so that a test or a fault scenario knows exactly how many bad
messages it sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from shared.errors import WireError
from shared.wire import (
    DTYPES,
    MESSAGE_TYPES,
    WIRE_VERSION,
    Message,
    decode_message,
    encode_message,
    frame_of,
)

#: What a hop does with a decoded message: returns, or raises WireError to reject it.
Reader = Callable[[Message], object]

KINDS = ("random", "truncated", "oversized", "version", "mutated")
SCALARS = (None, True, -1, 0, 7, 2**40, -3.5, 1e30, "", "x" * 9, "count_pam")


#: Stream ids a mutated header may carry: a few, extremes included, so that the processes
#: still count the fault scenario's intruder stream by name (``STREAMS_COUNTED``).
OTHER_STREAMS = (0, 2, 3, 1000, 2**31, 2**32 - 1)


def _random_array(rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(str(rng.choice(sorted(DTYPES))))
    shape = [int(s) for s in rng.integers(0, 7, size=rng.integers(0, 4))]
    size = int(np.prod(shape))
    if dtype.kind == "c":
        values = rng.normal(size=size) + 1j * rng.normal(size=size)
    elif dtype.kind in "ui":
        values = rng.integers(0, 256, size)
    else:
        values = rng.normal(size=size) * 10.0 ** rng.integers(-3, 4)
    return values.astype(dtype).reshape(shape)


def mutate(msg: Message, rng: np.random.Generator) -> Message:
    """``msg`` with one to three of its header fields, meta values or arrays changed."""
    for _ in range(int(rng.integers(1, 4))):
        meta, arrays = dict(msg.meta), dict(msg.arrays)
        choice = rng.integers(0, 5)
        if choice == 0:
            field = str(rng.choice(["type", "stream", "seq", "view"]))
            value = {
                "type": str(rng.choice(MESSAGE_TYPES)),
                "stream": int(rng.choice(OTHER_STREAMS)),
                "seq": int(rng.integers(0, 2**62)),
                "view": int(rng.integers(-1, 2)),
            }[field]
            msg = dataclasses.replace(msg, **{field: value})
            continue
        if choice == 1 or (choice == 2 and not meta):
            key = (
                str(rng.choice(sorted(meta) or ["x"])) if rng.random() < 0.8 else "new"
            )
            meta[key] = SCALARS[int(rng.integers(len(SCALARS)))]
        elif choice == 2:
            meta.pop(str(rng.choice(sorted(meta))))
        elif choice == 3 or not arrays:
            name = str(rng.choice(sorted(arrays) or ["a"]))
            if arrays and rng.random() < 0.3:
                arrays.pop(name)
            else:
                arrays[name if rng.random() < 0.8 else "extra"] = _random_array(rng)
        else:
            name = str(rng.choice(sorted(arrays)))
            arr = arrays[name].copy()
            if arr.size:
                value = rng.integers(0, 256) * 10.0 ** rng.integers(-2, 3)
                arr.reshape(-1)[int(rng.integers(arr.size))] = (
                    value if arr.dtype.kind in "fc" else int(value) % 256
                )
            arrays[name] = arr
        msg = dataclasses.replace(msg, meta=meta, arrays=arrays)
    return msg


def _rejected(frame: bytes, read: Reader, max_bytes: int) -> bool:
    try:
        read(decode_message(frame, max_bytes))
    except WireError:
        return True
    return False


def bad_frames(
    base: bytes, read: Reader, count: int, seed: int, max_bytes: int
) -> Iterator[tuple[str, bytes]]:
    """``count`` (kind, frame) pairs that the hop rejects: a fifth of each kind of
    :data:`KINDS`, the mutated ones made from the valid frame ``base``."""
    rng = np.random.default_rng(seed)
    valid = decode_message(base, max_bytes)
    made = 0
    while made < count:
        kind = KINDS[made % len(KINDS)]
        if kind == "random":
            frame = rng.bytes(int(rng.integers(0, 600)))
        elif kind == "truncated":
            frame = base[: int(rng.integers(0, len(base)))]
        elif kind == "oversized":
            frame = base + bytes(max_bytes)
        elif kind == "version":
            frame = frame_of({**_header(valid), "v": WIRE_VERSION + 1})
        else:
            frame = encode_message(mutate(valid, rng))
        if _rejected(frame, read, max_bytes):
            made += 1
            yield kind, frame


def _header(msg: Message) -> dict:
    return {
        "v": WIRE_VERSION,
        "type": msg.type,
        "stream": msg.stream,
        "seq": msg.seq,
        "view": msg.view,
        "t_send": msg.t_send,
        "meta": dict(msg.meta),
        "arrays": {},
    }
