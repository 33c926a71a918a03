"""In-process evaluation: encode, each view's hop, decode, measure (the link's path).

Each view of frame ``i`` goes through the channel with the generator
``generator_for(seed, i, view)`` and the same hop functions (:mod:`shared.link.hop`) as
the channel process and the receiver use for sequence number ``i``, so the link and this
module produce the same reconstructions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from shared.channel.rng import generator_for
from shared.channel.wireless import WirelessChannel
from shared.data.frames import Frame
from shared.link.hop import DecoderInput, receive, send
from shared.measure.meter import PartMeter, layer_rates, twin_energy_pj
from shared.measure.quality import frame_quality, summarise
from shared.model.jscc import StereoJSCC


def on_air(uses: dict, channel: WirelessChannel) -> dict:
    """A model's ``uses`` per view (``n`` data symbols, ``k`` source values, ``rho``)
    with ``n`` and ``rho`` counting what goes on air through ``channel``: its pilots
    too under estimated CSI (docs/CONVENTIONS.md)."""
    n = channel.channel_uses(int(uses["n"]))
    return {"n": n, "k": uses["k"], "rho": n / uses["k"]}


def view_through_channel(
    model: StereoJSCC,
    channel: WirelessChannel,
    latent: Tensor,
    snr_db: float,
    seed: int,
    seq: int,
    view: int,
) -> DecoderInput:
    """One view's latent ``[1, *shape]`` through the channel as the link sends frame
    ``seq``: the decoder input of that view."""
    snr = torch.tensor([float(snr_db)], device=latent.device)
    use = send(model.code, channel, latent, snr, generator_for(seed, seq, view))
    return receive(model.code, channel, use, snr, tuple(latent.shape[1:]))


def stacked_views(frames: Sequence[Frame]) -> tuple[Tensor, Tensor]:
    """The left and the right views of ``frames`` as two batches ``[B, 3, H, W]``."""
    return (
        torch.stack([f.left for f in frames]),
        torch.stack([f.right for f in frames]),
    )


def batch_through_channel(
    model: StereoJSCC,
    channel: WirelessChannel,
    latent: Tensor,
    snr_db: float,
    seed: int,
    seqs: Sequence[int],
) -> DecoderInput:
    """Every view of the frames ``seqs`` (``latent [2, B, *shape]``) through the channel
    as the link sends them (view ``v`` of frame ``seq`` with the draws of
    ``generator_for(seed, seq, v)``): the decoder input, left views first."""
    return DecoderInput.cat(
        [
            view_through_channel(
                model, channel, latent[view, i : i + 1], snr_db, seed, seq, view
            )
            for view in (0, 1)
            for i, seq in enumerate(seqs)
        ]
    )


def reconstruct_batch(
    model: StereoJSCC,
    channel: WirelessChannel,
    frames: Sequence[Frame],
    snr_db: float,
    seed: int,
    latent: Tensor | None = None,
) -> dict[str, Tensor]:
    """Encode (unless ``latent [2, B, *shape]`` is given), send every view of the ``B``
    frames through the channel (:func:`batch_through_channel`), decode them in one
    batch: ``x_hat_left``, ``x_hat_right`` ``[B, 3, H, W]``."""
    if latent is None:
        latent = model.encode(*stacked_views(frames))["latent"]
    seqs = [f.index for f in frames]
    return model.decode(
        batch_through_channel(model, channel, latent, snr_db, seed, seqs)
    )


def reconstruct(
    model: StereoJSCC,
    channel: WirelessChannel,
    frame: Frame,
    snr_db: float,
    seed: int,
    latent: Tensor | None = None,
) -> dict[str, Tensor]:
    """:func:`reconstruct_batch` of one frame (``latent [2, 1, *shape]``): ``x_hat_left``,
    ``x_hat_right`` ``[1, 3, H, W]``."""
    return reconstruct_batch(model, channel, [frame], snr_db, seed, latent)


def evaluate(
    model: StereoJSCC,
    frames: Iterable[Frame],
    snrs: Sequence[float],
    channel: WirelessChannel,
    seed: int = 0,
    measure_energy: bool = True,
    batch_size: int = 1,
) -> list[dict[str, object]]:
    """Evaluate at each SNR; one record per SNR with metrics, rates and energy per frame.

    Output records hold ``snr_db``, ``psnr_db``/``ms_ssim`` (``left``, ``right``, ``mean``
    and standard errors), ``firing_rate`` (mean over the layers, then over frames),
    ``layer_rates``, ``energy_pj_per_frame`` (SNN pJ and the CNN twin's pJ),
    ``frames`` (per-frame values) and ``pairs``. The frames are moved to the model's
    device (a trainer validating on a GPU) and run ``batch_size`` at a time (frames of
    one size); each view keeps its own channel draws, so the figures do not depend on
    the batch size (a batch's firing rates count for each of its frames).
    """
    model.eval()
    device = next(model.parameters()).device
    frames = [
        Frame(f.index, f.name, f.left.to(device), f.right.to(device)) for f in frames
    ]
    batches = [frames[i : i + batch_size] for i in range(0, len(frames), batch_size)]
    latents, encoder_rates = [], []
    with PartMeter(model, "encoder", measure_energy) as encoder:
        for batch in batches:
            latents.append(model.encode(*stacked_views(batch))["latent"])
            encoder_rates.append(layer_rates(model, "encoder"))
    results = []
    for snr_db in snrs:
        per_frame, frame_rates, rates_by_layer = [], [], {}
        with PartMeter(model, "decoder", measure_energy) as decoder:
            for batch, latent, enc_rates in zip(batches, latents, encoder_rates):
                out = reconstruct_batch(model, channel, batch, snr_db, seed, latent)
                rates = {**enc_rates, **layer_rates(model, "decoder")}
                for i, frame in enumerate(batch):
                    views = {k: v[i : i + 1] for k, v in out.items()}
                    per_frame.append(
                        {
                            "name": frame.name,
                            "index": frame.index,
                            **frame_quality(frame, views),
                        }
                    )
                    frame_rates.append(sum(rates.values()) / len(rates))
                    for name, rate in rates.items():
                        rates_by_layer[name] = rates_by_layer.get(name, 0.0) + rate
        summary = summarise(per_frame)
        layer_means = {k: v / len(frames) for k, v in rates_by_layer.items()}
        record: dict[str, object] = {
            "snr_db": float(snr_db),
            "channel": channel.kind,
            "csi": channel.csi,
            "psnr_db": summary["psnr"],
            "ms_ssim": summary["ms_ssim"],
            "firing_rate": sum(frame_rates) / len(frame_rates),
            "layer_rates": layer_means,
            "silent_layers": sorted(k for k, v in layer_means.items() if v == 0.0),
            "distinct_values_min": min(
                min(f["distinct_left"], f["distinct_right"]) for f in per_frame
            ),
            "pairs": len(frames),
            "frames": per_frame,
        }
        if measure_energy:
            size = tuple(frames[0].left.shape[-2:])
            record["energy_pj_per_frame"] = _energy(
                model, encoder.counts(len(frames)), decoder.counts(len(frames)), size
            )
        results.append(record)
    return results


def _energy(
    model: StereoJSCC,
    encoder: dict[str, float],
    decoder: dict[str, float],
    size: tuple[int, int],
) -> dict[str, float | None]:
    """Energy per frame: the SNN (None for a CNN model) and its CNN twin, in pJ."""
    twin = twin_energy_pj(model.cfg, *size)
    if model.cfg.kind != "snn":
        return {"snn": None, "cnn_twin": twin}
    return {
        "snn": encoder["energy_pj"] + decoder["energy_pj"],
        "cnn_twin": twin,
        "snn_encoder": encoder["energy_pj"],
        "snn_decoder": decoder["energy_pj"],
        "sops": encoder["sops"] + decoder["sops"],
        "macs": encoder["macs"] + decoder["macs"],
    }
