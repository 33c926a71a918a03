"""Separation baselines: an image codec at the capacity of the channel (conventions).

Each view may use ``bits = n log2(1 + SNR)`` bits, where ``n`` is the number of complex
channel uses the JSCC model spends on a view; under block fading the SNR is the view's
instantaneous one, ``|h|^2 SNR``, with the very ``h`` that the link's channel draws for it
(the first draw of the view's generator ``generator_for(seed, seq, view)``). The codec
(AVIF, JPEG 2000, WebP or JPEG through Pillow) codes the view at the highest quality whose
file fits; when nothing fits, the receiver shows the per-channel mean of the view. This is the
"codec + capacity-achieving channel code" bound drawn in DeepJSCC papers.

``<codec>+ldpc`` names the real digital link of :mod:`shared.digital_link` (the codec
over 5G NR LDPC and QAM), which shares the codec rules with this module.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shared.channel.rng import generator_for
from shared.channel.theory import capacity_bits
from shared.channel.wireless import BLOCK_FADING, PER_SYMBOL_FADING, WirelessChannel
from shared.errors import ConfigError

CODECS = ("avif", "jpeg2000", "webp", "jpeg")
LDPC_SUFFIX = "+ldpc"
#: Every baseline a sweep can draw: the codecs at capacity, then over LDPC and QAM.
BASELINES = CODECS + tuple(codec + LDPC_SUFFIX for codec in CODECS)
#: libavif's speed (0 slowest .. 10 fastest), its default: on a 128x256 view, speed 0
#: gave files at most 6 % apart from these and took 40 times as long.
AVIF_SPEED = 6


def instantaneous_snr_db(
    channel: str,
    snr_db: float,
    seed: int,
    seq: int,
    view: int,
    channel_uses: int,
    rician_k: float = 3.0,
) -> float:
    """The SNR of the channel view ``view`` of frame ``seq`` sees on the link, with the
    link's own fading for that view: the nominal one for AWGN, ``|h|^2 SNR`` under block
    fading, and under per-symbol fading (``rayleigh_fast``, ``ofdm_tdl``) the SNR whose
    AWGN capacity equals the view's, ``2^(mean_i log2(1 + |h_i|^2 SNR)) - 1`` over its
    ``channel_uses`` symbols.

    Raises ConfigError for a channel that has no capacity baseline (bit channels).
    """
    if channel == "awgn":
        return snr_db
    if channel not in BLOCK_FADING + PER_SYMBOL_FADING:
        raise ConfigError(
            f"channel {channel!r} has no capacity baseline; allowed: awgn, "
            f"{', '.join(BLOCK_FADING + PER_SYMBOL_FADING)}"
        )
    fading = WirelessChannel(channel, rician_k=rician_k)
    uses = channel_uses if channel in PER_SYMBOL_FADING else 1
    gain = fading.draw_fading(1, uses, generator_for(seed, seq, view)).abs().square()
    if channel in BLOCK_FADING:
        return snr_db + 10.0 * math.log10(max(float(gain[0, 0]), 1e-12))
    snr = 10.0 ** (snr_db / 10.0)
    bits_per_use = float(torch.log2(1.0 + gain.double() * snr).mean())
    return 10.0 * math.log10(max(2.0**bits_per_use - 1.0, 1e-12))


def budget_bytes(channel_uses: int, snr_db: float) -> int:
    """Whole bytes that fit in ``n log2(1 + SNR)`` bits."""
    return int(capacity_bits(channel_uses, snr_db) // 8)


def _to_pil(image: Tensor) -> Image.Image:
    arr = (image.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr))


def is_digital(baseline: str) -> bool:
    """Whether ``baseline`` (from :data:`BASELINES`) is a digital link over LDPC."""
    return baseline.endswith(LDPC_SUFFIX)


def decode_file(data: bytes) -> Tensor:
    """A codec file to its ``[3, H, W]`` float image in [0, 1]."""
    with Image.open(io.BytesIO(data)) as img:
        arr = np.array(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _encode(img: Image.Image, codec: str, quality: int) -> bytes:
    out = io.BytesIO()
    if codec == "avif":
        img.save(out, "AVIF", quality=quality, speed=AVIF_SPEED)
    elif codec == "jpeg":
        img.save(out, "JPEG", quality=quality)
    elif codec == "webp":
        img.save(out, "WEBP", quality=quality, method=6)
    elif codec == "jpeg2000":
        # quality q in 1..100 maps to a compression ratio from 4096:1 down to 2:1
        ratio = 2.0 ** (12.0 - 11.0 * (quality - 1) / 99.0)
        img.save(
            out,
            "JPEG2000",
            quality_mode="rates",
            quality_layers=[ratio],
            irreversible=True,
        )
    else:
        raise ConfigError(f"codec {codec!r}; allowed: {', '.join(CODECS)}")
    return out.getvalue()


#: After the binary search, qualities this far above the found one are tried too, since
#: file size is not strictly monotonic in quality.
MONOTONICITY_SLACK = 4


def mean_colour(image: Tensor) -> Tensor:
    """What the receiver shows for a lost ``[3, H, W]`` view: its per-channel mean."""
    return image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone()


def code_at_budget(image: Tensor, codec: str, max_bytes: int) -> tuple[Tensor, dict]:
    """Code ``image`` at the highest quality (1..100) whose file fits ``max_bytes``.

    Input ``image : [3, H, W]`` float in [0, 1]. Output: the decoded image and
    ``{"quality": q or None, "bytes": file size}``; when no quality fits, the image is
    the per-channel mean of the input (quality None, 0 bytes).
    """
    quality, data = file_at_budget(image, codec, max_bytes)
    if data is None:
        return mean_colour(image), {"quality": None, "bytes": 0}
    return decode_file(data), {"quality": quality, "bytes": len(data)}


def file_at_budget(
    image: Tensor, codec: str, max_bytes: int
) -> tuple[int | None, bytes | None]:
    """The quality and file of ``image`` (``[3, H, W]`` in [0, 1]) at the highest
    quality whose file fits ``max_bytes``; (None, None) when none fits."""
    img = _to_pil(image)
    sizes: dict[int, bytes] = {}

    def coded(quality: int) -> bytes:
        if quality not in sizes:
            sizes[quality] = _encode(img, codec, quality)
        return sizes[quality]

    low, high, best = 1, 100, 0
    while low <= high:
        mid = (low + high) // 2
        if len(coded(mid)) <= max_bytes:
            best, low = mid, mid + 1
        else:
            high = mid - 1
    for quality in range(best + 1, min(best + MONOTONICITY_SLACK, 100) + 1):
        if len(coded(quality)) <= max_bytes:
            best = quality
    if best == 0:
        return None, None
    return best, coded(best)
