"""Model architectures by name, so a YAML config can choose one (``model.arch``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shared.channel.modulation import signalling_for
from shared.channel.wireless import WirelessChannel
from shared.config import ChannelConfig, ConfigError, ModelConfig
from shared.model.jscc import StereoJSCC

MODELS: dict[str, Callable[[ModelConfig, WirelessChannel], nn.Module]] = {
    "stereo_jscc": StereoJSCC,
}


def build_model(cfg: ModelConfig, channel_cfg: ChannelConfig | None = None) -> StereoJSCC:
    """Instantiate ``cfg.arch`` with the channel of ``channel_cfg`` (AWGN by default)."""
    if cfg.arch not in MODELS:
        raise ConfigError(f"config key 'model.arch': got {cfg.arch!r}; allowed: "
                          f"{', '.join(MODELS)}")
    channel = WirelessChannel.from_config(channel_cfg or ChannelConfig(),
                                          signalling_for(cfg.latent))
    return MODELS[cfg.arch](cfg, channel)
