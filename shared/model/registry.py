"""Model architectures by name, so a YAML config can choose one (``model.arch``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shared.channel.modulation import signalling_for
from shared.channel.wireless import WirelessChannel
from shared.config import ChannelConfig, ConfigError, ModelConfig, check_channel_fits
from shared.model.jscc import StereoJSCC

MODELS: dict[str, Callable[[ModelConfig, WirelessChannel], nn.Module]] = {
    "stereo_jscc": StereoJSCC,
}


def build_model(
    cfg: ModelConfig, channel_cfg: ChannelConfig | None = None
) -> StereoJSCC:
    """Instantiate ``cfg.arch`` with the channel of ``channel_cfg`` (AWGN by default)."""
    if cfg.arch not in MODELS:
        raise ConfigError(
            f"config key 'model.arch': got {cfg.arch!r}; allowed: {', '.join(MODELS)}"
        )
    channel_cfg = channel_cfg or ChannelConfig()
    check_channel_fits(channel_cfg.kind, cfg.latent)
    channel = WirelessChannel.from_config(channel_cfg, signalling_for(cfg.latent))
    return MODELS[cfg.arch](cfg, channel)
