"""``spikelink faults``: the fault-injection scenario against the real processes.

One supervised, CURVE-secured link run of ``--frames`` frames (the bundled samples
repeated), during which each process is killed (SIGKILL) and restarted in turn, each input
socket gets its share of ``--fuzz`` bad messages (random, truncated, oversized, other
version, and mutated fields with a valid CRC), peers without an allowed key try to get
in, and the rest of the stream is a soak. Prints a table and writes ``faults.json`` (frames
sent, received and lost, the lost sequence numbers, unplanned crashes, restarts, bad
messages sent and counted, messages of key-less peers accepted, resident memory of each
process after the restarts and near the end) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.assets import BUNDLED_SNN
from shared.commands.common import fail, write_json
from shared.errors import SpikeLinkError
from shared.formatting import number
from shared.link.faults import run_faults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=str(BUNDLED_SNN), help="checkpoint of the link")
    p.add_argument("--frames", type=int, default=1000, help="frames of the stream")
    p.add_argument("--fuzz", type=int, default=1000, help="bad messages in all")
    p.add_argument("--seed", type=int, default=0, help="seed of the fuzzer")
    p.add_argument("--out", default="runs/faults", help="output folder")
    return p


def table(report: dict) -> str:
    rows = [
        (
            "frames sent / received / lost",
            "{frames_sent} / {frames_received} / {frames_lost}",
        ),
        ("lost sequence numbers", "{lost_seq}"),
        ("processes killed, restarts", "{kills}, {restarts}"),
        ("unplanned crashes", "{crashes}"),
        ("bad messages sent / counted", "{bad_messages_sent} / {bad_messages_counted}"),
        ("key-less messages accepted", "{unauthenticated_accepted}"),
    ]
    lines = [f"{label:<32} {value.format(**report)}" for label, value in rows]
    for name, (start, end) in report["rss_mb"].items():
        warm, _ = report["rss_after_warmup_mb"].get(name, (None, None))
        lines.append(
            f"{'resident memory ' + name:<32} {number(start, 1)} -> {number(end, 1)} MB"
            f" ({number(warm, 1)} MB after a tenth of the soak)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_faults(
            args.model, args.frames, args.fuzz, Path(args.out), args.seed
        )
    except SpikeLinkError as exc:
        return fail(str(exc))
    write_json(report, args.out, "faults.json")
    print(table(report))
    return report["status"]


if __name__ == "__main__":
    sys.exit(main())
