"""The link across hosts: each process in its own network namespace, CURVE on, and the
transmitter's link cut for a few seconds mid-stream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROCESS_ENV, REPO, wait_until

from shared.config import dump_config, load_config
from shared.link.security import create_keys

pytestmark = pytest.mark.heavy

#: The test's own addresses, on a bridge in a namespace of the test's own.
SUBNET = "10.203.77"
HOSTS = {"tx": 1, "ch": 2, "rx": 3}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[dict[str, str]]:
    """Three namespaces (one per process) joined by veth pairs to a bridge in a fourth;
    all removed afterwards. Skips where namespaces cannot be made."""
    tag = uuid.uuid4().hex[:6]
    names = {host: f"sl{tag}{host}" for host in (*HOSTS, "br")}
    try:
        ip("netns", "add", names["br"])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"network namespaces cannot be made here ({exc})")
    try:
        ip("-n", names["br"], "link", "add", "br0", "type", "bridge")
        ip("-n", names["br"], "link", "set", "br0", "up")
        for host, number in HOSTS.items():
            ns, outer = names[host], f"v{tag}{host}"
            ip("netns", "add", ns)
            ip(
                "link",
                "add",
                outer,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            ip("link", "set", outer, "netns", names["br"])
            ip("-n", names["br"], "link", "set", outer, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{number}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_a_link_across_hosts_survives_a_cut_of_the_transmitters_link(
    hosts: dict[str, str], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    create_keys(tmp_path / "keys")
    cfg = load_config(
        "tiny",
        [
            f"link.model={tiny_checkpoint}",
            "link.source=synthetic",
            "link.frames=16",
            "link.fps=4",
            f"link.out_dir={tmp_path / 'out'}",
            "link.hb_interval_s=0.5",
            "link.security=curve",
            f"link.keys_dir={tmp_path / 'keys'}",
            f"link.channel_in=tcp://{SUBNET}.2:5601",
            f"link.channel_out=tcp://{SUBNET}.2:5602",
            f"link.channel_control=tcp://{SUBNET}.2:5603",
            f"link.reference=tcp://{SUBNET}.3:5604",
        ],
    )
    config = tmp_path / "link.yaml"
    config.write_text(dump_config(cfg))
    procs = {
        host: subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                hosts[host],
                sys.executable,
                "-m",
                module,
                "--config",
                str(config),
            ],
            cwd=REPO,
            env=PROCESS_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for host, module in (
            ("rx", "receiver"),
            ("ch", "channel_sim"),
            ("tx", "transmitter"),
        )
    }
    frames = tmp_path / "out" / "frames.jsonl"

    def decoded() -> int:
        return len(frames.read_text().splitlines()) if frames.exists() else 0

    try:
        wait_until(lambda: decoded() >= 3, 120, "3 frames across the namespaces")
        ip("-n", hosts["tx"], "link", "set", "eth0", "down")
        cut = decoded()
        time.sleep(3.0)  # the outage itself: nothing to wait for
        assert decoded() <= cut + 2  # at most what was in flight got through
        ip("-n", hosts["tx"], "link", "set", "eth0", "up")
        outputs = {
            host: proc.communicate(timeout=120)[0] for host, proc in procs.items()
        }
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert all(p.returncode == 0 for p in procs.values()), outputs
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames_sent"] == 16
    assert summary["frames_received"] + summary["frames_lost"] == 16
    assert summary["frames_received"] >= 14
