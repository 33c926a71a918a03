"""Measure what a lost view costs the view that arrived, for several fills of the lost one.

Usage: python scripts/measure_lost_view.py [--model models/snn_v4.pt]
           [--data shared/configs/splits/shared_val.txt] [--root ../shared/data]
           [--snrs 0,10] [--out runs/lost_view]

For every pair, the left view goes through the channel (AWGN, the link's seeding) and the
right view is either received too or lost; the left view's mean PSNR is printed and
written to ``lost_view.json`` for each fill of the lost view's decoder input: zeros told
at the arrived view's SNR, zeros told at -5 dB, and the latent code's own fill
(``LatentCode.lost_view``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from shared.assets import BUNDLED_SNN
from shared.data.frames import load_frames
from shared.evaluation import view_through_channel
from shared.link.hop import DecoderInput, lost_view
from shared.metrics import psnr
from shared.model.checkpoint import load_model


def fills(model, arrived: DecoderInput, received: DecoderInput) -> dict:
    zeros = torch.zeros_like(arrived.soft)
    return {
        "both views received": received,
        "zeros at the arrived view's SNR": DecoderInput(zeros, arrived.snr_db),
        "zeros at -5 dB": DecoderInput(zeros, torch.tensor([-5.0])),
        f"the {model.code.name} fill": lost_view(model.code, arrived),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(BUNDLED_SNN))
    parser.add_argument("--data", default="shared/configs/splits/shared_val.txt")
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument(
        "--snrs", default="0,10", help="comma-separated, e.g. --snrs=-5,0"
    )
    parser.add_argument("--out", default="runs/lost_view")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    model, cfg = load_model(args.model)
    size = (cfg.data.image_height, cfg.data.image_width)
    frames = load_frames(args.data, args.root, *size)
    report = {"model": args.model, "pairs": len(frames), "left_psnr_db": {}}
    for snr in (float(v) for v in args.snrs.split(",")):
        sums: dict[str, float] = {}
        for f in frames:
            latent = model.encode(f.left[None], f.right[None])["latent"]
            arrived, received = (
                view_through_channel(
                    model, model.channel, latent[v], snr, 0, f.index, v
                )
                for v in (0, 1)
            )
            for name, other in fills(model, arrived, received).items():
                x_hat = model.decode(DecoderInput.cat([arrived, other]))["x_hat_left"]
                sums[name] = sums.get(name, 0.0) + float(psnr(x_hat, f.left[None])[0])
        means = {name: total / len(frames) for name, total in sums.items()}
        report["left_psnr_db"][f"{snr:g}"] = means
        print(f"{snr:g} dB: " + ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lost_view.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
