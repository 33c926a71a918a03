"""A real digital link as a baseline: image codec, 5G NR LDPC and QAM (Sionna), over the
link's own channel.

A view's codec file (its length in a 4-byte header in front) fills the information bits
of one scheme's LDPC codewords (Sionna's 5G NR encoder, rate-matched to the scheme's code
rate), which are mapped to Gray-coded QAM at unit average power and sent through
:func:`shared.link.hop.send_symbols` with the view's link generator:
the same ``n`` complex channel uses, the same fading and the same noise as the JSCC
models get for that view (with the pilots of estimated CSI in the same places). With
perfect CSI the receiver divides by ``h`` and demaps with the noise variance
``N0 / |h|^2`` of each symbol (APP demapper; with estimated CSI the estimate and its
error variance take the place of ``h`` and ``N0``), then runs belief
propagation (20 iterations). A view with a codeword in error is lost and shown as its
per-channel mean, the convention of the capacity baseline; the error is found by
comparing with what was sent, which stands for the CRC a real link carries. The
transmitter does not know ``h``: one scheme serves every view of an SNR point, so a deep
fade loses the view (the cliff). A scheme whose information rate exceeds the capacity
``log2(1 + |h|^2 SNR)`` of the view's channel (as the receiver knows it: estimated
from the pilots under estimated CSI) is not decoded and the view counts as lost: by the
converse of the coding theorem no code gets it through (a test checks that the
decoder indeed fails there). Sionna is imported here alone: it takes seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
from sionna.phy.mapping import Demapper, Mapper
from torch import Tensor

from shared.baselines import decode_file, mean_colour
from shared.channel.wireless import WirelessChannel
from shared.link.hop import send_symbols

#: Information bits of one 5G NR LDPC codeword at most (base graph 1).
MAX_INFO_BITS = 8448
#: Bytes in front of the codec file that give its length.
LENGTH_HEADER_BYTES = 4
BP_ITERATIONS = 20
QAM_NAMES = {2: "QPSK", 4: "16-QAM", 6: "64-QAM", 8: "256-QAM"}


@dataclass(frozen=True)
class Scheme:
    """A modulation and coding scheme: ``bits_per_symbol`` of QAM, LDPC ``code_rate``."""

    bits_per_symbol: int
    code_rate: Fraction

    @property
    def label(self) -> str:
        return f"{QAM_NAMES[self.bits_per_symbol]} {self.code_rate}"

    @property
    def spectral_efficiency(self) -> float:
        """Information bits per complex channel use."""
        return self.bits_per_symbol * float(self.code_rate)


#: The schemes a digital baseline tries at each SNR (it reports the best), from 0.4 to
#: 6.7 information bits per channel use, close to the 5G NR MCS ladder.
SCHEMES = tuple(
    Scheme(m, Fraction(r))
    for m, r in (
        (2, "1/5"),
        (2, "1/3"),
        (2, "1/2"),
        (2, "3/4"),
        (4, "1/2"),
        (4, "3/4"),
        (6, "2/3"),
        (6, "5/6"),
        (8, "5/6"),
    )
)


@dataclass(frozen=True)
class CodewordLayout:
    """How a scheme fills ``channel_uses`` symbols: ``codewords`` LDPC codewords of
    ``coded_bits`` bits carrying ``info_bits`` each (the few bits left at the end of the
    last symbol are padding)."""

    codewords: int
    coded_bits: int
    info_bits: int

    @staticmethod
    def of(scheme: Scheme, channel_uses: int) -> CodewordLayout:
        total = channel_uses * scheme.bits_per_symbol
        codewords = math.ceil(total * scheme.code_rate / MAX_INFO_BITS)
        coded = total // codewords
        return CodewordLayout(codewords, coded, math.ceil(coded * scheme.code_rate))

    @property
    def payload_bytes(self) -> int:
        """Bytes of codec file that fit after the length header."""
        return self.codewords * self.info_bits // 8 - LENGTH_HEADER_BYTES


class DigitalLink:
    """One scheme's transmitter and receiver for views of ``channel_uses`` symbols."""

    def __init__(self, scheme: Scheme, channel_uses: int) -> None:
        self.scheme, self.channel_uses = scheme, channel_uses
        self.layout = CodewordLayout.of(scheme, channel_uses)
        self.encoder = LDPC5GEncoder(self.layout.info_bits, self.layout.coded_bits)
        self.decoder = LDPC5GDecoder(
            self.encoder, hard_out=True, num_iter=BP_ITERATIONS
        )
        self.mapper = Mapper("qam", scheme.bits_per_symbol)
        self.demapper = Demapper("app", "qam", scheme.bits_per_symbol)

    def info_bits(self, payload: bytes) -> Tensor:
        """``[codewords, info_bits]`` float bits: length header, payload, zero padding.

        Raises ValueError when ``payload`` is longer than ``layout.payload_bytes``."""
        if len(payload) > self.layout.payload_bytes:
            raise ValueError(
                f"{len(payload)} bytes do not fit in {self.layout.payload_bytes} "
                f"({self.scheme.label})"
            )
        framed = len(payload).to_bytes(LENGTH_HEADER_BYTES, "big") + payload
        bits = torch.from_numpy(
            _unpack(framed, self.layout.codewords * self.layout.info_bits)
        )
        return bits.reshape(self.layout.codewords, self.layout.info_bits)

    def transmit(self, bits: Tensor) -> Tensor:
        """``[codewords, info_bits]`` bits to ``[1, channel_uses]`` complex QAM symbols."""
        coded = self.encoder(bits).reshape(-1)
        filled = self.channel_uses * self.scheme.bits_per_symbol
        coded = torch.cat([coded, coded.new_zeros(filled - coded.numel())])
        return self.mapper(coded[None]).to(torch.complex64)

    def receive(self, y: Tensor, noise_var: Tensor) -> Tensor:
        """Equalised ``y : [1, channel_uses]`` complex and its per-symbol noise variance
        (``[1, channel_uses]``) to the decoded ``[codewords, info_bits]`` bits."""
        llr = self.demapper(y, noise_var).reshape(-1)
        used = self.layout.codewords * self.layout.coded_bits
        return self.decoder(llr[:used].reshape(self.layout.codewords, -1))

    @staticmethod
    def payload_of(bits: Tensor) -> bytes:
        """The codec file the length header of decoded ``bits`` announces."""
        framed = _pack(bits.reshape(-1))
        length = int.from_bytes(framed[:LENGTH_HEADER_BYTES], "big")
        return framed[LENGTH_HEADER_BYTES : LENGTH_HEADER_BYTES + length]


def through_channel(
    x: Tensor,
    channel: WirelessChannel,
    snr_db: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """``x : [1, n]`` complex symbols through the link's channel; returns the equalised
    symbols and the noise variance of each (``[1, n]``, ``N0 / |h|^2`` with perfect
    CSI, ``(N0 + e) / |h_hat|^2`` with the estimate ``h_hat`` of estimated CSI and its
    error variance ``e``, the nominal ``N0`` without CSI)."""
    use = channel.estimate(send_symbols(channel, x, torch.tensor([snr_db]), generator))
    noise_var = use.symbol_noise_var()
    if use.h is None:
        return use.y, noise_var
    gain = (use.h.real.square() + use.h.imag.square()).clamp_min(1e-12)
    return use.y / use.h, noise_var / gain


def send_view(
    image: Tensor,
    file: bytes | None,
    link: DigitalLink,
    channel: WirelessChannel,
    snr_db: float,
    generator: torch.Generator,
) -> tuple[Tensor, bool]:
    """Send the codec ``file`` of ``image`` (``[3, H, W]``; None when no quality fits
    the scheme's payload) over ``link`` and ``channel``; returns the view the receiver
    shows and whether it arrived (a lost or unsendable view is its mean colour)."""
    if file is None:
        return mean_colour(image), False
    bits = link.info_bits(file)
    y, noise_var = through_channel(link.transmit(bits), channel, snr_db, generator)
    if link.scheme.spectral_efficiency >= capacity_per_use(noise_var):
        return mean_colour(image), False
    decoded = link.receive(y, noise_var)
    if not torch.equal(decoded, bits):
        return mean_colour(image), False
    return decode_file(link.payload_of(decoded)), True


def capacity_per_use(noise_var: Tensor) -> float:
    """Shannon capacity in bits per channel use of symbols at unit power with the
    per-symbol noise variances ``noise_var`` (their mean capacity)."""
    return float(torch.log2(1.0 + 1.0 / noise_var).mean())


def _unpack(data: bytes, bits: int) -> np.ndarray:
    out = np.zeros(bits, dtype=np.float32)
    unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    out[: unpacked.size] = unpacked
    return out


def _pack(bits: Tensor) -> bytes:
    return np.packbits(bits.round().to(torch.uint8).numpy()).tobytes()
