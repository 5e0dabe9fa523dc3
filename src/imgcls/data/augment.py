"""Minority oversampling of the train split with random rotation, scaling and flips.

It runs after `split` on purpose: augmenting before splitting puts rotated copies
of test images into training, and the test score then measures memory, not skill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from imgcls.core.errors import ImgclsError
from imgcls.data.packed import PackedSplit
from imgcls.figures import image_grid


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
    counts = np.bincount(train.labels).tolist()
    new_images, new_labels, sources = [], [], []
    for label, (count, size) in enumerate(zip(counts, sizes_after_oversampling(counts, target))):
        members = np.flatnonzero(train.labels == label)
        missing = size - count
        if missing == 0:
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


def preview_grid(
    path: Path, split: PackedSplit, source_ids: np.ndarray, classes: Sequence[str], count: int = 32
) -> None:
    """Save a PNG grid of augmented samples titled with class and source id, for a quick look."""
    augmented = np.flatnonzero(split.ids != source_ids)[:count]
    titles = [f"{classes[split.labels[i]]}\nfrom {source_ids[i]}" for i in augmented]
    image_grid(path, [np.asarray(split.images[i]) for i in augmented], titles, empty="no augmented samples")


def class_samples_grid(path: Path, split: PackedSplit, classes: Sequence[str], per_class: int = 8) -> None:
    """The first `per_class` originals of every class, one row per class in label order: what each label looks like."""
    images, titles = [], []
    for label, name in enumerate(classes):
        picked = np.flatnonzero(split.labels == label)[:per_class]
        images += [np.asarray(split.images[i]) for i in picked] + [np.zeros_like(split.images[0])] * (
            per_class - len(picked)
        )
        titles += [f"{name}: {int((split.labels == label).sum())} in train"] + [""] * (per_class - 1)
    image_grid(path, images, titles, columns=per_class, empty="no train images")


# Past five copies of each original a class is mostly rotated duplicates of a few images, which
# the model can learn by heart: worth a warning, not an error (a scarce class may need it).
HEAVY_OVERSAMPLING = 5.0


def sizes_after_oversampling(counts: Sequence[int], target: int | None) -> list[int]:
    """Each class's sample count once `oversample` has topped it up (an empty class stays empty)."""
    goal = max(counts) if target is None else target
    return [max(int(count), goal) if count else 0 for count in counts]


def heavy_oversampling(counts: Sequence[int], sizes: Sequence[int], classes: Sequence[str]) -> list[str]:
    """A warning for every class multiplied more than `HEAVY_OVERSAMPLING` times, naming it and its factor."""
    return [
        f"class '{name}' is oversampled {size / count:.1f}x ({count} -> {size} images); so many rotated copies "
        "of so few originals can teach the model those images rather than the class"
        for name, count, size in zip(classes, counts, sizes)
        if count and size / count > HEAVY_OVERSAMPLING
    ]


def check_fits_in_memory(
    target: int | None, sizes: Sequence[int], image_shape: Sequence[int], memory_bytes: int
) -> None:
    """Refuse an `augment.target` whose augmented train split would not fit in half of `memory_bytes`.

    Half, because this stage holds the new images and their concatenation at once (twice the
    result at its peak), and training then holds the whole split in memory again.
    """
    per_image = math.prod(image_shape)
    needed = sum(sizes) * per_image
    if needed <= memory_bytes // 2:
        return
    present = sum(1 for size in sizes if size)
    most = memory_bytes // 2 // per_image // max(present, 1)
    raise ImgclsError(
        f"augment.target: {target} per class makes {sum(sizes)} train images of {'x'.join(map(str, image_shape))} "
        f"({needed / 2**30:.2f} GiB), more than half of this machine's {memory_bytes / 2**30:.2f} GiB of memory; "
        f"use at most {most}"
    )
