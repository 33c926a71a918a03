"""One view's hop through the channel, written once for every place that uses it.

::

    latent --code.channel_input--> x --transmit (normalise)--> z --propagate--> ChannelUse
    ChannelUse --receive (equalise / demodulate)--> soft --code.decoder_input--> DecoderInput

:func:`send` is the first line and :func:`receive` the second. Training runs both on a
batch; the link runs :func:`send` in the channel process and :func:`receive` in the
receiver, with each view's generator seeded by ``(channel.seed, seq, view)``; in-process
evaluation runs both with the same generators, so the two give the same reconstructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from shared.channel.wireless import ChannelUse, WirelessChannel
from shared.latent import LatentCode


@dataclass
class DecoderInput:
    """What the decoder reads for a batch of views.

    soft : [N, C * planes, h, w] float, the receiver's soft values in the latent layout
    snr_db : [N] float, the SNR the receiver may tell the decoder, or None (no CSI)
    """

    soft: Tensor
    snr_db: Tensor | None

    @staticmethod
    def cat(views: Sequence[DecoderInput]) -> DecoderInput:
        """Stack views along the batch axis (left views first for a stereo decoder)."""
        snrs = [v.snr_db for v in views]
        return DecoderInput(
            torch.cat([v.soft for v in views]),
            None if snrs[0] is None else torch.cat(snrs),
        )


def send(
    code: LatentCode,
    channel: WirelessChannel,
    latent: Tensor,
    snr_db: Tensor,
    generator: torch.Generator | None = None,
) -> ChannelUse:
    """Latent to channel input, power normalisation, fading and noise.

    Input
    -----
    latent : [N, *shape], the code's latent (uint8, or float with gradients)
    snr_db : [N] float, Es/N0 per complex symbol in dB
    generator : torch.Generator or None, the channel's randomness

    Output
    ------
    use : ChannelUse of N blocks (received symbols, noise variance, CSI)
    """
    x = code.channel_input(latent)
    return channel.propagate(channel.transmit(x), snr_db, generator)


def send_symbols(
    channel: WirelessChannel,
    z: Tensor,
    snr_db: Tensor,
    generator: torch.Generator | None = None,
) -> ChannelUse:
    """Symbols that are already channel symbols at unit average power (a digital
    baseline's QAM, ``z : [N, n]`` complex), with the channel's pilots when it has them,
    through the fading and noise of :func:`send`, drawn in the same order: the same
    generator gives them a latent's channel."""
    return channel.propagate(channel.place(z), snr_db, generator)


def receive(
    code: LatentCode,
    channel: WirelessChannel,
    use: ChannelUse,
    snr_db: Tensor,
    shape: tuple[int, ...],
) -> DecoderInput:
    """Equalisation or demodulation, then the decoder's layout.

    Input
    -----
    use : ChannelUse of N blocks
    snr_db : [N] float, the nominal SNR the blocks were sent at
    shape : the code's latent shape of one view

    Output
    ------
    DecoderInput with ``soft [N, C * planes, h, w]`` and the SNR the decoder is told
    (the instantaneous SNR under block fading, None without CSI)
    """
    soft = code.decoder_input(channel.receive(use), shape)
    return DecoderInput(soft, channel.snr_known_db(snr_db, use))


def lost_view(code: LatentCode, arrived: DecoderInput) -> DecoderInput:
    """Decoder input for the other view of a frame that lost one: the code's fill
    (:meth:`~shared.latent.LatentCode.lost_view`), told at the arrived view's SNR (a
    lower SNR made no difference, docs/RESULTS.md)."""
    return DecoderInput(code.lost_view(arrived.soft), arrived.snr_db)
