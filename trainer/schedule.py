"""Learning-rate schedule: linear warm-up, then cosine decay to ``lr_min``."""

from __future__ import annotations

import math

from shared.config import TrainConfig


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``cfg.steps``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (
        1.0 + math.cos(math.pi * progress)
    )
