"""Pilot-based channel estimation on the ``ofdm_tdl`` resource grid (``csi: estimated``).

A view's ``n`` data symbols and its pilots share the grid of ``subcarriers`` subcarriers,
filled OFDM symbol after OFDM symbol from resource element 0: a pilot sits on every
``subcarrier_step``-th subcarrier (from subcarrier 0) of every ``symbol_step``-th OFDM
symbol (from symbol 0), and the data symbols fill the other resource elements in order.
The view ends at its last data symbol, so it takes ``M = n + P`` channel uses, the ``P``
pilots before that point included: pilots are channel uses and count in ``n`` and rho
(docs/CONVENTIONS.md). Pilots are unit-power QPSK, so the grid keeps unit average power.

The receiver knows the noise variance ``N0`` and estimates ``h`` with Sionna's
least-squares estimator at the pilots, interpolated over the grid (``lin_time_avg``:
linear over subcarriers, averaged over pilot symbols, for a terminal that does not
move; ``lin``: linear over both; ``nn``: nearest pilot). The estimate is linear in the
pilots' LS estimates, each off by noise of variance ``N0``, so the noise in the estimate
at a resource element has variance ``N0 sum_j |W_ij|^2`` over the interpolation weights
``W``: the equaliser adds it to ``N0`` (the interpolation's own error, small for the
default grid at a delay spread of 100 ns, is not included). Everything here is
differentiable in the received symbols, so a model can train through it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from shared.errors import ConfigError

INTERPOLATIONS = ("lin_time_avg", "lin", "nn")
#: Seed of the fixed QPSK pilot sequence (the receiver knows it).
PILOT_SEED = 38_211


@dataclass(frozen=True)
class PilotGrid:
    """Where the pilots of ``csi: estimated`` go and how they are interpolated."""

    subcarrier_step: int = 4
    symbol_step: int = 7
    interpolation: str = "lin_time_avg"

    def describe(self) -> str:
        """The pilot settings a report has to state (docs/CONVENTIONS.md)."""
        share = 1.0 / (self.subcarrier_step * self.symbol_step)
        return (
            f"pilots on every {self.subcarrier_step}th subcarrier of every "
            f"{self.symbol_step}th OFDM symbol (about {share:.1%} of the resource "
            f"elements, counted in n), LS estimation with Sionna's "
            f"{self.interpolation} interpolation, N0 known"
        )

    def is_pilot(self, positions: np.ndarray, subcarriers: int) -> np.ndarray:
        """Whether each flat resource element index of ``positions`` holds a pilot."""
        symbol, subcarrier = np.divmod(positions, subcarriers)
        return (symbol % self.symbol_step == 0) & (
            subcarrier % self.subcarrier_step == 0
        )

    def channel_uses(self, n: int, subcarriers: int) -> int:
        """``M``: resource elements a view of ``n`` data symbols takes, pilots included."""
        return layout(self, subcarriers, n).channel_uses


@dataclass(frozen=True, eq=False)
class PilotLayout:
    """The resource elements of one view: ``data`` and ``pilot`` flat indices into its
    first ``channel_uses`` elements, on a grid of ``symbols`` OFDM symbols."""

    grid: PilotGrid
    subcarriers: int
    symbols: int
    data: Tensor
    pilot: Tensor
    pilot_values: Tensor

    @property
    def channel_uses(self) -> int:
        return self.data.numel() + self.pilot.numel()

    def insert(self, z: Tensor) -> Tensor:
        """``z : [N, n]`` data symbols to the ``[N, M]`` symbols sent, pilots in place."""
        out = z.new_zeros(z.shape[0], self.channel_uses)
        out = out.index_copy(1, self.data.to(z.device), z)
        pilots = self.pilot_values.to(device=z.device, dtype=z.dtype)
        return out.index_copy(1, self.pilot.to(z.device), pilots.expand(z.shape[0], -1))

    def estimate(self, y: Tensor, noise_var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The receiver's view of ``y : [N, M]`` received symbols, ``noise_var [N]``:
        ``(y_data, h_hat, error_var)``, each ``[N, n]``: the data symbols, the channel
        estimated at them and the variance of each estimate's error."""
        noise_var = noise_var.to(device=y.device, dtype=y.real.dtype)
        data = self.data.to(y.device)
        h_hat = self.interpolate(y, noise_var).index_select(1, data)
        gain = _noise_gain(self, str(y.device)).index_select(0, data)
        return y.index_select(1, data), h_hat, noise_var[:, None] * gain

    def interpolate(self, y: Tensor, noise_var: Tensor) -> Tensor:
        """Sionna's LS estimate from the pilots of ``y : [N, M]``, interpolated over the
        view's grid: ``[N, symbols * subcarriers]`` complex. It is linear in ``y``."""
        batch = y.shape[0]
        grid = y.new_zeros(batch, self.symbols * self.subcarriers)
        grid[:, : self.channel_uses] = y
        h_hat, _ = _estimator(self, str(y.device))(
            grid.reshape(batch, 1, 1, self.symbols, self.subcarriers), noise_var
        )
        return h_hat.reshape(batch, -1).to(y.dtype)


@functools.lru_cache(maxsize=32)
def layout(grid: PilotGrid, subcarriers: int, n: int) -> PilotLayout:
    """Where the ``n`` data symbols and the pilots of one view go (see the module)."""
    per_pilot_symbol = subcarriers - math.ceil(subcarriers / grid.subcarrier_step)
    if per_pilot_symbol == 0 and grid.symbol_step == 1:
        raise ConfigError(
            "config keys 'channel.pilot_subcarrier_step' and 'channel.pilot_symbol_step'"
            ": both 1 put a pilot on every resource element; allowed: either above 1"
        )
    periods = math.ceil(n / (per_pilot_symbol + (grid.symbol_step - 1) * subcarriers))
    positions = np.arange((periods * grid.symbol_step + 1) * subcarriers)
    pilot = grid.is_pilot(positions, subcarriers)
    last_data = int(np.flatnonzero(~pilot)[n - 1])
    pilot = pilot[: last_data + 1]
    rng = np.random.default_rng(PILOT_SEED)
    phases = rng.integers(0, 4, int(pilot.sum()))
    values = np.exp(1j * (math.pi / 4 + math.pi / 2 * phases)).astype(np.complex64)
    return PilotLayout(
        grid,
        subcarriers,
        last_data // subcarriers + 1,
        torch.from_numpy(np.flatnonzero(~pilot)),
        torch.from_numpy(np.flatnonzero(pilot)),
        torch.from_numpy(values),
    )


@functools.lru_cache(maxsize=32)
def layout_of(grid: PilotGrid, subcarriers: int, channel_uses: int) -> PilotLayout:
    """The layout of views that take ``channel_uses`` resource elements (the receiver's
    side: it counts the symbols that arrived).

    Raises ValueError when no number of data symbols takes exactly that many."""
    pilots = int(grid.is_pilot(np.arange(channel_uses), subcarriers).sum())
    found = layout(grid, subcarriers, max(channel_uses - pilots, 1))
    if found.channel_uses != channel_uses:
        raise ValueError(
            f"{channel_uses} symbols are not a view of data and pilots on this grid"
        )
    return found


@functools.lru_cache(maxsize=16)
def _noise_gain(pilots: PilotLayout, device: str) -> Tensor:
    """``sum_j |W_ij|^2`` for every resource element ``i`` of the grid, where ``W`` is
    the interpolation that spreads the pilots' LS estimates over it: the error variance
    of an estimate is ``N0`` times this (each LS estimate has error variance ``N0`` at a
    unit-power pilot). ``W``'s columns are the estimates of grids that hold one pilot
    each. (Sionna's own error variance does not shrink with time averaging.)"""
    count = pilots.pilot.numel()
    impulses = torch.zeros(count, pilots.channel_uses, dtype=torch.complex64)
    impulses[torch.arange(count), pilots.pilot] = pilots.pilot_values
    columns = pilots.interpolate(impulses.to(device), torch.ones(count, device=device))
    return columns.abs().square().sum(dim=0).to(torch.float32)


@functools.lru_cache(maxsize=16)
def _estimator(pilots: PilotLayout, device: str):
    """Sionna's LS estimator for the grid of ``pilots`` on ``device`` (Sionna is
    imported here: it takes seconds, and only an estimating receiver needs it)."""
    from sionna.phy.ofdm import LSChannelEstimator, PilotPattern, ResourceGrid

    mask = np.zeros(pilots.symbols * pilots.subcarriers, dtype=np.float32)
    mask[pilots.pilot.numpy()] = 1.0
    pattern = PilotPattern(
        mask.reshape(1, 1, pilots.symbols, pilots.subcarriers),
        pilots.pilot_values.numpy()[None, None],
        device=device,
    )
    resource_grid = ResourceGrid(
        pilots.symbols,
        pilots.subcarriers,
        subcarrier_spacing=1.0,  # Sionna's estimator does not use it
        pilot_pattern=pattern,
        device=device,
    )
    return LSChannelEstimator(
        resource_grid, interpolation_type=pilots.grid.interpolation, device=device
    )
