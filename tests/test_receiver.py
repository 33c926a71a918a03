"""The receiver's parts: the frame assembler, a frame decoded without its lost view, the
idle timeout, and soft values of the bit channels."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch
from conftest import delivered, latent_view

from receiver.__main__ import ReceiverProcess
from receiver.assembler import GIVE_UP_AFTER, FrameAssembler
from shared.channel import WirelessChannel
from shared.config import load_config
from shared.link.hop import DecoderInput, lost_view
from shared.link.launcher import endpoint_overrides
from shared.link.messages import ReferenceView, read_from_channel
from shared.signals import StopFlag
from shared.wire import decode_message


def test_assembler_hands_out_complete_frames_in_order() -> None:
    frames = FrameAssembler()
    image = torch.zeros(3, 2, 2)
    assert frames.add_view(0, 0, "L0") == [] and frames.add_view(0, 1, "R0") == []
    assert frames.add_reference(0, 1, image) == []  # still waits for the left one
    ready = frames.add_reference(0, 0, image)
    assert [seq for seq, _ in ready] == [0] and ready[0][1].views == {0: "L0", 1: "R0"}
    # references first, then views; frame 2 arrives complete before frame 1 closes
    for view in (0, 1):
        frames.add_reference(1, view, image)
        frames.add_reference(2, view, image)
    assert frames.add_view(1, 0, "L1") == []
    assert frames.views_of(1) == {0: "L1"}
    ready = frames.add_view(2, 0, "L2")  # a later view: frame 1 lost its right view
    assert [(seq, sorted(f.views)) for seq, f in ready] == [(1, [0])]
    assert [seq for seq, _ in frames.add_view(2, 1, "R2")] == [2]
    assert frames.views_of(2) == {} and not frames.waiting_for_references()


def test_assembler_gives_up_on_references_without_views_and_flushes() -> None:
    frames = FrameAssembler()
    frames.add_reference(0, 0, torch.zeros(3, 2, 2))
    frames.add_view(GIVE_UP_AFTER + 1, 0, "late")
    assert 0 not in frames.pending  # no view ever came for frame 0
    assert frames.waiting_for_references()
    frames.add_view(GIVE_UP_AFTER + 2, 1, "other")
    assert frames.flush() == [] and frames.given_up == 2 and frames.pending == {}


def receiver_for(model_path: Path, out: Path, *extra: str) -> ReceiverProcess:
    cfg = load_config(
        "tiny",
        [f"link.model={model_path}", f"link.out_dir={out}", *extra],
    )
    return ReceiverProcess(cfg, logging.getLogger("test"), StopFlag())


def test_a_frame_whose_view_was_lost_is_decoded_with_the_fill(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    receiver = receiver_for(tiny_checkpoint, tmp_path)
    model = receiver.model
    sent = latent_view(model.code, seq=0, view=0, model=model)
    left = delivered(sent, "awgn")
    reference = ReferenceView(1, 0, 0, torch.rand(3, 64, 128))
    arrived = receiver.accept(read_from_channel(decode_message(left.encode())))
    receiver.on_reference(decode_message(reference.encode()))
    receiver.on_data(decode_message(left.encode()))
    assert receiver.frames.records() == []  # the right view may still come
    for seq, frame in receiver.assembler.flush():
        receiver.decode(seq, frame)
    (record,) = receiver.frames.records()
    assert record["views"] == [0] and record["psnr_right"] is None
    assert record["psnr_left"] is not None and record["distinct_right"] > 1

    received = arrived.decoder_input()
    fill = lost_view(model.code, received)
    expected = model.decode(DecoderInput.cat([received, fill]))["x_hat_left"]
    mse = (expected.clamp(0, 1) - reference.image).square().mean()
    assert record["psnr_left"] == pytest.approx(float(-10 * torch.log10(mse)), abs=1e-4)
    assert json.loads((tmp_path / "frames.jsonl").read_text())["views"] == [0]


def test_receiver_gives_up_after_the_idle_timeout(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """With no channel at all, the receiver stops with status 1 after
    ``link.idle_timeout_s`` of silence instead of waiting for ever."""
    receiver = receiver_for(
        tiny_checkpoint,
        tmp_path,
        *endpoint_overrides("tcp", tmp_path),
        "link.idle_timeout_s=1.0",
        "link.hb_interval_s=0.2",
    )
    t0 = time.monotonic()
    assert receiver.serve() == 1
    assert 1.0 <= time.monotonic() - t0 < 10.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_received"] == 0 and summary["frames_sent"] is None


def test_bsc_soft_value_is_the_expected_antipodal_bit() -> None:
    """For equally likely bits through a BSC(p), E[2b - 1 | y] = (1 - 2p) y."""
    flip = 0.2
    bits = (torch.rand(1, 400_000) < 0.5).float()
    channel = WirelessChannel("bsc", "bits", flip_prob=flip)
    use = channel.propagate(channel.transmit(bits), torch.zeros(1), None)
    soft = channel.receive(use)
    for y in (-1.0, 1.0):
        sent = 2 * bits[use.y == y] - 1
        assert sent.mean().item() == pytest.approx((1 - 2 * flip) * y, abs=0.01)
        assert torch.all(soft[use.y == y] == (1 - 2 * flip) * y)
