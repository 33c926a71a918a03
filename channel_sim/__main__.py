"""``python -m channel_sim``: the wireless channel between transmitter and receiver.

Binds a PULL socket for latents (``link.channel_in``), a PUSH socket towards the receiver
(``link.channel_out``) and a REP control socket (``link.channel_control``). Each view goes
through the configured channel by the hop of :mod:`shared.link.hop` (the trainer's code),
seeded by ``(channel.seed, seq, view)``. Control requests: ``set`` changes the SNR /
channel now or ``from_seq`` on; ``stats`` returns the counters; ``stop`` ends the process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import zmq

from channel_sim.settings import ChannelSettings
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.config import Config
from shared.errors import ConfigError, ProtocolError, WireError
from shared.link.hop import send as send_through
from shared.link.messages import (
    ChannelView,
    ControlReply,
    ControlRequest,
    EndOfStream,
    Heartbeat,
    LatentView,
    SetRequest,
    StatsRequest,
    channel_meta,
    check_stream,
    read_from_transmitter,
    read_request,
)
from shared.link.process import CHANNEL_STATS_FILE, run_process
from shared.link.security import link_keys, server_of, start_authenticator
from shared.link.sockets import (
    POLL_SLICE_MS,
    DropCounter,
    Liveness,
    PeerWatch,
    close_all,
    count_stream,
    open_sender,
    open_socket,
    receive,
    send,
    wait_for_hangup,
)
from shared.signals import StopFlag
from shared.wire import decode_message

NAME = "channel"


class ChannelProcess:
    """State and handlers of the channel process."""

    def __init__(self, cfg: Config, log: logging.Logger, stop: StopFlag) -> None:
        self.cfg, self.log, self.stop = cfg, log, stop
        self.settings = ChannelSettings(cfg.channel)
        self.drops = DropCounter(log)
        self.counts: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()

    def apply(self, sent: LatentView) -> ChannelView:
        """The channel's output for one view from the transmitter."""
        try:
            settings = self.settings.at(sent.seq)
            channel = WirelessChannel.for_code(settings, sent.code)
        except ConfigError as exc:
            raise ProtocolError(
                f"latent {sent.code.name!r} at frame {sent.seq}: {exc}"
            ) from None
        use = send_through(
            sent.code,
            channel,
            torch.from_numpy(sent.latent)[None],
            torch.tensor([float(settings.snr_db)]),
            generator_for(settings.seed, sent.seq, sent.view),
        )
        return ChannelView.after(sent, use, settings)

    def control(self, raw: bytes) -> ControlReply:
        """The reply to one control request; a refused one says why."""
        try:
            request = read_request(decode_message(raw, self.cfg.link.max_message_bytes))
            return ControlReply(True, self.answer(request))
        except WireError as exc:
            self.drops.add("control", exc)
            return ControlReply(False, error=str(exc))
        except ConfigError as exc:
            return ControlReply(False, error=str(exc))

    def answer(self, request: ControlRequest) -> dict[str, object]:
        if isinstance(request, SetRequest):
            merged = self.settings.change(dict(request.fields), request.from_seq)
            self.counts["control_set"] += 1
            when = (
                "now" if request.from_seq is None else f"from frame {request.from_seq}"
            )
            self.log.info("settings %s: %s", when, channel_meta(merged))
            return channel_meta(merged)
        if isinstance(request, StatsRequest):
            return self.stats()
        self.stop.set("control stop")
        return {}

    def stats(self) -> dict[str, object]:
        return {
            **{f"count_{k}": v for k, v in self.counts.items()},
            **{f"count_in_stream_{k}": v for k, v in self.streams.items()},
            **{f"dropped_{k}": v for k, v in self.drops.counts.items()},
            "dropped": self.drops.total,
            **channel_meta(self.settings.base),
        }

    def serve(self) -> int:
        link = self.cfg.link
        keys = link_keys(link, "channel")
        ctx = zmq.Context()
        auth = start_authenticator(ctx, keys)
        secure = server_of(keys)
        pull = open_socket(
            ctx, zmq.PULL, link.channel_in, bind=True, hwm=link.hwm, secure=secure
        )
        push, receivers = open_sender(ctx, link.channel_out, True, link.hwm, secure)
        rep = open_socket(
            ctx, zmq.REP, link.channel_control, bind=True, hwm=link.hwm, secure=secure
        )
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(rep, zmq.POLLIN)
        last_out = time.monotonic()
        transmitter = Liveness(link.hb_interval_s, link.liveness)
        heard_any = False
        self.log.info(
            "listening on %s, sending to %s, control on %s",
            link.channel_in,
            link.channel_out,
            link.channel_control,
        )
        try:
            while not self.stop.is_set:
                t_poll = time.monotonic()
                events = dict(poller.poll(POLL_SLICE_MS))
                if rep in events:
                    rep.send(self.control(rep.recv()).encode())
                if pull not in events and heard_any:
                    transmitter.waited(time.monotonic() - t_poll)
                if transmitter.newly_silent():
                    self.log.warning(
                        "no message (not even a heartbeat) from the transmitter for "
                        "%.1f s; libzmq keeps reconnecting with back-off",
                        transmitter.silence_s,
                    )
                if pull in events:
                    transmitter.heard()
                    heard_any = True
                    msg = receive(
                        pull, self.drops, "channel_in", link.max_message_bytes
                    )
                    outcome = None if msg is None else self.handle(msg, push)
                    if outcome is not None:
                        last_out = time.monotonic()
                        if isinstance(outcome, EndOfStream):
                            self.wait_for_receivers(receivers, outcome.encode())
                            break
                if time.monotonic() - last_out > link.hb_interval_s:
                    if push.poll(0, zmq.POLLOUT):
                        push.send(Heartbeat(link.stream).encode())
                    last_out = time.monotonic()
        finally:
            close_all(ctx, [pull, push, rep], [receivers], auth)
        stats = self.stats()
        self.log.info("done (%s): %s", self.stop.reason or "end of stream", stats)
        out = Path(link.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / CHANNEL_STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n")
        return 0

    def wait_for_receivers(self, receivers: PeerWatch, eos: bytes) -> None:
        """After the end of stream: stay until the receiver, having read it, hangs up
        (a receiver restarted meanwhile gets the end of stream again)."""
        patience = self.cfg.link.idle_timeout_s
        if not wait_for_hangup([receivers], patience, self.stop, eos):
            self.log.warning("the receiver was still connected after %.1f s", patience)

    def handle(self, msg, push: zmq.Socket) -> ChannelView | EndOfStream | None:
        """Process one message from the transmitter; returns what was sent on, if
        anything. Messages of another stream than ``link.stream`` are dropped."""
        self.counts[f"in_{msg.type}"] += 1
        count_stream(self.streams, msg.stream)
        try:
            check_stream(msg, self.cfg.link.stream)
            item = read_from_transmitter(msg)
            if isinstance(item, LatentView):
                item = self.apply(item)
        except WireError as exc:
            self.drops.add("channel_in", exc)
            return None
        if isinstance(item, Heartbeat):
            return None
        if isinstance(item, EndOfStream):
            self.log.info(
                "end of stream from the transmitter: %d frames sent", item.frames_sent
            )
        sent = send(push, item.encode(), self.stop)
        self.counts["forwarded"] += sent and isinstance(item, ChannelView)
        return item if sent else None


def main(argv: list[str] | None = None) -> int:
    return run_process(
        NAME,
        "channel_sim",
        __doc__,
        "channel.snr_db=5",
        argv,
        lambda cfg, log, stop: ChannelProcess(cfg, log, stop).serve(),
    )


if __name__ == "__main__":
    sys.exit(main())
