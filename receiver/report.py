"""Per-frame records and the receiver's summary (``frames.jsonl``, ``summary.json``)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from shared.evaluation import summarise


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def group_by_setting(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics of complete frames for each (channel, csi, SNR) they were sent at."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if len(r["views"]) == 2:
            groups.setdefault((r["channel"], r["csi"], r["snr_db"]), []).append(r)
    out = []
    for (channel, csi, snr_db), group in sorted(groups.items()):
        metrics = summarise(group)
        out.append(
            {
                "channel": channel,
                "csi": csi,
                "snr_db": snr_db,
                "frames": len(group),
                "psnr_db": metrics["psnr"],
                "ms_ssim": metrics["ms_ssim"],
                "firing_rate": statistics.fmean(r["firing_rate"] for r in group),
                "energy_pj_snn": _mean_or_none([r["energy_pj_snn"] for r in group]),
            }
        )
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def lost_frames(
    records: list[dict[str, Any]], frames_sent: int | None, reasons: dict[int, str]
) -> dict[str, Any]:
    """Every frame sent and never decoded, by sequence number, with the reason where it
    is known (the first message of the frame that was rejected), so that
    ``frames_sent == frames_received + frames_lost``."""
    if frames_sent is None:
        return {"frames_lost": None, "lost_seq": None, "lost_reasons": {}}
    decoded = {r["seq"] for r in records}
    lost = [seq for seq in range(frames_sent) if seq not in decoded]
    return {
        "frames_lost": len(lost),
        "lost_seq": lost,
        "lost_reasons": {
            str(seq): reasons.get(seq, "never reached the receiver") for seq in lost
        },
    }


def build_summary(
    records: list[dict[str, Any]],
    frames_sent: int | None,
    reasons: dict[int, str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The summary of a run; ``extra`` adds model, config, sizes and counters.

    PSNR and MS-SSIM are means over the frames scored on both views (both views
    received, both references usable); the other frames are counted, not scored.
    ``reasons`` gives why a frame's message was rejected, by sequence number.
    """
    complete = [r for r in records if len(r["views"]) == 2]
    scored = [r for r in complete if None not in (r["psnr_left"], r["psnr_right"])]
    metrics = (
        summarise(scored)
        if scored
        else {
            "psnr": {"left": None, "right": None, "mean": None},
            "ms_ssim": {"left": None, "right": None, "mean": None},
        }
    )
    received = len(records)
    latencies = [r["latency_ms"] for r in records]
    times = [r["t_done"] for r in records]
    fps = (
        (received - 1) / (times[-1] - times[0])
        if received > 1 and times[-1] > times[0]
        else None
    )
    snrs = sorted({r["snr_db"] for r in records})
    channels = sorted({r["channel"] for r in records})
    return {
        "frames_sent": frames_sent,
        "frames_received": received,
        **lost_frames(records, frames_sent, reasons),
        "frames_single_view": received - len(complete),
        "psnr_db": metrics["psnr"],
        "ms_ssim": metrics["ms_ssim"],
        "snr_db": snrs[0] if len(snrs) == 1 else snrs,
        "channel": channels[0] if len(channels) == 1 else channels,
        "fps": fps,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
        },
        "firing_rate": _mean_or_none([r["firing_rate"] for r in records]),
        "energy_pj_per_frame": {
            "snn": _mean_or_none([r["energy_pj_snn"] for r in records]),
            "cnn_twin": extra.pop("energy_pj_cnn_twin", None),
        },
        "by_setting": group_by_setting(records),
        **extra,
    }


class FrameLog:
    """Appends one JSON line per decoded frame to ``frames.jsonl``; a resumed receiver
    (``resume``) reads the records already there and goes on after them.

    The records stay on disk (:meth:`records` reads them back for the summary); in
    memory the log keeps the decoded sequence numbers and the running figures of the
    progress line, so that a long stream does not grow the receiver.
    """

    def __init__(self, out_dir: Path, resume: bool = False) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "frames.jsonl"
        self.seqs: set[int] = set()
        self.left_psnr_sum, self.left_psnr_count = 0.0, 0
        kept = self.records() if resume and self.path.exists() else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        for record in kept:
            self._count(record)

    def records(self) -> list[dict[str, Any]]:
        """The records written so far (up to a line a killed receiver left half)."""
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

    @property
    def count(self) -> int:
        return len(self.seqs)

    @property
    def mean_left_psnr(self) -> float | None:
        if not self.left_psnr_count:
            return None
        return self.left_psnr_sum / self.left_psnr_count

    def _count(self, record: dict[str, Any]) -> None:
        self.seqs.add(record["seq"])
        if record["psnr_left"] is not None:
            self.left_psnr_sum += record["psnr_left"]
            self.left_psnr_count += 1

    def add(self, record: dict[str, Any]) -> None:
        self._count(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
