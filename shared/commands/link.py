"""``spikelink link``: start receiver, channel and transmitter, stream, collect the summary.

The three processes run as ``python -m receiver``, ``python -m channel_sim`` and
``python -m transmitter`` on free loopback TCP ports (or ``ipc://`` sockets), with their
logs relayed here behind a prefix (:mod:`shared.link.launcher`). The run ends when the
end-of-stream has passed through all three; ``summary.json``, ``frames.jsonl``, the PNGs
and ``link.log`` are in ``--out``. A crashed process is restarted and the stream goes on;
the summary lists every frame lost, by sequence number. Ctrl-C or SIGTERM stops all three
cleanly: each finishes its current frame and writes its outputs. Exit status: 0 when
every process ended cleanly, 1 otherwise, 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import sys

from shared.commands.common import attach_negative_values
from shared.config import CSI_MODES, Config, add_config_arguments, load_config
from shared.errors import ConfigError
from shared.formatting import number
from shared.link.launcher import run_link


def format_table(rows: list[dict]) -> str:
    """Per-setting table: SNR, channel, PSNR / MS-SSIM per view, frames."""
    head = (
        f"{'channel':<15}{'SNR dB':>7}{'PSNR L':>8}{'PSNR R':>8}{'PSNR':>7}"
        f"{'MS-SSIM L':>10}{'MS-SSIM R':>10}{'frames':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        p, m = r["psnr_db"], r["ms_ssim"]
        lines.append(
            f"{r['channel']:<15}{r['snr_db']:>7.1f}{number(p['left']):>8}"
            f"{number(p['right']):>8}{number(p['mean']):>7}{number(m['left'], 3):>10}"
            f"{number(m['right'], 3):>10}{r['frames']:>7}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink link",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p, "link.hwm=4")
    p.add_argument("--model", help="checkpoint (link.model)")
    p.add_argument(
        "--data", help="folder or split file of pairs, or 'synthetic' (link.source)"
    )
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help="frames per pass (0 = the whole source)")
    p.add_argument("--repeat", type=int, help="passes over the source (0 = forever)")
    p.add_argument(
        "--fps", type=float, help="frame rate limit (0 = as fast as possible)"
    )
    p.add_argument("--snr", type=float, help="channel SNR in dB")
    p.add_argument(
        "--channel",
        help="awgn, rayleigh_block, rayleigh_fast, rician_block, ofdm_tdl, bsc, erasure",
    )
    p.add_argument("--csi", choices=CSI_MODES)
    p.add_argument("--seed", type=int, help="channel seed")
    p.add_argument("--crop", choices=["eval", "native"])
    p.add_argument(
        "--device", help="auto, cpu or cuda: where the transmitter and receiver run"
    )
    p.add_argument("--precision", help="auto, float32 or bfloat16 (infer.precision)")
    p.add_argument(
        "--grid", action="store_true", help="also save original/received grids"
    )
    p.add_argument("--out", help="output folder (link.out_dir)")
    p.add_argument("--transport", choices=["tcp", "ipc"], default="tcp")
    p.add_argument(
        "--quiet", action="store_true", help="relay only warnings and errors"
    )
    return p


FLAG_KEYS = {
    "model": "link.model",
    "data": "link.source",
    "frames": "link.frames",
    "repeat": "link.repeat",
    "fps": "link.fps",
    "snr": "channel.snr_db",
    "channel": "channel.kind",
    "csi": "channel.csi",
    "seed": "channel.seed",
    "crop": "link.crop",
    "out": "link.out_dir",
    "device": "infer.device",
    "precision": "infer.precision",
}


def config_from_args(args: argparse.Namespace) -> Config:
    if args.source is not None:
        print("warning: --source is an old name of --data; use --data", file=sys.stderr)
        args.data = args.data or args.source
    overrides = list(args.overrides)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.grid:
        overrides.append("link.save_grid=true")
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snr",)))
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_link(cfg, args.transport, args.quiet)
    if result.summary is not None:
        print(format_table(result.summary["by_setting"]))
        s = result.summary
        print(
            f"frames sent {s['frames_sent']}, received {s['frames_received']}, lost "
            f"{s['frames_lost']} {s['lost_seq'] or ''}, single-view "
            f"{s['frames_single_view']}; restarts {s['restarts'] or 'none'}; "
            f"{number(s['fps'], 1)} fps; latency p50 {number(s['latency_ms']['p50'], 0)} ms"
        )
        print(f"outputs: {result.out_dir} (summary.json, frames.jsonl, frames/*.png)")
    return result.status


if __name__ == "__main__":
    sys.exit(main())
