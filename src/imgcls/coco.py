"""Select a single-label class subset from a COCO annotation file."""

from __future__ import annotations

import contextlib
import difflib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
from pycocotools.coco import COCO

from imgcls.errors import ImgclsError

Rule = Literal["disqualify", "ignore"]


@dataclass(frozen=True)
class Selected:
    """One chosen image, where its file is, and the single category it is labelled with.

    `width`/`height` are what the annotation claims (None where there is no annotation);
    `url` is where to fetch the file from when it is not on disk yet.
    """

    image_id: int
    category: str
    source: Path
    source_name: str
    width: int | None = None
    height: int | None = None
    url: str | None = None


def safe_source(images_dir: Path, file_name: object) -> Path:
    """Resolve an annotation's file_name inside `images_dir`, refusing anything that could escape it."""
    name = str(file_name)
    if (
        not isinstance(file_name, str)
        or name in ("", ".", "..")
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or any(c in name for c in "/\\\0")
    ):
        raise ImgclsError(
            f"extract.annotations: file_name {file_name!r} must be a plain file name inside extract.images "
            "(no absolute paths, folders or '..')"
        )
    return images_dir / name


def load_coco(path: Path) -> COCO:
    """Index an annotation file with pycocotools, turning its failures into clear errors."""
    if not path.is_file():
        raise ImgclsError(f"extract.annotations: file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        raise ImgclsError(f"extract.annotations: {path} is empty; expected a COCO instances JSON file")
    try:
        dataset = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImgclsError(f"extract.annotations: {path} is not valid JSON ({exc})") from None
    return coco_from_dict(dataset, source=str(path))


def coco_from_dict(dataset: object, source: str = "<annotations>") -> COCO:
    """Build a pycocotools index from an in-memory COCO dict after checking its shape."""
    if not isinstance(dataset, dict):
        raise ImgclsError(f"extract.annotations: {source} must hold a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ImgclsError(f"extract.annotations: {source} has no '{key}' list; is it a COCO instances file?")
    _check_entries(dataset, source)
    coco = COCO()
    coco.dataset = dataset
    # pycocotools prints progress to stdout; a stage's output should be ours alone.
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


REQUIRED_FIELDS = {
    "images": (("id", int), ("file_name", str), ("width", int), ("height", int)),
    "annotations": (("id", int), ("image_id", int), ("category_id", int)),
    "categories": (("id", int), ("name", str)),
}


def _check_entries(dataset: dict, source: str) -> None:
    """Name the first entry that lacks a field later code relies on, instead of a KeyError deep in pycocotools."""
    for key, fields in REQUIRED_FIELDS.items():
        for index, entry in enumerate(dataset[key]):
            for field, kind in fields:
                value = entry.get(field) if isinstance(entry, dict) else None
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise ImgclsError(
                        f"extract.annotations: {source}: {key}[{index}].{field} must be {kind.__name__}, got {value!r}"
                    )


def category_ids(coco: COCO, names: Sequence[str]) -> dict[str, int]:
    """Map each chosen name to its category id, suggesting close names for typos."""
    by_name = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    missing = [n for n in names if n not in by_name]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hints.append(f"'{name}'" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
        raise ImgclsError(
            f"extract.categories: not in the annotation file: {'; '.join(hints)}. "
            f"Available: {', '.join(sorted(by_name))}"
        )
    return {n: by_name[n] for n in names}


def single_label_images(coco: COCO, chosen: dict[str, int], crowd: Rule, other_categories: Rule) -> dict[str, list[int]]:
    """Image ids whose annotations name exactly one chosen category, sorted, per category.

    An image is dropped when its annotations mention two chosen categories. With
    `crowd="disqualify"` any crowd annotation drops the image (a crowd box is not a
    clean single object); with `"ignore"` crowd annotations are left out of the rule.
    `other_categories` does the same for annotations of categories not chosen.
    """
    name_of = {cid: name for name, cid in chosen.items()}
    per_category: dict[str, list[int]] = {name: [] for name in chosen}
    for image_id in sorted(coco.imgs):
        labels: set[str] = set()
        disqualified = False
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                if crowd == "disqualify":
                    disqualified = True
                    break
                continue
            name = name_of.get(ann["category_id"])
            if name is None:
                if other_categories == "disqualify":
                    disqualified = True
                    break
                continue
            labels.add(name)
        if not disqualified and len(labels) == 1:
            per_category[labels.pop()].append(image_id)
    return per_category


def sample_per_category(per_category: dict[str, list[int]], limit: int | None, seed: int) -> dict[str, list[int]]:
    """Draw up to `limit` ids per category without replacement, reproducibly from `seed`."""
    if limit is None:
        return per_category
    rng = np.random.default_rng(seed)
    sampled = {}
    for name, ids in per_category.items():
        if limit > len(ids):
            raise ImgclsError(
                f"extract.per_category: {limit} asked but category '{name}' has only {len(ids)} eligible images; "
                f"lower per_category to at most {len(ids)} or set it to null for all"
            )
        sampled[name] = sorted(int(i) for i in rng.choice(ids, size=limit, replace=False))
    return sampled


def select(
    coco: COCO,
    images_dir: Path,
    categories: Sequence[str],
    per_category: int | None,
    seed: int,
    crowd: Rule = "disqualify",
    other_categories: Rule = "disqualify",
) -> list[Selected]:
    """Apply the single-label rule and the per-category sample; records ordered by id."""
    chosen = category_ids(coco, categories)
    eligible = single_label_images(coco, chosen, crowd, other_categories)
    empty = [name for name, ids in eligible.items() if not ids]
    if empty:
        raise ImgclsError(f"extract.categories: no single-label images for {', '.join(repr(n) for n in empty)}")
    sampled = sample_per_category(eligible, per_category, seed)
    records = []
    for name, ids in sampled.items():
        for image_id in ids:
            info = coco.imgs[image_id]
            records.append(
                Selected(
                    image_id, name, safe_source(images_dir, info.get("file_name")), str(info["file_name"]),
                    int(info["width"]), int(info["height"]), info.get("coco_url"),
                )
            )
    return sorted(records, key=lambda r: r.image_id)
