"""Matplotlib figures written headless and atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # stages run headless; never try to open a window
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from imgcls.core.atomic import atomic_path


def save_figure(fig: Figure, path: Path) -> None:
    # No "Software" stamp, so git-tracked PNGs change only when their pixels do. Run-length deflate
    # (zlib strategy Z_RLE = 3) compresses to the same bytes under zlib and zlib-ng, whichever the
    # machine's Pillow links; the default strategy does not.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None}, pil_kwargs={"compress_type": 3})
    plt.close(fig)


def mosaic(tiles: np.ndarray, columns: int, title_room: float = 0.0) -> np.ndarray:
    """(N, h, w, 3) tiles in [0, 1] laid out in rows of `columns` on white, a fifth of a tile apart.

    `title_room`, a fraction of a tile's height, is left free above each row for titles. One image of
    tiles draws in a fraction of the time of an axes per tile.
    """
    count, height, width, _ = tiles.shape
    rows = -(-count // columns)
    bottom, right = _tile_origin(rows * columns - 1, columns, height, width, title_room)
    canvas = np.ones((bottom + height, right + width, 3))
    for index, tile in enumerate(tiles):
        top, left = _tile_origin(index, columns, height, width, title_room)
        canvas[top : top + height, left : left + width] = tile
    return canvas


def _tile_origin(index: int, columns: int, height: int, width: int, title_room: float) -> tuple[int, int]:
    """The top-left pixel of tile `index` in a `mosaic`."""
    gap, above = max(1, height // 5), round(height * title_room)
    row, column = divmod(index, columns)
    return row * (height + above + gap) + above, column * (width + max(1, width // 5))


def min_max(values: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """`values` scaled to [0, 1] over `axis` (all of it by default), as imshow scales a map; constant is 0."""
    low = values.min(axis=axis, keepdims=True)
    spread = np.ptp(values, axis=axis, keepdims=True)
    return (values - low) / np.where(spread > 0, spread, 1.0)


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    """An image as imshow shows it, in [0, 1] RGB: gray min-max scaled (its gray map), integer RGB over 255."""
    if image.ndim == 2:
        return np.repeat(min_max(image)[..., None], 3, axis=2)
    return image / 255.0 if np.issubdtype(image.dtype, np.integer) else np.clip(image, 0.0, 1.0)


TITLE_ROOM = 0.4  # of a tile's height above each row: two lines of 7-point text


def image_grid(
    path: Path, images: Sequence[np.ndarray], titles: Sequence[str], columns: int = 8, empty: str = "nothing to show"
) -> None:
    """A grid of small images of one size (HxWx3 RGB or HxW, shown in gray), each with a title above it."""
    if not len(images):
        fig, ax = plt.subplots(figsize=(columns * 1.3, 1.5))
        ax.axis("off")
        ax.set_title(empty, fontsize=8)
        save_figure(fig, path)
        return
    tiles = np.stack([_unit_rgb(np.asarray(image)) for image in images])
    _, height, width, _ = tiles.shape
    canvas = mosaic(tiles, columns, TITLE_ROOM)
    fig, ax = plt.subplots(figsize=(columns * 1.3, columns * 1.3 * canvas.shape[0] / canvas.shape[1] + 0.2))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    ax.axis("off")
    ax.imshow(canvas, interpolation="nearest")
    for index, title in enumerate(titles[: len(images)]):
        top, left = _tile_origin(index, columns, height, width, TITLE_ROOM)
        # Pixel centres are whole numbers, so a tile spans left - 0.5 to left + width - 0.5.
        ax.text(left + (width - 1) / 2, top - 1.5, title, fontsize=7, ha="center", va="bottom")
    save_figure(fig, path)
