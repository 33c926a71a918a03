"""Wire format: bit-exact round trips, and only WireError for anything malformed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import valid_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.wire import (
    MESSAGE_TYPES,
    WIRE_VERSION,
    Message,
    WireError,
    decode_message,
    encode_message,
    frame_of,
)

FUZZ = settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def data_message() -> Message:
    rng = np.random.default_rng(0)
    return Message(
        type="data",
        stream=3,
        seq=41,
        view=1,
        t_send=1234.5,
        meta={
            "latent": "count_pam",
            "time_steps": 4,
            "snr_db": 7.5,
            "csi": None,
            "perfect": True,
        },
        arrays={
            "counts": rng.integers(0, 5, (6, 32, 64), dtype=np.uint8),
            "spikes": rng.integers(0, 2, (4, 3, 5, 7), dtype=np.uint8),
            "y": (rng.standard_normal(77) + 1j * rng.standard_normal(77)).astype(
                np.complex64
            ),
            "noise_var": np.array([0.1], dtype=np.float32),
        },
    )


def test_round_trip_is_bit_exact() -> None:
    msg = data_message()
    frame = encode_message(msg, bit_packed={"spikes"})
    back = decode_message(frame)
    assert (back.type, back.stream, back.seq, back.view, back.t_send) == (
        "data",
        3,
        41,
        1,
        1234.5,
    )
    assert back.meta == msg.meta
    for name, arr in msg.arrays.items():
        assert back.arrays[name].dtype == arr.dtype
        assert np.array_equal(back.arrays[name], arr)
        assert back.arrays[name].flags.writeable
    # the spikes travel packed: 4*3*5*7 bits in 53 bytes, not 420
    assert len(frame) < len(encode_message(msg)) - 300


@pytest.mark.parametrize("kind", MESSAGE_TYPES)
def test_every_message_type_round_trips(kind: str) -> None:
    assert decode_message(encode_message(Message(type=kind, seq=5))).type == kind


@pytest.mark.parametrize(
    "header, kind",
    [
        (valid_header(v=WIRE_VERSION + 1), "version"),
        (valid_header(v="1"), "version"),
        (valid_header(type="pickle"), "type"),
        (valid_header(view=2), "schema"),
        (valid_header(seq=-1), "schema"),
        (valid_header(t_send=float("nan")), "schema"),
        (valid_header(extra=1), "schema"),
        ([1, 2, 3], "schema"),
        (valid_header(meta={"x": [1, 2]}), "schema"),
        (
            valid_header(
                arrays={"a": {"dtype": "|O", "shape": [1], "pack": "raw", "data": b"x"}}
            ),
            "dtype",
        ),
        (
            valid_header(
                arrays={
                    "a": {
                        "dtype": "<f4",
                        "shape": [3],
                        "pack": "raw",
                        "data": b"\0" * 8,
                    }
                }
            ),
            "shape",
        ),
        (
            valid_header(
                arrays={
                    "a": {"dtype": "<f4", "shape": [-1], "pack": "raw", "data": b""}
                }
            ),
            "shape",
        ),
        (
            valid_header(
                arrays={
                    "a": {"dtype": "<f4", "shape": [2**40], "pack": "raw", "data": b""}
                }
            ),
            "oversized",
        ),
        (
            valid_header(
                arrays={
                    "a": {
                        "dtype": "<f4",
                        "shape": [1],
                        "pack": "raw",
                        "data": np.array([np.nan], "<f4").tobytes(),
                    }
                }
            ),
            "payload",
        ),
        (
            valid_header(
                arrays={
                    "a": {"dtype": "<f4", "shape": [9], "pack": "bits", "data": b"\0\0"}
                }
            ),
            "dtype",
        ),
    ],
)
def test_invalid_fields_raise_typed_errors(header: object, kind: str) -> None:
    with pytest.raises(WireError) as info:
        decode_message(frame_of(header))
    assert info.value.kind == kind


def test_size_limit_and_checksum() -> None:
    frame = encode_message(data_message())
    with pytest.raises(WireError, match="oversized"):
        decode_message(frame, max_bytes=1000)
    with pytest.raises(WireError, match="checksum"):
        decode_message(frame[:-1] + bytes([frame[-1] ^ 1]))
    with pytest.raises(WireError, match="truncated"):
        decode_message(b"\x01\x02")
    with pytest.raises(WireError, match="malformed"):
        decode_message("text")


def test_sender_refuses_what_it_must_not_send() -> None:
    with pytest.raises(ValueError, match="dtype"):
        encode_message(Message(type="data", arrays={"a": np.zeros(2, dtype=object)}))
    with pytest.raises(ValueError, match="bit-packing"):
        encode_message(
            Message(type="data", arrays={"a": np.full(3, 2, np.uint8)}),
            bit_packed={"a"},
        )


def _only_wire_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except WireError:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_wire_errors(data)


VALID_FRAME = encode_message(data_message(), bit_packed={"spikes"})


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID_FRAME) - 1))
def test_fuzz_truncated_frames(cut: int) -> None:
    with pytest.raises(WireError):
        decode_message(VALID_FRAME[:cut])


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(VALID_FRAME) - 1),
    st.integers(min_value=1, max_value=255),
)
def test_fuzz_mutated_frames(position: int, xor: int) -> None:
    mutated = bytearray(VALID_FRAME)
    mutated[position] ^= xor
    with pytest.raises(WireError):
        decode_message(bytes(mutated))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@FUZZ
@given(
    st.sampled_from(MESSAGE_TYPES),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**62),
    st.sampled_from([-1, 0, 1]),
    st.dictionaries(st.text(min_size=1, max_size=8), _scalars, max_size=4),
    st.lists(st.integers(0, 6), max_size=3),
    st.sampled_from(["|u1", "<f4", "<c8"]),
)
def test_fuzz_valid_messages_round_trip(
    kind, stream, seq, view, meta, shape, dtype
) -> None:
    arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    msg = Message(
        type=kind,
        stream=stream,
        seq=seq,
        view=view,
        t_send=1.5,
        meta=meta,
        arrays={"a": arr},
    )
    back = decode_message(encode_message(msg))
    assert (back.type, back.stream, back.seq, back.view, back.meta) == (
        kind,
        stream,
        seq,
        view,
        meta,
    )
    assert np.array_equal(back.arrays["a"], arr) and back.arrays["a"].dtype == arr.dtype
