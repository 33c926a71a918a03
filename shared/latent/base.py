"""What every latent code provides: sizes, the encoder's latent, channel input, decoder
input, the fill for a lost view and the wire form of one view."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from shared.errors import ConfigError, ProtocolError

#: How a code uses the channel: real amplitudes, or bits (antipodal symbols).
Signalling = Literal["analog", "bits"]


class LatentCode(ABC):
    r"""How one view's spike-coded latent is carried over the channel.

    A code is made for ``T`` time steps. Its latent ``[N, *shape]`` holds small integers
    (``uint8`` on the wire); in training the same values are floats that carry surrogate
    or straight-through gradients. A code owns everything that depends on the choice:
    channels per position for a bandwidth ratio, spikes (or the twin's rates) to latent,
    latent to channel input, soft values to decoder input, the fill for a lost view, and
    the one array that carries a view on the wire.

    Subclasses set :attr:`name`, :attr:`signalling`, :attr:`wire_array` and
    :attr:`bit_packed`, and implement :attr:`planes`, :attr:`max_value`,
    :meth:`from_spikes`, :meth:`from_rates` and :meth:`channel_input`; registering the
    class (:func:`shared.latent.register`) makes it a value of ``model.latent``.

    Parameters
    ----------
    time_steps : int, T, the steps of the spiking encoder
    """

    name: ClassVar[str]
    signalling: ClassVar[Signalling]
    wire_array: ClassVar[str]
    bit_packed: ClassVar[bool]

    def __init__(self, time_steps: int) -> None:
        self.time_steps = time_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(time_steps={self.time_steps})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.time_steps == self.time_steps

    def __hash__(self) -> int:
        return hash((self.name, self.time_steps))

    # ------------------------------------------------------------------ sizes

    @property
    @abstractmethod
    def planes(self) -> int:
        """Real channel values per latent neuron and position."""

    @property
    @abstractmethod
    def max_value(self) -> int:
        """Largest value of the integer latent."""

    def channels(self, cbr: float, scales: int) -> int:
        r"""Latent channels per view that give the bandwidth ratio ``cbr`` exactly.

        With ``s = 2^{scales - 1}`` the latent has :math:`HW/s^2` positions per view and
        the view :math:`k = 3HW` source values; ``n = \rho k`` complex symbols carry
        :math:`2n` real values, so :math:`C = 6 \rho s^2 / \text{planes}`.

        Raises ConfigError naming ``model.cbr`` when no whole number of channels fits.
        """
        stride = 2 ** (scales - 1)
        per_position = 6.0 * cbr * stride**2 / self.planes
        channels = round(per_position)
        if channels < 1 or abs(channels - per_position) > 1e-6:
            unit = 6 * stride**2 // self.planes
            raise ConfigError(
                f"config key 'model.cbr': got {cbr:g}, which needs {per_position:g} "
                f"latent channels with {scales} scales (stride {stride}) and latent "
                f"'{self.name}'; allowed: multiples of 1/{unit} (e.g. 1/{unit}, "
                f"2/{unit}), or change model.widths"
            )
        return channels

    def shape(self, channels: int, height: int, width: int) -> tuple[int, ...]:
        """One view's latent shape (no batch axis) at ``height x width`` positions."""
        planes = (self.planes,) if self.planes > 1 else ()
        return (*planes, channels, height, width)

    # ------------------------------------------------------------------ encoder

    @abstractmethod
    def from_spikes(self, spikes: Tensor) -> Tensor:
        """Latent of the SNN's latent layer.

        Input ``spikes : [T, N, C, h, w]`` float in {0, 1}.
        Output ``latent : [N, *shape]`` float (gradients flow through the surrogate).
        """

    @abstractmethod
    def from_rates(self, rates: Tensor) -> Tensor:
        """Latent of the CNN twin's latent layer, quantised with a straight-through
        estimator.

        Input ``rates : [N, C * planes, h, w]`` float in [0, 1].
        Output ``latent : [N, *shape]`` float, integer-valued.
        """

    def quantise(self, latent: Tensor) -> Tensor:
        """The integer latent the transmitter sends: ``[N, *shape]`` uint8."""
        return torch.round(latent).to(torch.uint8)

    # ------------------------------------------------------------------ channel

    @abstractmethod
    def channel_input(self, latent: Tensor) -> Tensor:
        """Flatten a latent into channel input values.

        Input ``latent : [N, *shape]``, integer or float.
        Output ``x : [N, L]`` float, ``L`` = values per view (PAM amplitudes or bits),
        for the channel's signalling.
        """

    def decoder_input(self, soft: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The receiver's soft values as decoder input.

        Input ``soft : [N, L]`` float, ``shape`` the view's latent shape.
        Output ``r : [N, C * planes, h, w]`` float.
        """
        h, w = shape[-2:]
        return soft.reshape(soft.shape[0], -1, h, w)

    def lost_view(self, arrived: Tensor) -> Tensor:
        """Decoder input for the view of a frame that never arrived, given the decoder
        input ``[N, C * planes, h, w]`` of the view that did.

        By default an erasure: zeros, the soft value of a symbol with no observation.
        """
        return torch.zeros_like(arrived)

    # ------------------------------------------------------------------ wire

    def to_wire(self, latent: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays that carry one view: ``{wire_array: latent}`` (``uint8``)."""
        return {self.wire_array: np.ascontiguousarray(latent, dtype=np.uint8)}

    def from_wire(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """One view's latent from a message's arrays, checked against this code.

        Raises ProtocolError unless the message carries exactly the code's array, of
        ``uint8`` values in ``0..max_value``, with the code's number of dimensions (and
        T planes where it has them) and an even, non-zero number of values.
        """
        name = self.wire_array
        arr = arrays.get(name)
        if arr is None or set(arrays) != {name}:
            raise ProtocolError(
                f"a {self.name} message carries exactly one array {name!r}"
            )
        ndim = 4 if self.planes > 1 else 3
        if arr.dtype != np.uint8 or arr.ndim != ndim:
            raise ProtocolError(
                f"array {name!r}: need uint8 of {ndim} dims, got {arr.dtype} "
                f"{list(arr.shape)}"
            )
        if arr.size == 0 or arr.size % 2:
            raise ProtocolError(
                f"array {name!r}: an even, non-zero number of values is needed"
            )
        if arr.max() > self.max_value:
            raise ProtocolError(
                f"array {name!r}: values up to {int(arr.max())}, allowed 0..{self.max_value}"
            )
        if self.planes > 1 and arr.shape[0] != self.planes:
            raise ProtocolError(
                f"array {name!r}: {arr.shape[0]} planes, T = {self.time_steps} needs "
                f"{self.planes}"
            )
        return arr
