"""The split stage's work: assign every image to train, val or test, stratified by class or as the dataset gave it,
and pack the splits."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from imgcls.core.atomic import atomic_dir, write_json
from imgcls.core.errors import ImgclsError
from imgcls.data.archive import ARCHIVE, read_archive
from imgcls.data.images import decode_bytes
from imgcls.data.packed import SPLITS, PackedSplit, save_split
from imgcls.manifest import read_csv, write_csv


def _classes_below(labels: np.ndarray, classes: Sequence[str], shares: Sequence[float]) -> tuple[int, list[str]]:
    """The images per class that put one in the smallest of `shares`, and "'x' has n" for each class with fewer."""
    needed = math.ceil(1 / min(f for f in shares if f > 0))
    counts = Counter(labels.tolist())
    return needed, [f"'{classes[c]}' has {counts[c]}" for c in range(len(classes)) if counts[c] < needed]


def _check_class_sizes(labels: np.ndarray, classes: Sequence[str], fractions: Sequence[float]) -> None:
    needed, small = _classes_below(labels, classes, fractions)
    if small:
        raise ImgclsError(
            f"split.fractions: {list(fractions)} needs at least {needed} images per class to put one in every split, "
            f"but {'; '.join(small)}. Add images of those classes, drop them from extract.categories, "
            "or set split.per_class"
        )


def assign_by_fractions(
    labels: np.ndarray, classes: Sequence[str], fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Return a split index (0 train, 1 val, 2 test) per sample, stratified by label; a test share of 0 assigns no
    test."""
    _check_class_sizes(labels, classes, fractions)
    index = np.arange(len(labels))
    if fractions[2] == 0:
        train_val, test = index, index[:0]
    else:
        train_val, test = train_test_split(index, test_size=fractions[2], stratify=labels, random_state=seed)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    train, val = train_test_split(train_val, test_size=val_share, stratify=labels[train_val], random_state=seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for split, members in enumerate((train, val, test)):
        assignment[members] = split
    _check_every_class_everywhere(labels, assignment, classes, SPLITS if fractions[2] else SPLITS[:2])
    return assignment


def _counts_for_class(per_class: Sequence[int], available: int, name: str) -> tuple[int, int, int]:
    """(train, val, test) images to draw from a class of `available`: `[train, val]` sends all the rest to test."""
    if len(per_class) == 2:
        train, val = per_class
        if available <= train + val:
            raise ImgclsError(
                f"split.per_class: {list(per_class)} takes {train} train and {val} val images of each class and puts "
                f"the rest "
                f"in test, so class '{name}' needs at least {train + val + 1}, but it has {available}"
            )
        return train, val, available - train - val
    if available < sum(per_class):
        raise ImgclsError(
            f"split.per_class: {list(per_class)} needs {sum(per_class)} images of class '{name}', but it has "
            f"{available}"
        )
    return per_class[0], per_class[1], per_class[2]


def assign_by_counts(labels: np.ndarray, classes: Sequence[str], per_class: Sequence[int], seed: int) -> np.ndarray:
    """Return a split index per sample with exact counts per class: `per_class` is (train, val, test) or (train, val).

    Three counts leave a class's other images out (-1), and a test count of 0 assigns no test;
    two counts put every image of a class beyond its train and val into test.
    """
    assignment = np.full(len(labels), -1, dtype=np.int64)
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        n_train, n_val, n_test = _counts_for_class(per_class, len(members), name)
        train, rest = train_test_split(members, train_size=n_train, test_size=n_val + n_test, random_state=seed)
        if n_test:
            val, test = train_test_split(rest, train_size=n_val, test_size=n_test, random_state=seed)
        else:
            val, test = rest, rest[:0]
        for split, chosen in enumerate((train, val, test)):
            assignment[chosen] = split
    return assignment


def _check_given_folders(labels: np.ndarray, given: np.ndarray, present: Sequence[str], classes: Sequence[str]) -> None:
    """A folder kept as it is must hold every class: nothing is moved into it to make up for one missing."""
    for split in present:
        absent = [f"'{classes[c]}'" for c in range(len(classes)) if not (labels[given == split] == c).any()]
        if absent:
            raise ImgclsError(
                f"split.method: 'given' keeps the dataset's {split}/ folder as it is, but it holds no "
                f"{', '.join(absent)} images; "
                "add some, or set split.method: stratified"
            )


def _draw_val(labels: np.ndarray, train: np.ndarray, classes: Sequence[str], val_share: float, seed: int) -> np.ndarray:
    """The given train images that become val, stratified by class."""
    needed, small = _classes_below(labels[train], classes, (val_share, 1 - val_share))
    if small:
        raise ImgclsError(
            f"split.fractions: drawing val from the given train/ ({val_share:.0%}, fractions[1] / (fractions[0] + "
            f"fractions[1])) "
            f"needs at least {needed} train images per class, but {'; '.join(small)}. Add train images of those "
            f"classes, "
            "drop them from extract.categories, or change split.fractions"
        )
    _, val = train_test_split(train, test_size=val_share, stratify=labels[train], random_state=seed)
    return val


def assign_given(
    labels: np.ndarray, given: Sequence[str], classes: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, str]:
    """Return a split index per sample that keeps the dataset's own train/val/test, and what was done, for the log.

    Without a given test, the given val is the test split: scores stay comparable with others
    reporting on that val. Without a given val (or once it became test), val is drawn from train
    with the share fractions[1] / (fractions[0] + fractions[1]), so test images never tune training.
    """
    given_split = np.asarray(given, dtype=str)
    unsplit = int((given_split == "").sum())
    if unsplit:
        raise ImgclsError(
            f"split.method: 'given' keeps a dataset's own train/ val/ test/ folders, but {unsplit} of "
            f"{len(given_split)} images "
            "came from none (COCO, or an image folder laid out as <root>/<class>/<image>); set split.method: stratified"
        )
    present = [name for name in SPLITS if (given_split == name).any()]
    if present[0] != "train" or len(present) == 1:
        raise ImgclsError(
            f"split.method: 'given' needs a train/ folder and a val/ or test/ folder, but the dataset has only "
            f"{', '.join(f'{name}/' for name in present)}; set split.method: stratified"
        )
    _check_given_folders(labels, given_split, present, classes)
    assignment = np.array([SPLITS.index(name) for name in given_split], dtype=np.int64)
    done = [f"kept the given {'/'.join(present)}"]
    if "test" not in present:
        assignment[assignment == SPLITS.index("val")] = SPLITS.index("test")
        done.append("val became test")
    if "val" not in present or "test" not in present:
        val_share = fractions[1] / (fractions[0] + fractions[1])
        assignment[_draw_val(labels, np.flatnonzero(assignment == 0), classes, val_share, seed)] = SPLITS.index("val")
        done.append(f"val drawn from train ({val_share:.0%})")
    _check_every_class_everywhere(labels, assignment, classes, SPLITS)
    return assignment, "; ".join(done)


def _check_every_class_everywhere(
    labels: np.ndarray, assignment: np.ndarray, classes: Sequence[str], splits: Sequence[str]
) -> None:
    for name in splits:
        split = SPLITS.index(name)
        absent = sorted(set(range(len(classes))) - set(labels[assignment == split].tolist()))
        if absent:
            raise ImgclsError(
                f"split.fractions: split '{name}' would have no '{classes[absent[0]]}' images; add more data"
            )


def load_normalized(normalized_dir: Path, classes: Sequence[str]) -> tuple[PackedSplit, list[str]]:
    """Read the normalize stage's manifest and images into one array set, ordered by id, and each image's given
    split."""
    rows = sorted(
        read_csv(normalized_dir / "manifest.csv", ("id", "category", "file", "given_split")), key=lambda r: int(r["id"])
    )
    label_of = {name: i for i, name in enumerate(classes)}
    unknown = sorted({r["category"] for r in rows} - set(label_of))
    if unknown:
        raise ImgclsError(f"{normalized_dir / 'manifest.csv'}: categories {unknown} are not in extract.categories")
    with read_archive(normalized_dir / ARCHIVE) as archive:
        bgr = [decode_bytes(archive.read(r["file"]), archive.path / r["file"])[0] for r in rows]
    images = np.stack([pixels[..., ::-1] for pixels in bgr])
    labels = np.array([label_of[r["category"]] for r in rows], dtype=np.int64)
    ids = np.array([int(r["id"]) for r in rows], dtype=np.int64)
    return PackedSplit(images, labels, ids), [r["given_split"] for r in rows]


def no_test_split(assignment: np.ndarray) -> bool:
    """No sample went to test (a test share or count of 0): the test folder then holds the val images, for evaluate
    to score."""
    return not (assignment == SPLITS.index("test")).any()


def write_splits(out_dir: Path, data: PackedSplit, assignment: np.ndarray, classes: Sequence[str]) -> None:
    """Write `splits.csv`, `classes.json` and one packed folder per split, each atomically.

    Samples assigned -1 (left over by `split.per_class`) are in no split. Without test samples,
    `test/` is a copy of `val/` (the stages after split read test) and `splits.csv` lists each image once.
    """
    for index, name in enumerate(SPLITS):
        source = SPLITS.index("val") if name == "test" and no_test_split(assignment) else index
        members = np.flatnonzero(assignment == source)
        with atomic_dir(out_dir / name) as tmp:
            save_split(tmp, PackedSplit(data.images[members], data.labels[members], data.ids[members]))
    rows = [
        {"id": int(i), "label": classes[int(label)], "split": SPLITS[int(s)]}
        for i, label, s in zip(data.ids, data.labels, assignment)
        if s >= 0
    ]
    write_csv(out_dir / "splits.csv", rows, ("id", "label", "split"))
    write_json(out_dir / "classes.json", list(classes))
