"""Typed link messages: exact round trips, and fuzzed fields with valid CRCs that reach
every validator and the processes' handlers without crashing them."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from conftest import ACTIVITY, SOURCE, delivered, latent_view
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_sim.__main__ import ChannelProcess
from receiver.__main__ import ReceiverProcess
from shared.config import load_config
from shared.errors import ProtocolError, WireError
from shared.latent import CountPAM, SpikeBPSK
from shared.link.messages import (
    ChannelView,
    ControlReply,
    EndOfStream,
    Heartbeat,
    LatentView,
    ReferenceView,
    SetRequest,
    StatsRequest,
    StopRequest,
    read_from_channel,
    read_from_transmitter,
    read_reference,
    read_request,
)
from shared.signals import StopFlag
from shared.wire import DTYPES, MESSAGE_TYPES, Message, decode_message, encode_message

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("code", [CountPAM(4), SpikeBPSK(2)], ids=lambda c: c.name)
def test_view_messages_round_trip(code) -> None:
    sent = latent_view(code, seq=7, view=1)
    frame = sent.encode()
    back = read_from_transmitter(decode_message(frame))
    assert isinstance(back, LatentView)
    assert (back.seq, back.view, back.code, back.source) == (7, 1, code, SOURCE)
    assert back.activity == ACTIVITY and np.array_equal(back.latent, sent.latent)
    if code.bit_packed:  # 2*3*16*32 bits in 384 bytes, not 3072
        assert len(frame) < sent.latent.size // 4
    out = delivered(sent)
    got = read_from_channel(decode_message(out.encode()))
    assert (got.code, got.latent_shape, got.settings) == (
        code,
        sent.latent.shape,
        out.settings,
    )
    assert torch.equal(got.use.y, out.use.y) and torch.equal(got.use.h, out.use.h)
    assert got.t_tx == sent.t_sent


def test_markers_references_and_control_round_trip() -> None:
    assert read_from_channel(decode_message(EndOfStream(1, 9).encode())) == (
        EndOfStream(1, 9)
    )
    assert read_from_channel(decode_message(Heartbeat(1).encode())) == Heartbeat(1)
    image = torch.rand(3, 8, 16)
    for exact in (image, (image * 255).round() / 255):
        back = read_reference(decode_message(ReferenceView(1, 3, 0, exact).encode()))
        assert torch.allclose(back.image, exact, atol=1e-6)
    request = SetRequest({"snr_db": 3.0, "channel": "awgn"}, from_seq=12)
    assert read_request(decode_message(request.encode())) == request
    assert isinstance(
        read_request(decode_message(StatsRequest().encode())), StatsRequest
    )
    assert isinstance(read_request(decode_message(StopRequest().encode())), StopRequest)
    reply = ControlReply(False, {"dropped": 2}, "no")
    assert ControlReply.read(decode_message(reply.encode())) == reply


def test_messages_of_the_wrong_hop_are_protocol_errors() -> None:
    ctrl = decode_message(StatsRequest().encode())
    for read in (read_from_transmitter, read_from_channel, read_reference):
        with pytest.raises(ProtocolError, match="'ctrl' message"):
            read(ctrl)
    with pytest.raises(ProtocolError, match="control"):
        read_request(decode_message(EndOfStream(1, 0).encode()))
    with pytest.raises(ProtocolError, match="allowed: set"):
        read_request(Message(type="ctrl", meta={"cmd": "reboot"}))


# ------------------------------------------------------------------ fuzzing

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)


def random_values(dtype: np.dtype, size: int, seed: int, scale: float) -> np.ndarray:
    """``size`` finite values of ``dtype``: small or any integers, normal floats."""
    rng = np.random.default_rng(seed)
    if dtype.kind in "ui":
        return rng.integers(0, 9 if scale < 1 else 256, size).astype(dtype)
    if dtype.kind == "c":
        return (rng.normal(size=size) + 1j * rng.normal(size=size)).astype(dtype)
    return (rng.normal(size=size) * scale).astype(dtype)


@st.composite
def arrays(draw) -> np.ndarray:
    """A small array of a wire dtype with arbitrary (finite) values."""
    dtype = np.dtype(draw(st.sampled_from(sorted(DTYPES))))
    shape = draw(st.lists(st.integers(0, 6), max_size=4))
    values = random_values(
        dtype,
        int(np.prod(shape)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.sampled_from([1e-3, 1.0, 1e3])),
    )
    return values.reshape(shape)


@st.composite
def mutated(draw, base: Message) -> Message:
    """``base`` with one to three of its header fields, meta values or arrays changed."""
    msg = base
    for _ in range(draw(st.integers(1, 3))):
        meta, arrs = dict(msg.meta), dict(msg.arrays)
        kind = draw(st.sampled_from(["header", "meta", "drop_meta", "array", "values"]))
        if kind == "header":
            field = draw(st.sampled_from(["type", "stream", "seq", "view"]))
            value = {
                "type": st.sampled_from(MESSAGE_TYPES),
                "stream": st.integers(0, 2**32 - 1),
                "seq": st.integers(0, 2**62),
                "view": st.sampled_from([-1, 0, 1]),
            }[field]
            msg = dataclasses.replace(msg, **{field: draw(value)})
            continue
        if kind == "meta":
            key = draw(
                st.sampled_from(sorted(meta) or ["x"]) | st.text(min_size=1, max_size=8)
            )
            meta[key] = draw(SCALARS)
        elif kind == "drop_meta" and meta:
            meta.pop(draw(st.sampled_from(sorted(meta))))
        elif kind == "array":
            name = draw(st.sampled_from(sorted(arrs) or ["a"]) | st.just("extra"))
            if draw(st.booleans()) and name in arrs:
                arrs.pop(name)
            else:
                arrs[name] = draw(arrays())
        elif kind == "values" and arrs:
            name = draw(st.sampled_from(sorted(arrs)))
            arr = arrs[name].copy()
            if arr.size:
                index = draw(st.integers(0, arr.size - 1))
                arr.reshape(-1)[index] = random_values(
                    arr.dtype, 1, draw(st.integers(0, 2**32 - 1)), 1e3
                )[0]
            arrs[name] = arr
        msg = dataclasses.replace(msg, meta=meta, arrays=arrs)
    return msg


def fuzzed_frame(data, base: bytes) -> bytes:
    """A valid wire frame (valid CRC) of a mutated copy of ``base``."""
    return encode_message(data.draw(mutated(decode_message(base))))


@pytest.fixture(scope="module")
def receiver(tiny_checkpoint, tmp_path_factory) -> ReceiverProcess:
    out = tmp_path_factory.mktemp("fuzz_rx")
    cfg = load_config(
        "tiny",
        [f"link.model={tiny_checkpoint}", f"link.out_dir={out}", "link.save_png=false"],
    )
    return ReceiverProcess(cfg, logging.getLogger("fuzz"), StopFlag())


@pytest.fixture(scope="module")
def channel() -> ChannelProcess:
    return ChannelProcess(load_config("tiny"), logging.getLogger("fuzz"), StopFlag())


@pytest.mark.heavy
@FUZZ
@given(st.data())
def test_fuzzed_channel_views_only_reach_the_receiver_as_counted_drops(
    receiver: ReceiverProcess, data
) -> None:
    """A mutated view of a frame, then its valid other view: the receiver counts the
    mutated one or decodes the frame with it, and never raises."""
    model = receiver.model
    seq = data.draw(st.integers(0, 40))
    valid = {
        v: delivered(latent_view(model.code, seq, v, model), "awgn") for v in (0, 1)
    }
    bad_view = data.draw(st.sampled_from([0, 1]))
    frame = fuzzed_frame(data, valid[bad_view].encode())
    before = receiver.drops.total
    try:
        msg = decode_message(frame)
    except WireError:
        return
    receiver.on_data(msg)
    counted = receiver.drops.total - before
    receiver.on_data(decode_message(valid[1 - bad_view].encode()))
    assert counted in (0, 1)


@pytest.mark.heavy
@FUZZ
@given(st.data())
def test_fuzzed_references_and_transmitter_views_are_rejected_cleanly(
    receiver: ReceiverProcess, channel: ChannelProcess, data
) -> None:
    code = data.draw(st.sampled_from([CountPAM(4), SpikeBPSK(2)]))
    sent = latent_view(code, data.draw(st.integers(0, 5)))
    for base, handle in (
        (
            ReferenceView(1, 0, 0, torch.rand(3, 64, 128)).encode(),
            receiver.on_reference,
        ),
        (sent.encode(), lambda msg: _through_channel(channel, msg)),
    ):
        try:
            msg = decode_message(fuzzed_frame(data, base))
        except WireError:
            continue
        handle(msg)


def _through_channel(channel: ChannelProcess, msg: Message) -> None:
    """What the channel process does with a message from the transmitter, without the
    socket: read it and, for a view, put it through the channel and encode the result."""
    try:
        item = read_from_transmitter(msg)
        if isinstance(item, LatentView):
            out = channel.apply(item)
            assert isinstance(
                read_from_channel(decode_message(out.encode())), ChannelView
            )
    except WireError:
        pass


@FUZZ
@given(st.data())
def test_fuzzed_control_requests_get_a_reply(channel: ChannelProcess, data) -> None:
    base = data.draw(
        st.sampled_from(
            [
                SetRequest({"snr_db": 3.0}, from_seq=4).encode(),
                SetRequest({"channel": "rician_block", "rician_k": 2.0}).encode(),
                StatsRequest().encode(),
            ]
        )
    )
    reply = channel.control(fuzzed_frame(data, base))
    assert isinstance(reply, ControlReply) and (reply.ok or reply.error)
