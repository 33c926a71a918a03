"""Typed link messages: exact round trips, and fuzzed fields with valid CRCs that reach
every validator and the processes' handlers without crashing them."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

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
from shared.link.fuzz import KINDS, bad_frames, mutate
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
from shared.link.sockets import STREAMS_COUNTED
from shared.signals import StopFlag
from shared.wire import Message, decode_message, encode_message

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


def test_estimated_csi_views_carry_their_pilots_and_no_channel() -> None:
    """Under estimated CSI the received pilots travel in ``y`` and no ``h`` does; a
    ``y`` of the data symbols alone is a protocol error."""
    sent = latent_view(CountPAM(4))
    out = delivered(sent, "ofdm_tdl", csi="estimated")
    data_symbols = sent.latent.size // 2
    assert out.use.h is None and out.use.y.shape[1] > data_symbols
    got = read_from_channel(decode_message(out.encode()))
    assert torch.equal(got.use.y, out.use.y) and got.settings.csi == "estimated"
    short = dataclasses.replace(
        out, use=dataclasses.replace(out.use, y=out.use.y[:, :data_symbols])
    )
    with pytest.raises(ProtocolError, match="estimated CSI"):
        read_from_channel(decode_message(short.encode()))


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_an_empty_reference_image_is_a_protocol_error(dtype) -> None:
    """Found by the fuzzer: a float32 reference of size 0 reached numpy's min()."""
    empty = ReferenceView(1, 0, 0, torch.zeros(3, 0, 16, dtype=dtype)).encode()
    with pytest.raises(ProtocolError, match=r"\[3, H, W\], H, W > 0"):
        read_reference(decode_message(empty))


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


def fuzzed_frame(data, base: bytes) -> bytes:
    """A valid wire frame (valid CRC) of a copy of ``base`` mutated by the project's
    fuzzer (:func:`shared.link.fuzz.mutate`) with a drawn seed."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    return encode_message(mutate(decode_message(base), rng))


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


def test_estimated_csi_without_pilots_is_refused_and_never_crashes_the_channel() -> (
    None
):
    """Set now, estimated CSI on AWGN is refused with its reason; scheduled changes that
    meet in such a setting make that frame a counted protocol error."""
    channel = ChannelProcess(load_config("tiny"), logging.getLogger("csi"), StopFlag())
    reply = channel.control(SetRequest({"csi": "estimated"}).encode())
    assert not reply.ok and "channel.csi" in reply.error
    assert channel.control(SetRequest({"channel": "awgn"}, from_seq=5).encode()).ok
    ofdm = {"channel": "ofdm_tdl", "csi": "estimated"}
    assert channel.control(SetRequest(ofdm).encode()).ok
    assert isinstance(channel.apply(latent_view(CountPAM(4), 4)), ChannelView)
    with pytest.raises(ProtocolError, match="frame 5: config key 'channel.csi'"):
        channel.apply(latent_view(CountPAM(4), 5))


def test_the_fuzzer_makes_only_messages_the_hop_rejects() -> None:
    base = latent_view(CountPAM(4), 3).encode()
    frames = list(bad_frames(base, read_from_transmitter, 50, seed=1, max_bytes=2**17))
    assert Counter(kind for kind, _ in frames) == {kind: 10 for kind in KINDS}
    for _, frame in frames:
        with pytest.raises(WireError):
            read_from_transmitter(decode_message(frame, 2**17))


def test_made_up_stream_ids_cannot_grow_the_counters(
    receiver: ReceiverProcess, channel: ChannelProcess
) -> None:
    """Messages of 300 made-up streams: each process counts at most STREAMS_COUNTED
    streams by name and the rest as "other", drops them all, and the channel's stats
    still fit in a control reply."""
    view = decode_message(latent_view(CountPAM(4), 0).encode())
    reference = decode_message(ReferenceView(1, 0, 0, torch.rand(3, 64, 128)).encode())
    dropped = channel.drops.total
    for stream in range(10_000, 10_300):
        channel.handle(dataclasses.replace(view, stream=stream), push=None)
        receiver.on_reference(dataclasses.replace(reference, stream=stream))
    assert channel.drops.total == dropped + 300
    for streams in (channel.streams, receiver.streams):
        assert len(streams) <= STREAMS_COUNTED + 1 and streams["other"] >= 300 - 16
    reply = ControlReply(True, channel.stats()).encode()
    assert ControlReply.read(decode_message(reply)).ok
