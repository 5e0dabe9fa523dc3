"""Near-duplicates across splits.

A re-encoded or brightened copy is found, distinct images are not, and the report flags test twins.
"""

from __future__ import annotations

import cv2
import numpy as np

from imgcls.data.near_duplicates import cross_split_pairs, phash, twin_flag, write_near_duplicates


def digits(count: int, seed: int = 0) -> np.ndarray:
    """`count` distinct 32x32 RGB images: random blurred strokes, like the embedded sample's scans."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 32, 32, 3), np.uint8)
    for image in images:
        for _ in range(3):
            start, end = rng.integers(4, 28, 2), rng.integers(4, 28, 2)
            cv2.line(image, tuple(map(int, start)), tuple(map(int, end)), (255, 255, 255), 3)
        image[:] = cv2.GaussianBlur(image, (3, 3), 0)
    return images


def jpeg_copy(image: np.ndarray) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)


def test_a_reencoded_or_brightened_copy_is_near_and_other_images_are_not():
    images = digits(40)
    hashes = phash(
        np.concatenate([images, [jpeg_copy(images[0])], [np.clip(images[1].astype(int) + 25, 0, 255).astype(np.uint8)]])
    )
    distance = np.bitwise_count(hashes[:, None, :] ^ hashes[None, :, :]).sum(axis=-1)
    assert distance[0, 40] <= 4 and distance[1, 41] <= 4
    others = distance[:40, :40][np.triu_indices(40, 1)]
    assert others.min() > 4, "forty distinct drawings are all further apart than the default threshold"


def test_only_pairs_in_different_splits_are_listed(tmp_path):
    images = digits(6)
    # 0 train, 1 val, 2 test; image 3 (train) copies 2 (test), 4 (train) copies 0 (train), 5 (val) copies 1 (val)
    batch = np.stack([*images[:3], images[2], images[0], images[1]])
    assignment = np.array([0, 1, 2, 0, 0, 1])
    pairs = cross_split_pairs(phash(batch), assignment, max_distance=4)
    assert pairs == [(3, 2, 0)]

    path = tmp_path / "near_duplicates.csv"
    ids, labels = np.array([10, 11, 12, 13, 14, 15]), np.array([0, 1, 1, 0, 0, 1])
    write_near_duplicates(path, pairs, ids, labels, assignment, ["a", "b"])
    assert path.read_text().splitlines() == [
        "id_a,split_a,label_a,id_b,split_b,label_b,distance",
        "13,train,a,12,test,b,0",
    ]
    [flag] = twin_flag(path, [12, 16])
    assert flag.startswith("test split: 1 of 2 test images have a near-twin in train") and flag.endswith("ids 12")
    assert twin_flag(path, [16]) == []
