"""Client of the channel's control socket (REQ/REP with timeout and retry)."""

from __future__ import annotations

import zmq

from shared.protocol import control_message
from shared.wire import decode_message, encode_message

REQUEST_TIMEOUT_MS = 2500
REQUEST_RETRIES = 3


class ControlError(RuntimeError):
    """The channel refused a request or did not answer."""


class ControlClient:
    """Send ``ctrl`` requests to the channel; a lost reply recreates the socket (the
    "lazy pirate" pattern) and retries."""

    def __init__(
        self,
        endpoint: str,
        timeout_ms: int = REQUEST_TIMEOUT_MS,
        retries: int = REQUEST_RETRIES,
    ) -> None:
        self.endpoint, self.timeout_ms, self.retries = endpoint, timeout_ms, retries
        self.ctx = zmq.Context()
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    def request(self, cmd: str, **fields: object) -> dict[str, object]:
        """Send a command and return the reply's meta; ControlError if refused or silent."""
        data = encode_message(control_message(cmd, **fields))
        for _ in range(self.retries):
            self.sock.send(data)
            if self.sock.poll(self.timeout_ms, zmq.POLLIN):
                reply = dict(decode_message(self.sock.recv()).meta)
                if not reply.get("ok"):
                    raise ControlError(f"channel refused {cmd}: {reply.get('error')}")
                return reply
            self.sock.close(linger=0)
            self.sock = self._connect()
        raise ControlError(
            f"no reply from the channel control socket {self.endpoint} "
            f"after {self.retries} tries"
        )

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
