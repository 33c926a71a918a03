"""Channel maths shared by the trainer and the channel process (pure torch)."""

from shared.channel.awgn import awgn, noise_var_to_snr_db, snr_db_to_noise_var
from shared.channel.binary import bsc, erasure
from shared.channel.equalize import equalize
from shared.channel.fading import (
    apply_fading,
    sample_rayleigh_block,
    sample_rayleigh_fast,
    sample_rician_block,
)
from shared.channel.modulation import bpsk, bpsk_llr, soft_bits
from shared.channel.power import complex_to_real, normalize_power, real_to_complex
from shared.channel.rng import generator_for
from shared.channel.wireless import ChannelUse, WirelessChannel

__all__ = [
    "ChannelUse",
    "WirelessChannel",
    "apply_fading",
    "awgn",
    "bpsk",
    "bpsk_llr",
    "bsc",
    "complex_to_real",
    "equalize",
    "erasure",
    "generator_for",
    "noise_var_to_snr_db",
    "normalize_power",
    "real_to_complex",
    "sample_rayleigh_block",
    "sample_rayleigh_fast",
    "sample_rician_block",
    "snr_db_to_noise_var",
    "soft_bits",
]
