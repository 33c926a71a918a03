"""Equalisation with perfect CSI at the receiver."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from shared.channel.awgn import expand_per_row


def equalize(
    y: Tensor, h: Tensor, noise_var: Tensor, method: Literal["zf", "mmse"] = "mmse"
) -> Tensor:
    r"""Undo a flat fading coefficient.

    .. math::
        \hat z_{ZF} = y / h, \qquad
        \hat z_{MMSE} = \frac{h^* y}{|h|^2 + N_0}

    Input
    -----
    y : [N, n], complex, received symbols
    h : [N, 1] or [N, n], complex, fading coefficients
    noise_var : scalar or [N], float, noise variance per complex symbol

    Output
    ------
    z_hat : [N, n], complex, estimate of the transmitted symbols (unit power)
    """
    h = h.to(y.device)
    if method == "zf":
        return y / h
    if method == "mmse":
        gain = h.real.square() + h.imag.square()
        return h.conj() * y / (gain + expand_per_row(noise_var, gain))
    raise ValueError(f"equalizer: got {method!r}; allowed: 'zf', 'mmse'")
