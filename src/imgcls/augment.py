"""Minority oversampling of the train split with random rotation, scaling and flips.

It runs after `split` on purpose: augmenting before splitting puts rotated copies
of test images into training, and the test score then measures memory, not skill.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from imgcls.figures import image_grid
from imgcls.splits import PackedSplit


def random_affine(image: np.ndarray, angle: float, scale: float, flip: bool) -> np.ndarray:
    """Rotate (degrees) and scale about the centre, then optionally mirror left-right."""
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale))
    # Not warpAffine: its float kernels give other bytes on a CPU without AVX2. remap through
    # fixed-point maps interpolates with integer weights, the same on every CPU.
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    map_x = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]).astype(np.float32)
    map_y = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]).astype(np.float32)
    cells, weights = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    # Replicated borders keep the corners the colour of the paper, whatever that colour is.
    warped = cv2.remap(image, cells, weights, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(warped[:, ::-1]) if flip else warped


def oversample(
    train: PackedSplit,
    target: int | None,
    rotation_deg: float,
    scale: tuple[float, float],
    hflip: bool,
    seed: int,
    first_new_id: int,
) -> tuple[PackedSplit, np.ndarray]:
    """Add augmented copies until every class has at least `target` samples (default: the majority count).

    Returns the originals followed by the new samples, and each sample's source id
    (an original's source is itself). Sources are drawn round-robin from a shuffled
    class so every original is reused about equally often.
    """
    rng = np.random.default_rng(seed)
    counts = np.bincount(train.labels)
    goal = int(counts.max()) if target is None else target
    new_images, new_labels, sources = [], [], []
    for label, count in enumerate(counts):
        members = np.flatnonzero(train.labels == label)
        missing = goal - count
        if missing <= 0 or count == 0:
            continue
        rounds = -(-missing // count)
        picks = np.concatenate([rng.permutation(members) for _ in range(rounds)])[:missing]
        for index in picks:
            angle = rng.uniform(-rotation_deg, rotation_deg)
            factor = rng.uniform(*scale)
            flip = bool(hflip and rng.random() < 0.5)
            new_images.append(random_affine(np.asarray(train.images[index]), angle, factor, flip))
            new_labels.append(label)
            sources.append(train.ids[index])
    if not new_images:
        return train, train.ids.copy()
    new_ids = np.arange(first_new_id, first_new_id + len(new_images), dtype=np.int64)
    combined = PackedSplit(
        np.concatenate([train.images, np.stack(new_images)]),
        np.concatenate([train.labels, np.array(new_labels, dtype=np.int64)]),
        np.concatenate([train.ids, new_ids]),
    )
    return combined, np.concatenate([train.ids, np.array(sources, dtype=np.int64)])


def preview_grid(path: Path, split: PackedSplit, source_ids: np.ndarray, classes: Sequence[str], count: int = 32) -> None:
    """Save a PNG grid of augmented samples titled with class and source id, for a quick look."""
    augmented = np.flatnonzero(split.ids != source_ids)[:count]
    titles = [f"{classes[split.labels[i]]}\nfrom {source_ids[i]}" for i in augmented]
    image_grid(path, [np.asarray(split.images[i]) for i in augmented], titles, empty="no augmented samples")
