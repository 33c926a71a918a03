"""Latent codes by name: the values ``model.latent`` may take."""

from __future__ import annotations

from shared.errors import ConfigError
from shared.latent.base import LatentCode

LATENT_CODES: dict[str, type[LatentCode]] = {}


def register(cls: type[LatentCode]) -> type[LatentCode]:
    """Class decorator: make ``cls.name`` a latent code of ``model.latent``."""
    LATENT_CODES[cls.name] = cls
    return cls


def latent_modes() -> tuple[str, ...]:
    """Names of the registered latent codes."""
    return tuple(LATENT_CODES)


def latent_code(name: str, time_steps: int) -> LatentCode:
    """The code ``name`` for ``time_steps`` steps; ConfigError naming ``model.latent``
    for a name that is not registered."""
    if name not in LATENT_CODES:
        raise ConfigError(
            f"config key 'model.latent': got {name!r}; allowed: "
            + ", ".join(LATENT_CODES)
        )
    return LATENT_CODES[name](time_steps)
