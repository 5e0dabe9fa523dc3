"""Decode, resize and normalise single images with OpenCV."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from imgcls.core.errors import ImgclsError

# OpenCV logs its own warning (`[ WARN:0@...] PNG input buffer is incomplete`) beside the one line each
# bad image gets from this module; every failure it logs also reaches us as a None decode.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

# Far above any photo dataset's images, far below what would exhaust memory when decoded.
MAX_PIXELS = 40_000_000
# header_size enforces MAX_PIXELS itself, with the claimed size in the message; PIL's own guard would hide it.
Image.MAX_IMAGE_PIXELS = None


class BadImageError(ImgclsError):
    """An image file that cannot be used; `extract.on_bad_image` decides whether that is fatal."""


# What OpenCV decodes for us; naming them spares PIL trying every plugin it knows on each file.
HEADER_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM", "GIF")


# JPEG start-of-frame markers: C0-CF but for DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xDA)))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """A JPEG's (width, height) from its frame header, or None to leave the file to PIL.

    PIL's JPEG plugin parses every segment before the frame (EXIF and all) in Python, holding
    the GIL: about an eighth of extracting a small image. Skipping segments by their length
    field to the frame header gives the same size at a fraction of the cost; anything
    unexpected (a standalone marker, a zero height, a short file) goes to PIL, which names it.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    offset = 2
    while offset + 9 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker == 0xFF:  # a fill byte before the marker
            offset += 1
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return (width, height) if width and height else None
        elif marker in _JPEG_STANDALONE or marker == 0xDA:  # scan data before any frame header: malformed
            return None
        else:
            offset += 2 + struct.unpack_from(">H", data, offset + 2)[0]
    return None


def header_info(data: bytes, name: Path | str) -> tuple[int, int, str]:
    """(width, height, format) from the header alone, without decoding the pixels."""
    jpeg_size = _jpeg_size(data)
    if jpeg_size is not None:
        return jpeg_size[0], jpeg_size[1], "JPEG"
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
        raise BadImageError(
            f"{name}: header claims {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit; refused before "
            f"decoding"
        )
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise BadImageError(
            f"{name}: image is {width}x{height} but the annotation says {expected_size[0]}x{expected_size[1]}"
        )


# JPEG's DCT can decode straight to 1/2, 1/4 or 1/8 scale, skipping most of the work. Pixels stay
# in stored orientation, as IMREAD_UNCHANGED leaves them and as COCO's width/height describe them.
_REDUCED_JPEG = tuple(
    (factor, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    )
)


def _decode_flag(width: int, height: int, image_format: str, side_px: int | None) -> int:
    """The cheapest decode that still leaves the longer side at least `side_px` px."""
    if side_px is not None and image_format == "JPEG":
        for factor, flag in _REDUCED_JPEG:
            if max(width, height) // factor >= side_px:
                return flag
    return cv2.IMREAD_UNCHANGED


def decode(
    path: Path, expected_size: tuple[int, int] | None = None, side_px: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode any layout OpenCV knows, keeping bit depth and alpha (BGR/BGRA order); also return the stored
    (width, height).

    Refuses, before decoding, files that are missing, empty, not images, whose header claims
    more than MAX_PIXELS (decompression bombs) or a size other than `expected_size`;
    after decoding, files OpenCV rejects (it treats a truncated JPEG or PNG as an
    error). With `side_px`, a JPEG much larger than `side_px` px is decoded at reduced
    scale (8-bit colour), which a later INTER_AREA resize to `side_px` finishes.
    """
    if not path.exists():
        raise BadImageError(f"{path}: file not found")
    if not path.is_file():  # reading a FIFO would wait for a writer forever
        raise BadImageError(f"{path}: not a regular file (a folder, FIFO or device); expected an image file")
    return decode_bytes(path.read_bytes(), path, expected_size, side_px)


def decode_bytes(
    data: bytes, name: Path | str, expected_size: tuple[int, int] | None = None, side_px: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """`decode` for an image already in memory (an archive member, say); `name` is what messages call it."""
    if not data:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    width, height, image_format = header_info(data, name)
    check_size(width, height, name, expected_size)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _decode_flag(width, height, image_format, side_px))
    if pixels is None:
        raise BadImageError(f"{name}: could not be decoded (corrupt or truncated)")
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


def encode_png(pixels: np.ndarray, *, rgb: bool = False) -> bytes:
    """A PNG's bytes; `rgb=True` means the array is RGB, flipped for OpenCV."""
    if rgb:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    # Keep OpenCV's default deflate strategy (Z_RLE): deflate runs in the machine's own libz.so.1,
    # which wheels never bundle, and RLE is what stock zlib and zlib-ng write byte for byte alike.
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ImgclsError("could not encode an image as PNG")
    return encoded.tobytes()


def md5_of(data: bytes) -> str:
    """The md5 a manifest records for an image, so that the manifest changes whenever any image it lists does."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
