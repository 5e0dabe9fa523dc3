"""The packed split arrays every stage after `split` reads: images, labels and ids per split, and the class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgcls.core.atomic import read_json, save_npy
from imgcls.core.errors import ImgclsError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PackedSplit:
    """One split held as arrays: images (N, H, W, 3) uint8 RGB, labels (N,) int64, ids (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray


def save_split(directory: Path, split: PackedSplit) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_npy(directory / "images.npy", split.images)
    save_npy(directory / "labels.npy", split.labels)
    save_npy(directory / "ids.npy", split.ids)


def load_split(directory: Path, mmap: bool = True) -> PackedSplit:
    """Load packed arrays; images are memory-mapped unless `mmap=False`."""
    missing = [n for n in ("images.npy", "labels.npy", "ids.npy") if not (directory / n).is_file()]
    if missing:
        raise ImgclsError(f"{directory}: missing {missing}; run the split stage first")
    return PackedSplit(
        np.load(directory / "images.npy", mmap_mode="r" if mmap else None),
        np.load(directory / "labels.npy"),
        np.load(directory / "ids.npy"),
    )


def read_classes(path: Path) -> list[str]:
    return list(read_json(path))
