"""Launching the three link processes on fresh endpoints, and supervising one run.

The processes run as ``python -m receiver``, ``python -m channel_sim`` and
``python -m transmitter`` on free loopback TCP ports (or ``ipc://`` sockets), with their
logs relayed behind a prefix and kept in ``link.log``. A run ends when the end of stream
has passed through all three. A process that crashes is started again to continue the
stream (``link.max_restarts`` times); one that crashes more often stops the others. The
receiver's ``summary.json`` gains the restarts and crashes of the run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.config import Config, config_from_dict, dump_config
from shared.errors import LinkError, SpikeLinkError
from shared.link.control import ControlClient
from shared.link.security import link_keys

PROCESSES = (("rx", "receiver"), ("ch", "channel_sim"), ("tx", "transmitter"))
#: What a run calls to steer the channel; it receives a factory of control clients.
Control = Callable[[Callable[[], ControlClient]], None]
STOP_GRACE_S = 10.0
POLL_S = 0.2


#: The kernel's range of source ports for outgoing connections (Linux).
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Linux's default range, where the file cannot be read.
DEFAULT_EPHEMERAL = range(32768, 61000)


def ephemeral_ports() -> range:
    """The ports the kernel hands out as source ports of outgoing connections."""
    try:
        low, high = map(int, EPHEMERAL_PORTS.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return range(low, high + 1)


def free_tcp_port(avoid: frozenset[int] = frozenset()) -> int:
    """A port that was free on 127.0.0.1 a moment ago, outside ``avoid`` and the kernel's
    ephemeral range: a link process that connects before its peer has bound (libzmq
    retries until it has) takes its source ports from that range, and could take the
    very port the peer is about to bind, which then fails."""
    ephemeral, pick = ephemeral_ports(), random.SystemRandom()
    for _ in range(1000):
        port = pick.randrange(1024, 65536)
        if port in ephemeral or port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise LinkError("no free TCP port on 127.0.0.1 outside the ephemeral range")


def endpoint_overrides(transport: str, folder: Path) -> list[str]:
    names = ("channel_in", "channel_out", "channel_control", "reference")
    if transport == "ipc":
        return [f"link.{n}=ipc://{folder / n}" for n in names]
    ports: list[int] = []
    for _ in names:
        ports.append(free_tcp_port(frozenset(ports)))
    return [f"link.{n}=tcp://127.0.0.1:{port}" for n, port in zip(names, ports)]


@dataclass
class LinkResult:
    status: int
    summary: dict | None
    out_dir: Path


class LinkRun:
    """The three child processes of one link run, supervised: a process that crashes is
    started again (``link.max_restarts`` times each, after a back-off that doubles from
    ``link.restart_backoff_s``) to continue the stream, while the others run on."""

    def __init__(self, cfg: Config, quiet: bool = False) -> None:
        self.cfg, self.quiet = cfg, quiet
        self.out_dir = Path(cfg.link.out_dir)
        self.children: dict[str, subprocess.Popen] = {}
        self.threads: list[threading.Thread] = []
        self.log_lock = threading.Lock()
        self.error: str | None = None
        self.setup: Control | None = None
        self.restarts: Counter[str] = Counter()
        self.crashes: list[dict[str, object]] = []
        self.replaced: list[subprocess.Popen] = []

    def start(self, setup: Control | None = None) -> None:
        """Start the receiver and the channel, then ``setup`` (called with a factory of
        clients of the channel's control socket: settings that must hold from the first
        frame; called again whenever the channel is restarted), then the transmitter. A
        failed ``setup`` is recorded in ``error`` and the transmitter is not started;
        :meth:`wait` then stops the run."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.out_dir / "link_config.yaml"
        self.config_path.write_text(dump_config(self.cfg))
        self.log_file = open(self.out_dir / "link.log", "w")
        self.setup = setup
        for tag, _ in PROCESSES:
            if tag == "tx" and setup is not None:
                self._control(setup, "set-up")
                if self.error:
                    return
            self._spawn(tag)

    def _spawn(self, tag: str, *extra: str) -> None:
        module = dict(PROCESSES)[tag]
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(self.config_path), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if tag in self.children:
            self.replaced.append(self.children[tag])
        self.children[tag] = proc
        thread = threading.Thread(target=self._relay, args=(tag, proc), daemon=True)
        thread.start()
        self.threads.append(thread)

    def restart(self, tag: str, code: int) -> bool:
        """Start a crashed child again to continue the stream (``link.resume_stream``);
        False when its restarts are used up."""
        link = self.cfg.link
        self.crashes.append({"process": dict(PROCESSES)[tag], "exit": code})
        if self.restarts[tag] >= link.max_restarts:
            return False
        delay = link.restart_backoff_s * 2 ** self.restarts[tag]
        self.restarts[tag] += 1
        print(
            f"[link] {tag} exited with {code}; restart {self.restarts[tag]} of "
            f"{link.max_restarts} in {delay:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(delay)
        self._spawn(tag, "--set", "link.resume_stream=true")
        if tag == "ch" and self.setup is not None:
            self._control(self.setup, "set-up after the channel's restart")
        return not self.error

    def _relay(self, tag: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            text = f"[{tag}] {line.rstrip()}"
            with self.log_lock:
                self.log_file.write(text + "\n")
                loud = " WARNING " in line or " ERROR " in line or "Traceback" in line
                if not self.quiet or loud:
                    print(text, file=sys.stderr, flush=True)

    def wait(self, controller: Control | None = None) -> int:
        """Wait for all three, restarting a crashed one; a process that crashes more
        often than allowed stops the others. Returns the status.

        Once the transmitter has finished, the others get ``link.idle_timeout_s`` to see
        the end of stream; after that the run is stopped as failed, not left hanging.
        """
        if controller is not None:
            threading.Thread(
                target=self._control, args=(controller, "controller"), daemon=True
            ).start()
        tx_done_at: float | None = None
        while True:
            codes = {tag: p.poll() for tag, p in self.children.items()}
            crashed = {t: c for t, c in codes.items() if c not in (None, 0)}
            gave_up = {t: c for t, c in crashed.items() if not self.restart(t, c)}
            if codes.get("tx") == 0 and tx_done_at is None:
                tx_done_at = time.monotonic()
            overdue = (
                tx_done_at is not None
                and time.monotonic() - tx_done_at > self.cfg.link.idle_timeout_s
            )
            if overdue and not self.error:
                self.error = (
                    "the end of stream did not pass through within "
                    f"{self.cfg.link.idle_timeout_s:.0f} s of the transmitter's end"
                )
            if gave_up or self.error:
                reason = self.error or ", ".join(
                    f"{t} exited with {c} after {self.restarts[t]} restarts"
                    for t, c in gave_up.items()
                )
                print(f"[link] stopping: {reason}", file=sys.stderr, flush=True)
                self.stop()
                return 1
            if codes and all(c == 0 for c in codes.values()):
                return 0
            time.sleep(POLL_S)

    def control_client(self) -> ControlClient:
        """A client of this run's control socket (with the control peer's CURVE keys
        when the link uses them)."""
        link = self.cfg.link
        return ControlClient(link.channel_control, link_keys(link, "control"))

    def _control(self, controller: Control, role: str) -> None:
        try:
            controller(self.control_client)
        except SpikeLinkError as exc:
            self.error = f"{role} failed: {exc}"
        except BaseException:
            self.error = f"{role} failed with an unexpected error (traceback above)"
            raise

    def stop(self) -> int:
        """SIGINT to every child still running (each finishes its current message,
        writes its outputs and exits 0), then SIGKILL after a grace period; returns 0
        when every child ended cleanly, else 1."""
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return 0 if all(p.returncode == 0 for p in self.children.values()) else 1

    def close(self) -> None:
        """Stop any child still running (a run that ended in an error), then end the
        relays of their output and close the log."""
        self.stop()
        for thread in self.threads:
            thread.join(timeout=5)
        for proc in [*self.replaced, *self.children.values()]:
            proc.stdout.close()
        self.log_file.close()


def run_link(
    cfg: Config,
    transport: str = "tcp",
    quiet: bool = False,
    controller: Control | None = None,
    setup: Control | None = None,
) -> LinkResult:
    """Run the link once with ``cfg`` on fresh endpoints; returns status and summary.

    ``setup`` and ``controller`` are called with a factory of control clients:
    ``setup`` before the transmitter starts, ``controller`` in a thread while the link
    runs (see :meth:`LinkRun.start` and :meth:`LinkRun.wait`)."""
    with tempfile.TemporaryDirectory(prefix="spikelink-") as tmp:
        cfg = config_from_dict(cfg.to_dict(), endpoint_overrides(transport, Path(tmp)))
        run = LinkRun(cfg, quiet)
        # Ctrl-C and SIGTERM stop the link, also where SIGINT came in ignored (a shell
        # starts background commands so, and Python then leaves it ignored).
        previous = {
            sig: signal.signal(sig, signal.default_int_handler)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            run.start(setup)
            status = run.wait(controller)
        except KeyboardInterrupt:
            print("[link] interrupted: stopping the three processes", file=sys.stderr)
            status = run.stop()
        except BaseException:
            run.stop()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            run.close()
    path = run.out_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else None
    if summary is not None:
        summary["restarts"] = {dict(PROCESSES)[t]: n for t, n in run.restarts.items()}
        summary["crashes"] = run.crashes
        path.write_text(json.dumps(summary, indent=2) + "\n")
    return LinkResult(status, summary, run.out_dir)
