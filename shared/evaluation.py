"""In-process evaluation: encode, per-view channel, decode, metrics (same path as the link).

Each view of frame ``i`` goes through the channel with the generator
``generator_for(seed, i, view)``, exactly as the channel process does for sequence number
``i``, so the link and this function produce the same reconstructions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.metrics import MSSSIM_MIN_SIDE, mean_and_sem, ms_ssim, psnr
from shared.model.energy import E_MAC_PJ, EnergyMeter, twin_macs_per_frame
from shared.model.jscc import StereoJSCC


@dataclass
class Frame:
    """One stereo frame: index (sequence number), name, views ``[3, H, W]`` in [0, 1]."""

    index: int
    name: str
    left: Tensor
    right: Tensor


def transmit_view(
    channel: WirelessChannel, x: Tensor, snr_db: float, seed: int, seq: int, view: int
) -> tuple[Tensor, Tensor | None]:
    """One view's block through the channel: ``x [1, L]`` to (soft ``[1, L]``, SNR known),
    on the device of ``x``."""
    snr = torch.tensor([float(snr_db)], device=x.device)
    use = channel.propagate(channel.transmit(x), snr, generator_for(seed, seq, view))
    return channel.receive(use), channel.snr_known_db(snr, use)


def reconstruct(
    model: StereoJSCC,
    channel: WirelessChannel,
    frame: Frame,
    snr_db: float,
    seed: int,
    latent: Tensor | None = None,
) -> dict[str, Tensor]:
    """Encode (unless ``latent`` is given), send both views, decode one frame."""
    if latent is None:
        latent = model.encode(frame.left[None], frame.right[None])["latent"]
    shape = tuple(latent.shape[2:])
    softs, snrs = [], []
    for view in (0, 1):
        soft, snr_known = transmit_view(
            channel, model.channel_input(latent[view]), snr_db, seed, frame.index, view
        )
        softs.append(soft)
        snrs.append(snr_known)
    snr_known = None if snrs[0] is None else torch.cat(snrs)
    return model.decode(torch.cat(softs), shape, snr_known)


def frame_metrics(frame: Frame, out: dict[str, Tensor]) -> dict[str, float | None]:
    """PSNR (and MS-SSIM where the size allows it) per view of one frame."""
    record: dict[str, float | None] = {}
    for side, ref in (("left", frame.left), ("right", frame.right)):
        rec = out[f"x_hat_{side}"]
        record[f"psnr_{side}"] = float(psnr(rec, ref[None])[0])
        record[f"ms_ssim_{side}"] = (
            float(ms_ssim(rec, ref[None])[0])
            if min(ref.shape[-2:]) >= MSSSIM_MIN_SIDE
            else None
        )
        record[f"distinct_{side}"] = int(rec.detach().unique().numel())
    return record


def summarise(
    records: Sequence[dict[str, float | None]],
) -> dict[str, dict[str, float]]:
    """Mean (and standard error) over frames of per-view PSNR / MS-SSIM and their mean."""
    out: dict[str, dict[str, float]] = {}
    for metric in ("psnr", "ms_ssim"):
        views = {
            side: [r[f"{metric}_{side}"] for r in records] for side in ("left", "right")
        }
        if any(v is None for vals in views.values() for v in vals):
            out[metric] = {"left": None, "right": None, "mean": None}
            continue
        both = [(a + b) / 2 for a, b in zip(views["left"], views["right"])]
        block = {}
        for side, vals in (*views.items(), ("mean", both)):
            block[side], block[f"{side}_sem"] = mean_and_sem(vals)
        out[metric] = block
    return out


def evaluate(
    model: StereoJSCC,
    frames: Iterable[Frame],
    snrs: Sequence[float],
    channel: WirelessChannel,
    seed: int = 0,
    measure_energy: bool = True,
) -> list[dict[str, object]]:
    """Evaluate at each SNR; one record per SNR with metrics, rates and energy per frame.

    Output records hold ``snr_db``, ``psnr_db``/``ms_ssim`` (``left``, ``right``, ``mean``
    and standard errors), ``firing_rate`` (mean over layers and frames), ``energy`` (per
    frame: SNN pJ and the CNN twin's pJ), ``frames`` (per-frame values) and ``pairs``.
    The frames are moved to the model's device (a trainer validating on a GPU).
    """
    model.eval()
    device = next(model.parameters()).device
    frames = [
        Frame(f.index, f.name, f.left.to(device), f.right.to(device)) for f in frames
    ]
    encoder_meter = EnergyMeter(model)
    with encoder_meter if measure_energy else nullcontext():
        latents = [model.encode(f.left[None], f.right[None])["latent"] for f in frames]
    encoder_meter.frames = len(frames)
    results = []
    for snr_db in snrs:
        per_frame, rates, layer_rates = [], [], {}
        decoder_meter = EnergyMeter(model)
        with decoder_meter if measure_energy else nullcontext():
            for frame, latent in zip(frames, latents):
                out = reconstruct(model, channel, frame, snr_db, seed, latent)
                per_frame.append(
                    {
                        "name": frame.name,
                        "index": frame.index,
                        **frame_metrics(frame, out),
                    }
                )
                frame_rates = model.firing_rates()
                rates.append(
                    sum(float(r) for r in frame_rates.values()) / len(frame_rates)
                )
                for name, rate in frame_rates.items():
                    layer_rates[name] = layer_rates.get(name, 0.0) + float(rate)
        decoder_meter.frames = len(frames)
        summary = summarise(per_frame)
        record: dict[str, object] = {
            "snr_db": float(snr_db),
            "channel": channel.kind,
            "csi": channel.csi,
            "psnr_db": summary["psnr"],
            "ms_ssim": summary["ms_ssim"],
            "firing_rate": sum(rates) / len(rates),
            "layer_rates": {k: v / len(frames) for k, v in layer_rates.items()},
            "silent_layers": sorted(k for k, v in layer_rates.items() if v == 0.0),
            "distinct_values_min": min(
                min(f["distinct_left"], f["distinct_right"]) for f in per_frame
            ),
            "pairs": len(frames),
            "frames": per_frame,
        }
        if measure_energy:
            record["energy_pj_per_frame"] = _energy(
                model, encoder_meter, decoder_meter, frames[0]
            )
        results.append(record)
    return results


def _energy(
    model: StereoJSCC, encoder: EnergyMeter, decoder: EnergyMeter, frame: Frame
) -> dict[str, float]:
    """Energy per frame: the SNN (None for a CNN model) and its CNN twin, in pJ."""
    enc, dec = encoder.summary()["encoder"], decoder.summary()["decoder"]
    height, width = frame.left.shape[-2:]
    twin = twin_macs_per_frame(model, height, width) * E_MAC_PJ
    if model.cfg.kind != "snn":
        return {"snn": None, "cnn_twin": twin}
    return {
        "snn": enc["energy_pj"] + dec["energy_pj"],
        "cnn_twin": twin,
        "snn_encoder": enc["energy_pj"],
        "snn_decoder": dec["energy_pj"],
        "sops": enc["sops"] + dec["sops"],
        "macs": enc["macs"] + dec["macs"],
    }
