"""``spikelink energy``: per-layer firing rates, operations and energy per stereo frame.

Compute-only model (conventions): E_MAC = 4.6 pJ for layers with real-valued inputs,
E_AC = 0.9 pJ per synaptic operation for layers fed by spikes; memory traffic excluded.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.commands.common import (
    USER_ERRORS,
    attach_negative_values,
    fail,
    load_frames,
    write_json,
)
from shared.data.images import DataError
from shared.evaluation import reconstruct
from shared.model.checkpoint import CheckpointError, load_model
from shared.model.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter, twin_macs_per_frame


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink energy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="models/snn_default.pt")
    p.add_argument(
        "--data", default="samples/stereo", help="frames to measure rates on"
    )
    p.add_argument("--root", default=None)
    p.add_argument("--snr", type=float, default=10.0, help="channel SNR in dB")
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for energy.json")
    return p


def energy_report(args: argparse.Namespace) -> dict:
    model, cfg = load_model(args.model)
    height, width = cfg.data.image_height, cfg.data.image_width
    frames = load_frames(args.data, args.root, height, width, args.frames)
    meter = EnergyMeter(model)
    with meter:
        for frame in frames:
            reconstruct(model, model.channel, frame, args.snr, seed=0)
    meter.frames = len(frames)
    summary = meter.summary()
    twin_macs = twin_macs_per_frame(model, height, width)
    return {
        "name": "spikelink-energy",
        "model": args.model,
        "kind": cfg.model.kind,
        "image_size": [height, width],
        "frames": len(frames),
        "snr_db": args.snr,
        "e_mac_pj": E_MAC_PJ,
        "e_ac_pj": E_AC_PJ,
        "energy_pj_per_frame": {
            "snn": summary["energy_pj"] if cfg.model.kind == "snn" else None,
            "cnn_twin": twin_macs * E_MAC_PJ,
        },
        "macs_per_frame": summary["macs"],
        "sops_per_frame": summary["sops"],
        "cnn_twin_macs_per_frame": twin_macs,
        "encoder": summary.get("encoder"),
        "decoder": summary.get("decoder"),
        "firing_rates": {
            name: float(rate) for name, rate in model.firing_rates().items()
        },
        "layers": summary["layers"],
        "note": "compute-only model: memory traffic is excluded",
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snr",)))
    try:
        report = energy_report(args)
    except (CheckpointError, DataError, *USER_ERRORS) as exc:
        return fail(str(exc))
    write_json(report, args.out, "energy.json")
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
