"""``spikelink energy``: per-layer firing rates, operations and energy per stereo frame.

Compute-only model (conventions): E_MAC = 4.6 pJ for layers with real-valued inputs,
E_AC = 0.9 pJ per synaptic operation for layers fed by spikes; memory traffic excluded.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS
from shared.commands.common import (
    MEASURING_PRECISION,
    add_inference_arguments,
    attach_negative_values,
    fail,
    inference_config,
    write_json,
)
from shared.data.frames import load_frames
from shared.errors import SpikeLinkError
from shared.measure.energy_report import energy_report
from shared.model.inference import load_for_inference


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink energy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=str(BUNDLED_SNN))
    p.add_argument(
        "--data", default=str(SAMPLE_PAIRS), help="frames to measure rates on"
    )
    p.add_argument("--root", default=None)
    p.add_argument("--snr", type=float, default=10.0, help="channel SNR in dB")
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for energy.json")
    add_inference_arguments(p, MEASURING_PRECISION)
    return p


def run_energy(args: argparse.Namespace) -> dict:
    model, cfg = load_for_inference(args.model, inference_config(args))
    height, width = cfg.data.image_height, cfg.data.image_width
    frames = load_frames(args.data, args.root, height, width, args.frames)
    return {
        "name": "spikelink-energy",
        "model": args.model,
        **energy_report(model, frames, args.snr),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snr",)))
    try:
        report = run_energy(args)
    except SpikeLinkError as exc:
        return fail(str(exc))
    write_json(report, args.out, "energy.json")
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
