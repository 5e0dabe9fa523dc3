"""The embedded default dataset: scikit-learn's bundled digit scans dressed up as a COCO download.

It ships inside a declared dependency, so a fresh clone runs end to end with no
network, yet it exercises everything real COCO data does: non-contiguous
category ids, varied and non-square sizes, grayscale / RGB / RGBA / 16-bit
files, images holding two categories, crowd annotations and a scarce class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.datasets import load_digits

from imgcls.core.atomic import atomic_dir
from imgcls.core.errors import ImgclsError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# COCO's category ids have gaps (1..90 for 80 classes); later stages must not assume 0..C-1.
CATEGORY_IDS = (1, 3, 4, 6, 8, 9, 11, 13, 16, 18)

LAYOUT_WEIGHTS = {"gray": 0.45, "rgb": 0.30, "rgba": 0.20, "gray16": 0.05}
TWO_DIGIT_FRACTION = 0.06
CROWD_FRACTION = 0.02
SIDE_RANGE = (24, 96)
ASPECT_RANGE = (0.75, 1.33)  # width / height of one digit's cell


def _render_digit(digit: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an 8x8 scan (0..16) to a float ink mask in [0, 1] of the given size."""
    # float64, not float32: OpenCV hands a float32 cubic resize to Intel IPP, whose AVX2 and AVX-512
    # code round differently (one pixel off by one made data/raw/sample differ between machines);
    # the float64 resize comes out the same whichever code IPP or OpenCV picks for the CPU.
    ink = digit.astype(np.float64) / 16.0
    return np.clip(cv2.resize(ink, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _encode(ink: np.ndarray, layout: str, rng: np.random.Generator) -> np.ndarray:
    """Turn an ink mask into pixels of one channel layout, in OpenCV's BGR(A) order."""
    if layout == "gray":
        return np.round(ink * 255).astype(np.uint8)
    if layout == "gray16":
        return np.round(ink * 65535).astype(np.uint16)
    ink_colour = rng.integers(0, 120, size=3)
    if layout == "rgb":
        paper = rng.integers(150, 256, size=3)
        pixels = paper[None, None, :] * (1 - ink[..., None]) + ink_colour[None, None, :] * ink[..., None]
        return np.round(pixels).astype(np.uint8)
    # RGBA: the ink is opaque and the paper fully transparent, so compositing decides the background.
    pixels = np.empty((*ink.shape, 4), dtype=np.uint8)
    pixels[..., :3] = ink_colour
    pixels[..., 3] = np.round(ink * 255).astype(np.uint8)
    return pixels


def build_sample(
    seed: int, scarce_category: str, scarce_fraction: float
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return a COCO annotation dict and the images it names (file name -> pixels)."""
    if scarce_category not in DIGIT_NAMES:
        raise ImgclsError(
            f"sample.scarce_category: '{scarce_category}' is not a digit name; valid: {', '.join(DIGIT_NAMES)}"
        )
    rng = np.random.default_rng(seed)
    digits = load_digits()
    scarce_label = DIGIT_NAMES.index(scarce_category)
    keep = [i for i in range(len(digits.target)) if digits.target[i] != scarce_label or rng.random() < scarce_fraction]
    order = rng.permutation(keep)

    layouts = list(LAYOUT_WEIGHTS)
    weights = np.array(list(LAYOUT_WEIGHTS.values()))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    files: dict[str, np.ndarray] = {}
    position = 0
    while position < len(order):
        pair = position + 1 < len(order) and digits.target[order[position]] != digits.target[order[position + 1]]
        take = 2 if pair and rng.random() < TWO_DIGIT_FRACTION else 1
        members = order[position : position + take]
        position += take
        image_id = len(images) + 1
        height = int(rng.integers(*SIDE_RANGE))
        cell_w = [int(height * rng.uniform(*ASPECT_RANGE)) for _ in members]
        ink = np.concatenate([_render_digit(digits.images[m], w, height) for m, w in zip(members, cell_w)], axis=1)
        layout = str(rng.choice(layouts, p=weights))
        file_name = f"{image_id:012d}.png"
        files[file_name] = _encode(ink, layout, rng)
        images.append({"id": image_id, "file_name": file_name, "width": int(ink.shape[1]), "height": height})
        x = 0
        for member, width in zip(members, cell_w):
            category_id = CATEGORY_IDS[int(digits.target[member])]
            annotations.append(
                _annotation(len(annotations) + 1, image_id, category_id, [x, 0, width, height], crowd=False)
            )
            if rng.random() < CROWD_FRACTION:
                annotations.append(
                    _annotation(len(annotations) + 1, image_id, category_id, [x, 0, width, height], crowd=True)
                )
            x += width
    categories = [{"id": cid, "name": name, "supercategory": "digit"} for cid, name in zip(CATEGORY_IDS, DIGIT_NAMES)]
    coco = {
        "info": {"description": "imgcls embedded sample: scikit-learn digits as COCO", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return coco, files


def _annotation(ann_id: int, image_id: int, category_id: int, bbox: list[int], *, crowd: bool) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(v) for v in bbox],
        "area": float(bbox[2] * bbox[3]),
        "iscrowd": int(crowd),
    }


def write_sample(out_dir: Path, coco: dict[str, Any], files: dict[str, np.ndarray]) -> None:
    """Write `annotations.json` and `images/` as one atomic folder swap."""
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for name, pixels in files.items():
            if not cv2.imwrite(str(tmp / "images" / name), pixels):
                raise ImgclsError(f"could not write sample image {name}")
        (tmp / "annotations.json").write_text(json.dumps(coco))
