"""The sweep as one run: every model and baseline over the (channel, SNR) points, and its
outputs (``sweep.json``, ``sweep.csv``, plots and ``report.md``)."""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.baselines import is_digital
from shared.channel.ofdm import OfdmTdl
from shared.channel.pilots import PilotGrid
from shared.config import InferenceConfig
from shared.data.frames import load_frames
from shared.errors import ConfigError
from shared.model.inference import load_for_inference
from shared.plots import plot_energy, plot_examples, plot_quality
from shared.sweep import (
    SweepSpec,
    example_reconstructions,
    sweep_baseline,
    sweep_digital_baseline,
    sweep_in_process,
    sweep_link,
    system_name,
)


@dataclass(frozen=True)
class SweepRequest:
    """What a sweep runs: checkpoints, source of pairs, points, baselines, output folder.

    ``argv`` is the command line, quoted in the report; ``options`` the parsed options,
    stored in ``sweep.json``.
    """

    models: Sequence[str]
    data: str
    root: str | None
    snrs: Sequence[float]
    channels: Sequence[str]
    csi: str
    baselines: Sequence[str]
    frames: int
    passes: int
    mode: str
    seed: int
    out: Path
    infer: InferenceConfig = InferenceConfig()
    argv: Sequence[str] = ()
    options: dict[str, Any] = field(default_factory=dict)


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


def snr_grid(records: list[dict[str, Any]], cell: Callable[[dict], str]) -> str:
    """Markdown table: one row per (channel, system), one column per SNR, each cell
    ``cell(record)`` ('-' where a system has no record at that SNR)."""
    snrs = sorted({r["snr_db"] for r in records})
    lines = [
        "| channel | system | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
        "|---|---|" + "---|" * len(snrs),
    ]
    for channel, system in dict.fromkeys((r["channel"], r["system"]) for r in records):
        cells = {
            r["snr_db"]: cell(r)
            for r in records
            if (r["channel"], r["system"]) == (channel, system)
        }
        lines.append(
            f"| {channel} | {system} | "
            + " | ".join(cells.get(s, "-") for s in snrs)
            + " |"
        )
    return "\n".join(lines)


def table(records: list[dict[str, Any]], metric: str, digits: int) -> str:
    """The mean of ``metric`` (``psnr_db`` or ``ms_ssim``) at every point."""
    return snr_grid(
        records,
        lambda r: (
            "-" if r[metric]["mean"] is None else f"{r[metric]['mean']:.{digits}f}"
        ),
    )


def scheme_table(records: list[dict[str, Any]]) -> str:
    """The digital baselines' chosen schemes, with the views they lost."""
    return snr_grid(records, lambda r: f"{r['scheme']} ({r['views_lost']})")


def write_report(
    request: SweepRequest,
    records: list[dict[str, Any]],
    figures: dict[str, Path | None],
    frames: int,
    size: tuple[int, int],
    train_ranges: dict[str, tuple[float, float]],
) -> Path:
    first = records[0]
    lines = [
        "# SNR sweep",
        "",
        f"Command: `spikelink sweep {shlex.join(request.argv)}`",
        "",
        f"- data: `{request.data}`, {frames} stereo pairs x {request.passes} passes per "
        f"point (new noise and fading each pass), evaluation crop {size[0]}x{size[1]}; "
        f"mode: {request.mode}; CSI: {request.csi}; channel seed {request.seed}",
        f"- channel uses per view n = {first['channel_uses']} (pilots included), "
        f"source values k = {first['source_values']}, rho = n/k = {first['rho']:.5f}",
        "- SNR is Es/N0 per complex symbol; PSNR and MS-SSIM (win 7) are the mean over "
        "pairs of the mean over both views; baselines code each view at "
        "n log2(1 + SNR) bits (instantaneous SNR under block fading), mean colour when "
        "nothing fits; `<codec>+ldpc` sends the codec file over 5G NR LDPC and QAM "
        "(Sionna) through the same channel realisations, with the best scheme of the "
        "table at each SNR and a view lost to a codeword error shown as its mean colour.",
        *(
            [
                f"- ofdm_tdl: {OfdmTdl().describe()}; "
                + (
                    PilotGrid().describe()
                    if request.csi == "estimated"
                    else f"{request.csi} CSI, no pilots"
                )
                + "; its capacity baseline sums log2(1 + |h_i|^2 SNR) over the view's "
                "resource elements."
            ]
            if "ofdm_tdl" in request.channels
            else []
        ),
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
    digital = [r for r in records if "scheme" in r]
    if digital:
        lines += [
            "## Digital baselines: best scheme at each SNR (views shown as their mean "
            "colour: lost, or no codec file fits)",
            "",
            scheme_table(digital),
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
    path = request.out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_sweep(request: SweepRequest) -> Path:
    """Sweep every model and baseline over the request's points and write its outputs;
    returns the path of ``report.md``."""
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    models = {
        system_name(m): load_for_inference(m, request.infer) for m in request.models
    }
    sizes = {
        (cfg.data.image_height, cfg.data.image_width) for _, cfg in models.values()
    }
    if len(sizes) != 1:
        raise ConfigError(
            f"--model: the models expect different image sizes: {sorted(sizes)}"
        )
    height, width = sizes.pop()
    frames = load_frames(request.data, request.root, height, width, request.frames)
    spec = SweepSpec(
        tuple((c, s) for c in request.channels for s in request.snrs),
        request.csi,
        request.seed,
        len(frames),
        request.passes,
        request.infer,
    )
    first_model = next(iter(models.values()))[0]
    uses = first_model.channel_uses(height, width)
    total = len(spec.points) * (len(models) + len(request.baselines))
    records: list[dict[str, Any]] = []
    with tqdm(total=total, unit="point", desc="sweep", dynamic_ncols=True) as bar:
        for path, (name, (model, _)) in zip(request.models, models.items()):
            bar.set_postfix_str(name)
            if request.mode == "link":
                records += sweep_link(
                    path,
                    request.data,
                    request.root,
                    spec,
                    out / f"link_{name}",
                    bar.update,
                )
            else:
                records += sweep_in_process(model, name, frames, spec, bar.update)
        for baseline in request.baselines:
            bar.set_postfix_str(baseline)
            sweep_one = (
                sweep_digital_baseline if is_digital(baseline) else sweep_baseline
            )
            records += sweep_one(
                baseline, frames, spec, uses["n"], uses["k"], bar.update
            )
    (out / "sweep.json").write_text(
        json.dumps(
            {"name": "spikelink-sweep", "args": request.options, "records": records},
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
        [b for b in request.baselines if not is_digital(b)],
        frames[0],
        request.channels[0],
        request.csi,
        sorted({snrs[0], snrs[len(snrs) // 2], snrs[-1]}),
        request.seed,
        uses["n"],
    )
    figures = {
        "psnr": plot_quality(records, "psnr_db", out / "psnr.png", train_ranges),
        "msssim": plot_quality(records, "ms_ssim", out / "msssim.png", train_ranges),
        "energy": plot_energy(records, out / "energy.png"),
        "examples": plot_examples(frames[0].left, examples, out / "examples.png"),
    }
    return write_report(
        request, records, figures, len(frames), (height, width), train_ranges
    )
