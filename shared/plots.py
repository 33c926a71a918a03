"""Figures of a sweep: quality against SNR per channel, energy per frame, examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import torch  # noqa: E402

METRICS = {"psnr_db": ("PSNR (dB)", "psnr"), "ms_ssim": ("MS-SSIM", "msssim")}
MARKERS = "osD^v<>ph*"


def _systems(records: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["system"] for r in records))


def line_style(record: dict) -> str:
    """Solid for a model, dashed for a codec at capacity, dotted for a digital link."""
    if record["kind"] != "baseline":
        return "-"
    return ":" if "scheme" in record else "--"


def plot_quality(
    records: Sequence[dict[str, Any]],
    metric: str,
    path: Path,
    train_ranges: dict[str, tuple[float, float]],
) -> Path | None:
    """One panel per channel; one line (mean of both views, +- standard error) per system.

    The training SNR range of each model is shaded (a line when it is one SNR).
    """
    label, _ = METRICS[metric]
    usable = [r for r in records if r[metric]["mean"] is not None]
    if not usable:
        return None
    channels = list(dict.fromkeys(r["channel"] for r in usable))
    systems = _systems(usable)
    colours = {s: f"C{i % 10}" for i, s in enumerate(systems)}
    fig, axes = plt.subplots(
        1, len(channels), figsize=(5.2 * len(channels), 4.2), squeeze=False, sharey=True
    )
    groups = _group_ranges(train_ranges)
    for ax, channel in zip(axes[0], channels):
        for lo, hi in groups:
            if lo == hi:
                ax.axvline(lo, color="0.6", linestyle=":", linewidth=1.2)
            else:
                ax.axvspan(lo, hi, color="0.9", zorder=0)
        for i, system in enumerate(systems):
            rows = sorted(
                (
                    r
                    for r in usable
                    if r["channel"] == channel and r["system"] == system
                ),
                key=lambda r: r["snr_db"],
            )
            if not rows:
                continue
            ax.errorbar(
                [r["snr_db"] for r in rows],
                [r[metric]["mean"] for r in rows],
                yerr=[r[metric].get("mean_sem", 0.0) for r in rows],
                label=system,
                color=colours[system],
                marker=MARKERS[i % len(MARKERS)],
                markersize=4,
                linewidth=1.4,
                capsize=2,
                linestyle=line_style(rows[0]),
            )
        ax.set_title(f"{channel} ({rows[0]['csi'] if rows else ''} CSI)", fontsize=10)
        ax.set_xlabel("channel SNR, Es/N0 (dB)")
        ax.grid(True, alpha=0.3)
    _label_train_ranges(axes[0], groups)
    axes[0][0].set_ylabel(f"{label}, mean of both views")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 6),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _label_train_ranges(
    axes: Sequence[Any], groups: dict[tuple[float, float], list[str]]
) -> None:
    """One line of text per training range, each in its own row of a band that the
    y-axis leaves free above the data, so labels overlap neither each other nor a curve.
    A label reads rightwards from its range, or leftwards from a range in the right half.
    """
    row = 0.065
    band = row * len(groups) + 0.02
    low, high = axes[0].get_ylim()
    ticks = [t for t in axes[0].get_yticks() if low <= t <= high]
    axes[0].set_ylim(low, high + (high - low) * band / (1 - band))
    axes[0].set_yticks(ticks)  # no tick in the band: MS-SSIM never reads above 1
    for ax in axes:
        left, right = ax.get_xlim()
        for i, ((lo, hi), names) in enumerate(groups.items()):
            rightwards = lo < (left + right) / 2
            ax.text(
                lo if rightwards else hi,
                1 - 0.02 - row * i,
                f" trained: {', '.join(names)} ",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                color="0.35",
                va="top",
                ha="left" if rightwards else "right",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            )


def _group_ranges(
    train_ranges: dict[str, tuple[float, float]],
) -> dict[tuple[float, float], list[str]]:
    groups: dict[tuple[float, float], list[str]] = {}
    for name, rng in train_ranges.items():
        groups.setdefault(rng, []).append(name)
    return groups


def plot_energy(records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Energy per stereo frame of each model (SNN) and of its CNN twin, in microjoules."""
    rows: dict[str, tuple[float | None, float]] = {}
    for r in records:
        energy = r.get("energy_pj_per_frame")
        if energy and r["system"] not in rows:
            rows[r["system"]] = (energy.get("snn"), energy["cnn_twin"])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 3.8))
    names = list(rows)
    xs = range(len(names))
    snn = [(rows[n][0] or 0.0) / 1e6 for n in names]
    twin = [rows[n][1] / 1e6 for n in names]
    ax.bar([x - 0.2 for x in xs], snn, width=0.38, label="model as run (SNN: MAC + AC)")
    ax.bar([x + 0.2 for x in xs], twin, width=0.38, label="CNN twin (MAC)")
    for x, value in zip(xs, snn):
        if value:
            ax.text(
                x - 0.2, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7
            )
    for x, value in zip(xs, twin):
        ax.text(x + 0.2, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("energy per stereo frame (µJ)")
    ax.set_title("compute energy, 45 nm (E_MAC 4.6 pJ, E_AC 0.9 pJ)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_examples(
    original: torch.Tensor, examples: dict[str, list[tuple[float, Any]]], path: Path
) -> Path:
    """Rows: original, then each system; columns: the chosen SNRs (left view)."""
    snrs = [snr for snr, _ in next(iter(examples.values()))]
    rows = 1 + len(examples)
    fig, axes = plt.subplots(
        rows, len(snrs), figsize=(3.0 * len(snrs), 1.75 * rows), squeeze=False
    )
    for col in range(len(snrs)):
        axes[0][col].imshow(original.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0][col].set_title("original", fontsize=7)
    for row, (name, items) in enumerate(examples.items(), start=1):
        for col, (snr, image) in enumerate(items):
            mse = float((image - original).square().mean())
            axes[row][col].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row][col].set_title(
                f"{name}, {snr:g} dB: {10 * torch.log10(torch.tensor(1 / mse)):.1f} dB",
                fontsize=7,
            )
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
