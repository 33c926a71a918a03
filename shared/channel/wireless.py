"""The whole channel as three stages: transmit, propagate, receive.

The stages are run by one pair of functions, :func:`shared.link.hop.send` (transmit and
propagate) and :func:`shared.link.hop.receive`, in training, in-process evaluation and
across the link's processes: the channel process sends the :class:`ChannelUse` on to the
receiver. It is the same code everywhere, drawing from the generator in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from shared.channel.awgn import awgn, snr_db_to_noise_var
from shared.channel.binary import bsc, erasure
from shared.channel.equalize import equalize
from shared.channel.fading import (
    apply_fading,
    sample_rayleigh_block,
    sample_rayleigh_fast,
    sample_rician_block,
)
from shared.channel.modulation import bpsk, bpsk_llr, soft_bits
from shared.channel.ofdm import OfdmTdl
from shared.channel.pilots import PilotGrid, layout, layout_of
from shared.channel.power import complex_to_real, normalize_power, real_to_complex
from shared.config import ChannelConfig, check_csi
from shared.errors import ConfigError
from shared.latent import LATENT_CODES, LatentCode, Signalling

BIT_CHANNELS = ("bsc", "erasure")
BLOCK_FADING = ("rayleigh_block", "rician_block")
#: Channels with a coefficient per symbol (per resource element for OFDM).
PER_SYMBOL_FADING = ("rayleigh_fast", "ofdm_tdl")
#: Amplitude per real dimension of unit-energy QPSK (two antipodal bits per symbol).
BIT_AMPLITUDE = 1.0 / math.sqrt(2.0)


@dataclass
class ChannelUse:
    """What leaves the channel for one batch of blocks.

    y : [N, n] complex received symbols, or [N, L] float in {-1, 0, +1} for bit channels
        (0 = erased)
    noise_var : [N] float, noise variance per complex symbol (nominal SNR)
    h : [N, 1] or [N, n] complex fading coefficients when CSI is perfect, the channel
        estimated from pilots (``csi: estimated``, after :meth:`WirelessChannel.estimate`),
        else None
    error_var : [N, n] float, variance of the estimate's error (estimated CSI), else None
    """

    y: Tensor
    noise_var: Tensor
    h: Tensor | None
    error_var: Tensor | None = None

    def symbol_noise_var(self) -> Tensor:
        """``[N, n]`` float: the noise variance the receiver assigns each symbol, the
        nominal ``N0`` plus the estimate's error variance under estimated CSI."""
        noise_var = self.noise_var.to(self.y.device).reshape(-1, 1).expand(self.y.shape)
        return noise_var if self.error_var is None else noise_var + self.error_var


class WirelessChannel(nn.Module):
    r"""Modulation, power normalisation, channel impairment and demodulation.

    Parameters
    ----------
    kind : 'awgn' | 'rayleigh_block' | 'rayleigh_fast' | 'rician_block' | 'ofdm_tdl' | 'bsc'
        | 'erasure'
    signalling : 'analog' (real amplitudes, e.g. count-PAM) or 'bits' (binary spikes)
    csi : 'perfect' (receiver knows h and the noise variance), 'estimated' (``ofdm_tdl``
        only: h estimated from pilots, which take channel uses; N0 known) or 'none'
    equalizer : 'zf' | 'mmse', used for analog signalling with perfect CSI
    rician_k : float, K factor (linear) of ``rician_block``
    flip_prob, erasure_prob : float, parameters of ``bsc`` and ``erasure``
    ofdm : OfdmTdl, resource grid and TDL model of ``ofdm_tdl``
    pilots : PilotGrid, the pilots of ``csi: estimated``

    Raises ConfigError naming ``channel.kind`` for a bit-level channel with analog
    signalling, and ``channel.csi`` for estimated CSI on a channel without pilots.
    """

    def __init__(
        self,
        kind: str = "awgn",
        signalling: Signalling = "analog",
        csi: str = "perfect",
        equalizer: str = "mmse",
        rician_k: float = 3.0,
        flip_prob: float = 0.01,
        erasure_prob: float = 0.01,
        ofdm: OfdmTdl = OfdmTdl(),
        pilots: PilotGrid = PilotGrid(),
    ) -> None:
        super().__init__()
        if kind in BIT_CHANNELS and signalling != "bits":
            bit_codes = [n for n, c in LATENT_CODES.items() if c.signalling == "bits"]
            raise ConfigError(
                f"config key 'channel.kind': got '{kind}', a bit-level channel, for a "
                f"latent with {signalling} signalling; allowed: bit-level channels "
                f"need model.latent {' or '.join(repr(n) for n in bit_codes)}"
            )
        check_csi(kind, csi)
        self.kind = kind
        self.signalling = signalling
        self.csi = csi
        self.equalizer = equalizer
        self.rician_k = rician_k
        self.flip_prob = flip_prob
        self.erasure_prob = erasure_prob
        self.ofdm = ofdm
        self.pilots = pilots

    @classmethod
    def for_code(cls, cfg: ChannelConfig, code: LatentCode) -> "WirelessChannel":
        """The channel of ``cfg`` with the signalling of the latent code ``code``."""
        return cls(
            kind=cfg.kind,
            signalling=code.signalling,
            csi=cfg.csi,
            equalizer=cfg.equalizer,
            rician_k=cfg.rician_k,
            flip_prob=cfg.flip_prob,
            erasure_prob=cfg.erasure_prob,
            ofdm=OfdmTdl(
                cfg.tdl_model,
                cfg.delay_spread_ns,
                cfg.speed_mps,
                cfg.subcarriers,
                cfg.subcarrier_spacing_khz,
                cfg.carrier_ghz,
            ),
            pilots=PilotGrid(
                cfg.pilot_subcarrier_step,
                cfg.pilot_symbol_step,
                cfg.pilot_interpolation,
            ),
        )

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, signalling={self.signalling}, csi={self.csi}, "
            f"equalizer={self.equalizer}"
        )

    def channel_uses(self, n: int) -> int:
        """Complex channel uses of a view of ``n`` data symbols: ``n`` plus its pilots
        under estimated CSI (docs/CONVENTIONS.md), ``n`` otherwise."""
        if self.csi != "estimated":
            return n
        return self.pilots.channel_uses(n, self.ofdm.subcarriers)

    # ------------------------------------------------------------------ stages

    def transmit(self, x: Tensor) -> Tensor:
        """Modulate and normalise: ``[N, L]`` real to ``[N, L/2]`` complex at Es = 1,
        then :meth:`place` the pilots (``[N, M]``, :meth:`channel_uses`).

        Bit channels pass the bits through unchanged (``[N, L]`` float in {0, 1}).
        """
        if self.kind in BIT_CHANNELS:
            return x
        amplitude = bpsk(x) if self.signalling == "bits" else x
        return self.place(normalize_power(real_to_complex(amplitude)))

    def place(self, z: Tensor) -> Tensor:
        """Data symbols ``z : [N, n]`` at unit power to the ``[N, M]`` symbols sent:
        with the pilots in place under estimated CSI, unchanged otherwise."""
        if self.csi != "estimated":
            return z
        return layout(self.pilots, self.ofdm.subcarriers, z.shape[1]).insert(z)

    def estimate(self, use: ChannelUse) -> ChannelUse:
        """Under estimated CSI, the data symbols of ``use`` (``y : [N, M]``) with the
        channel estimated from its pilots and the error variance of each estimate
        (``[N, n]``); ``use`` itself otherwise.

        Raises ValueError when ``M`` is not the length of a view on the pilot grid."""
        if self.csi != "estimated":
            return use
        pilots = layout_of(self.pilots, self.ofdm.subcarriers, use.y.shape[1])
        y, h_hat, error_var = pilots.estimate(use.y, use.noise_var)
        return ChannelUse(y, use.noise_var, h_hat, error_var)

    def propagate(
        self, z: Tensor, snr_db: Tensor, generator: torch.Generator | None = None
    ) -> ChannelUse:
        """Apply fading and noise (or bit flips / erasures) to the transmitted block."""
        noise_var = snr_db_to_noise_var(snr_db).to(z.device)
        if self.kind == "bsc":
            return ChannelUse(bpsk(bsc(z, self.flip_prob, generator)), noise_var, None)
        if self.kind == "erasure":
            bits, erased = erasure(z, self.erasure_prob, generator)
            return ChannelUse(bpsk(bits).masked_fill(erased, 0.0), noise_var, None)
        h = self.draw_fading(*z.shape, generator, z.dtype, z.device)
        y = awgn(z if h is None else apply_fading(z, h), noise_var, generator)
        return ChannelUse(y, noise_var, h if self.csi == "perfect" else None)

    def receive(self, use: ChannelUse) -> Tensor:
        """Equalise or demodulate: ``[N, L]`` float soft values for the decoder.

        A binary symmetric channel gives ``E[2b - 1 | y] = (1 - 2p) y`` for equally
        likely bits; an erased bit gives 0.
        """
        if self.kind == "bsc":
            return use.y * (1.0 - 2.0 * self.flip_prob)
        if self.kind == "erasure":
            return use.y
        use = self.estimate(use)
        if self.signalling == "bits":
            matched = use.y if use.h is None else use.h.conj() * use.y
            return soft_bits(
                bpsk_llr(complex_to_real(matched), BIT_AMPLITUDE, use.noise_var)
            )
        if use.h is None:
            return complex_to_real(use.y)
        return complex_to_real(
            equalize(use.y, use.h, use.symbol_noise_var(), self.equalizer)
        )

    def snr_known_db(self, snr_db: Tensor, use: ChannelUse) -> Tensor | None:
        """SNR given to the decoder: instantaneous for block fading, None without CSI."""
        if self.csi == "none" or self.kind in BIT_CHANNELS:
            return None
        if self.kind in BLOCK_FADING and use.h is not None:
            gain = use.h.real.square() + use.h.imag.square()
            return snr_db.to(gain.device) + 10.0 * torch.log10(
                gain[:, 0].clamp_min(1e-12)
            )
        return snr_db

    def draw_fading(
        self,
        batch: int,
        n: int,
        generator: torch.Generator | None,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> Tensor | None:
        """The fading coefficients of ``batch`` blocks of ``n`` symbols (None for AWGN):
        ``[N, 1]`` for block fading, ``[N, n]`` for fast fading and OFDM (one per resource
        element). They are the first draws
        from ``generator``, so a separation baseline that draws them from a view's link
        generator gets that view's realisation."""
        if self.kind == "awgn":
            return None
        if self.kind == "rayleigh_block":
            return sample_rayleigh_block(batch, generator, dtype, device)
        if self.kind == "rayleigh_fast":
            return sample_rayleigh_fast(batch, n, generator, dtype, device)
        if self.kind == "rician_block":
            return sample_rician_block(batch, self.rician_k, generator, dtype, device)
        if self.kind == "ofdm_tdl":
            return self.ofdm.draw(batch, n, generator, dtype, device)
        raise ValueError(f"no fading for channel kind {self.kind!r}")
