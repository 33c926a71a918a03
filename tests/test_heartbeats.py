"""ZMTP heartbeats both ways (``link_context``): a frozen peer is found out and its
connection closed within the liveness window, and the link reconnects when it wakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import zmq
from conftest import wait_until

from shared.config import LinkConfig
from shared.link.launcher import free_tcp_port
from shared.link.sockets import PeerWatch, close_all, link_context, open_sender

#: A receiving peer: binds a PULL socket and sleeps; SIGSTOP freezes it, libzmq included.
PEER = """
import sys, time, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.PULL)
sock.bind(sys.argv[1])
print("ready", flush=True)
time.sleep(120)
"""

pytestmark = pytest.mark.heavy


@pytest.fixture
def frozen_peer():
    """(endpoint, process) of a peer that is stopped after the test's socket connects."""
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, endpoint], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield endpoint, proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
        proc.stdout.close()


def peers_of(watch: PeerWatch) -> int:
    watch.update()
    return watch.peers


def test_a_frozen_peer_is_dropped_and_reconnected_with_heartbeats(frozen_peer):
    endpoint, proc = frozen_peer
    link = LinkConfig(hb_interval_s=0.2, peer_timeout_s=0.5)
    ctx = link_context(link)
    sock, watch = open_sender(ctx, endpoint, False, link.hwm)
    try:
        wait_until(lambda: peers_of(watch) == 1, 10, "the connection")
        os.kill(proc.pid, signal.SIGSTOP)
        t_frozen = time.monotonic()
        wait_until(lambda: peers_of(watch) == 0, 10, "the frozen peer to be dropped")
        assert time.monotonic() - t_frozen < 5 * link.peer_timeout_s
        os.kill(proc.pid, signal.SIGCONT)
        wait_until(lambda: peers_of(watch) == 1, 10, "the reconnection")
    finally:
        close_all(ctx, [sock], [watch])


def test_without_heartbeats_a_frozen_peer_looks_alive(frozen_peer):
    """The check above is the heartbeats' doing: TCP alone keeps the connection up."""
    endpoint, proc = frozen_peer
    ctx = zmq.Context()
    sock, watch = open_sender(ctx, endpoint, False, 8)
    try:
        wait_until(lambda: peers_of(watch) == 1, 10, "the connection")
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(2.0)
        assert peers_of(watch) == 1
    finally:
        close_all(ctx, [sock], [watch])
