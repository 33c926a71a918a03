"""Latent codes: how a view's spikes become channel symbols and decoder input (one class
per ``model.latent`` value)."""

from shared.latent.base import LatentCode, Signalling
from shared.latent.count_pam import CountPAM, pam_from_counts
from shared.latent.registry import LATENT_CODES, latent_code, latent_modes, register
from shared.latent.spike_bpsk import SpikeBPSK

__all__ = [
    "LATENT_CODES",
    "CountPAM",
    "LatentCode",
    "Signalling",
    "SpikeBPSK",
    "latent_code",
    "latent_modes",
    "pam_from_counts",
    "register",
]
