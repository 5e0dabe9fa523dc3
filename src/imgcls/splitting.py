"""The split stage's work: assign every image to train, val or test, stratified by class, and pack the splits."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from imgcls.atomic import atomic_dir, write_json
from imgcls.errors import ImgclsError
from imgcls.images import read_image
from imgcls.manifest import read_csv, write_csv
from imgcls.splits import SPLITS, PackedSplit, save_split


def _check_class_sizes(labels: np.ndarray, classes: Sequence[str], fractions: Sequence[float]) -> None:
    needed = math.ceil(1 / min(fractions))
    counts = Counter(labels.tolist())
    small = [f"'{classes[c]}' has {counts.get(c, 0)}" for c in range(len(classes)) if counts.get(c, 0) < needed]
    if small:
        raise ImgclsError(
            f"split.fractions: {list(fractions)} needs at least {needed} images per class to put one in every split, "
            f"but {'; '.join(small)}. Add images of those classes, drop them from extract.categories, "
            "or set split.per_class"
        )


def assign_by_fractions(labels: np.ndarray, classes: Sequence[str], fractions: Sequence[float], seed: int) -> np.ndarray:
    """Return a split index (0 train, 1 val, 2 test) per sample, stratified by label."""
    _check_class_sizes(labels, classes, fractions)
    index = np.arange(len(labels))
    train_val, test = train_test_split(index, test_size=fractions[2], stratify=labels, random_state=seed)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    train, val = train_test_split(train_val, test_size=val_share, stratify=labels[train_val], random_state=seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for split, members in enumerate((train, val, test)):
        assignment[members] = split
    _check_every_class_everywhere(labels, assignment, classes)
    return assignment


def assign_by_counts(labels: np.ndarray, classes: Sequence[str], per_class: Sequence[int], seed: int) -> np.ndarray:
    """Return a split index per sample with exactly `per_class` = (train, val, test) images of each class."""
    assignment = np.full(len(labels), -1, dtype=np.int64)
    wanted = sum(per_class)
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        if len(members) < wanted:
            raise ImgclsError(
                f"split.per_class: {list(per_class)} needs {wanted} images of class '{name}', but it has {len(members)}"
            )
        train, rest = train_test_split(members, train_size=per_class[0], test_size=per_class[1] + per_class[2], random_state=seed)
        val, test = train_test_split(rest, train_size=per_class[1], test_size=per_class[2], random_state=seed)
        for split, chosen in enumerate((train, val, test)):
            assignment[chosen] = split
    return assignment


def _check_every_class_everywhere(labels: np.ndarray, assignment: np.ndarray, classes: Sequence[str]) -> None:
    for split, name in enumerate(SPLITS):
        absent = sorted(set(range(len(classes))) - set(labels[assignment == split].tolist()))
        if absent:
            raise ImgclsError(f"split.fractions: split '{name}' would have no '{classes[absent[0]]}' images; add more data")


def load_normalized(normalized_dir: Path, classes: Sequence[str]) -> PackedSplit:
    """Read the normalize stage's manifest and images into one array set, ordered by id."""
    rows = sorted(read_csv(normalized_dir / "manifest.csv", ("id", "category", "file")), key=lambda r: int(r["id"]))
    label_of = {name: i for i, name in enumerate(classes)}
    unknown = sorted({r["category"] for r in rows} - set(label_of))
    if unknown:
        raise ImgclsError(f"{normalized_dir / 'manifest.csv'}: categories {unknown} are not in extract.categories")
    images = np.stack([read_image(normalized_dir / r["file"])[..., ::-1] for r in rows])
    labels = np.array([label_of[r["category"]] for r in rows], dtype=np.int64)
    ids = np.array([int(r["id"]) for r in rows], dtype=np.int64)
    return PackedSplit(images, labels, ids)


def write_splits(out_dir: Path, data: PackedSplit, assignment: np.ndarray, classes: Sequence[str]) -> None:
    """Write `splits.csv`, `classes.json` and one packed folder per split, each atomically.

    Samples assigned -1 (left over by `split.per_class`) are in no split.
    """
    for index, name in enumerate(SPLITS):
        members = np.flatnonzero(assignment == index)
        with atomic_dir(out_dir / name) as tmp:
            save_split(tmp, PackedSplit(data.images[members], data.labels[members], data.ids[members]))
    rows = [
        {"id": int(i), "label": classes[int(label)], "split": SPLITS[int(s)]}
        for i, label, s in zip(data.ids, data.labels, assignment)
        if s >= 0
    ]
    write_csv(out_dir / "splits.csv", rows, ("id", "label", "split"))
    write_json(out_dir / "classes.json", list(classes))
