"""The channel settings in force for each frame: the configured ones, changed at run time
through the control socket, immediately or from a given sequence number on."""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.config import ChannelConfig, section_from_dict
from shared.errors import ConfigError
from shared.link.messages import CHANNEL_FIELDS


class ChannelSettings:
    """Base settings plus a schedule of changes keyed by the first sequence number."""

    def __init__(self, base: ChannelConfig) -> None:
        self.base = base
        self.schedule: list[tuple[int, dict[str, Any]]] = []

    def change(
        self, fields: dict[str, Any], from_seq: int | None = None
    ) -> ChannelConfig:
        """Validate and apply ``fields`` (control names); returns the resulting settings.

        Raises ConfigError naming the field when a value is not allowed.
        """
        unknown = sorted(set(fields) - set(CHANNEL_FIELDS))
        if unknown:
            raise ConfigError(
                f"control field '{unknown[0]}' is unknown; allowed: "
                f"{', '.join(CHANNEL_FIELDS)}"
            )
        renamed = {CHANNEL_FIELDS[k]: v for k, v in fields.items()}
        target = self.base if from_seq is None else self.at(from_seq)
        merged = section_from_dict(
            ChannelConfig, {**dataclasses.asdict(target), **renamed}, "channel"
        )
        if from_seq is None:
            self.base = merged
        else:
            self.schedule.append((from_seq, renamed))
            self.schedule.sort(key=lambda item: item[0])
        return merged

    def at(self, seq: int) -> ChannelConfig:
        """Settings for frame ``seq``: the base with every change scheduled up to it."""
        fields = dataclasses.asdict(self.base)
        for first, change in self.schedule:
            if first <= seq:
                fields.update(change)
        return ChannelConfig(**fields)
