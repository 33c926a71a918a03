"""Checkpoints: one dict with its checksum, written atomically (the file it replaces is
kept), loaded with ``weights_only=True`` and checked."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.config import Config, config_from_stored
from shared.errors import CheckpointError
from shared.model.digest import payload_digest
from shared.model.registry import build_model

#: Format of the checkpoints this version writes. Format 1 was written until the config
#: defaults became the ``default`` preset; format 2 stores every key.
CHECKPOINT_FORMAT = 2

#: For each format: what a stored config meant by a key it does not hold, wherever that
#: differs from today's default: the dataclass default of the time, or for a key added
#: later, the behaviour before it existed. Of the shipped files, the small models of
#: ce5458c to 4218527 lack ``model.twin_gradient`` (and ``train.memory_format``); the
#: other keys are listed so that any format-1 run resumes as it was configured.
STORED_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {
        "model.twin_gradient": "exact",
        "model.widths": [24, 48, 96],
        "model.res_blocks": [0, 1, 2],
        "model.fusion_dim": 32,
        "data.mono": [],
        "data.val_split": "",
        "data.crop_height": 128,
        "data.mono_fraction": 0.5,
        "train.steps": 1000,
        "train.lr": 0.001,
        "train.lr_min": 0.00001,
        "train.warmup_steps": 50,
        "train.grad_clip": 1.0,
        "train.log_every": 10,
        "train.ckpt_every": 250,
        "train.out_dir": "runs/train",
        "train.memory_format": "contiguous",
    },
    2: {},
}


def git_commit() -> str:
    """The commit of the source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint that ``path`` replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` with its checksum, atomically, keeping the file it
    replaces as :func:`previous_path`.

    The new file is written and flushed to disk under a temporary name, the old one is
    linked to the previous name, then the new one is renamed into place: at every moment
    ``path`` is a complete checkpoint, so a process killed at any point loses at most the
    checkpoint it was writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {"format": CHECKPOINT_FORMAT, **payload}
    stored["sha256"] = payload_digest(stored)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            torch.save(stored, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            previous = previous_path(path)
            link = previous.with_name(previous.name + ".tmp")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint dict (tensors and plain data only: ``weights_only=True``).

    Raises CheckpointError for a missing, truncated, unsafe or foreign file, and for
    one whose checksum does not match what it holds; the message names the previous
    checkpoint kept beside it, when there is one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / unsafe files
        raise CheckpointError(
            f"checkpoint cannot be loaded: {path} is truncated or not a torch file, or "
            f"it holds objects other than tensors and plain data "
            f"({type(exc).__name__}){_previous_hint(path)}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"not a SpikeLink checkpoint (no model/config): {path}")
    stored_digest = ckpt.pop("sha256", None)
    if stored_digest is not None and stored_digest != payload_digest(ckpt):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its contents do not match its SHA-256 "
            f"checksum{_previous_hint(path)}"
        )
    if ckpt.get("format") not in STORED_DEFAULTS:
        raise CheckpointError(
            f"checkpoint {path} has format {ckpt.get('format')!r}; this version reads "
            f"formats {', '.join(map(str, STORED_DEFAULTS))}"
        )
    return ckpt


def _previous_hint(path: Path) -> str:
    previous = previous_path(path)
    if not previous.is_file():
        return ""
    return f"; the checkpoint it replaced is kept as {previous}"


def stored_config(ckpt: dict[str, Any]) -> Config:
    """The config a loaded checkpoint was written with, read through the compatibility
    table of its format (:data:`STORED_DEFAULTS`)."""
    return config_from_stored(ckpt["config"], STORED_DEFAULTS[ckpt["format"]])


def evaluated_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is evaluated with: its moving average of the weights when
    it holds one (``train.ema_decay``), else the trained weights."""
    average = ckpt.get("ema")
    return average["model"] if average else ckpt["model"]


def config_differences(
    a: dict[str, Any], b: dict[str, Any], prefix: str = ""
) -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    keys = sorted(set(a) | set(b))
    out = []
    for key in keys:
        dotted = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, dotted + ".")
        elif va != vb:
            out.append(f"{dotted}: {va!r} != {vb!r}")
    return out


def load_state_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    ignore_missing: tuple[str, ...] = (),
) -> None:
    """``load_state_dict`` that names every missing, unexpected or reshaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(ignore_missing)]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or reshaped:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", reshaped),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
                )
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{source} does not fit this model; " + "; ".join(parts))
    model.load_state_dict(state, strict=not ignore_missing)


def load_model(
    path: str | Path, device: str | torch.device = "cpu", expected: Config | None = None
) -> tuple[nn.Module, Config]:
    """Rebuild a model from the config stored in its checkpoint and load its weights.

    With ``expected``, a checkpoint whose model section differs raises
    :class:`CheckpointError` naming the keys that differ.
    """
    ckpt = load_checkpoint(path, device)
    cfg = stored_config(ckpt)
    if expected is not None:
        diffs = config_differences(expected.to_dict()["model"], cfg.to_dict()["model"])
        if diffs:
            raise CheckpointError(
                f"checkpoint {path} was trained with another model "
                f"config: " + "; ".join(diffs)
            )
    model = build_model(cfg.model, cfg.channel)
    load_state_strict(model, evaluated_weights(ckpt), f"checkpoint {path}")
    return model.to(device).eval(), cfg
