"""CURVE on the link: private key files, and a channel that lets only its own peers in."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq
from conftest import OutputLines, latent_view, start_process, wait_until

from shared.cli import main as spikelink
from shared.config import load_config
from shared.errors import ConfigError, ControlError
from shared.link.control import ControlClient
from shared.link.launcher import endpoint_overrides
from shared.link.security import PEERS, CurveKeys, link_keys
from shared.model.checkpoint import load_model
from shared.wire import decode_message


def test_keys_are_made_private_for_every_peer(tmp_path: Path, capsys) -> None:
    assert spikelink(["keys", "--out", str(tmp_path / "keys")]) == 0
    names = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert names == sorted(
        f"{p}{ext}" for p in PEERS for ext in (".key", ".key_secret")
    )
    for peer in PEERS:
        mode = (tmp_path / "keys" / f"{peer}.key_secret").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert len(capsys.readouterr().out.splitlines()) == 2 * len(PEERS)
    cfg = load_config(None, ["link.security=curve"])
    with pytest.raises(ConfigError, match="link.keys_dir"):
        link_keys(cfg.link, "channel")
    with pytest.raises(ConfigError, match="missing.key_secret"):
        CurveKeys.load(tmp_path / "keys", "missing")


@pytest.mark.heavy
def test_a_peer_without_an_allowed_key_gets_nothing_through(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """A plain socket and one with a key the link does not know send a view each to a
    CURVE channel; only the view of the transmitter's key comes out, and a control
    client without the control key gets no answer."""
    assert spikelink(["keys", "--out", str(tmp_path / "keys")]) == 0
    assert spikelink(["keys", "--out", str(tmp_path / "strangers")]) == 0
    cfg = load_config(
        "tiny",
        [
            "link.security=curve",
            f"link.keys_dir={tmp_path / 'keys'}",
            "link.hb_interval_s=0.2",
            *endpoint_overrides("tcp", tmp_path),
        ],
    )
    model, _ = load_model(tiny_checkpoint)
    proc = start_process("channel_sim", cfg, tmp_path)
    channel = OutputLines(proc)
    ctx = zmq.Context()
    for option in (zmq.LINGER, zmq.SNDTIMEO, zmq.RCVTIMEO):  # nothing waits for ever
        ctx.setsockopt(option, 0 if option == zmq.LINGER else 10_000)
    sockets = []

    def pusher(keys: CurveKeys | None) -> zmq.Socket:
        sock = ctx.socket(zmq.PUSH)
        if keys is not None:
            keys.connect_to(sock, "channel")
        sock.connect(cfg.link.channel_in)
        sockets.append(sock)
        return sock

    try:
        channel.wait_for("listening on", 60)
        receiver = ctx.socket(zmq.PULL)
        CurveKeys.load(tmp_path / "keys", "receiver").connect_to(receiver, "channel")
        receiver.connect(cfg.link.channel_out)
        sockets.append(receiver)
        stranger = CurveKeys.load(tmp_path / "strangers", "transmitter")
        own = CurveKeys.load(tmp_path / "keys", "transmitter")
        for seq, keys in enumerate((None, stranger, own)):
            view = latent_view(model.code, seq, 0, model).encode()
            sock = pusher(keys)
            try:
                sock.send(view, flags=0 if keys is own else zmq.NOBLOCK)
            except zmq.Again:  # the channel already refused the handshake: no pipe
                assert keys is not own
        received = []

        def a_view_arrived() -> bool:
            while receiver.poll(0):
                msg = decode_message(receiver.recv())
                if msg.type == "data":
                    received.append(msg.seq)
            return bool(received)

        wait_until(a_view_arrived, 60, "the transmitter's view")
        keys = CurveKeys.load(tmp_path / "keys", "control")
        with ControlClient(cfg.link.channel_control, keys) as client:
            stats = client.stats()
            with ControlClient(
                cfg.link.channel_control, timeout_ms=300, retries=2
            ) as stranger_client:
                with pytest.raises(ControlError, match="no reply"):
                    stranger_client.stats()
            client.stop()
        proc.wait(timeout=30)
    finally:
        for sock in sockets:
            sock.close()
        ctx.term()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert received == [2] and stats["count_in_data"] == 1
    assert proc.returncode == 0
