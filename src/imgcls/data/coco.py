"""Select a single-label class subset from a COCO annotation file."""

from __future__ import annotations

import contextlib
import io
import json
import reprlib
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
from pycocotools.coco import COCO

from imgcls.core.errors import ImgclsError, did_you_mean

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


def resolves_inside(path: Path, resolved_root: Path) -> bool:
    """Whether `path`, with every symlink followed, stays inside `resolved_root` (itself already resolved)."""
    try:
        return path.resolve().is_relative_to(resolved_root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _inside_images(path: Path, resolved_root: Path, file_name: str) -> Path:
    """`path`, refused if a symlink leads it out of extract.images."""
    # A file_name has no folders, so only the file itself can be a link.
    if path.is_symlink() and not resolves_inside(path, resolved_root):
        raise ImgclsError(
            f"extract.annotations: file_name {file_name!r} resolves outside extract.images ({resolved_root}) "
            "through a symlink; nothing outside that folder is read"
        )
    return path


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
    except ValueError:
        # What json raises, instead of JSONDecodeError, for an integer longer than Python will convert.
        raise ImgclsError(
            f"extract.annotations: {path} holds a number of more than {sys.get_int_max_str_digits()} digits; "
            "COCO ids are 64-bit integers"
        ) from None
    except RecursionError:
        raise ImgclsError(f"extract.annotations: {path} is nested too deeply to be a COCO instances file") from None
    return coco_from_dict(dataset, source=str(path))


def coco_from_dict(dataset: object, source: str = "<annotations>") -> COCO:
    """Build a pycocotools index from an in-memory COCO dict after checking its shape."""
    if not isinstance(dataset, dict):
        raise ImgclsError(f"extract.annotations: {source} must hold a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ImgclsError(f"extract.annotations: {source} has no '{key}' list; is it a COCO instances file?")
    _check_entries(dataset, source)
    _check_unique(dataset, source)
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


# Ids end up in numpy arrays and CSV columns read back as int64.
INT64 = range(-(2**63), 2**63)


def _check_entries(dataset: dict, source: str) -> None:
    """Name the first entry that lacks a field later code relies on, instead of a KeyError deep in pycocotools."""
    for key, fields in REQUIRED_FIELDS.items():
        for index, entry in enumerate(dataset[key]):
            for field, kind in fields:
                value = entry.get(field) if isinstance(entry, dict) else None
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise ImgclsError(
                        f"extract.annotations: {source}: {key}[{index}].{field} must be {kind.__name__}, got "
                        f"{reprlib.repr(value)}"
                    )
                if kind is int and value not in INT64:
                    raise ImgclsError(
                        f"extract.annotations: {source}: {key}[{index}].{field} must be a 64-bit integer, got {value}"
                    )


# What pycocotools would silently overwrite or merge, and how to say which entries collide.
_UNIQUE = (
    (
        "images",
        "id",
        lambda a, b: (
            f"image id {a['id']} appears twice ({a['file_name']!r} and {b['file_name']!r}); "
            "image ids must be unique (the second image would take the first one's annotations)"
        ),
    ),
    (
        "categories",
        "id",
        lambda a, b: (
            f"category id {a['id']} appears twice ({a['name']!r} and {b['name']!r}); category ids must be unique"
        ),
    ),
    (
        "categories",
        "name",
        lambda a, b: (
            f"category name {a['name']!r} appears twice (ids {a['id']} and {b['id']}); "
            "category names must be unique, since extract.categories chooses by name"
        ),
    ),
    (
        "images",
        "file_name",
        lambda a, b: (
            f"file_name {a['file_name']!r} is listed under image ids {a['id']} and {b['id']}; "
            "a file must be one image, or it is extracted twice with possibly different labels"
        ),
    ),
)


def _first_repeat(entries: list[dict], field: str) -> tuple[dict, dict] | None:
    """The first entry whose `field` an earlier entry already has, after that earlier entry."""
    seen: dict[object, dict] = {}
    for entry in entries:
        earlier = seen.setdefault(entry[field], entry)
        if earlier is not entry:
            return earlier, entry
    return None


def _check_unique(dataset: dict, source: str) -> None:
    """Refuse repeated ids, category names and file names, naming the entries that collide."""
    for key, field, describe in _UNIQUE:
        if pair := _first_repeat(dataset[key], field):
            raise ImgclsError(f"extract.annotations: {source}: {describe(*pair)}")


def category_ids(coco: COCO, names: Sequence[str]) -> dict[str, int]:
    """Map each chosen name to its category id, suggesting close names for typos."""
    by_name = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    missing = [n for n in names if n not in by_name]
    if missing:
        hints = [f"'{name}'" + (f" ({close})" if (close := did_you_mean(name, by_name, 3)) else "") for name in missing]
        raise ImgclsError(
            f"extract.categories: not in the annotation file: {'; '.join(hints)}. "
            f"Available: {', '.join(sorted(by_name))}"
        )
    return {n: by_name[n] for n in names}


# Every rule that can keep an image out of its category, in the order they apply; the stage
# counts each per category (selection.csv) and names them when a category ends up empty.
RULES = (
    "hidden",
    "unsupported_extension",  # image-folder source
    "crowd",
    "other_categories",
    "several_categories",  # COCO source
    "not_sampled",
    "missing_file",
    "download_failed",
    "unreadable",
    "duplicate",  # the same decoded pixels as an image kept (extraction.drop_duplicates)
)

Removed = dict[str, Counter[str]]


def describe_removed(counts: Mapping[str, int]) -> str:
    """'crowd removed 3, unreadable removed 1': the rules that removed anything, in RULES order."""
    return ", ".join(f"{rule} removed {counts[rule]}" for rule in RULES if counts.get(rule))


def image_verdict(
    anns: Sequence[dict], name_of: Mapping[int, str], crowd: Rule, other_categories: Rule
) -> dict[str, str | None]:
    """For each chosen category an image's annotations mention, the rule keeping the image out of it (None: eligible).

    With `crowd="disqualify"` any crowd annotation rules the image out (a crowd box is not a
    clean single object), and `other_categories="disqualify"` does the same for an annotation
    of a category not chosen; an image with two chosen categories is out of both. With
    `"ignore"` those annotations are left out of the rules, but a category the image shows
    only as a crowd still does not make it an image of that category.
    """
    mentioned: set[str] = set()
    labels: set[str] = set()
    has_crowd = has_other = False
    for ann in anns:
        name = name_of.get(ann["category_id"])
        is_crowd = bool(ann.get("iscrowd", 0))
        has_crowd |= is_crowd
        has_other |= name is None and not is_crowd
        if name is not None:
            mentioned.add(name)
            if not is_crowd:
                labels.add(name)
    rule = None
    if has_crowd and crowd == "disqualify":
        rule = "crowd"
    elif has_other and other_categories == "disqualify":
        rule = "other_categories"
    elif len(labels) > 1:
        rule = "several_categories"
    return {name: rule or (None if name in labels else "crowd") for name in mentioned}


def classify_images(
    coco: COCO, chosen: dict[str, int], crowd: Rule, other_categories: Rule
) -> tuple[dict[str, list[int]], Removed]:
    """Per chosen category: the sorted ids of its single-label images, and how many images each rule kept out."""
    name_of = {cid: name for name, cid in chosen.items()}
    eligible: dict[str, list[int]] = {name: [] for name in chosen}
    removed: Removed = {name: Counter() for name in chosen}
    for image_id in sorted(coco.imgs):
        for name, rule in image_verdict(coco.imgToAnns.get(image_id, []), name_of, crowd, other_categories).items():
            if rule is None:
                eligible[name].append(image_id)
            else:
                removed[name][rule] += 1
    return eligible, removed


def require_eligible(
    eligible: Mapping[str, Sequence[object]], removed: Mapping[str, Mapping[str, int]], what: str, remedy: str
) -> None:
    """Refuse categories left without images, naming the rules that removed them."""
    empty = [name for name, ids in eligible.items() if not ids]
    if empty:
        reasons = "; ".join(f"{name!r} ({describe_removed(removed[name]) or 'none found'})" for name in empty)
        raise ImgclsError(f"extract.categories: no {what} for {reasons}; {remedy}")


def _proportional(sizes: Sequence[int], total: int) -> list[int]:
    """`total` shared out in proportion to `sizes`, the largest remainders rounding up, so the shares add up to
    `total`."""
    whole, rest = zip(*(divmod(total * size, sum(sizes)) for size in sizes))
    up = sorted(range(len(sizes)), key=lambda i: -rest[i])[: total - sum(whole)]
    return [count + (i in up) for i, count in enumerate(whole)]


def sample_per_category(
    ids: Mapping[str, Mapping[str, list[int]]], limit: int | None, seed: int, removed: Removed
) -> dict[str, list[int]]:
    """Draw up to `limit` ids per category, seeded, without replacement, from each given split in proportion to its
    size.

    `ids` maps category -> given split -> ids; COCO and unsplit folders have one split (''), for
    which this is a plain per-category draw. Proportional shares keep a pre-split dataset's
    train/val ratio.
    """
    everything = {name: [i for split_ids in by_split.values() for i in split_ids] for name, by_split in ids.items()}
    if limit is None:
        return everything
    rng = np.random.default_rng(seed)
    sampled = {}
    for name, by_split in ids.items():
        if limit > len(everything[name]):
            why = describe_removed(removed[name])
            raise ImgclsError(
                f"extract.per_category: {limit} asked but category '{name}' has only {len(everything[name])} eligible "
                f"images"
                f"{f' ({why})' if why else ''}; lower per_category to at most {len(everything[name])} or set it to "
                f"null for all"
            )
        shares = _proportional([len(split_ids) for split_ids in by_split.values()], limit)
        sampled[name] = sorted(
            int(i)
            for split_ids, share in zip(by_split.values(), shares)
            for i in rng.choice(split_ids, size=share, replace=False)
        )
    return sampled


def select(
    coco: COCO,
    images_dir: Path,
    categories: Sequence[str],
    per_category: int | None,
    seed: int,
    crowd: Rule = "disqualify",
    other_categories: Rule = "disqualify",
) -> tuple[list[Selected], Removed]:
    """Apply the single-label rule and the per-category sample: records ordered by id, and per category what each
    rule removed."""
    chosen = category_ids(coco, categories)
    eligible, removed = classify_images(coco, chosen, crowd, other_categories)
    require_eligible(
        eligible,
        removed,
        "single-label images",
        "choose other categories, or set extract.crowd / extract.other_categories to ignore to keep such images",
    )
    sampled = sample_per_category({name: {"": ids} for name, ids in eligible.items()}, per_category, seed, removed)
    resolved_root = images_dir.resolve()
    records = []
    for name, ids in sampled.items():
        removed[name]["not_sampled"] = len(eligible[name]) - len(ids)
        for image_id in ids:
            info = coco.imgs[image_id]
            source = _inside_images(safe_source(images_dir, info["file_name"]), resolved_root, info["file_name"])
            records.append(
                Selected(image_id, name, source, info["file_name"], info["width"], info["height"], info.get("coco_url"))
            )
    return sorted(records, key=lambda r: r.image_id), removed
