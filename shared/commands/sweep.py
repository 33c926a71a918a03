"""``spikelink sweep``: quality against channel SNR for models and separation baselines.

For each model the real three-process link is started once and the channel's SNR (and
channel type) is moved through its control socket, ``--passes`` over the frames per point
(``--mode link``, the default); ``--mode inprocess`` computes the same numbers in one
process. Baselines code each view with JPEG / JPEG 2000 / WebP at the channel's capacity.
Writes ``sweep.json``, ``sweep.csv``, ``psnr.png``, ``msssim.png``, ``energy.png``,
``examples.png`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.baselines import CODECS
from shared.commands.common import (
    USER_ERRORS,
    attach_negative_values,
    fail,
    load_frames,
    parse_snrs,
)
from shared.data.images import DataError
from shared.model.checkpoint import CheckpointError, load_model
from shared.plots import plot_energy, plot_examples, plot_quality
from shared.sweep import (
    SweepSpec,
    example_reconstructions,
    sweep_baseline,
    sweep_in_process,
    sweep_link,
    system_name,
)

CSV_COLUMNS = (
    "system",
    "kind",
    "channel",
    "csi",
    "snr_db",
    "psnr_left",
    "psnr_right",
    "psnr_mean",
    "psnr_mean_sem",
    "ms_ssim_left",
    "ms_ssim_right",
    "ms_ssim_mean",
    "ms_ssim_mean_sem",
    "channel_uses",
    "rho",
    "energy_snn_pj",
    "energy_cnn_twin_pj",
    "firing_rate",
    "frames",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        nargs="+",
        default=["models/snn_default.pt"],
        help="one or more checkpoints (e.g. the SNN and its CNN twin)",
    )
    p.add_argument(
        "--data", default="samples/stereo", help="folder of pairs or split file"
    )
    p.add_argument("--root", default=None, help="root of the paths in a split file")
    p.add_argument(
        "--snrs", default="-5:15:2.5", help="SNRs in dB: list or START:STOP:STEP"
    )
    p.add_argument("--channels", default="awgn", help="comma-separated channel kinds")
    p.add_argument("--csi", default="perfect", choices=["perfect", "none"])
    p.add_argument(
        "--baselines",
        default="jpeg,jpeg2000,webp",
        help=f"comma-separated codecs from {', '.join(CODECS)}, or 'none'",
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
    return p


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    p, m, e = record["psnr_db"], record["ms_ssim"], record["energy_pj_per_frame"] or {}
    return {
        "system": record["system"],
        "kind": record["kind"],
        "channel": record["channel"],
        "csi": record["csi"],
        "snr_db": record["snr_db"],
        "psnr_left": p["left"],
        "psnr_right": p["right"],
        "psnr_mean": p["mean"],
        "psnr_mean_sem": p.get("mean_sem"),
        "ms_ssim_left": m["left"],
        "ms_ssim_right": m["right"],
        "ms_ssim_mean": m["mean"],
        "ms_ssim_mean_sem": m.get("mean_sem"),
        "channel_uses": record["channel_uses"],
        "rho": record["rho"],
        "energy_snn_pj": e.get("snn"),
        "energy_cnn_twin_pj": e.get("cnn_twin"),
        "firing_rate": record["firing_rate"],
        "frames": record["frames"],
    }


def table(records: list[dict[str, Any]], metric: str, digits: int) -> str:
    """Markdown table: one row per (channel, system), one column per SNR."""
    snrs = sorted({r["snr_db"] for r in records})
    lines = [
        "| channel | system | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
        "|---|---|" + "---|" * len(snrs),
    ]
    keys = dict.fromkeys((r["channel"], r["system"]) for r in records)
    for channel, system in keys:
        cells = {
            r["snr_db"]: r[metric]["mean"]
            for r in records
            if (r["channel"], r["system"]) == (channel, system)
        }
        lines.append(
            f"| {channel} | {system} | "
            + " | ".join(
                "-" if cells.get(s) is None else f"{cells[s]:.{digits}f}" for s in snrs
            )
            + " |"
        )
    return "\n".join(lines)


def write_report(
    out: Path,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    figures: dict[str, Path | None],
    frames: int,
    size: tuple[int, int],
    train_ranges: dict[str, tuple[float, float]],
) -> Path:
    first = records[0]
    lines = [
        "# SNR sweep",
        "",
        f"Command: `spikelink sweep {shlex.join(args.argv)}`",
        "",
        f"- data: `{args.data}`, {frames} stereo pairs x {args.passes} passes per point "
        f"(new noise and fading each pass), evaluation crop {size[0]}x{size[1]}; mode: "
        f"{args.mode}; CSI: {args.csi}; channel seed {args.seed}",
        f"- channel uses per view n = {first['channel_uses']}, source values k = "
        f"{first['source_values']}, rho = n/k = {first['rho']:.5f}",
        "- SNR is Es/N0 per complex symbol; PSNR and MS-SSIM (win 7) are the mean over "
        "pairs of the mean over both views; baselines code each view at "
        "n log2(1 + SNR) bits (instantaneous SNR under block fading), mean colour when "
        "nothing fits.",
        "- training SNR ranges: "
        + ", ".join(
            f"{k}: {lo:g} to {hi:g} dB" for k, (lo, hi) in train_ranges.items()
        ),
        "",
        "## PSNR (dB)",
        "",
        table(records, "psnr_db", 2),
        "",
        "## MS-SSIM",
        "",
        table(records, "ms_ssim", 4),
        "",
    ]
    for title, key in (
        ("PSNR against SNR", "psnr"),
        ("MS-SSIM against SNR", "msssim"),
        ("Energy per stereo frame", "energy"),
        ("Example reconstructions (left view)", "examples"),
    ):
        if figures.get(key):
            lines += [f"## {title}", "", f"![{title}]({figures[key].name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_sweep(args: argparse.Namespace) -> Path:
    if args.passes < 1:
        raise ValueError(f"--passes: got {args.passes}; allowed: 1 or more")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {system_name(m): load_model(m) for m in args.model}
    sizes = {
        (cfg.data.image_height, cfg.data.image_width) for _, cfg in models.values()
    }
    if len(sizes) != 1:
        raise ValueError(f"the models expect different image sizes: {sorted(sizes)}")
    height, width = sizes.pop()
    frames = load_frames(args.data, args.root, height, width, args.frames)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    codecs = (
        []
        if args.baselines == "none"
        else [c.strip() for c in args.baselines.split(",")]
    )
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise ValueError(
            f"--baselines: unknown codec {unknown[0]!r}; allowed: "
            f"{', '.join(CODECS)}, none"
        )
    spec = SweepSpec(
        tuple((c, s) for c in channels for s in parse_snrs(args.snrs)),
        args.csi,
        args.seed,
        len(frames),
        args.passes,
    )
    first_model = next(iter(models.values()))[0]
    uses = first_model.channel_uses(height, width)
    total = len(spec.points) * (len(models) + len(codecs))
    records: list[dict[str, Any]] = []
    with tqdm(total=total, unit="point", desc="sweep", dynamic_ncols=True) as bar:
        for path, (name, (model, _)) in zip(args.model, models.items()):
            bar.set_postfix_str(name)
            if args.mode == "link":
                records += sweep_link(
                    path, args.data, args.root, spec, out / f"link_{name}", bar.update
                )
            else:
                records += sweep_in_process(model, name, frames, spec, bar.update)
        for codec in codecs:
            bar.set_postfix_str(codec)
            records += sweep_baseline(
                codec, frames, spec, uses["n"], uses["k"], bar.update
            )
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "name": "spikelink-sweep",
                "args": {k: v for k, v in vars(args).items()},
                "records": records,
            },
            indent=2,
        )
        + "\n"
    )
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in records)
    train_ranges = {
        name: (cfg.train.snr_min_db, cfg.train.snr_max_db)
        for name, (_, cfg) in models.items()
    }
    snrs = sorted({s for _, s in spec.points})
    examples = example_reconstructions(
        {n: m for n, (m, _) in models.items()},
        codecs,
        frames[0],
        channels[0],
        args.csi,
        sorted({snrs[0], snrs[len(snrs) // 2], snrs[-1]}),
        args.seed,
        uses["n"],
    )
    figures = {
        "psnr": plot_quality(records, "psnr_db", out / "psnr.png", train_ranges),
        "msssim": plot_quality(records, "ms_ssim", out / "msssim.png", train_ranges),
        "energy": plot_energy(records, out / "energy.png"),
        "examples": plot_examples(frames[0].left, examples, out / "examples.png"),
    }
    return write_report(
        out, records, args, figures, len(frames), (height, width), train_ranges
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snrs",)))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        report = run_sweep(args)
    except (CheckpointError, DataError, RuntimeError, *USER_ERRORS) as exc:
        return fail(str(exc))
    print(report.read_text())
    print(f"outputs: {report.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
