"""A checkpoint's checksum: SHA-256 over everything it holds, in a canonical order, so
that a file whose bytes changed after it was written is recognised."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch


def _feed(digest: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor:{value.dtype}:{tuple(value.shape)}:".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"map:{len(value)}:".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}=".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"seq:{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def payload_digest(payload: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a checkpoint dict (tensors by dtype, shape and bytes; other
    values by type and repr; mappings in key order)."""
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()
