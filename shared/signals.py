"""Stopping on SIGINT / SIGTERM at a safe point instead of wherever the signal lands."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by SIGINT or SIGTERM (or by hand); loops check it at points where stopping
    loses nothing (between messages, after a training step).

    Used as a context manager it puts the previous handlers back on exit, so that a
    program calling a loop in-process gets its own signal handling back.
    """

    def __init__(self) -> None:
        self.is_set = False
        self.reason = ""
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def _handle(self, signum: int, frame: object) -> None:
        self.set(signal.Signals(signum).name)

    def set(self, reason: str) -> None:
        self.is_set, self.reason = True, reason

    def __enter__(self) -> StopFlag:
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
