"""Quality against channel SNR: models through the real link or in one process, and the
separation baselines, as records of one shape.

A sweep visits ``points`` = (channel, SNR) pairs. Each point streams the frames
``passes`` times, and frame ``i`` of point ``p`` carries the sequence number ``p * N + i``
(``N`` = frames x passes per point) in both modes, so the channel draws the same noise and
fading for it through the link and in process, and the two modes agree. Every pass draws
new noise and fading, so more passes give smoother curves under block fading.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shared.baselines import (
    LDPC_SUFFIX,
    budget_bytes,
    code_at_budget,
    file_at_budget,
    instantaneous_snr_db,
)
from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.config import Config, InferenceConfig, load_config
from shared.data.frames import Frame
from shared.errors import ConfigError, LinkError
from shared.evaluation import evaluate, on_air, reconstruct
from shared.link.control import ControlClient
from shared.link.launcher import Control, run_link
from shared.measure.quality import frame_quality, summarise
from shared.model.checkpoint import load_model
from shared.model.inference import batch_frames, inference_overrides
from shared.model.jscc import StereoJSCC

Point = tuple[str, float]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: (channel, SNR) points, CSI, channel seed, frames of the source,
    passes over them per point, and where and how the models run."""

    points: tuple[Point, ...]
    csi: str
    seed: int
    frames: int
    passes: int = 1
    infer: InferenceConfig = InferenceConfig()

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("a sweep needs at least one (channel, SNR) point")
        if self.frames < 1:
            raise ConfigError(
                f"a sweep needs at least one stereo pair per pass, got {self.frames}"
            )
        if self.passes < 1:
            raise ConfigError(f"--passes: got {self.passes}; allowed: 1 or more")

    @property
    def per_point(self) -> int:
        """Frames sent at each point."""
        return self.frames * self.passes


def system_name(path: str | Path) -> str:
    return Path(path).stem


def _record(
    system: str,
    kind: str,
    channel: str,
    csi: str,
    snr_db: float,
    metrics: dict,
    uses: dict,
    frames: int,
    energy: dict | None,
    firing_rate: float | None,
) -> dict[str, Any]:
    return {
        "system": system,
        "kind": kind,
        "channel": channel,
        "csi": csi,
        "snr_db": snr_db,
        "psnr_db": metrics["psnr"],
        "ms_ssim": metrics["ms_ssim"],
        "channel_uses": uses["n"],
        "source_values": uses["k"],
        "rho": uses["rho"],
        "energy_pj_per_frame": energy,
        "firing_rate": firing_rate,
        "frames": frames,
    }


def renumbered(frames: Sequence[Frame], point: int, passes: int) -> list[Frame]:
    """The frames of point ``point``, ``passes`` times, with their link sequence numbers."""
    stream = list(frames) * passes
    n = len(stream)
    return [Frame(point * n + i, f.name, f.left, f.right) for i, f in enumerate(stream)]


def sweep_in_process(
    model: StereoJSCC,
    system: str,
    frames: Sequence[Frame],
    spec: SweepSpec,
    progress: Progress = lambda n: None,
) -> list[dict[str, Any]]:
    """Every point evaluated in this process with the link's seeding."""
    height, width = frames[0].left.shape[-2:]
    uses = model.channel_uses(height, width)
    out = []
    for p, (kind, snr_db) in enumerate(spec.points):
        channel = WirelessChannel(kind, model.code.signalling, csi=spec.csi)
        result = evaluate(
            model,
            renumbered(frames, p, spec.passes),
            [snr_db],
            channel,
            spec.seed,
            batch_size=batch_frames(spec.infer),
        )[0]
        metrics = {"psnr": result["psnr_db"], "ms_ssim": result["ms_ssim"]}
        out.append(
            _record(
                system,
                model.cfg.kind,
                kind,
                spec.csi,
                snr_db,
                metrics,
                on_air(uses, channel),
                spec.per_point,
                result["energy_pj_per_frame"],
                result["firing_rate"],
            )
        )
        out[-1]["per_frame"] = result["frames"]
        progress(1)
    return out


def link_config(
    model_path: str,
    data: str,
    root: str | None,
    spec: SweepSpec,
    out_dir: Path,
    image_size: tuple[int, int],
    images: bool = False,
) -> Config:
    """Link settings for one model: every point is ``spec.passes`` passes over the
    frames."""
    first_channel, first_snr = spec.points[0]
    return load_config(
        None,
        [
            f"link.model={model_path}",
            f"link.source={data}",
            f"link.source_root={root or ''}",
            f"link.frames={spec.frames}",
            f"link.repeat={len(spec.points) * spec.passes}",
            f"link.out_dir={out_dir}",
            f"link.save_png={str(images).lower()}",
            f"link.save_grid={str(images).lower()}",
            f"channel.kind={first_channel}",
            f"channel.snr_db={first_snr}",
            f"channel.csi={spec.csi}",
            f"channel.seed={spec.seed}",
            f"data.image_height={image_size[0]}",
            f"data.image_width={image_size[1]}",
            *inference_overrides(spec.infer),
        ],
    )


def schedule_points(spec: SweepSpec) -> Control:
    """Schedules the channel of every point after the first through the control socket
    (the link's set-up, before the transmitter sends its first frame)."""

    def schedule(connect: Callable[[], ControlClient]) -> None:
        with connect() as client:
            for p, (kind, snr_db) in enumerate(spec.points[1:], start=1):
                client.set_channel(
                    from_seq=p * spec.per_point,
                    channel=kind,
                    snr_db=snr_db,
                    csi=spec.csi,
                )

    return schedule


def progress_monitor(spec: SweepSpec, frames_path: Path, progress: Progress) -> Control:
    """Reports each point once the receiver has recorded all its frames."""

    def monitor(connect: Callable[[], ControlClient]) -> None:
        total, reported = len(spec.points) * spec.per_point, 0
        while reported < total:
            lines = (
                len(frames_path.read_text().splitlines()) if frames_path.exists() else 0
            )
            done = lines // spec.per_point
            if done > reported:
                progress(done - reported)
                reported = done
            time.sleep(0.2)

    return monitor


def records_from_link(
    frames_path: Path, summary: dict, system: str, kind: str, spec: SweepSpec
) -> list[dict[str, Any]]:
    """Group the receiver's per-frame records by the setting each frame was sent with."""
    per_frame = [json.loads(line) for line in frames_path.read_text().splitlines()]
    source_values = summary["source_values_per_view"]
    out = []
    for p, (channel, snr_db) in enumerate(spec.points):
        seqs = range(p * spec.per_point, (p + 1) * spec.per_point)
        group = [r for r in per_frame if r["seq"] in seqs]
        wrong = [
            r["seq"] for r in group if (r["channel"], r["snr_db"]) != (channel, snr_db)
        ]
        if wrong:
            raise LinkError(
                f"link sweep: frames {wrong} of point {channel} {snr_db} dB "
                "went out at another setting"
            )
        snn = [r["energy_pj_snn"] for r in group]
        energy = {
            "snn": None if None in snn else sum(snn) / len(snn),
            "cnn_twin": summary["energy_pj_per_frame"]["cnn_twin"],
        }
        rate = sum(r["firing_rate"] for r in group) / len(group)
        n = group[0]["channel_uses"]
        uses = {"n": n, "k": source_values, "rho": n / source_values}
        record = _record(
            system,
            kind,
            channel,
            spec.csi,
            snr_db,
            summarise(group),
            uses,
            len(group),
            energy,
            rate,
        )
        record["frames_lost"] = spec.per_point - len(group)
        record["fps"] = summary["fps"]
        record["per_frame"] = group
        out.append(record)
    return out


def sweep_link(
    model_path: str,
    data: str,
    root: str | None,
    spec: SweepSpec,
    out_dir: Path,
    progress: Progress = lambda n: None,
    images: bool = False,
) -> list[dict[str, Any]]:
    """Every point through the real three-process link, started once; ``images`` keeps
    the reconstructions and original/received grids as PNG."""
    _, cfg = load_model(model_path)
    size = (cfg.data.image_height, cfg.data.image_width)
    link_cfg = link_config(model_path, data, root, spec, out_dir, size, images)
    frames_path = out_dir / "frames.jsonl"
    result = run_link(
        link_cfg,
        quiet=True,
        controller=progress_monitor(spec, frames_path, progress),
        setup=schedule_points(spec),
    )
    if result.status != 0 or result.summary is None or not frames_path.exists():
        raise LinkError(
            f"the link failed for {model_path} (status {result.status}); "
            f"see {out_dir / 'link.log'}"
        )
    return records_from_link(
        frames_path, result.summary, system_name(model_path), cfg.model.kind, spec
    )


#: Shows one view at the receiver: ``(frame, view, image [3, H, W])`` to the image shown
#: and whether the view arrived.
ShowView = Callable[[Frame, int, torch.Tensor], tuple[torch.Tensor, bool]]


def coded_at_capacity(
    image: torch.Tensor,
    codec: str,
    channel: str,
    snr_db: float,
    seed: int,
    seq: int,
    view: int,
    channel_uses: int,
) -> torch.Tensor:
    """View ``view`` of frame ``seq`` (``image [3, H, W]``) as ``codec`` codes it at the
    capacity of the channel that view sees on the link."""
    snr_view = instantaneous_snr_db(channel, snr_db, seed, seq, view, channel_uses)
    return code_at_budget(image, codec, budget_bytes(channel_uses, snr_view))[0]


def _baseline_frames(
    frames: Sequence[Frame], point: int, spec: SweepSpec, show: ShowView
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every frame of point ``point`` as a baseline shows its views: the per-frame
    quality records and the number of views of each frame that did not arrive."""
    per_frame, lost = [], []
    for frame in renumbered(frames, point, spec.passes):
        recon, missing = {}, 0
        for view, side in ((0, "left"), (1, "right")):
            shown, arrived = show(frame, view, getattr(frame, side))
            recon[f"x_hat_{side}"], missing = shown[None], missing + (not arrived)
        per_frame.append(
            {"name": frame.name, "index": frame.index, **frame_quality(frame, recon)}
        )
        lost.append(missing)
    return per_frame, lost


def _baseline_record(
    name: str,
    channel: str,
    snr_db: float,
    spec: SweepSpec,
    channel_uses: int,
    source_values: int,
    per_frame: list[dict[str, Any]],
    summary: dict | None = None,
) -> dict[str, Any]:
    """The record of one baseline at one point, with its frames (``summary``: their
    :func:`summarise`, when the caller has it already)."""
    uses = {"n": channel_uses, "k": source_values, "rho": channel_uses / source_values}
    record = _record(
        name,
        "baseline",
        channel,
        spec.csi,
        snr_db,
        summary or summarise(per_frame),
        uses,
        spec.per_point,
        None,
        None,
    )
    record["per_frame"] = per_frame
    return record


def sweep_baseline(
    codec: str,
    frames: Sequence[Frame],
    spec: SweepSpec,
    data_symbols: int,
    source_values: int,
    progress: Progress = lambda n: None,
) -> list[dict[str, Any]]:
    """A codec at the capacity budget of each view (instantaneous SNR for block fading)
    of the channel uses a model with ``data_symbols`` per view takes, pilots included."""
    out = []
    for p, (kind, snr_db) in enumerate(spec.points):
        channel_uses = WirelessChannel(kind, csi=spec.csi).channel_uses(data_symbols)

        def at_capacity(frame: Frame, view: int, image: torch.Tensor):
            coded = coded_at_capacity(
                image, codec, kind, snr_db, spec.seed, frame.index, view, channel_uses
            )
            return coded, True

        per_frame, _ = _baseline_frames(frames, p, spec, at_capacity)
        out.append(
            _baseline_record(
                codec, kind, snr_db, spec, channel_uses, source_values, per_frame
            )
        )
        progress(1)
    return out


def sweep_digital_baseline(
    baseline: str,
    frames: Sequence[Frame],
    spec: SweepSpec,
    data_symbols: int,
    source_values: int,
    progress: Progress = lambda n: None,
) -> list[dict[str, Any]]:
    """``<codec>+ldpc``: the codec over 5G NR LDPC and QAM through the link's channel
    realisations (:mod:`shared.digital_link`). Every scheme of ``SCHEMES`` is tried at
    each point and the best mean PSNR is reported, with its scheme (``scheme``), every
    scheme's mean PSNR (``schemes``) and the views it showed as their mean colour
    (``views_lost``: lost to a codeword error, or with no codec file small enough).
    Each view carries ``data_symbols`` QAM symbols, and the pilots of estimated CSI."""
    from shared.digital_link import SCHEMES, DigitalLink, send_view  # Sionna: seconds

    codec = baseline.removesuffix(LDPC_SUFFIX)
    links = [DigitalLink(scheme, data_symbols) for scheme in SCHEMES]
    files: dict[tuple[str, int, int], bytes | None] = {}
    out = []
    for p, (kind, snr_db) in enumerate(spec.points):
        channel = WirelessChannel(kind, csi=spec.csi)
        channel_uses = channel.channel_uses(data_symbols)
        by_scheme = {}
        for link in links:

            def over_link(frame: Frame, view: int, image: torch.Tensor, link=link):
                key = (frame.name, view, link.layout.payload_bytes)
                if key not in files:
                    files[key] = file_at_budget(image, codec, key[2])[1]
                generator = generator_for(spec.seed, frame.index, view)
                return send_view(image, files[key], link, channel, snr_db, generator)

            per_frame, lost = _baseline_frames(frames, p, spec, over_link)
            for record, missing in zip(per_frame, lost):
                record["views_lost"] = missing
            by_scheme[link.scheme.label] = per_frame
        summaries = {label: summarise(pf) for label, pf in by_scheme.items()}
        best = max(summaries, key=lambda label: summaries[label]["psnr"]["mean"])
        record = _baseline_record(
            baseline,
            kind,
            snr_db,
            spec,
            channel_uses,
            source_values,
            by_scheme[best],
            summaries[best],
        )
        record["scheme"] = best
        record["schemes"] = {
            label: summary["psnr"]["mean"] for label, summary in summaries.items()
        }
        record["views_lost"] = sum(f["views_lost"] for f in by_scheme[best])
        out.append(record)
        progress(1)
    return out


def example_reconstructions(
    models: dict[str, StereoJSCC],
    codecs: Sequence[str],
    frame: Frame,
    channel: str,
    csi: str,
    snrs: Sequence[float],
    seed: int,
    data_symbols: int,
) -> dict[str, list[tuple[float, torch.Tensor]]]:
    """Left-view reconstructions of one frame by every system at a few SNRs (the
    codecs at the capacity of the channel uses of ``data_symbols`` and any pilots)."""
    channel_uses = WirelessChannel(channel, csi=csi).channel_uses(data_symbols)
    out: dict[str, list[tuple[float, torch.Tensor]]] = {}
    for name, model in models.items():
        wireless = WirelessChannel(channel, model.code.signalling, csi=csi)
        out[name] = [
            (snr, reconstruct(model, wireless, frame, snr, seed)["x_hat_left"][0])
            for snr in snrs
        ]
    for codec in codecs:
        out[codec] = [
            (
                snr,
                coded_at_capacity(
                    frame.left, codec, channel, snr, seed, frame.index, 0, channel_uses
                ),
            )
            for snr in snrs
        ]
    return out
