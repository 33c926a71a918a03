"""``spikelink eval``: in-process evaluation of a model with the evaluation crop.

Writes ``eval.json`` with one record per SNR: ``snr_db``, ``channel``, ``csi``,
``psnr_db`` and ``ms_ssim`` (``left``, ``right``, ``mean`` and standard errors), ``rho``,
``n``, ``k``, ``firing_rate``, ``energy_pj_per_frame`` (``snn``, ``cnn_twin``), ``pairs``
and the per-frame values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS
from shared.channel.wireless import WirelessChannel
from shared.commands.common import (
    MEASURING_PRECISION,
    add_inference_arguments,
    attach_negative_values,
    channel_config,
    fail,
    inference_config,
    parse_snrs,
    write_json,
)
from shared.config import CSI_MODES
from shared.data.frames import load_frames, mismatched
from shared.errors import SpikeLinkError
from shared.evaluation import evaluate, on_air
from shared.model.inference import batch_frames, load_for_inference


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default=str(BUNDLED_SNN), help="checkpoint (default: %(default)s)"
    )
    p.add_argument(
        "--data",
        default=str(SAMPLE_PAIRS),
        help="folder of stereo pairs (any layout) or a split file",
    )
    p.add_argument("--root", default=None, help="root of the paths in a split file")
    p.add_argument("--layout", default="auto", help="stereo layout of --data folders")
    p.add_argument(
        "--snr", default="-5,0,5,10", help="SNRs in dB: list or START:STOP:STEP"
    )
    p.add_argument(
        "--channel",
        default=None,
        help="awgn, rayleigh_block, rayleigh_fast, "
        "rician_block, ofdm_tdl, bsc, erasure (default: the model's)",
    )
    p.add_argument("--csi", default=None, choices=CSI_MODES)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="channel.* overrides, e.g. channel.rician_k=5",
    )
    p.add_argument("--seed", type=int, default=0, help="channel seed")
    p.add_argument(
        "--pairing",
        choices=["matched", "mismatched"],
        default="matched",
        help="'mismatched' pairs each left view with the next pair's right view, to "
        "measure what an unrelated second view costs the first",
    )
    p.add_argument(
        "--frames", type=int, default=0, help="evaluate only the first N pairs"
    )
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for eval.json")
    add_inference_arguments(p, MEASURING_PRECISION)
    return p


def run_eval(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = inference_config(args)
    model, cfg = load_for_inference(args.model, settings)
    cfg = channel_config(cfg, args.channel, args.csi, args.overrides)
    model.channel = WirelessChannel.for_code(cfg.channel, model.code)
    height = args.height or cfg.data.image_height
    width = args.width or cfg.data.image_width
    frames = load_frames(args.data, args.root, height, width, args.frames, args.layout)
    if args.pairing == "mismatched":
        frames = mismatched(frames)
    uses = on_air(model.channel_uses(height, width), model.channel)
    records = evaluate(
        model,
        frames,
        parse_snrs(args.snr),
        model.channel,
        args.seed,
        batch_size=batch_frames(settings),
    )
    for record in records:
        record.update(uses)
    return {
        "name": "spikelink-eval",
        "model": args.model,
        "data": args.data,
        "pairing": args.pairing,
        "kind": cfg.model.kind,
        "latent": cfg.model.latent,
        "image_size": [height, width],
        "channel": cfg.to_dict()["channel"],
        "infer": dataclasses.asdict(settings),
        "results": records,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snr",)))
    try:
        report = run_eval(args)
    except SpikeLinkError as exc:
        return fail(str(exc))
    write_json(report, args.out, "eval.json")
    brief = {
        **report,
        "results": [
            {k: v for k, v in r.items() if k != "frames"} for r in report["results"]
        ],
    }
    json.dump(brief, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
