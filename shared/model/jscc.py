"""The spiking stereo deep-JSCC model and its CNN twin (one class, ``kind`` switches)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from shared.channel.wireless import WirelessChannel
from shared.config import ModelConfig
from shared.errors import DataError
from shared.latent import LatentCode, latent_code
from shared.link.hop import DecoderInput, receive, send
from shared.model.blocks import (
    ResBlock,
    SNRGate,
    SpikingConv,
    SpikingUpsample,
    time_mean,
)
from shared.model.fusion import ParallaxAttention
from shared.model.kernel_threads import native_threading
from shared.model.neurons import is_neuron, make_neuron

#: Initial BatchNorm scale. With 1.0 a LIF layer behind BN fires on ~4 % of its inputs at
#: initialisation (it needs x >= 1.07 V_th); 1.5 gives 9-38 % per layer on real photos and
#: a larger surrogate gradient at the first layer (measured in docs/RESULTS.md).
BN_INIT_SCALE = 1.5


def latent_channels(cfg: ModelConfig) -> int:
    """Latent channels per view that give the bandwidth ratio ``cfg.cbr`` exactly (see
    :meth:`shared.latent.LatentCode.channels`)."""
    return code_of(cfg).channels(cfg.cbr, len(cfg.widths))


def code_of(cfg: ModelConfig) -> LatentCode:
    """The latent code a model config names."""
    return latent_code(cfg.latent, cfg.time_steps)


class Encoder(nn.Module):
    """One view to spikes of the latent layer.

    Input ``x : [N, 3, H, W]`` float in [0, 1]. Output ``s_seq : [T, N, C, H/s, W/s]`` in
    {0, 1} (SNN), or ``[1, N, C', H/s, W/s]`` rates in [0, 1] (CNN twin).
    """

    def __init__(self, cfg: ModelConfig, out_channels: int) -> None:
        super().__init__()
        widths = cfg.widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0])
        )
        stages = []
        for i, width in enumerate(widths):
            blocks: list[nn.Module] = []
            if i > 0:
                blocks.append(SpikingConv(cfg, widths[i - 1], width, stride=2))
            blocks += [ResBlock(cfg, width) for _ in range(cfg.res_blocks[i])]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = SpikingConv(cfg, widths[-1], out_channels)
        self.latent_neuron = make_neuron(cfg)

    def init_latent_bias(self, v_threshold: float) -> None:
        """Start the latent layer at unit scale and mean 1.5 V_th: it then fires at about
        half the steps, so every count level occurs from the first step."""
        nn.init.ones_(self.head.conv[1].weight)
        nn.init.constant_(self.head.conv[1].bias, 1.5 * v_threshold)

    def forward(self, x: Tensor, steps: int) -> Tensor:
        # Direct input coding: the first convolution sees the same image at every step,
        # so it is computed once and repeated.
        u = self.stem(x).unsqueeze(0).expand(steps, -1, -1, -1, -1)
        return self.latent_neuron(self.head(self.stages(u)))


class Decoder(nn.Module):
    """Received latents of both views to images, with stereo fusion and SNR gates.

    Input
    -----
    r : [2N, C_in, h, w] float, soft channel outputs in the latent layout (left views
        first)
    snr_db : [2N] float or None
    Output
    ------
    x_hat : [2N, 3, H, W], float in (0, 1)
    """

    def __init__(self, cfg: ModelConfig, in_channels: int) -> None:
        super().__init__()
        widths = cfg.widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[-1], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[-1]),
        )
        self.scales = nn.ModuleList()
        for i in reversed(range(len(widths))):
            scale = nn.Module()
            scale.gate = SNRGate(widths[i]) if cfg.snr_conditioning else None
            scale.blocks = nn.Sequential(
                *[ResBlock(cfg, widths[i]) for _ in range(cfg.res_blocks[i])]
            )
            scale.fusion = (
                ParallaxAttention(cfg, widths[i]) if i in cfg.fusion_scales else None
            )
            scale.up = SpikingUpsample(cfg, widths[i], widths[i - 1]) if i > 0 else None
            self.scales.append(scale)
        self.readout = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, r: Tensor, snr_db: Tensor | None, steps: int) -> Tensor:
        u = self.stem(r).unsqueeze(0).expand(steps, -1, -1, -1, -1)
        for scale in self.scales:
            if scale.gate is not None:
                u = scale.gate(u, snr_db)
            u = scale.blocks(u)
            if scale.fusion is not None:
                u = scale.fusion(u)
            if scale.up is not None:
                u = scale.up(u)
        # Non-spiking readout: the last layer integrates the membrane stream without
        # firing; its mean over time goes through a real-valued convolution and a sigmoid.
        # (Reading out spikes instead caps the output at T + 1 levels per channel and
        # trained 0.7 dB worse in a 400-step probe, docs/RESULTS.md.)
        return torch.sigmoid(self.readout(time_mean(u)))


class StereoJSCC(nn.Module):
    """Spiking stereo deep JSCC with a spike-coded, quantised latent.

    ::

        x_left  --Encoder--> spikes --count/bits--> z_L --+              +--> x_hat_left
                                                          |-- channel --|  Decoder (shared,
        x_right --Encoder--> spikes --count/bits--> z_R --+              +--> x_hat_right
                                                                 parallax fusion, SNR gates)

    The latent code (``model.latent``, :mod:`shared.latent`) decides how the latent layer's
    spikes cross the channel: ``count_pam`` sends the spike count n in {0..T} of every
    latent neuron as the PAM amplitude 2n/T - 1 (a (T+1)-level constellation per real
    dimension, as in constellation-constrained JSCC); ``spike_bpsk`` sends each spike as one
    antipodal symbol and the receiver passes soft bits E[2b-1] to the decoder.
    ``kind='cnn'`` builds the CNN twin: the same topology with :class:`RateActivation`
    instead of LIF, one time step, and the same latent quantisation with a straight-through
    estimator.

    Parameters
    ----------
    cfg : ModelConfig
    channel : WirelessChannel, the differentiable channel used by :meth:`forward`
    """

    def __init__(
        self, cfg: ModelConfig, channel: WirelessChannel | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.steps = cfg.time_steps if cfg.kind == "snn" else 1
        self.stride = 2 ** (len(cfg.widths) - 1)
        self.code = code_of(cfg)
        self.latent_channels = latent_channels(cfg)
        decoder_in = self.latent_channels * self.code.planes
        encoder_out = self.latent_channels * (
            self.code.planes if cfg.kind == "cnn" else 1
        )
        self.encoder_left = Encoder(cfg, encoder_out)
        self.encoder_right = (
            self.encoder_left if cfg.share_encoder else Encoder(cfg, encoder_out)
        )
        self.decoder = Decoder(cfg, decoder_in)
        self.channel = channel or WirelessChannel(signalling=self.code.signalling)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and module.weight is not None:
                nn.init.constant_(module.weight, BN_INIT_SCALE)
        for encoder in {self.encoder_left, self.encoder_right}:
            encoder.init_latent_bias(cfg.v_threshold)
        #: How :meth:`encode` and :meth:`decode` compute (set by
        #: :func:`shared.model.inference.accelerate`; the reference path by default).
        self.inference_dtype = torch.float32
        self.memory_format = torch.contiguous_format
        self.event_driven = False

    # ------------------------------------------------------------------ sizes

    def channel_uses(self, height: int, width: int) -> dict[str, float]:
        """Per view: ``n`` complex channel uses, ``k`` source values, ``rho = n / k``."""
        self.check_size(height, width)
        positions = (height // self.stride) * (width // self.stride)
        reals = positions * self.latent_channels * self.code.planes
        n, k = reals // 2, 3 * height * width
        return {"n": n, "k": k, "rho": n / k}

    def check_size(self, height: int, width: int) -> None:
        """DataError unless ``height x width`` is a multiple of the model stride."""
        if height % self.stride or width % self.stride:
            raise DataError(
                f"image size {height}x{width} is not a multiple of the "
                f"model stride {self.stride}; pad or crop it"
            )

    # ------------------------------------------------------------------ latent

    def _latent(self, spikes: Tensor) -> Tensor:
        """Per-view latent of the code from the latent layer's output ``[T, N, ...]``
        (spikes of the SNN, or the twin's rates at one step)."""
        if self.cfg.kind == "snn":
            return self.code.from_spikes(spikes)
        return self.code.from_rates(spikes[0])

    def _encode_views(self, x_left: Tensor, x_right: Tensor) -> Tensor:
        self.check_size(*x_left.shape[-2:])
        if x_left.shape != x_right.shape:
            raise DataError(
                f"views differ in shape: {tuple(x_left.shape)} vs "
                f"{tuple(x_right.shape)}"
            )
        if self.encoder_left is self.encoder_right:
            spikes = self.encoder_left(torch.cat((x_left, x_right)), self.steps)
            return self._latent(spikes)
        return torch.cat(
            (
                self._latent(self.encoder_left(x_left, self.steps)),
                self._latent(self.encoder_right(x_right, self.steps)),
            )
        )

    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one view's latent (without the batch axis)."""
        return self.code.shape(
            self.latent_channels, height // self.stride, width // self.stride
        )

    # ------------------------------------------------------------------ halves

    def _on_model(self, x: Tensor) -> Tensor:
        """``x`` on the model's device; an image-like ``[N, C, H, W]`` in the memory
        format of the fast path."""
        x = x.to(next(self.parameters()).device)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    @contextmanager
    def _inference_context(self) -> Iterator[None]:
        """bfloat16 autocast where the fast path runs bfloat16; the native kernels'
        threading where its spiking convolutions are event-driven."""
        device = next(self.parameters()).device
        with (
            torch.autocast(
                device_type=device.type,
                dtype=torch.bfloat16,
                enabled=self.inference_dtype == torch.bfloat16,
            ),
            native_threading() if self.event_driven else nullcontext(),
        ):
            yield

    @torch.no_grad()
    def encode(self, x_left: Tensor, x_right: Tensor) -> dict[str, Tensor | tuple]:
        """Transmitter half, on the model's device; the latent comes back on the
        inputs' device.

        Input
        -----
        x_left, x_right : [N, 3, H, W], float in [0, 1]

        Output
        ------
        latent : [2, N, *latent_shape], uint8, spike counts in {0..T} or spikes in {0, 1}
            (index 0 = left view)
        shape : latent_shape, per view
        """
        functional.reset_net(self)
        with self._inference_context():
            views = self._encode_views(self._on_model(x_left), self._on_model(x_right))
        latent = self.code.quantise(views.float()).to(x_left.device)
        functional.reset_net(self)
        return {
            "latent": latent.reshape((2, x_left.shape[0]) + latent.shape[1:]),
            "shape": tuple(latent.shape[1:]),
        }

    @torch.no_grad()
    def decode(self, received: DecoderInput) -> dict[str, Tensor]:
        """Receiver half.

        Input
        -----
        received : DecoderInput of 2N views (left views first), soft values
            ``[2N, C * planes, h, w]`` and the SNR known to the receiver ``[2N]`` or None

        Output
        ------
        x_hat_left, x_hat_right : [N, 3, H, W], float in [0, 1], on the device of
            ``received.soft``
        """
        functional.reset_net(self)
        snr_db = received.snr_db
        with self._inference_context():
            x_hat = self.decoder(
                self._on_model(received.soft),
                None if snr_db is None else self._on_model(snr_db),
                self.steps,
            )
        x_hat = x_hat.float().to(received.soft.device)
        functional.reset_net(self)
        left, right = x_hat.chunk(2)
        return {"x_hat_left": left, "x_hat_right": right}

    # ------------------------------------------------------------------ training path

    def forward(
        self,
        x_left: Tensor,
        x_right: Tensor,
        snr_db: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, object]:
        """Encoder, differentiable channel, decoder.

        Input
        -----
        x_left, x_right : [N, 3, H, W], float in [0, 1]
        snr_db : [N] (per frame) or [2N] (per view), float, Es/N0 in dB
        generator : torch.Generator or None, randomness of the channel

        Output
        ------
        x_hat_left, x_hat_right : [N, 3, H, W], float in (0, 1)
        latent : [2N, *latent_shape] float, the code's latent, left views first
        soft : [2N, C * planes, h, w] float, the decoder's input after the channel
        rates : {layer name: mean firing rate (SNN) or mean activation (CNN twin)}
        """
        functional.reset_net(self)
        latent = self._encode_views(x_left, x_right)
        snr = snr_db if snr_db.shape[0] == latent.shape[0] else snr_db.repeat(2)
        with torch.autocast(device_type=latent.device.type, enabled=False):
            snr = snr.float()
            use = send(self.code, self.channel, latent.float(), snr, generator)
            received = receive(self.code, self.channel, use, snr, latent.shape[1:])
        x_hat = self.decoder(received.soft, received.snr_db, self.steps)
        rates = self.firing_rates()
        functional.reset_net(self)
        left, right = x_hat.chunk(2)
        return {
            "x_hat_left": left,
            "x_hat_right": right,
            "latent": latent,
            "soft": received.soft,
            "rates": rates,
        }

    def firing_rates(self) -> dict[str, Tensor]:
        """Mean output of every neuron layer in the last forward pass."""
        return {
            name: m.rate
            for name, m in self.named_modules()
            if is_neuron(m) and m.rate is not None
        }


def parameter_count(model: nn.Module) -> int:
    """Number of distinct trainable parameters (shared encoders counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
