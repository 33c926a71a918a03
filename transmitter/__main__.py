"""``python -m transmitter``: encode stereo frames and send their spike-coded latents.

Connects a PUSH socket to the channel (``link.channel_in``) and another to the receiver's
reference socket (``link.reference``), which carries each original view for measurement
only and never passes through the channel. Sequence numbers count frames from 0 over all
passes (``link.repeat``; 0 repeats forever); an end-of-stream follows the last frame.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator

import zmq

from shared.config import Config
from shared.data.frames import Frame
from shared.link.messages import (
    EndOfStream,
    Heartbeat,
    LatentView,
    ReferenceView,
    SourceInfo,
)
from shared.link.process import process_kernel_threads, run_process
from shared.link.security import client_of, link_keys
from shared.link.sockets import (
    close_all,
    open_sender,
    send,
    wait_for_hangup,
)
from shared.measure.meter import encode_measured
from shared.model.inference import describe, load_for_inference
from shared.model.kernel_threads import set_kernel_threads
from shared.signals import StopFlag
from transmitter import progress
from transmitter.progress import start_seq
from transmitter.source import count_frames, frames

NAME = "transmitter"


def send_frame(
    cfg: Config,
    model,
    seq: int,
    frame: Frame,
    size: tuple[int, int],
    sockets: tuple[zmq.Socket, zmq.Socket],
    stop: StopFlag,
) -> int:
    """Encode one frame and send both views, each after its reference; returns how many
    views went out (fewer than 2 once stopped)."""
    data, ref = sockets
    latent, activity = encode_measured(model, frame.left[None], frame.right[None])
    source = SourceInfo(frame.name, *frame.left.shape[-2:], *size)
    for view, image in ((0, frame.left), (1, frame.right)):
        reference = ReferenceView(
            cfg.link.stream, seq, view, image[..., : size[0], : size[1]]
        )
        coded = LatentView(
            cfg.link.stream,
            seq,
            view,
            model.code,
            latent[view, 0].numpy(),
            source,
            model.cfg.kind,
            activity,
        )
        if not (
            send(ref, reference.encode(), stop) and send(data, coded.encode(), stop)
        ):
            return view
    return 2


def numbered_frames(
    cfg: Config, stride: int, per_pass: int, first: int
) -> Iterator[tuple[int, Frame, tuple[int, int]]]:
    """(sequence number, frame, original size) over all passes (``link.repeat``; 0 is
    forever), from sequence number ``first`` on."""
    seq, passes = 0, 0
    while cfg.link.repeat == 0 or passes < cfg.link.repeat:
        if per_pass and seq + per_pass <= first:  # a whole pass before the start
            seq, passes = seq + per_pass, passes + 1
            continue
        for frame, size in frames(cfg, stride):
            if seq >= first:
                yield seq, frame, size
            seq += 1
        passes += 1


def pace(cfg: Config, until: float, data: zmq.Socket, stop: StopFlag) -> None:
    """Wait until ``until`` (monotonic seconds) for the frame rate, sending the channel a
    heartbeat every ``link.hb_interval_s`` meanwhile, so that it can tell a paced stream
    from a transmitter that is gone."""
    while not stop.is_set:
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, cfg.link.hb_interval_s))
        if until - time.monotonic() > 0 and data.poll(0, zmq.POLLOUT):
            data.send(Heartbeat(cfg.link.stream).encode())


def stream(cfg: Config, log: logging.Logger, stop: StopFlag) -> int:
    model, _ = load_for_inference(cfg.link.model, cfg.infer)
    set_kernel_threads(process_kernel_threads(cfg.link.kernel_threads))
    log.info("model %s on %s", cfg.link.model, describe(model))
    total = count_frames(cfg)
    keys = link_keys(cfg.link, "transmitter")
    ctx = zmq.Context()
    data, data_peers = open_sender(
        ctx, cfg.link.channel_in, False, cfg.link.hwm, client_of(keys, "channel")
    )
    ref, ref_peers = open_sender(
        ctx, cfg.link.reference, False, cfg.link.hwm, client_of(keys, "receiver")
    )
    first = start_seq(cfg)
    t_start = time.monotonic()
    log.info(
        "streaming %d frames per pass to %s, from frame %d",
        total,
        cfg.link.channel_in,
        first,
    )
    sent = first
    try:
        for seq, frame, size in numbered_frames(cfg, model.stride, total, first):
            if stop.is_set:
                break
            progress.record(cfg, seq + 1)
            sent = seq + 1  # counted once recorded: a crash may lose it, not repeat it
            if send_frame(cfg, model, seq, frame, size, (data, ref), stop) < 2:
                break
            log.info("sent frame %d (%s)", seq, frame.name)
            if cfg.link.fps > 0:
                pace(cfg, t_start + (seq + 1 - first) / cfg.link.fps, data, stop)
        if stop.is_set:  # the end of stream still goes out, with a short patience
            log.info("stopping (%s) after %d frames", stop.reason, sent)
            patience, interrupt = cfg.link.hb_interval_s * cfg.link.liveness, None
        else:  # a stop request cuts the wait for slow peers short
            patience, interrupt = cfg.link.idle_timeout_s, stop
        eos = EndOfStream(cfg.link.stream, sent).encode()
        for sock in (data, ref):
            if not send(sock, eos, interrupt, timeout_s=patience):
                log.warning(
                    "end of stream could not be delivered within %.1f s", patience
                )
        log.info(
            "end of stream after %d frames (%d per pass) in %.1f s",
            sent,
            total,
            time.monotonic() - t_start,
        )
        if not wait_for_hangup([data_peers, ref_peers], patience, interrupt, eos):
            log.warning(
                "the channel or the receiver was still connected after %.1f s", patience
            )
        return 0
    finally:
        close_all(ctx, [data, ref], [data_peers, ref_peers])


def main(argv: list[str] | None = None) -> int:
    return run_process(NAME, "transmitter", __doc__, "link.fps=5", argv, stream)


if __name__ == "__main__":
    sys.exit(main())
