"""The three-process link: it adds nothing, loses nothing, survives garbage, obeys control."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from conftest import (
    PROCESS_ENV,
    REPO,
    OutputLines,
    delivered,
    latent_view,
    start_process,
    synthetic_frame,
    valid_header,
    wait_until,
    write_image,
)

from shared.channel import WirelessChannel
from shared.cli import main as spikelink
from shared.config import load_config
from shared.errors import ControlError, DataError
from shared.evaluation import evaluate
from shared.link.control import ControlClient
from shared.link.launcher import (
    LinkRun,
    endpoint_overrides,
    ephemeral_ports,
    run_link,
)
from shared.link.messages import (
    EndOfStream,
    Heartbeat,
    ReferenceView,
)
from shared.link.security import create_keys
from shared.model.checkpoint import load_model
from shared.model.inference import load_for_inference
from shared.wire import WIRE_VERSION, Message, decode_message, encode_message, frame_of
from transmitter.source import frames as source_frames

#: Every test here starts processes or trains (left out of ``make test-fast``).
pytestmark = pytest.mark.heavy


def link_config(tmp: Path, model: Path, *extra: str):
    return load_config(
        "tiny",
        [
            f"link.model={model}",
            "link.source=synthetic",
            "link.frames=4",
            f"link.out_dir={tmp}",
            "link.hb_interval_s=0.2",
            "link.idle_timeout_s=60",
            *extra,
        ],
    )


def frames_logged(out: Path) -> int:
    """Frames the receiver has written to ``frames.jsonl`` so far."""
    path = out / "frames.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def read_frames(out: Path) -> list[dict]:
    return [
        json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize(
    "transport, channel, csi, checkpoint, security",
    [
        ("tcp", "rayleigh_block", "perfect", "tiny_checkpoint", "none"),
        ("ipc", "ofdm_tdl", "estimated", "tiny_checkpoint", "none"),
        ("tcp", "awgn", "perfect", "tiny_bpsk_checkpoint", "none"),
        ("ipc", "bsc", "none", "tiny_bpsk_checkpoint", "none"),
        ("tcp", "awgn", "perfect", "tiny_checkpoint", "curve"),
    ],
)
def test_link_equals_in_process_evaluation(
    tmp_path: Path,
    request,
    transport: str,
    channel: str,
    csi: str,
    checkpoint: str,
    security: str,
) -> None:
    """Both latent codes through the three processes give the in-process numbers, and
    so do sockets with CURVE encryption and OFDM with pilot-based estimation (whose
    pilots count in each frame's channel uses)."""
    model_path = request.getfixturevalue(checkpoint)
    create_keys(tmp_path / "keys")
    cfg = link_config(
        tmp_path,
        model_path,
        "channel.snr_db=3.0",
        f"channel.kind={channel}",
        f"channel.csi={csi}",
        "channel.seed=11",
        "link.save_grid=true",
        f"link.security={security}",
        f"link.keys_dir={tmp_path / 'keys'}",
    )
    result = run_link(cfg, transport=transport, quiet=True)
    assert result.status == 0
    summary = result.summary
    assert summary["frames_sent"] == summary["frames_received"] == 4
    assert summary["frames_lost"] == 0 and summary["frames_single_view"] == 0
    model, _ = load_for_inference(model_path, cfg.infer)  # the receiver's path
    channel_model = WirelessChannel.for_code(cfg.channel, model.code)
    on_air = channel_model.channel_uses(1536)
    assert (on_air > 1536) == (csi == "estimated")
    assert summary["channel_uses_per_view"] == on_air
    assert summary["rho"] == pytest.approx(on_air / 24576)
    assert set(summary["latency_ms"]) == {"p50", "p95"} and summary["fps"] > 0
    assert summary["energy_pj_per_frame"]["snn"] > 0
    assert summary["energy_pj_per_frame"]["cnn_twin"] > 0
    assert (tmp_path / "frames" / "000003_right.png").exists()
    assert (tmp_path / "grid" / "000000.png").exists()

    frames = [f for f, _ in source_frames(cfg, model.stride)]
    expected = evaluate(
        model, frames, [3.0], channel_model, seed=11, measure_energy=False
    )[0]["frames"]
    got = {r["seq"]: r for r in read_frames(tmp_path)}
    assert {r["channel_uses"] for r in got.values()} == {on_air}
    for record in expected:
        for side in ("left", "right"):
            assert (
                abs(got[record["index"]][f"psnr_{side}"] - record[f"psnr_{side}"])
                < 1e-4
            )


def test_snr_changes_through_the_control_socket(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    cfg = link_config(
        tmp_path, tiny_checkpoint, "link.frames=12", "link.fps=4", "channel.snr_db=10.0"
    )
    replies = {}

    def controller(connect) -> None:
        with connect() as client:
            replies["scheduled"] = client.set_channel(from_seq=9, snr_db=0.0)
            wait_until(lambda: frames_logged(tmp_path) >= 3, 60, "3 decoded frames")
            replies["now"] = client.set_channel(snr_db=-5.0)
            replies["stats"] = client.stats()
            with pytest.raises(ControlError, match="snr_db"):
                client.set_channel(snr_db="loud")

    result = run_link(cfg, quiet=True, controller=controller)
    assert result.status == 0
    assert (
        replies["now"]["snr_db"] == -5.0 and replies["stats"]["count_control_set"] == 2
    )
    snrs = [r["snr_db"] for r in sorted(read_frames(tmp_path), key=lambda r: r["seq"])]
    assert snrs[0] == 10.0 and -5.0 in snrs[3:9]
    assert snrs[9:] == [0.0, 0.0, 0.0]
    assert {row["snr_db"] for row in result.summary["by_setting"]} == {10.0, -5.0, 0.0}


def test_setup_settings_hold_from_the_first_frame(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The set-up runs before the transmitter starts, so an unpaced stream cannot get
    ahead of it (a sweep schedules all its points this way)."""
    cfg = link_config(tmp_path, tiny_checkpoint, "link.frames=6", "channel.snr_db=10.0")

    def setup(connect) -> None:
        with connect() as client:
            client.set_channel(from_seq=0, snr_db=-5.0)
            client.set_channel(from_seq=3, snr_db=0.0)

    result = run_link(cfg, quiet=True, setup=setup)
    assert result.status == 0
    snrs = [r["snr_db"] for r in sorted(read_frames(tmp_path), key=lambda r: r["seq"])]
    assert snrs == [-5.0, -5.0, -5.0, 0.0, 0.0, 0.0]


def test_link_ports_are_distinct_and_outside_the_ephemeral_range(
    tmp_path: Path,
) -> None:
    """A process that connects before its peer binds takes source ports from the
    ephemeral range; a listening port there could be taken first (the bind then fails)."""
    ephemeral = ephemeral_ports()
    for _ in range(20):
        ports = [int(o.rsplit(":", 1)[1]) for o in endpoint_overrides("tcp", tmp_path)]
        assert len(set(ports)) == 4
        assert not any(port in ephemeral for port in ports)


def test_a_run_that_failed_leaves_no_process_behind(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """A run closed without waiting for it (a controller that raised, a failed test)
    stops its children first."""
    cfg = link_config(tmp_path, tiny_checkpoint, *endpoint_overrides("tcp", tmp_path))
    run = LinkRun(cfg, quiet=True)
    try:
        run.start()
    finally:
        run.close()
    assert set(run.children) == {"rx", "ch", "tx"}
    assert all(proc.poll() is not None for proc in run.children.values())


def test_failed_setup_stops_the_run_before_the_transmitter(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    cfg = link_config(tmp_path, tiny_checkpoint, *endpoint_overrides("tcp", tmp_path))

    def setup(connect) -> None:
        with connect() as client:
            client.set_channel(snr_db="loud")

    run = LinkRun(cfg, quiet=True)
    try:
        run.start(setup)
        assert "tx" not in run.children
        assert run.error.startswith("set-up failed: channel refused SetRequest")
        assert run.wait() == 1
    finally:
        run.close()
    assert all(proc.poll() is not None for proc in run.children.values())


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_late_peers_lose_nothing(
    tmp_path: Path, tiny_checkpoint: Path, transport: str
) -> None:
    """The transmitter starts first and could send everything before the channel and
    the receiver exist; it must wait for them instead of queueing and then dropping."""
    cfg = link_config(
        tmp_path,
        tiny_checkpoint,
        "link.frames=3",
        *endpoint_overrides(transport, tmp_path),
    )
    procs = [start_process("transmitter", cfg, tmp_path)]
    transmitter = OutputLines(procs[0])
    try:
        transmitter.wait_for("streaming 3 frames per pass", 60)
        assert procs[0].poll() is None, "the transmitter ended before its peers started"
        procs += [start_process(m, cfg, tmp_path) for m in ("channel_sim", "receiver")]
        procs[0].wait(timeout=120)
        outputs = [transmitter.text()]
        outputs += [p.communicate(timeout=120)[0] for p in procs[1:]]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for proc in procs[1:]:
            if not proc.stdout.closed:
                proc.communicate()
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_sent"] == summary["frames_received"] == 3
    assert summary["frames_lost"] == 0


def test_launcher_stops_a_run_whose_end_of_stream_never_arrives(
    tmp_path: Path,
) -> None:
    """A transmitter that ended while the others wait on forever must not hang the run."""
    cfg = load_config("tiny", ["link.idle_timeout_s=1", f"link.out_dir={tmp_path}"])
    run = LinkRun(cfg, quiet=True)
    run.children = {
        "rx": subprocess.Popen(["sleep", "60"]),
        "ch": subprocess.Popen(["sleep", "60"]),
        "tx": subprocess.Popen(["true"]),
    }
    t0 = time.monotonic()
    assert run.wait() == 1
    assert time.monotonic() - t0 < 20
    assert "end of stream did not pass through" in run.error
    assert all(proc.poll() is not None for proc in run.children.values())


def garbage_frames(max_bytes: int) -> list[bytes]:
    """Random bytes, a truncated frame, an oversized one, another version, bad content."""
    valid = encode_message(Message(type="data", seq=1, view=0))
    other_version = frame_of(valid_header(v=WIRE_VERSION + 1))
    oversized = encode_message(
        Message(type="data", arrays={"counts": np.zeros(max_bytes, np.uint8)})
    )
    nonsense = encode_message(
        Message(
            type="data",
            view=0,
            meta={"latent": "count_pam", "time_steps": 4},
            arrays={"counts": np.zeros((2, 2), np.float32)},
        )
    )
    return [os.urandom(300), valid[:-7], oversized, other_version, nonsense]


def test_channel_process_survives_bad_input(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    cfg = link_config(
        tmp_path,
        tiny_checkpoint,
        "link.max_message_bytes=200000",
        *endpoint_overrides("tcp", tmp_path),
    )
    model, _ = load_model(tiny_checkpoint)
    proc = start_process("channel_sim", cfg, tmp_path)
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for sock in (push, pull):
        sock.setsockopt(zmq.LINGER, 0)
    push.connect(cfg.link.channel_in)
    pull.connect(cfg.link.channel_out)
    try:
        for frame in garbage_frames(200000):
            push.send(frame)
        sent = latent_view(model.code, 0, 0, model)
        msg = decode_message(sent.encode())
        wider = dataclasses.replace(msg, meta={**msg.meta, "orig_width": 129})
        push.send(encode_message(wider))
        push.send(sent.encode())
        deadline = time.monotonic() + 60
        received = None
        while time.monotonic() < deadline and received is None:
            if pull.poll(200):
                candidate = decode_message(pull.recv())
                if candidate.type == "data":
                    received = candidate
        assert received is not None and received.seq == 0 and "y" in received.arrays
        with ControlClient(cfg.link.channel_control) as client:
            stats = client.stats()
            assert stats["dropped"] == 6
            assert (
                stats["dropped_checksum"],
                stats["dropped_oversized"],
                stats["dropped_version"],
                stats["dropped_protocol"],
            ) == (2, 1, 1, 2)
            client.stop()
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "dropped a" in output
    finally:
        push.close()
        pull.close()
        ctx.term()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def undecodable_views(good: Message) -> list[Message]:
    """Well-formed channel messages for the view of ``good`` that the receiver's model
    cannot decode, or that contradict themselves or the frame's other view."""
    meta, shape = dict(good.meta), good.arrays["latent_shape"]

    def changed(**fields: object) -> Message:
        return dataclasses.replace(good, meta={**meta, **fields})

    def resized(latent_shape: list[int], **fields: object) -> Message:
        values = int(np.prod(latent_shape))
        arrays = {
            "y": np.zeros(values // 2, np.complex64),
            "latent_shape": np.asarray(latent_shape, "<i4"),
        }
        return dataclasses.replace(good, meta={**meta, **fields}, arrays=arrays)

    channels, h, w = (int(v) for v in shape)
    return [
        dataclasses.replace(good, meta={k: v for k, v in meta.items() if k != "name"}),
        changed(orig_height="64"),
        changed(orig_height=meta["height"] + 1),
        changed(latent="spike_bpsk"),
        changed(time_steps=meta["time_steps"] + 1),
        changed(channel="nonsense"),
        changed(snr_db="high"),
        changed(width=meta["width"] + 2),
        resized([channels + 1, h, w]),
        resized([channels, 2 * h, w], height=2 * meta["height"]),
    ]


def test_receiver_survives_bad_input(tmp_path: Path, tiny_checkpoint: Path) -> None:
    cfg = link_config(
        tmp_path,
        tiny_checkpoint,
        "link.max_message_bytes=200000",
        *endpoint_overrides("tcp", tmp_path),
    )
    model, _ = load_model(tiny_checkpoint)
    ctx = zmq.Context()
    data, ref = ctx.socket(zmq.PUSH), ctx.socket(zmq.PUSH)
    for sock in (data, ref):
        sock.setsockopt(zmq.LINGER, 0)
    data.bind(cfg.link.channel_out)
    proc = start_process("receiver", cfg, tmp_path)
    ref.connect(cfg.link.reference)
    try:
        for frame in garbage_frames(200000):
            data.send(frame)
            ref.send(frame)
        for seq in (0, 1):
            for view in (0, 1):
                view_msg = delivered(
                    latent_view(model.code, seq, view, model), "awgn", 5.0
                )
                msg = decode_message(view_msg.encode())
                image = synthetic_frame(seq)[view][0]
                if (seq, view) == (1, 1):  # a reference of the wrong size
                    image = image[:, :32, :32]
                ref.send(ReferenceView(1, seq, view, image).encode())
                if (seq, view) == (0, 1):
                    for bad in undecodable_views(msg):
                        data.send(encode_message(bad))
                data.send(encode_message(msg))
        eos = decode_message(EndOfStream(1, 2).encode())
        bad_eos = dataclasses.replace(eos, meta={"frames_sent": "two"})
        data.send(encode_message(bad_eos))
        data.send(EndOfStream(1, 2).encode())
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output[-2000:]
    finally:
        data.close()
        ref.close()
        ctx.term()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_received"] == 2 and summary["frames_lost"] == 0, output[
        -3000:
    ]
    assert summary["frames_single_view"] == 0
    # garbage: 5 on each socket, 1 of them "protocol"; then 10 views, 1 reference, 1 eos
    assert summary["dropped_messages"]["protocol"] == 2 + 10 + 1 + 1
    assert sum(summary["dropped_messages"].values()) == 10 + 10 + 1 + 1
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["psnr_right"] is not None and records[1]["psnr_right"] is None
    assert summary["psnr_db"]["left"] == pytest.approx(records[0]["psnr_left"])


def test_a_frame_that_fails_to_decode_stops_or_is_skipped(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 2)):
        for side in ("left", "right"):
            write_image(tmp_path / f"{name}/{side}.png", 40, 80, seed=seed)
            seed += 1
    data = (tmp_path / "b/right.png").read_bytes()
    (tmp_path / "b/right.png").write_bytes(data[: len(data) // 2])
    for on_error in ("error", "skip"):
        cfg = load_config(
            "tiny", [f"link.source={tmp_path}", f"data.on_error={on_error}"]
        )
        if on_error == "error":
            with pytest.raises(DataError, match="b/right.png"):
                list(source_frames(cfg, 4))
        else:
            assert [f.name for f, _ in source_frames(cfg, 4)] == ["a"]


def test_bad_config_stops_before_binding(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "channel_sim", "--set", "channel.kind=rayleigh"],
        cwd=REPO,
        env=PROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "channel.kind" in proc.stderr and "listening" not in proc.stderr


def test_ctrl_c_stops_all_three(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "link",
            "--config",
            "tiny",
            "--model",
            str(tiny_checkpoint),
            "--data",
            "synthetic",
            "--repeat",
            "0",
            "--fps",
            "5",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=REPO,
        env=PROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(lambda: frames_logged(out) >= 2, 60, "2 decoded frames")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=90)
    finally:  # a failure must not leave the launcher's processes to later tests
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0

    def no_child_left() -> bool:
        found = subprocess.run(
            ["pgrep", "-f", str(out)], capture_output=True, text=True
        )
        return found.stdout.strip() == ""

    wait_until(no_child_left, 10, "the three processes to exit")
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("victim", ["tx", "ch", "rx"])
def test_a_killed_process_is_restarted_and_every_frame_is_accounted_for(
    tmp_path: Path, tiny_checkpoint: Path, victim: str
) -> None:
    """SIGKILL one of the three mid-stream: the launcher starts it again, the stream goes
    on to its end, and the summary accounts for every frame sent: received or lost, the
    lost ones by sequence number."""
    cfg = link_config(
        tmp_path,
        tiny_checkpoint,
        "link.frames=12",
        "link.fps=4",
        "link.restart_backoff_s=0.2",
        *endpoint_overrides("tcp", tmp_path),
    )
    run = LinkRun(cfg, quiet=True)

    def kill_after_three_frames() -> None:
        wait_until(lambda: frames_logged(tmp_path) >= 3, 60, "3 decoded frames")
        run.children[victim].send_signal(signal.SIGKILL)

    try:
        run.start()
        killer = threading.Thread(target=kill_after_three_frames, daemon=True)
        killer.start()
        status = run.wait()
        killer.join(timeout=5)
    finally:
        run.close()
    assert status == 0 and run.restarts == {victim: 1}
    assert [c["exit"] for c in run.crashes] == [-signal.SIGKILL]
    summary = json.loads((tmp_path / "summary.json").read_text())
    seqs = [r["seq"] for r in read_frames(tmp_path)]
    assert len(seqs) == len(set(seqs))  # no frame decoded twice
    assert summary["frames_sent"] == 12
    assert summary["frames_received"] + summary["frames_lost"] == 12
    assert summary["lost_seq"] == sorted(set(range(12)) - set(seqs))
    assert set(summary["lost_reasons"]) == {str(s) for s in summary["lost_seq"]}
    assert summary["frames_received"] >= 6


def test_the_fault_scenario_accounts_for_every_frame_and_message(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    """``spikelink faults`` in short: each process killed and restarted, every input
    socket fuzzed, key-less peers refused, and every frame and bad message accounted."""
    options = ["--model", str(tiny_checkpoint), "--frames", "210", "--fuzz", "30"]
    assert spikelink(["faults", *options, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "faults.json").read_text())
    assert report["frames_sent"] == 210
    assert report["frames_received"] + report["frames_lost"] == 210
    assert len(report["lost_seq"]) == report["frames_lost"]
    assert report["restarts"] == {"channel_sim": 1, "receiver": 1, "transmitter": 1}
    assert report["crashes"] == 0
    assert report["bad_messages_sent"] == report["bad_messages_counted"] == 30
    assert report["unauthenticated_accepted"] == 0
    assert set(report["rss_mb"]) == {"channel_sim", "receiver", "transmitter"}
    assert set(report["rss_after_warmup_mb"]) == set(report["rss_mb"])
    trace = report["rss_trace_mb"]
    assert len(trace) == 10 and all(set(s) > set(report["rss_mb"]) for s in trace)
    frames = [s["frames"] for s in trace]
    assert frames == sorted(frames) and frames[0] < frames[-1]  # spread over the soak
    assert "after a tenth of the soak" in capsys.readouterr().out


@pytest.mark.heavy
def test_the_channel_tells_a_silent_transmitter_from_a_paced_one(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Heartbeats from the transmitter side (as a paced transmitter sends them) keep the
    channel quiet; silence for ``liveness`` intervals is reported once."""
    cfg = link_config(
        tmp_path,
        tiny_checkpoint,
        "link.liveness=2",
        *endpoint_overrides("tcp", tmp_path),
    )
    proc = start_process("channel_sim", cfg, tmp_path)
    output = OutputLines(proc)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(cfg.link.channel_in)
    warning = "from the transmitter for"
    try:
        output.wait_for("listening on", 60)
        for _ in range(15):  # 1.5 s of heartbeats, 0.1 s apart: no warning
            push.send(Heartbeat(cfg.link.stream).encode())
            time.sleep(0.1)
        assert not any(warning in line for line in output.lines)
        output.wait_for(warning, 10)  # then silence
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        push.close()
        ctx.term()
    assert proc.returncode == 0
    assert sum(warning in line for line in output.lines) == 1
