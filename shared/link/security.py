"""CURVE encryption and authentication of the link's sockets (``link.security: curve``).

``spikelink keys --out DIR`` makes one key pair per peer in pyzmq's certificate format
(``<name>.key`` public, ``<name>.key_secret`` secret and readable by its owner only). With
``link.security: curve`` and ``link.keys_dir: DIR`` every socket is encrypted: a bound
socket is a CURVE server with its process's key pair, and a ZAP authenticator admits only
the public keys in ``DIR``; a connecting socket knows its server's public key and
presents its own. A peer without an allowed key gets no message through.

=========  ================================================================
peer       sockets
=========  ================================================================
channel    binds ``channel_in``, ``channel_out``, ``channel_control``
receiver   binds ``reference``; connects to ``channel_out``
transmit.  connects to ``channel_in`` and ``reference``
control    the control client (launcher, sweep): connects to ``channel_control``
=========  ================================================================
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from shared.config import LinkConfig
from shared.errors import ConfigError

PEERS = ("transmitter", "channel", "receiver", "control")


def create_keys(folder: str | Path) -> list[Path]:
    """A CURVE key pair for every peer in ``folder`` (made private to its owner);
    returns the files written. Existing keys are replaced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, stat.S_IRWXU)
    written = []
    for peer in PEERS:
        public, secret = (Path(p) for p in zmq.auth.create_certificates(folder, peer))
        os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
        written += [public, secret]
    return written


@dataclass(frozen=True)
class CurveKeys:
    """The key pair of one peer and the folder of the allowed public keys."""

    folder: Path
    peer: str
    public: bytes
    secret: bytes

    @staticmethod
    def load(folder: str | Path, peer: str) -> CurveKeys:
        """Raises ConfigError naming ``link.keys_dir`` and the file when a key is
        missing or unreadable."""
        path = Path(folder) / f"{peer}.key_secret"
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"config key 'link.keys_dir': {path} cannot be read ({exc}); make the "
                "keys with `spikelink keys --out DIR`"
            ) from None
        if secret is None:
            raise ConfigError(f"config key 'link.keys_dir': {path} holds no secret key")
        return CurveKeys(Path(folder), peer, public, secret)

    def public_key_of(self, peer: str) -> bytes:
        path = self.folder / f"{peer}.key"
        try:
            return zmq.auth.load_certificate(path)[0]
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"config key 'link.keys_dir': {path} cannot be read ({exc})"
            ) from None

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a CURVE server with this peer's keys."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def connect_to(self, sock: zmq.Socket, server: str) -> None:
        """Make ``sock`` (before it connects) a CURVE client of peer ``server``."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.public_key_of(server)


def link_keys(link: LinkConfig, peer: str) -> CurveKeys | None:
    """The keys of ``peer`` when ``link.security`` is ``curve``, else None."""
    if link.security == "none":
        return None
    if not link.keys_dir:
        raise ConfigError(
            "config key 'link.keys_dir' is empty; link.security 'curve' needs the "
            "folder of `spikelink keys --out DIR`"
        )
    return CurveKeys.load(link.keys_dir, peer)


def server_of(keys: CurveKeys | None) -> Callable[[zmq.Socket], None] | None:
    """What makes a socket a CURVE server with ``keys`` (None without CURVE)."""
    return None if keys is None else keys.serve


def client_of(
    keys: CurveKeys | None, server: str
) -> Callable[[zmq.Socket], None] | None:
    """What makes a socket a CURVE client of ``server`` (None without CURVE)."""
    return None if keys is None else partial(keys.connect_to, server=server)


def start_authenticator(
    ctx: zmq.Context, keys: CurveKeys | None
) -> ThreadAuthenticator | None:
    """A ZAP authenticator on ``ctx`` that admits the public keys of ``keys.folder``
    alone (None without CURVE); stop it before the context terminates."""
    if keys is None:
        return None
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.folder))
    return auth
