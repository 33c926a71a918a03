"""``python -m channel_sim``: the wireless channel between transmitter and receiver.

Binds a PULL socket for latents (``link.channel_in``), a PUSH socket towards the receiver
(``link.channel_out``) and a REP control socket (``link.channel_control``). Each view is
modulated, power-normalised and sent through the configured channel with the shared code of
``shared.channel`` (the trainer's), seeded by ``(channel.seed, seq, view)``. Control
requests (``ctrl`` messages, meta ``cmd``): ``set`` changes the SNR / channel now or
``from_seq`` on; ``stats`` returns the counters; ``stop`` ends the process.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import torch
import zmq

from channel_sim.settings import ChannelSettings
from shared.channel.modulation import channel_input_from_latent, signalling_for
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.config import Config, ConfigError
from shared.process import (
    POLL_SLICE_MS,
    DropCounter,
    PeerWatch,
    StopFlag,
    close_all,
    open_sender,
    open_socket,
    receive,
    run_process,
    send,
    wait_for_hangup,
)
from shared.protocol import (
    ProtocolError,
    channel_message,
    describe_channel,
    heartbeat,
    parse_eos,
    parse_latent,
)
from shared.wire import Message, WireError, decode_message, encode_message

NAME = "channel"


class ChannelProcess:
    """State and handlers of the channel process."""

    def __init__(self, cfg: Config, log, stop: StopFlag) -> None:
        self.cfg, self.log, self.stop = cfg, log, stop
        self.settings = ChannelSettings(cfg.channel)
        self.drops = DropCounter(log)
        self.counts: Counter[str] = Counter()

    def apply(self, msg: Message) -> Message:
        """Channel output for one transmitter data message."""
        latent, mode, steps = parse_latent(msg)
        settings = self.settings.at(msg.seq)
        try:
            channel = WirelessChannel.from_config(settings, signalling_for(mode))
        except ValueError as exc:
            raise ProtocolError(
                f"latent {mode!r} over channel {settings.kind!r}: {exc}"
            )
        x = channel_input_from_latent(latent, mode, steps)
        use = channel.propagate(
            channel.transmit(x),
            torch.tensor([float(settings.snr_db)]),
            generator_for(settings.seed, msg.seq, msg.view),
        )
        return channel_message(
            msg, use, tuple(latent.shape[1:]), describe_channel(settings)
        )

    def control(self, raw: bytes) -> Message:
        """Reply to one control request."""
        try:
            request = decode_message(raw, self.cfg.link.max_message_bytes)
            if request.type != "ctrl":
                raise ProtocolError(f"control socket got a {request.type!r} message")
            fields = dict(request.meta)
            cmd = fields.pop("cmd", None)
            if cmd == "set":
                from_seq = fields.pop("from_seq", None)
                if from_seq is not None and (
                    not isinstance(from_seq, int)
                    or isinstance(from_seq, bool)
                    or from_seq < 0
                ):
                    raise ProtocolError(
                        f"from_seq {from_seq!r} is not a sequence number"
                    )
                merged = self.settings.change(fields, from_seq)
                self.counts["control_set"] += 1
                when = "now" if from_seq is None else f"from frame {from_seq}"
                self.log.info("settings %s: %s", when, describe_channel(merged))
                return Message(
                    type="ctrl", meta={"ok": True, **describe_channel(merged)}
                )
            if cmd == "stats":
                return Message(type="ctrl", meta={"ok": True, **self.stats()})
            if cmd == "stop":
                self.stop.set("control stop")
                return Message(type="ctrl", meta={"ok": True})
            raise ProtocolError(f"unknown command {cmd!r}; allowed: set, stats, stop")
        except (WireError, ConfigError) as exc:
            if isinstance(exc, WireError):
                self.drops.add("control", exc)
            return Message(type="ctrl", meta={"ok": False, "error": str(exc)})

    def stats(self) -> dict[str, object]:
        return {
            **{f"count_{k}": v for k, v in self.counts.items()},
            **{f"dropped_{k}": v for k, v in self.drops.counts.items()},
            "dropped": self.drops.total,
            **describe_channel(self.settings.base),
        }

    def serve(self) -> int:
        link = self.cfg.link
        ctx = zmq.Context()
        pull = open_socket(ctx, zmq.PULL, link.channel_in, bind=True, hwm=link.hwm)
        push, receivers = open_sender(ctx, link.channel_out, True, link.hwm)
        rep = open_socket(ctx, zmq.REP, link.channel_control, bind=True, hwm=link.hwm)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(rep, zmq.POLLIN)
        last_out = time.monotonic()
        self.log.info(
            "listening on %s, sending to %s, control on %s",
            link.channel_in,
            link.channel_out,
            link.channel_control,
        )
        try:
            while not self.stop.is_set:
                events = dict(poller.poll(POLL_SLICE_MS))
                if rep in events:
                    rep.send(encode_message(self.control(rep.recv())))
                if pull in events:
                    msg = receive(
                        pull, self.drops, "channel_in", link.max_message_bytes
                    )
                    if msg is not None and self.handle(msg, push):
                        last_out = time.monotonic()
                        if msg.type == "eos":
                            self.wait_for_receivers(receivers)
                            break
                if time.monotonic() - last_out > link.hb_interval_s:
                    if push.poll(0, zmq.POLLOUT):
                        push.send(encode_message(heartbeat(link.stream)))
                    last_out = time.monotonic()
        finally:
            close_all(ctx, [pull, push, rep], [receivers])
        self.log.info(
            "done (%s): %s", self.stop.reason or "end of stream", self.stats()
        )
        return 0

    def wait_for_receivers(self, receivers: PeerWatch) -> None:
        """After the end of stream: stay until the receiver, having read it, hangs up."""
        patience = self.cfg.link.idle_timeout_s
        if not wait_for_hangup([receivers], patience, self.stop):
            self.log.warning("the receiver was still connected after %.1f s", patience)

    def handle(self, msg: Message, push: zmq.Socket) -> bool:
        """Process one message from the transmitter; True when something was sent on."""
        self.counts[f"in_{msg.type}"] += 1
        if msg.type == "data":
            try:
                out = self.apply(msg)
            except WireError as exc:
                self.drops.add("channel_in", exc)
                return False
            sent = send(push, out, self.stop)
            self.counts["forwarded"] += sent
            return sent
        if msg.type == "eos":
            try:
                frames_sent = parse_eos(msg)
            except WireError as exc:
                self.drops.add("channel_in", exc)
                return False
            self.log.info(
                "end of stream from the transmitter: %d frames sent", frames_sent
            )
            return send(push, msg, self.stop)
        if msg.type == "ctrl":
            self.drops.add(
                "channel_in", ProtocolError("control message on the data socket")
            )
        return False


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
