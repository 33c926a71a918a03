"""Pack the training photos into a small folder that can travel to a GPU machine.

The trainer reads ``data.root`` with its stereo and mono folders; a GPU machine that cannot
see ``../shared/data`` gets this pack instead:

- ``mono/<folder>/...`` and ``kodak/...``: every mono photo, JPEG files copied as they are,
  other formats re-encoded as JPEG (4:4:4, ``--quality``); ``--keep FOLDER=N`` keeps only N
  evenly spaced photos of a folder;
- ``stereo/<pair>/left.jpg, right.jpg``: the stereo pairs outside the validation split,
  re-encoded the same way, listed in ``train_pairs.txt`` (a split file, ``LEFT RIGHT`` per
  line) for ``data.train_split``.

Usage::

    python scripts/pack_training_data.py --root ../shared/data --out .gpu/data \\
        --keep mono/bsds500=200
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from shared.config import load_config
from shared.data.datasets import training_sources
from shared.data.pairs import StereoPair

JPEG_SUFFIXES = (".jpg", ".jpeg")


def _write_jpeg(source: Path, target: Path, quality: int) -> Path:
    """Copy a JPEG, or re-encode another image as JPEG; returns the file written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix.lower() in JPEG_SUFFIXES:
        written = target.with_suffix(source.suffix.lower())
        shutil.copyfile(source, written)
        return written
    written = target.with_suffix(".jpg")
    with Image.open(source) as img:
        img.convert("RGB").save(written, "JPEG", quality=quality, subsampling=0)
    return written


def _evenly_spaced(paths: list[Path], keep: int) -> list[Path]:
    if keep >= len(paths):
        return paths
    return [paths[(i * len(paths)) // keep] for i in range(keep)]


def _parse_keep(items: list[str]) -> dict[str, int]:
    keep = {}
    for item in items:
        folder, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise SystemExit(f"error: --keep wants FOLDER=N, got {item!r}")
        keep[folder.strip("/")] = int(count)
    return keep


def pack_mono(
    root: Path, out: Path, photos: list[Path], keep: dict[str, int], quality: int
) -> int:
    """Copy or re-encode the mono photos, thinned per folder; returns the number packed."""
    by_dir: dict[Path, list[Path]] = {}
    for path in photos:
        by_dir.setdefault(path.parent, []).append(path)
    count = 0
    for directory, paths in sorted(by_dir.items()):
        relative = directory.relative_to(root).as_posix()
        for path in _evenly_spaced(sorted(paths), keep.get(relative, len(paths))):
            _write_jpeg(path, out / path.relative_to(root), quality)
            count += 1
    return count


def pack_pairs(
    root: Path, out: Path, pairs: list[StereoPair], quality: int
) -> list[str]:
    """Re-encode the pairs under ``out/stereo``; returns the split-file lines."""
    lines = []
    for pair in pairs:
        folder = Path("stereo") / pair.name.replace("/", "_")
        left = _write_jpeg(pair.left, out / folder / "left.jpg", quality)
        right = _write_jpeg(pair.right, out / folder / "right.jpg", quality)
        lines.append(f"{left.relative_to(out)} {right.relative_to(out)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", required=True, help="the data folder (../shared/data)"
    )
    parser.add_argument("--out", required=True, help="the pack folder to write")
    parser.add_argument("--config", default="default", help="config naming the folders")
    parser.add_argument(
        "--val-split", default=None, help="pairs to leave out (default: the config's)"
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (1-95)")
    parser.add_argument("--keep", action="append", default=[], metavar="FOLDER=N")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 95:
        raise SystemExit(f"error: --quality must be in 1..95, got {args.quality}")
    root, out = Path(args.root), Path(args.out)
    overrides = [f"data.root={root}"]
    if args.val_split:
        overrides.append(f"data.val_split={args.val_split}")
    if out.exists():
        raise SystemExit(f"error: {out} exists; remove it or name another folder")
    pairs, mono = training_sources(load_config(args.config, overrides).data)
    mono_count = pack_mono(root, out, mono, _parse_keep(args.keep), args.quality)
    lines = pack_pairs(root, out, pairs, args.quality)
    (out / "train_pairs.txt").write_text(
        "# Training stereo pairs of the pack, relative to the pack folder.\n"
        + "\n".join(lines)
        + "\n"
    )
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(
        f"{out}: {mono_count} mono photos, {len(lines)} stereo pairs, {size_mb:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
