"""OFDM over a 3GPP TDL multipath channel (TR 38.901, 7.7.2), from Sionna.

A view's ``n`` complex symbols fill a resource grid of ``subcarriers`` subcarriers, one
OFDM symbol after another (the last one partly). Each resource element sees the channel's
frequency response at its subcarrier and OFDM symbol,
``H[l, k] = sum_p a_p(t_l) exp(-j 2 pi f_k tau_p)``, each view's grid scaled to a mean
``|H|^2`` of 1 (Sionna's ``cir_to_ofdm_channel``), so that the view goes through a
flat-fading channel per resource element: correlated across neighbouring subcarriers by
the delay spread, and across OFDM symbols by the Doppler of ``speed_mps``. The cyclic
prefix (:data:`CYCLIC_PREFIX` of the symbol) is taken to be longer than the channel's
delays, so there is no inter-symbol interference; it is not counted in the channel uses.
The receiver knows ``H`` (perfect CSI), estimates it from pilots that take resource
elements of the view (``csi: estimated``, :mod:`shared.channel.pilots`), or knows
nothing (``csi: none``).

Sionna's TDL draws its path gains, Doppler shifts and phases from the generator it is
given, the view's own (``generator_for(seed, seq, view)``), so the channel process,
in-process evaluation and the baselines see the same channel for a view. Sionna is
imported on the first draw: it takes seconds, and the other channels do not need it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

TDL_MODELS = ("A", "B", "C", "D", "E")
#: Cyclic prefix as a share of the useful OFDM symbol (5G NR's normal prefix).
CYCLIC_PREFIX = 144 / 2048


@dataclass(frozen=True)
class OfdmTdl:
    """The resource grid and the TDL model of the ``ofdm_tdl`` channel."""

    model: str = "A"
    delay_spread_ns: float = 100.0
    speed_mps: float = 0.0
    subcarriers: int = 72
    subcarrier_spacing_khz: float = 30.0
    carrier_ghz: float = 3.5

    def describe(self) -> str:
        """The settings a report has to state (CONVENTIONS.md, OFDM channels)."""
        return (
            f"TDL-{self.model}, delay spread {self.delay_spread_ns:g} ns, speed "
            f"{self.speed_mps:g} m/s, {self.subcarriers} subcarriers at "
            f"{self.subcarrier_spacing_khz:g} kHz (FFT size {self.subcarriers}), "
            f"carrier {self.carrier_ghz:g} GHz, cyclic prefix {CYCLIC_PREFIX:.1%} of a "
            "symbol (not counted in n)"
        )

    @property
    def symbol_rate_hz(self) -> float:
        """OFDM symbols per second, cyclic prefix included."""
        return self.subcarrier_spacing_khz * 1e3 / (1.0 + CYCLIC_PREFIX)

    def draw(
        self,
        batch: int,
        n: int,
        generator: torch.Generator | None,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """The frequency response at the ``n`` resource elements of each of ``batch``
        views: ``h : [N, n]`` complex, mean ``|h|^2`` of 1 over each view's grid.
        Without ``generator`` the draw follows torch's global seed."""
        from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies

        if generator is None:
            where = str(torch.device(device or "cpu"))
            seed = int(torch.randint(2**62, (1,)))
            generator = torch.Generator(where).manual_seed(seed)
        where = str(generator.device)
        tdl = _tdl(self, where)
        tdl.generator = generator
        symbols = math.ceil(n / self.subcarriers)
        a, tau = tdl(batch, symbols, self.symbol_rate_hz)
        frequencies = subcarrier_frequencies(
            self.subcarriers, self.subcarrier_spacing_khz * 1e3, device=where
        )
        h = cir_to_ofdm_channel(frequencies, a, tau, normalize=True)
        return h.reshape(batch, -1)[:, :n].to(dtype=dtype, device=device or where)


@functools.lru_cache(maxsize=8)
def _tdl(settings: OfdmTdl, device: str):
    """Sionna's TDL for ``settings`` on ``device``, drawing from the generator set as
    its ``generator`` attribute instead of Sionna's global one."""
    from sionna.phy.channel.tr38901 import TDL

    class SeededTDL(TDL):
        generator: torch.Generator

        @property
        def torch_rng(self) -> torch.Generator:
            return self.generator

    return SeededTDL(
        settings.model,
        delay_spread=settings.delay_spread_ns * 1e-9,
        carrier_frequency=settings.carrier_ghz * 1e9,
        min_speed=settings.speed_mps,
        max_speed=settings.speed_mps,
        device=device,
    )
