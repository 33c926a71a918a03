"""``spikelink sweep``: quality against channel SNR for models and separation baselines.

For each model the real three-process link is started once and the channel's SNR (and
channel type) is moved through its control socket, ``--passes`` over the frames per point
(``--mode link``, the default); ``--mode inprocess`` computes the same numbers in one
process. Baselines code each view with AVIF / JPEG 2000 / WebP / JPEG at the channel's
capacity.
Writes ``sweep.json``, ``sweep.csv``, ``psnr.png``, ``msssim.png``, ``energy.png``,
``examples.png`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS
from shared.baselines import BASELINES, CODECS
from shared.commands.common import (
    MEASURING_PRECISION,
    add_inference_arguments,
    attach_negative_values,
    fail,
    inference_config,
    parse_snrs,
)
from shared.config import CSI_MODES
from shared.errors import ConfigError, SpikeLinkError
from shared.sweep_report import SweepRequest, run_sweep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        nargs="+",
        default=[str(BUNDLED_SNN)],
        help="one or more checkpoints (e.g. the SNN and its CNN twin)",
    )
    p.add_argument(
        "--data", default=str(SAMPLE_PAIRS), help="folder of pairs or split file"
    )
    p.add_argument("--root", default=None, help="root of the paths in a split file")
    p.add_argument(
        "--snrs", default="-5:15:2.5", help="SNRs in dB: list or START:STOP:STEP"
    )
    p.add_argument("--channels", default="awgn", help="comma-separated channel kinds")
    p.add_argument(
        "--csi",
        default="perfect",
        choices=CSI_MODES,
        help="estimated: from pilots, ofdm_tdl only",
    )
    p.add_argument(
        "--baselines",
        default=",".join(CODECS),
        help=f"comma-separated baselines from {', '.join(BASELINES)}, or 'none': a "
        "codec at the channel's capacity, or over 5G NR LDPC and QAM (+ldpc)",
    )
    p.add_argument("--frames", type=int, default=0, help="pairs per pass (0 = all)")
    p.add_argument(
        "--passes",
        type=int,
        default=1,
        help="passes over the pairs per point, each with new noise and fading draws",
    )
    p.add_argument("--mode", choices=["link", "inprocess"], default="link")
    p.add_argument("--seed", type=int, default=0, help="channel seed")
    p.add_argument("--out", default="runs/sweep", help="output folder")
    add_inference_arguments(p, MEASURING_PRECISION)
    return p


def request_from_args(args: argparse.Namespace, argv: list[str]) -> SweepRequest:
    baselines = (
        []
        if args.baselines == "none"
        else [c.strip() for c in args.baselines.split(",")]
    )
    unknown = [c for c in baselines if c not in BASELINES]
    if unknown:
        raise ConfigError(
            f"--baselines: unknown baseline {unknown[0]!r}; allowed: "
            f"{', '.join(BASELINES)}, none"
        )
    return SweepRequest(
        models=args.model,
        data=args.data,
        root=args.root,
        snrs=parse_snrs(args.snrs),
        channels=[c.strip() for c in args.channels.split(",") if c.strip()],
        csi=args.csi,
        baselines=baselines,
        frames=args.frames,
        passes=args.passes,
        mode=args.mode,
        seed=args.seed,
        out=Path(args.out),
        infer=inference_config(args),
        argv=argv,
        options=vars(args),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(attach_negative_values(argv, ("--snrs",)))
    try:
        report = run_sweep(request_from_args(args, argv))
    except SpikeLinkError as exc:
        return fail(str(exc))
    print(report.read_text())
    print(f"outputs: {report.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
