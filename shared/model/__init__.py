"""Spiking stereo JSCC models, their registry, checkpoints and energy accounting."""

from shared.model.checkpoint import load_model, save_checkpoint
from shared.model.jscc import StereoJSCC, latent_channels
from shared.model.registry import build_model

__all__ = [
    "StereoJSCC",
    "build_model",
    "latent_channels",
    "load_model",
    "save_checkpoint",
]
