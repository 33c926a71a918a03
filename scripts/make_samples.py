"""Write the bundled sample pairs: the evaluation crops (128x256) of the validation split.

Usage: python scripts/make_samples.py --root ../shared/data --out samples/stereo
Each pair of shared/configs/splits/shared_val.txt is cropped and resized exactly as the
evaluation protocol does, then saved as 8-bit PNG; the evaluation crop of a saved pair is
the pair itself, so the link on the samples measures what validation measures (up to 8-bit
rounding).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.data.datasets import EvalPairs
from shared.data.images import save_png
from shared.data.pairs import read_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--root", required=True, help="data root the split is relative to"
    )
    parser.add_argument("--split", default="shared/configs/splits/shared_val.txt")
    parser.add_argument("--out", default="samples/stereo")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args(argv)
    pairs = EvalPairs(read_split(args.split, args.root), args.height, args.width)
    for item in pairs:
        folder = Path(args.out) / Path(item["name"]).name
        save_png(item["left"], folder / "left.png")
        save_png(item["right"], folder / "right.png")
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
