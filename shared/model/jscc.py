"""The spiking stereo deep-JSCC model and its CNN twin (one class, ``kind`` switches)."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from shared.channel.modulation import channel_input_from_latent, signalling_for
from shared.channel.wireless import WirelessChannel
from shared.config import ConfigError, ModelConfig
from shared.model.blocks import ResBlock, SNRGate, SpikingConv, SpikingUpsample
from shared.model.fusion import ParallaxAttention
from shared.model.neurons import is_neuron, make_neuron

#: Initial BatchNorm scale. With 1.0 a LIF layer behind BN fires on ~4 % of its inputs at
#: initialisation (it needs x >= 1.07 V_th); 1.5 gives 9-38 % per layer on real photos and
#: a larger surrogate gradient at the first layer (measured in docs/RESULTS.md).
BN_INIT_SCALE = 1.5


def latent_channels(cfg: ModelConfig) -> int:
    r"""Latent channels per view that give bandwidth ratio ``cfg.cbr`` exactly.

    With ``s = 2^{(scales - 1)}`` the latent has :math:`HW/s^2` positions per view and the
    view has :math:`k = 3HW` source values; ``n = \rho k`` complex symbols carry
    :math:`2n` real values, so count-PAM needs :math:`C = 6 \rho s^2` channels and
    spike-BPSK (T bits per latent value) :math:`C = 6 \rho s^2 / T`.
    """
    stride = 2 ** (len(cfg.widths) - 1)
    per_position = 6.0 * cfg.cbr * stride**2
    if cfg.latent == "spike_bpsk":
        per_position /= cfg.time_steps
    channels = round(per_position)
    if channels < 1 or abs(channels - per_position) > 1e-6:
        unit = 6 * stride**2 // (cfg.time_steps if cfg.latent == "spike_bpsk" else 1)
        raise ConfigError(
            f"config key 'model.cbr': got {cfg.cbr:g}, which needs {per_position:g} latent "
            f"channels with {len(cfg.widths)} scales (stride {stride}) and latent "
            f"'{cfg.latent}'; allowed: multiples of 1/{unit} (e.g. 1/{unit}, "
            f"{2}/{unit}), or change model.widths"
        )
    return channels


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
    r : [2N, C_in, h, w] float, soft channel outputs (left views first)
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
        return torch.sigmoid(self.readout(u.mean(dim=0)))


class StereoJSCC(nn.Module):
    """Spiking stereo deep JSCC with a spike-coded, quantised latent.

    ::

        x_left  --Encoder--> spikes --count/bits--> z_L --+              +--> x_hat_left
                                                          |-- channel --|  Decoder (shared,
        x_right --Encoder--> spikes --count/bits--> z_R --+              +--> x_hat_right
                                                                 parallax fusion, SNR gates)

    Latent modes: ``count_pam`` sends the spike count n in {0..T} of every latent neuron as
    the PAM amplitude 2n/T - 1 (a (T+1)-level constellation per real dimension, as in
    constellation-constrained JSCC); ``spike_bpsk`` sends each spike as one antipodal symbol
    and the receiver passes soft bits E[2b-1] to the decoder. ``kind='cnn'`` builds the CNN
    twin: the same topology with :class:`RateActivation` instead of LIF, one time step, and
    the same latent quantisation with a straight-through estimator.

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
        self.latent_channels = latent_channels(cfg)
        bit_planes = cfg.time_steps if cfg.latent == "spike_bpsk" else 1
        decoder_in = self.latent_channels * bit_planes
        encoder_out = self.latent_channels * (bit_planes if cfg.kind == "cnn" else 1)
        self.encoder_left = Encoder(cfg, encoder_out)
        self.encoder_right = (
            self.encoder_left if cfg.share_encoder else Encoder(cfg, encoder_out)
        )
        self.decoder = Decoder(cfg, decoder_in)
        self.channel = channel or WirelessChannel(signalling=signalling_for(cfg.latent))
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and module.weight is not None:
                nn.init.constant_(module.weight, BN_INIT_SCALE)
        for encoder in {self.encoder_left, self.encoder_right}:
            encoder.init_latent_bias(cfg.v_threshold)

    # ------------------------------------------------------------------ sizes

    def channel_uses(self, height: int, width: int) -> dict[str, float]:
        """Per view: ``n`` complex channel uses, ``k`` source values, ``rho = n / k``."""
        self.check_size(height, width)
        positions = (height // self.stride) * (width // self.stride)
        reals = (
            positions
            * self.latent_channels
            * (self.cfg.time_steps if self.cfg.latent == "spike_bpsk" else 1)
        )
        n, k = reals // 2, 3 * height * width
        return {"n": n, "k": k, "rho": n / k}

    def check_size(self, height: int, width: int) -> None:
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the "
                f"model stride {self.stride}; pad or crop it"
            )

    # ------------------------------------------------------------------ latent

    def _latent(self, spikes: Tensor) -> Tensor:
        """Per-view latent from the latent layer: counts ``[N, C, h, w]`` or bits
        ``[N, T, C, h, w]``, float (gradients flow through surrogate / straight-through)."""
        cfg = self.cfg
        if cfg.kind == "snn":
            if cfg.latent == "count_pam":
                return spikes.sum(dim=0)
            return spikes.transpose(0, 1)
        rate = spikes[0]
        if cfg.latent == "count_pam":
            scaled = rate * cfg.time_steps
            return scaled + (torch.round(scaled) - scaled).detach()
        bits = rate + ((rate > 0.5).to(rate) - rate).detach()
        n, _, h, w = bits.shape
        return bits.reshape(n, cfg.time_steps, self.latent_channels, h, w)

    def _encode_views(self, x_left: Tensor, x_right: Tensor) -> Tensor:
        self.check_size(*x_left.shape[-2:])
        if x_left.shape != x_right.shape:
            raise ValueError(
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
        h, w = height // self.stride, width // self.stride
        if self.cfg.latent == "count_pam":
            return (self.latent_channels, h, w)
        return (self.cfg.time_steps, self.latent_channels, h, w)

    # ------------------------------------------------------------------ halves

    @torch.no_grad()
    def encode(self, x_left: Tensor, x_right: Tensor) -> dict[str, Tensor | tuple]:
        """Transmitter half.

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
        latent = self._encode_views(x_left, x_right)
        functional.reset_net(self)
        latent = torch.round(latent).to(torch.uint8)
        return {
            "latent": latent.reshape((2, x_left.shape[0]) + latent.shape[1:]),
            "shape": tuple(latent.shape[1:]),
        }

    def channel_input(self, latent: Tensor) -> Tensor:
        """``[B, *latent_shape]`` latent to ``[B, L]`` channel input values."""
        return channel_input_from_latent(latent, self.cfg.latent, self.cfg.time_steps)

    def _decode(
        self, soft: Tensor, shape: tuple[int, ...], snr_db: Tensor | None
    ) -> Tensor:
        h, w = shape[-2:]
        r = soft.reshape(soft.shape[0], -1, h, w)
        return self.decoder(r, snr_db, self.steps)

    @torch.no_grad()
    def decode(
        self, soft: Tensor, shape: tuple[int, ...], snr_db: Tensor | None
    ) -> dict[str, Tensor]:
        """Receiver half.

        Input
        -----
        soft : [2N, L], float, receiver soft values (left views first)
        shape : per-view latent shape, as returned by :meth:`encode`
        snr_db : [2N] float SNR known to the receiver, or None

        Output
        ------
        x_hat_left, x_hat_right : [N, 3, H, W], float in [0, 1]
        """
        functional.reset_net(self)
        x_hat = self._decode(soft, shape, snr_db)
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
        z : [2N, L] float, channel input values (PAM amplitudes or bits), left views first
        z_hat : [2N, L] float, soft values after the channel
        rates : {layer name: mean firing rate (SNN) or mean activation (CNN twin)}
        """
        functional.reset_net(self)
        latent = self._encode_views(x_left, x_right)
        z = self.channel_input(latent)
        snr = snr_db if snr_db.shape[0] == z.shape[0] else snr_db.repeat(2)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_hat, snr_known = self.channel(z.float(), snr.float(), generator)
        x_hat = self._decode(z_hat, latent.shape[1:], snr_known)
        rates = self.firing_rates()
        functional.reset_net(self)
        left, right = x_hat.chunk(2)
        return {
            "x_hat_left": left,
            "x_hat_right": right,
            "z": z,
            "z_hat": z_hat,
            "latent": latent,
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
