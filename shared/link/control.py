"""Client of the channel's control socket (REQ/REP with timeout and retry)."""

from __future__ import annotations

from collections.abc import Mapping

import zmq

from shared.errors import ControlError
from shared.link.messages import (
    ControlReply,
    ControlRequest,
    SetRequest,
    StatsRequest,
    StopRequest,
)
from shared.link.security import CurveKeys
from shared.wire import Scalar, decode_message

REQUEST_TIMEOUT_MS = 2500
REQUEST_RETRIES = 3


class ControlClient:
    """Send control requests to the channel; a lost reply recreates the socket (the
    "lazy pirate" pattern) and retries."""

    def __init__(
        self,
        endpoint: str,
        keys: CurveKeys | None = None,
        timeout_ms: int = REQUEST_TIMEOUT_MS,
        retries: int = REQUEST_RETRIES,
    ) -> None:
        """``keys``: the ``control`` peer's CURVE keys when the link uses CURVE."""
        self.endpoint, self.keys = endpoint, keys
        self.timeout_ms, self.retries = timeout_ms, retries
        self.ctx = zmq.Context()
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            self.keys.connect_to(sock, "channel")
        sock.connect(self.endpoint)
        return sock

    def request(self, request: ControlRequest) -> Mapping[str, Scalar]:
        """Send ``request``; returns the reply's values, ControlError if the channel
        refused it or did not answer."""
        data = request.encode()
        for _ in range(self.retries):
            self.sock.send(data)
            if self.sock.poll(self.timeout_ms, zmq.POLLIN):
                reply = ControlReply.read(decode_message(self.sock.recv()))
                if not reply.ok:
                    raise ControlError(
                        f"channel refused {type(request).__name__}: {reply.error}"
                    )
                return reply.values
            self.sock.close(linger=0)
            self.sock = self._connect()
        raise ControlError(
            f"no reply from the channel control socket {self.endpoint} "
            f"after {self.retries} tries"
        )

    def set_channel(
        self, from_seq: int | None = None, **fields: Scalar
    ) -> Mapping[str, Scalar]:
        """Change channel settings now (or from frame ``from_seq`` on); returns the
        settings that result."""
        return self.request(SetRequest(fields, from_seq))

    def stats(self) -> Mapping[str, Scalar]:
        """The channel's counters and current settings."""
        return self.request(StatsRequest())

    def stop(self) -> None:
        self.request(StopRequest())

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
