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


def image_grid(
    path: Path, images: Sequence[np.ndarray], titles: Sequence[str], columns: int = 8, empty: str = "nothing to show"
) -> None:
    """A grid of small images (HxWx3 RGB or HxW, shown with a gray map), each with a title."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(title, fontsize=7)
    if not len(images):
        axes.flat[0].set_title(empty, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
