"""Decode, resize and normalise single images with OpenCV."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from imgcls.errors import ImgclsError


def read_image(path: Path) -> np.ndarray:
    """Decode any layout OpenCV knows, keeping bit depth and alpha (BGR/BGRA order)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImgclsError(f"{path}: not a readable image (missing, empty, truncated or not an image format)")
    return pixels


def fit_within(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size`, keeping the aspect ratio."""
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == (width, height):
        return pixels
    # INTER_AREA averages source pixels when shrinking (no aliasing); it degrades to nearest when enlarging.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(pixels, new_size, interpolation=interpolation)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """Any decoded layout to HxWx3 uint8 RGB: 16-bit scaled down, alpha composited onto white."""
    if pixels.dtype == np.uint16:
        # Scale, never clip: clipping 16-bit values to 255 turns almost every pixel white.
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ImgclsError(f"unsupported pixel type {pixels.dtype}; expected 8- or 16-bit images")
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2RGB)
    if pixels.shape[2] == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        # White, not black: transparent areas of scans and logos are paper, not ink.
        composited = pixels[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(np.round(composited).astype(np.uint8), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def to_square(rgb: np.ndarray, size: int, mode: Literal["pad", "stretch"]) -> np.ndarray:
    """Make an image exactly size x size: `pad` keeps the aspect ratio, `stretch` does not."""
    if mode == "stretch":
        interpolation = cv2.INTER_AREA if max(rgb.shape[:2]) > size else cv2.INTER_LINEAR
        return cv2.resize(rgb, (size, size), interpolation=interpolation)
    fitted = fit_within(rgb, size)
    height, width = fitted.shape[:2]
    top, left = (size - height) // 2, (size - width) // 2
    return cv2.copyMakeBorder(
        fitted, top, size - height - top, left, size - width - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )


def write_png(path: Path, pixels: np.ndarray, *, rgb: bool = False) -> None:
    """Write a PNG; `rgb=True` means the array is RGB and must be flipped for OpenCV."""
    if rgb:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), pixels):
        raise ImgclsError(f"{path}: could not write image")
