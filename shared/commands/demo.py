"""``spikelink demo``: the link on the bundled sample pairs with the bundled model.

Starts the transmitter, channel and receiver processes once, streams the seven sample
stereo pairs (evaluation crops, 128x256) once per SNR while the SNR is moved through the
channel's control socket, and prints a table per SNR: PSNR and MS-SSIM per view, frames
lost, frames per second. Reconstructions and original/received grids are kept as PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS
from shared.commands.common import (
    add_inference_arguments,
    attach_negative_values,
    fail,
    inference_config,
    parse_snrs,
)
from shared.data.frames import source_pairs
from shared.errors import SpikeLinkError
from shared.formatting import number
from shared.sweep import SweepSpec, sweep_link


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=str(BUNDLED_SNN))
    p.add_argument("--data", default=str(SAMPLE_PAIRS))
    p.add_argument("--snrs", default="0,5,10", help="SNRs in dB")
    p.add_argument("--channel", default="awgn")
    p.add_argument("--out", default="runs/demo")
    add_inference_arguments(p)
    return p


def format_rows(records: list[dict]) -> str:
    head = (
        f"{'SNR dB':>7} {'PSNR L':>7} {'PSNR R':>7} {'MS-SSIM L':>9} {'MS-SSIM R':>9} "
        f"{'lost':>5} {'fps':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        p, m = r["psnr_db"], r["ms_ssim"]
        lines.append(
            f"{r['snr_db']:>7.1f} {number(p['left']):>7} {number(p['right']):>7} "
            f"{number(m['left'], 4):>9} {number(m['right'], 4):>9} "
            f"{r['frames_lost']:>5d} {number(r['fps']):>5}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snrs",)))
    out = Path(args.out)
    try:
        frames = len(source_pairs(args.data))
        spec = SweepSpec(
            tuple((args.channel, s) for s in parse_snrs(args.snrs)),
            "perfect",
            0,
            frames,
            infer=inference_config(args),
        )
        print(
            f"demo: {frames} stereo pairs from {args.data}, model {args.model}, "
            f"{args.channel} at {args.snrs} dB, through the three-process link ...",
            flush=True,
        )
        records = sweep_link(
            args.model, args.data, None, spec, out / "link", images=True
        )
    except SpikeLinkError as exc:
        return fail(str(exc))
    first = records[0]
    print(
        f"\n{first['system']} ({first['kind']}), {args.channel}, perfect CSI, "
        f"rho = {first['rho']:.4f} ({first['channel_uses']} channel uses per view)"
    )
    print(format_rows(records))
    print(
        f"\nreconstructions: {out / 'link' / 'frames'}  (frame k of SNR point p is "
        f"{frames}*p+k); originals above received: {out / 'link' / 'grid'}"
    )
    print(
        f"per-frame records: {out / 'link' / 'frames.jsonl'}; summary: "
        f"{out / 'link' / 'summary.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
