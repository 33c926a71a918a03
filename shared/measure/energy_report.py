"""The energy report of a model: per-layer operations, firing rates and energy per frame."""

from __future__ import annotations

from collections.abc import Sequence

from shared.data.frames import Frame
from shared.evaluation import reconstruct
from shared.measure.meter import twin_energy_pj
from shared.model.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter
from shared.model.jscc import StereoJSCC


def energy_report(
    model: StereoJSCC, frames: Sequence[Frame], snr_db: float
) -> dict[str, object]:
    """Operations and energy per stereo frame over ``frames`` sent at ``snr_db`` through
    the model's channel (seed 0), per layer and per part, beside the CNN twin's energy.

    The model is compute-only (conventions): E_MAC for layers with real-valued inputs,
    E_AC per synaptic operation for layers fed by spikes; memory traffic is excluded.
    """
    meter = EnergyMeter(model)
    with meter:
        for frame in frames:
            reconstruct(model, model.channel, frame, snr_db, seed=0)
    meter.frames = len(frames)
    summary = meter.summary()
    height, width = frames[0].left.shape[-2:]
    twin_pj = twin_energy_pj(model.cfg, height, width)
    return {
        "kind": model.cfg.kind,
        "image_size": [height, width],
        "frames": len(frames),
        "snr_db": snr_db,
        "e_mac_pj": E_MAC_PJ,
        "e_ac_pj": E_AC_PJ,
        "energy_pj_per_frame": {
            "snn": summary["energy_pj"] if model.cfg.kind == "snn" else None,
            "cnn_twin": twin_pj,
        },
        "macs_per_frame": summary["macs"],
        "sops_per_frame": summary["sops"],
        "cnn_twin_macs_per_frame": twin_pj / E_MAC_PJ,
        "encoder": summary.get("encoder"),
        "decoder": summary.get("decoder"),
        "firing_rates": {
            name: float(rate) for name, rate in model.firing_rates().items()
        },
        "layers": summary["layers"],
        "note": "compute-only model: memory traffic is excluded",
    }
