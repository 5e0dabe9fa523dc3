"""Near-duplicate images across splits, found by a perceptual hash (pHash) of each normalized image.

Exact copies are dropped by extract; a re-encoded, resized or slightly cropped copy of a train image
in test survives that and inflates test scores silently. pHash keeps an image's coarse structure:
its grey 32x32 version's lowest 8x8 DCT frequencies, each one bit (above or below their median).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from imgcls.data.packed import SPLITS
from imgcls.manifest import read_csv, write_csv

NEAR_DUPLICATE_COLUMNS = ("id_a", "split_a", "label_a", "id_b", "split_b", "label_b", "distance")
HASH_BITS = 64
# Hamming distances summed per chunk of rows stay under about 64 MB, whatever the train split's size.
_CHUNK_CELLS = 2**23


def phash(images: np.ndarray) -> np.ndarray:
    """(N, 8) uint8: each (H, W, 3) RGB image's 64-bit pHash, packed."""
    bits = np.empty((len(images), HASH_BITS), dtype=bool)
    for index, image in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        low = cv2.dct(small)[:8, :8].ravel()
        bits[index] = low > np.median(low)
    return np.packbits(bits, axis=1)


def cross_split_pairs(hashes: np.ndarray, assignment: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every two images in different splits (i's split first) at most `max_distance` bits apart."""
    pairs = []
    for first, second in ((0, 1), (0, 2), (1, 2)):
        rows, columns = np.flatnonzero(assignment == first), np.flatnonzero(assignment == second)
        chunk = max(1, _CHUNK_CELLS // max(1, len(columns)))
        for start in range(0, len(rows), chunk):
            block = rows[start : start + chunk]
            distances = np.bitwise_count(hashes[block][:, None, :] ^ hashes[columns][None, :, :]).sum(axis=-1)
            for r, c in zip(*np.nonzero(distances <= max_distance)):
                pairs.append((int(block[r]), int(columns[c]), int(distances[r, c])))
    return pairs


def write_near_duplicates(
    path: Path,
    pairs: Sequence[tuple[int, int, int]],
    ids: np.ndarray,
    labels: np.ndarray,
    assignment: np.ndarray,
    classes: Sequence[str],
) -> None:
    """One row per pair: each image's id, split and label, then their distance in bits."""
    rows = [
        {
            "id_a": int(ids[i]),
            "split_a": SPLITS[assignment[i]],
            "label_a": classes[labels[i]],
            "id_b": int(ids[j]),
            "split_b": SPLITS[assignment[j]],
            "label_b": classes[labels[j]],
            "distance": distance,
        }
        for i, j, distance in pairs
    ]
    write_csv(path, rows, NEAR_DUPLICATE_COLUMNS)


def twin_flag(path: Path, test_ids: Sequence[int], shown: int = 10) -> list[str]:
    """The report's flag for test images the near-duplicates file pairs with a train image; [] when there are none."""
    wanted = {int(i) for i in test_ids}
    rows = read_csv(path, NEAR_DUPLICATE_COLUMNS)
    twins = sorted({int(row["id_b"]) for row in rows if row["split_a"] == "train" and int(row["id_b"]) in wanted})
    if not twins:
        return []
    more = f" and {len(twins) - shown} more" if len(twins) > shown else ""
    listed = ", ".join(map(str, twins[:shown]))
    return [
        f"test split: {len(twins)} of {len(wanted)} test images have a near-twin in train (pairs in {path}; "
        f"split.near_duplicate_bits sets how near), so test scores may be inflated: ids {listed}{more}"
    ]
