"""The fault-injection scenario of ``spikelink faults``, against the real processes.

One supervised, CURVE-secured link run streams the bundled sample pairs until ``frames``
frames are sent. While it runs, the scenario

1. kills each process in turn with SIGKILL once the stream has moved on since the last
   kill (the launcher restarts it; the stream resumes);
2. reads the resident memory of each process after the restarts;
3. fuzzes each input socket (the channel's input and control, the receiver's reference
   input) with ``fuzz`` bad messages in all, interleaved with the stream's valid frames;
4. tries a peer without an allowed key (and one with a key the link does not know)
   against the channel's input, the receiver's reference input and the control socket;
5. lets the rest of the stream run as a soak, reading the memory at every tenth of it
   (the first tenth is the warm-up) and near its end.

:func:`run_faults` returns the figures ``faults.json`` holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import zmq

from shared.assets import SAMPLE_PAIRS
from shared.config import Config, load_config
from shared.data.frames import load_frames, source_pairs
from shared.errors import ControlError, LinkError
from shared.link.control import ControlClient
from shared.link.fuzz import bad_frames
from shared.link.launcher import PROCESSES, LinkRun, endpoint_overrides
from shared.link.messages import (
    LatentView,
    ReferenceView,
    SourceInfo,
    StatsRequest,
    read_from_transmitter,
    read_reference,
    read_request,
)
from shared.link.process import CHANNEL_STATS_FILE
from shared.link.security import CurveKeys, create_keys
from shared.measure.meter import encode_measured
from shared.model.checkpoint import load_model
from shared.wire import decode_message, encode_message

#: The stream id of the key-less peers' messages: the channel and the receiver count the
#: messages of each stream they receive, so one that got through would be seen.
INTRUDER_STREAM = 999
INTRUDER_MESSAGES = 20
MAX_MESSAGE_BYTES = 2**20
TIMEOUT_S = 120.0
#: How long a fuzzing socket may take, once closed, to deliver what it queued: a busy
#: receiver reads its reference socket slowly, and a socket closed with a short linger
#: would throw away bad messages that were then counted as sent.
DELIVERY_S = 120


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise ValueError(f"no VmRSS for process {pid}")


#: Memory samples over the soak, the first after a tenth of it (the warm-up).
RSS_SAMPLES = 10


@dataclass
class Tally:
    """What the scenario did and saw, filled in while the link runs."""

    kills: list[str] = field(default_factory=list)
    rss_start: dict[str, float] = field(default_factory=dict)
    rss_end: dict[str, float] = field(default_factory=dict)
    rss_trace: list[dict[str, float]] = field(default_factory=list)
    bad_sent: dict[str, int] = field(default_factory=dict)
    channel_dropped_before: int = 0
    control_refused: int = 0
    intruder_replies: int = 0


def scenario_config(model: str, frames: int, out: Path) -> Config:
    """The link of the scenario: the bundled samples repeated to ``frames`` or more,
    CURVE on, unpaced, no PNGs, restarts allowed."""
    _, model_cfg = load_model(model)
    pairs = len(source_pairs(SAMPLE_PAIRS))
    return load_config(
        None,
        [
            f"link.model={model}",
            f"link.source={SAMPLE_PAIRS}",
            f"link.repeat={math.ceil(frames / pairs)}",
            f"link.out_dir={out / 'link'}",
            "link.save_png=false",
            "link.security=curve",
            f"link.keys_dir={out / 'keys'}",
            "link.hb_interval_s=0.5",
            "link.restart_backoff_s=0.2",
            f"link.max_message_bytes={MAX_MESSAGE_BYTES}",
            f"data.image_height={model_cfg.data.image_height}",
            f"data.image_width={model_cfg.data.image_width}",
            *endpoint_overrides("tcp", out),
        ],
    )


class Scenario:
    """The steps of the scenario, run in the launcher's controller thread."""

    def __init__(self, run: LinkRun, fuzz: int, seed: int) -> None:
        self.run, self.fuzz, self.seed = run, fuzz, seed
        self.cfg = run.cfg
        self.tally = Tally()
        self.keys = Path(self.cfg.link.keys_dir)

    def logged(self) -> int:
        path = self.run.out_dir / "frames.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Wait until ``condition`` holds; LinkError when the receiver logged no new
        frame for :data:`TIMEOUT_S` (a soak of any length may take its time)."""
        logged, deadline = self.logged(), time.monotonic() + TIMEOUT_S
        while not condition():
            if self.logged() > logged:
                logged, deadline = self.logged(), time.monotonic() + TIMEOUT_S
            if time.monotonic() > deadline or self.run.error:
                raise LinkError(
                    f"fault scenario: no new frame for {TIMEOUT_S:.0f} s while "
                    f"waiting for {what}"
                )
            time.sleep(0.05)

    def __call__(self, connect: Callable[[], ControlClient]) -> None:
        for tag in ("ch", "rx", "tx"):
            start = self.logged()
            self.wait_for(lambda: self.logged() >= start + 3, "the stream to go on")
            self.run.children[tag].send_signal(signal.SIGKILL)
            self.tally.kills.append(dict(PROCESSES)[tag])
            self.wait_for(lambda: self.run.restarts[tag] == 1, f"{tag} to restart")
        start = self.logged()
        self.wait_for(lambda: self.logged() >= start + 5, "the stream after restarts")
        self.tally.rss_start = self.memory()
        self.fuzz_inputs(connect)
        self.try_intruders()
        total = self.cfg.link.repeat * len(source_pairs(SAMPLE_PAIRS))
        # The transmitter and the channel finish up to a pipeline of queues ahead of
        # the receiver's log; the samples end before the first of them can exit.
        ahead = 4 * self.cfg.link.hwm + 10
        soak_start, soak_end = self.logged(), total - ahead
        if soak_start >= soak_end:
            raise LinkError(
                f"fault scenario: the stream reached frame {soak_start} of {total} "
                f"while the faults ran, past the soak's last sample ({soak_end}); "
                "run more --frames"
            )
        for i in range(1, RSS_SAMPLES + 1):
            mark = soak_start + (soak_end - soak_start) * i // RSS_SAMPLES
            self.wait_for(lambda: self.logged() >= mark, "the end of the soak")
            self.tally.rss_trace.append({"frames": self.logged(), **self.memory()})
        self.tally.rss_end = self.memory()

    def memory(self) -> dict[str, float]:
        return {
            dict(PROCESSES)[tag]: rss_mb(proc.pid)
            for tag, proc in self.run.children.items()
            if proc.poll() is None
        }

    # ------------------------------------------------------------------ fuzzing

    def fuzz_inputs(self, connect: Callable[[], ControlClient]) -> None:
        """A third of the bad messages to each input socket; the channel's drop counter
        is read before and after."""
        share = [self.fuzz // 3 + (i < self.fuzz % 3) for i in range(3)]
        view, reference = self.valid_messages()
        with connect() as client:
            dropped_before = int(client.stats()["dropped"])
            ctx = zmq.Context()
            try:
                for name, endpoint, server, base, read, count in (
                    (
                        "channel_in",
                        self.cfg.link.channel_in,
                        "channel",
                        view,
                        read_from_transmitter,
                        share[0],
                    ),
                    (
                        "reference",
                        self.cfg.link.reference,
                        "receiver",
                        reference,
                        read_reference,
                        share[1],
                    ),
                ):
                    sock = self.socket(ctx, zmq.PUSH, endpoint, server, "transmitter")
                    frames = bad_frames(base, read, count, self.seed, MAX_MESSAGE_BYTES)
                    for _, frame in frames:
                        sock.send(frame)
                    self.tally.bad_sent[name] = count
                    sock.close()
                self.fuzz_control(ctx, share[2])
            finally:
                ctx.term()
        self.tally.channel_dropped_before = dropped_before

    def fuzz_control(self, ctx: zmq.Context, count: int) -> None:
        sock = self.socket(
            ctx, zmq.REQ, self.cfg.link.channel_control, "channel", "control"
        )
        base = StatsRequest().encode()
        for _, frame in bad_frames(
            base, read_request, count, self.seed, MAX_MESSAGE_BYTES
        ):
            sock.send(frame)
            if sock.poll(5000):
                sock.recv()
                self.tally.control_refused += 1
        self.tally.bad_sent["channel_control"] = count
        sock.close()

    def socket(
        self, ctx: zmq.Context, kind: int, endpoint: str, server: str, peer: str
    ) -> zmq.Socket:
        sock = ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, DELIVERY_S * 1000)
        CurveKeys.load(self.keys, peer).connect_to(sock, server)
        sock.connect(endpoint)
        return sock

    def valid_messages(self) -> tuple[bytes, bytes]:
        """A valid view and reference of the stream's first pair, the bases of the
        mutated bad messages."""
        model, cfg = load_model(self.cfg.link.model)
        size = (cfg.data.image_height, cfg.data.image_width)
        frame = load_frames(SAMPLE_PAIRS, None, *size, limit=1)[0]
        with torch.no_grad():
            latent, activity = encode_measured(
                model, frame.left[None], frame.right[None]
            )
        source = SourceInfo(frame.name, *size, *size)
        view = LatentView(
            self.cfg.link.stream,
            0,
            0,
            model.code,
            latent[0, 0].numpy(),
            source,
            cfg.model.kind,
            activity,
        )
        reference = ReferenceView(self.cfg.link.stream, 0, 0, frame.left)
        return view.encode(), reference.encode()

    # ------------------------------------------------------------------ intruders

    def try_intruders(self) -> None:
        """A peer without a key and one with a key the link does not know send valid
        views and references (of stream :data:`INTRUDER_STREAM`) and control requests;
        replies to the requests are counted."""
        strangers = self.run.out_dir.parent / "stranger_keys"
        create_keys(strangers)
        view, reference = self.valid_messages()
        ctx = zmq.Context()
        try:
            for keys in (None, CurveKeys.load(strangers, "transmitter")):
                self.intrude(ctx, keys, view, reference)
        finally:
            ctx.term()

    def intrude(
        self, ctx: zmq.Context, keys: CurveKeys | None, view: bytes, reference: bytes
    ) -> None:
        link = self.cfg.link
        for endpoint, server, base in (
            (link.channel_in, "channel", view),
            (link.reference, "receiver", reference),
        ):
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDTIMEO, 1000)
            if keys is not None:
                keys.connect_to(sock, server)
            sock.connect(endpoint)
            for i in range(INTRUDER_MESSAGES):
                try:
                    sock.send(_restreamed(base, i))
                except zmq.Again:
                    break
            sock.close()
        client = ControlClient(link.channel_control, keys, timeout_ms=500, retries=1)
        try:
            client.stats()
            self.tally.intruder_replies += 1
        except ControlError:
            pass
        finally:
            client.close()


def _restreamed(frame: bytes, seq: int) -> bytes:
    """A copy of a valid message as frame ``seq`` of :data:`INTRUDER_STREAM`."""
    msg = decode_message(frame, MAX_MESSAGE_BYTES)
    return encode_message(dataclasses.replace(msg, stream=INTRUDER_STREAM, seq=seq))


def run_faults(model: str, frames: int, fuzz: int, out: Path, seed: int = 0) -> dict:
    """Run the scenario; returns the figures of ``faults.json``."""
    out.mkdir(parents=True, exist_ok=True)
    create_keys(out / "keys")
    cfg = scenario_config(model, frames, out)
    run = LinkRun(cfg, quiet=True)
    scenario = Scenario(run, fuzz, seed)
    t0 = time.monotonic()
    try:
        run.start()
        status = run.wait(scenario)
    finally:
        run.close()
    path = run.out_dir / "summary.json"
    if not path.exists():
        raise LinkError(f"the fault scenario's receiver wrote no summary ({path})")
    summary = json.loads(path.read_text())
    channel_path = run.out_dir / CHANNEL_STATS_FILE
    if not channel_path.exists():
        raise LinkError(
            f"the fault scenario's channel wrote no counters ({channel_path})"
        )
    channel = json.loads(channel_path.read_text())
    tally = scenario.tally
    channel_dropped = int(channel["dropped"]) - tally.channel_dropped_before
    intruders_in = (
        int(channel.get(f"count_in_stream_{INTRUDER_STREAM}", 0))
        + summary["messages_by_stream"].get(str(INTRUDER_STREAM), 0)
        + tally.intruder_replies
    )
    receiver_dropped = sum(summary["dropped_messages"].values())
    planned = len(tally.kills)
    return {
        "status": status,
        "wall_s": time.monotonic() - t0,
        "frames_sent": summary["frames_sent"],
        "frames_received": summary["frames_received"],
        "frames_lost": summary["frames_lost"],
        "lost_seq": summary["lost_seq"],
        "lost_reasons": summary["lost_reasons"],
        "kills": tally.kills,
        "crashes": len(run.crashes) - planned,
        "restarts": {dict(PROCESSES)[t]: n for t, n in run.restarts.items()},
        "bad_messages_sent": sum(tally.bad_sent.values()),
        "bad_messages_sent_by_socket": tally.bad_sent,
        "bad_messages_counted": channel_dropped + receiver_dropped,
        "bad_messages_counted_by_process": {
            "channel": channel_dropped,
            "receiver": receiver_dropped,
        },
        "control_refusals_replied": tally.control_refused,
        "unauthenticated_accepted": intruders_in,
        "rss_mb": {
            name: [tally.rss_start.get(name), tally.rss_end.get(name)]
            for name in tally.rss_start
        },
        "rss_after_warmup_mb": {
            name: [tally.rss_trace[0].get(name), tally.rss_end.get(name)]
            for name in tally.rss_start
            if tally.rss_trace
        },
        "rss_trace_mb": tally.rss_trace,
    }
