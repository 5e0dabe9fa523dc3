"""Decode, resize and normalise single images with OpenCV."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from imgcls.errors import ImgclsError

# Far above any photo dataset's images, far below what would exhaust memory when decoded.
MAX_PIXELS = 40_000_000
# header_size enforces MAX_PIXELS itself, with the claimed size in the message; PIL's own guard would hide it.
Image.MAX_IMAGE_PIXELS = None


class BadImageError(ImgclsError):
    """An image file that cannot be used; `extract.on_bad_image` decides whether that is fatal."""


# What OpenCV decodes for us; naming them spares PIL trying every plugin it knows on each file.
HEADER_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM", "GIF")


def header_info(data: bytes, name: Path) -> tuple[int, int, str]:
    """(width, height, format) from the header alone, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data), formats=HEADER_FORMATS) as image:
            return image.size[0], image.size[1], str(image.format)
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer by address, which would differ on every run.
        raise BadImageError(f"{name}: not an image in a known format ({', '.join(HEADER_FORMATS)})") from None
    except (OSError, SyntaxError) as exc:
        raise BadImageError(f"{name}: not an image in a known format ({exc})") from None


def check_size(width: int, height: int, name: Path | str, expected_size: tuple[int, int] | None) -> None:
    """Refuse, from a header's claimed size alone, decompression bombs and sizes other than `expected_size`."""
    if width * height > MAX_PIXELS:
        raise BadImageError(f"{name}: header claims {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit; refused before decoding")
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise BadImageError(f"{name}: image is {width}x{height} but the annotation says {expected_size[0]}x{expected_size[1]}")


# JPEG's DCT can decode straight to 1/2, 1/4 or 1/8 scale, skipping most of the work. Pixels stay
# in stored orientation, as IMREAD_UNCHANGED leaves them and as COCO's width/height describe them.
_REDUCED_JPEG = tuple(
    (factor, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
)


def _decode_flag(width: int, height: int, image_format: str, target: int | None) -> int:
    """The cheapest decode that still leaves the longer side at least `target` px."""
    if target is not None and image_format == "JPEG":
        for factor, flag in _REDUCED_JPEG:
            if max(width, height) // factor >= target:
                return flag
    return cv2.IMREAD_UNCHANGED


def decode(path: Path, expected_size: tuple[int, int] | None = None, target: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode any layout OpenCV knows, keeping bit depth and alpha (BGR/BGRA order); also return the stored (width, height).

    Refuses, before decoding, files that are empty, not images, whose header claims
    more than MAX_PIXELS (decompression bombs) or a size other than `expected_size`;
    after decoding, files OpenCV rejects (it treats a truncated JPEG or PNG as an
    error). With `target`, a JPEG much larger than `target` px is decoded at reduced
    scale (8-bit colour), which a later INTER_AREA resize to `target` finishes.
    """
    if not path.exists():
        raise BadImageError(f"{path}: file not found")
    if not path.is_file():  # reading a FIFO would wait for a writer forever
        raise BadImageError(f"{path}: not a regular file (a folder, FIFO or device); expected an image file")
    data = path.read_bytes()
    if not data:
        raise BadImageError(f"{path}: empty file (0 bytes)")
    width, height, image_format = header_info(data, path)
    check_size(width, height, path, expected_size)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _decode_flag(width, height, image_format, target))
    if pixels is None:
        raise BadImageError(f"{path}: could not be decoded (corrupt or truncated)")
    return pixels, (width, height)


def read_image(path: Path) -> np.ndarray:
    """Decode a whole image at its stored size; see `decode` for what is refused."""
    return decode(path)[0]


def fit_within(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size`, keeping the aspect ratio."""
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == (width, height):
        return pixels
    # INTER_AREA averages source pixels when shrinking (no aliasing); it degrades to nearest when enlarging.
    # Enlarging uses the bit-exact fixed-point bilinear: plain INTER_LINEAR goes to Intel IPP, whose
    # result depends on which of its CPU-specific code paths runs.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR_EXACT
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
        interpolation = cv2.INTER_AREA if max(rgb.shape[:2]) > size else cv2.INTER_LINEAR_EXACT  # see fit_within
        return cv2.resize(rgb, (size, size), interpolation=interpolation)
    fitted = fit_within(rgb, size)
    height, width = fitted.shape[:2]
    top, left = (size - height) // 2, (size - width) // 2
    return cv2.copyMakeBorder(
        fitted, top, size - height - top, left, size - width - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )


def write_png(path: Path, pixels: np.ndarray, *, rgb: bool = False) -> str:
    """Write a PNG and return the md5 of its bytes; `rgb=True` means the array is RGB, flipped for OpenCV.

    Manifests record the md5 so that a manifest changes whenever any image it lists does,
    which lets the next stage depend on the manifest instead of hashing a folder of thousands.
    """
    if rgb:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    # Keep OpenCV's default deflate strategy (Z_RLE): deflate runs in the machine's own libz.so.1,
    # which wheels never bundle, and RLE is what stock zlib and zlib-ng write byte for byte alike.
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ImgclsError(f"{path}: could not encode image")
    data = encoded.tobytes()
    path.write_bytes(data)
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
