"""Sockets of the link processes: bounded queues, back-pressure, peers, liveness, and
the counters of dropped messages."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from shared.errors import WireError
from shared.signals import StopFlag
from shared.wire import Message, decode_message

POLL_SLICE_MS = 100
#: libzmq (re-)establishes a connection itself, retrying after 0.1 s and backing off to
#: 2 s; queued messages survive, which a hand-made close-and-reconnect would lose.
RECONNECT_IVL_MS, RECONNECT_IVL_MAX_MS = 100, 2000


#: Distinct stream ids a process counts messages of; messages of any further stream are
#: counted together under "other", so that made-up stream ids cannot grow the counters.
STREAMS_COUNTED = 16
#: Frames whose rejection reason a process keeps, for the same reason.
REASONS_KEPT = 100_000


def count_stream(counts: Counter[str], stream: int) -> None:
    """Count one message of ``stream`` in ``counts`` (at most :data:`STREAMS_COUNTED`
    streams by name, the rest as "other")."""
    key = str(stream)
    if key not in counts and len(counts) >= STREAMS_COUNTED:
        key = "other"
    counts[key] += 1


class DropCounter:
    """Counts rejected messages by kind and logs the first of each kind; ``reasons``
    keeps the first reason for each frame whose message was rejected (for
    :data:`REASONS_KEPT` frames at most)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.counts: Counter[str] = Counter()
        self.reasons: dict[int, str] = {}

    def add(self, where: str, error: WireError, seq: int | None = None) -> None:
        self.counts[error.kind] += 1
        if seq is not None and len(self.reasons) < REASONS_KEPT:
            self.reasons.setdefault(seq, f"{where}: {error}")
        if self.counts[error.kind] == 1:
            self.log.warning(
                "dropped a %s message on %s (%s); further ones of this "
                "kind are only counted",
                error.kind,
                where,
                error.detail,
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())


#: Sets a socket's security options before it binds or connects (``shared.link.security``).
Secure = Callable[[zmq.Socket], None]


def open_socket(
    ctx: zmq.Context,
    kind: int,
    endpoint: str,
    bind: bool,
    hwm: int,
    secure: Secure | None = None,
) -> zmq.Socket:
    """A socket with bounded queues that never lingers on close, bound or connected,
    with the security options ``secure`` sets.

    A connecting PUSH socket queues messages only for a completed connection
    (``ZMQ_IMMEDIATE``): while its peer is not up yet, or gone, sending waits instead of
    filling a queue that a close would then throw away. Receiving sockets keep the
    default, because with it libzmq discards the messages they have not yet read when
    the sender disconnects.
    """
    sock = _bounded_socket(ctx, kind, hwm, secure)
    _attach(sock, endpoint, bind)
    return sock


def open_sender(
    ctx: zmq.Context,
    endpoint: str,
    bind: bool,
    hwm: int,
    secure: Secure | None = None,
) -> tuple[zmq.Socket, PeerWatch]:
    """A PUSH socket as :func:`open_socket` makes it, with its peers watched from the
    start (see :class:`PeerWatch`)."""
    sock = _bounded_socket(ctx, zmq.PUSH, hwm, secure)
    watch = PeerWatch(sock)
    _attach(sock, endpoint, bind)
    return sock, watch


def _bounded_socket(
    ctx: zmq.Context, kind: int, hwm: int, secure: Secure | None
) -> zmq.Socket:
    sock = ctx.socket(kind)
    if secure is not None:
        secure(sock)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    return sock


def _attach(sock: zmq.Socket, endpoint: str, bind: bool) -> None:
    if bind:
        sock.bind(endpoint)
        return
    if sock.type == zmq.PUSH:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.connect(endpoint)


def receive(
    sock: zmq.Socket, drops: DropCounter, where: str, max_bytes: int
) -> Message | None:
    """One message from ``sock`` (which has data); None if it was rejected and counted."""
    data = sock.recv(copy=True)
    try:
        return decode_message(data, max_bytes)
    except WireError as exc:
        drops.add(where, exc)
        return None


def send(
    sock: zmq.Socket,
    data: bytes,
    stop: StopFlag | None,
    timeout_s: float | None = None,
) -> bool:
    """Send one encoded message, waiting while the peer's queue is full (back-pressure).

    Returns False when ``stop`` is set or ``timeout_s`` passes before the message left.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not (stop is not None and stop.is_set):
        if sock.poll(POLL_SLICE_MS, zmq.POLLOUT):
            sock.send(data, copy=False)
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
    return False


class Liveness:
    """Heartbeat bookkeeping: any message resets it; only time spent waiting counts as
    silence (not time spent working), and silence for ``liveness`` intervals means the
    peer is gone (reported once per silent period)."""

    def __init__(self, interval_s: float, liveness: int) -> None:
        self.interval_s, self.liveness = interval_s, liveness
        self.silence_s = 0.0
        self.reported = False

    def heard(self) -> None:
        self.silence_s = 0.0
        self.reported = False

    def waited(self, seconds: float) -> None:
        self.silence_s += seconds

    def newly_silent(self) -> bool:
        """True once when the silence first exceeds ``liveness`` intervals."""
        if self.reported or self.silence_s <= self.interval_s * self.liveness:
            return False
        self.reported = True
        return True


def close_all(
    ctx: zmq.Context,
    sockets: list[zmq.Socket],
    watches: Sequence[PeerWatch] = (),
    authenticator: ThreadAuthenticator | None = None,
) -> None:
    """Close the monitors of ``watches``, the sockets (dropping whatever is still
    queued), the CURVE authenticator and the context. A sender waits for its peers to
    hang up (:func:`wait_for_hangup`) before it calls this."""
    for watch in watches:
        watch.close()
    for sock in sockets:
        sock.close(linger=0)
    if authenticator is not None:
        authenticator.stop()
    ctx.term()


class PeerWatch:
    """The live connections of one socket, followed through a libzmq socket monitor.

    A sender that has sent its end of stream waits until its peers hang up
    (:func:`wait_for_hangup`) before it closes: its peer closes only after reading the end
    of stream, whereas a sender that exits at once can lose the tail of the stream (over
    ``ipc://`` libzmq discards what a reader throttled by its high-water mark has not
    read yet when the writer goes away).
    """

    EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.monitor = sock.get_monitor_socket(self.EVENTS)
        self.peers = 0

    def update(self) -> None:
        """Count the connection events that arrived since the last call."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            self.peers += -1 if event == zmq.EVENT_DISCONNECTED else 1

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)


def wait_for_hangup(
    watches: list[PeerWatch],
    timeout_s: float,
    stop: StopFlag | None = None,
    last: bytes | None = None,
) -> bool:
    """Wait until every watched socket has no peer left; False after ``timeout_s``
    seconds or a stop request.

    ``last`` (the end of stream) is sent again on a socket whenever a peer connects to
    it during the wait: a peer restarted after the crash of the one that should have
    read it still gets it.
    """
    deadline = time.monotonic() + timeout_s
    poller = zmq.Poller()
    for watch in watches:
        poller.register(watch.monitor, zmq.POLLIN)
    while True:
        for watch in watches:
            before = watch.peers
            watch.update()
            if last is not None and watch.peers > before:
                send(
                    watch.sock,
                    last,
                    stop,
                    timeout_s=max(deadline - time.monotonic(), 0),
                )
        if all(watch.peers <= 0 for watch in watches):
            return True
        if (stop is not None and stop.is_set) or time.monotonic() > deadline:
            return False
        poller.poll(POLL_SLICE_MS)
