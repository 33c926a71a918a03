"""Model architectures by name, so a YAML config can choose one (``model.arch``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shared.channel.wireless import WirelessChannel
from shared.config import ChannelConfig, ModelConfig
from shared.errors import ConfigError
from shared.model.jscc import StereoJSCC, code_of

MODELS: dict[str, Callable[[ModelConfig, WirelessChannel], nn.Module]] = {
    "stereo_jscc": StereoJSCC,
}


def build_model(
    cfg: ModelConfig, channel_cfg: ChannelConfig | None = None
) -> StereoJSCC:
    """Instantiate ``cfg.arch`` with the channel of ``channel_cfg`` (AWGN by default).

    Raises ConfigError naming the key for an unknown architecture or a channel that
    cannot carry the model's latent code.
    """
    if cfg.arch not in MODELS:
        raise ConfigError(
            f"config key 'model.arch': got {cfg.arch!r}; allowed: {', '.join(MODELS)}"
        )
    channel = WirelessChannel.for_code(channel_cfg or ChannelConfig(), code_of(cfg))
    return MODELS[cfg.arch](cfg, channel)
