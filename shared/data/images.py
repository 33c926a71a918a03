"""Reading images from disk as RGB tensors; errors name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from shared.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp"}
)


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image file cannot be read: {path} ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    with _open(Path(path)) as img:
        return img.height, img.width


def read_image(path: str | Path) -> Tensor:
    """Decode an image to ``[3, H, W]`` uint8 RGB (greyscale repeated, alpha dropped).

    16-bit greyscale images are scaled to 8 bits.
    """
    path = Path(path)
    with _open(path) as img:
        try:
            img.load()
        except (OSError, ValueError) as exc:
            raise DataError(f"image file cannot be decoded: {path} ({exc})") from None
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            peak = (
                65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            )
            grey = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
            rgb = np.repeat(grey[..., None], 3, axis=-1)
        elif img.mode in ("RGB", "L", "RGBA", "LA", "P", "CMYK", "YCbCr", "1"):
            rgb = np.array(img.convert("RGB"), dtype=np.uint8)
        else:
            raise DataError(f"image file has unsupported mode {img.mode!r}: {path}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def to_float(image: Tensor) -> Tensor:
    """uint8 ``[..., 3, H, W]`` to float32 in [0, 1]."""
    return image.to(torch.float32) / 255.0


def save_png(image: Tensor, path: str | Path) -> None:
    """Write a float ``[3, H, W]`` image in [0, 1] as an 8-bit RGB PNG."""
    arr = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.permute(1, 2, 0).cpu().numpy()).save(path)
