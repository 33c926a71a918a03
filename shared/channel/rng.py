"""Seeded random draws that work with a CPU or CUDA ``torch.Generator``."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def _device(
    generator: torch.Generator | None, device: torch.device | str | None
) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _draw(
    sampler,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> Tensor:
    out = sampler(
        shape, generator=generator, dtype=dtype, device=_device(generator, device)
    )
    return out.to(device) if device is not None else out


def normal(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Standard normal samples drawn on the generator's device, returned on ``device``."""
    return _draw(torch.randn, shape, dtype, device, generator)


def uniform(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Uniform samples in [0, 1), drawn on the generator's device, returned on ``device``."""
    return _draw(torch.rand, shape, dtype, device, generator)


def generator_for(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and a tuple of keys (e.g. frame and view).

    The same (seed, keys) always gives the same stream, in any process and whatever
    the batching, so the link and the in-process evaluation draw identical channels.
    """
    text = ":".join(str(k) for k in (seed,) + keys).encode()
    digest = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    g = torch.Generator(device="cpu")
    g.manual_seed(digest & ((1 << 63) - 1))
    return g
