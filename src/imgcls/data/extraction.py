"""The extract stage's work: decode the selected images and shrink them to the working size."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from imgcls.core.atomic import atomic_dir
from imgcls.core.errors import ImgclsError
from imgcls.data.archive import ARCHIVE, drop_members, write_archive
from imgcls.data.coco import RULES, Selected, describe_removed, require_eligible
from imgcls.data.download import RemoteImage, download_images
from imgcls.data.folder import SPLIT_FOLDERS
from imgcls.data.images import BadImageError, decode, encode_png, fit_within, md5_of
from imgcls.data.parallel import imap_images
from imgcls.manifest import write_csv

MANIFEST_COLUMNS = ("id", "category", "file", "md5", "source_file", "width", "height", "given_split")
BAD_IMAGE_COLUMNS = ("id", "source_file", "reason")
BAD_IMAGES_FILE = "bad_images.csv"
SELECTION_COLUMNS = ("category", "found", *RULES, "kept")
SELECTION_FILE = "selection.csv"
DUPLICATE_COLUMNS = ("id", "category", "source_file", "same_as")
DUPLICATES_FILE = "duplicates.csv"


@dataclass(frozen=True)
class BadImage:
    """A selected image that could not be used; `rule` is its column in selection.csv."""

    image_id: int
    source_name: str
    reason: str
    rule: str = "unreadable"


def pixel_digest(pixels: np.ndarray) -> str:
    """A hash of decoded pixels, shape and type: equal for one picture under any file name, never for two pictures."""
    header = f"{pixels.shape}{pixels.dtype}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(pixels).tobytes()).hexdigest()


Row = dict[str, object]


def _extract_one(record: Selected, side_px: int, given_split: str) -> tuple[Row, bytes, str] | BadImage:
    """The image's manifest row, PNG bytes and pixel digest, or why it cannot be used."""
    expected = (record.width, record.height) if record.width is not None and record.height is not None else None
    try:
        pixels, (width, height) = decode(record.source, expected, side_px=side_px)
    except BadImageError as exc:
        return BadImage(
            record.image_id, record.source_name, str(exc), "unreadable" if record.source.is_file() else "missing_file"
        )
    png = encode_png(fit_within(pixels, side_px))
    row = {
        "id": record.image_id,
        "category": record.category,
        "file": f"images/{record.image_id}.png",
        "md5": md5_of(png),
        "source_file": record.source_name,
        "width": width,
        "height": height,
        "given_split": given_split,
    }
    return row, png, pixel_digest(pixels)


def extract_images(
    records: Sequence[Selected],
    out_dir: Path,
    side_px: int,
    on_bad_image: Literal["skip", "fail"] = "fail",
    max_bad_fraction: float = 0.0,
    known_bad: Sequence[BadImage] = (),
    removed: Mapping[str, Mapping[str, int]] | None = None,
    given_splits: Mapping[int, str] | None = None,
) -> tuple[int, list[BadImage], list[dict[str, object]]]:
    """Write `out_dir/images.zip`, `manifest.csv`, `bad_images.csv` and `selection.csv`; return (kept, bad, selection).

    The archive holds each kept image as `images/<id>.png`, the manifest's `file`.
    `removed` counts, per category and rule, the images selection already left out;
    `given_splits` is the split folder a pre-split dataset put an image in (missing: none). Decoding
    and resizing run on all cores. Nothing is written unless the run succeeds as a whole.
    """
    known = {b.image_id for b in known_bad}
    todo = [r for r in records if r.image_id not in known]
    given = given_splits or {}
    extracted: list[tuple[Row, str]] = []
    bad = list(known_bad)
    with atomic_dir(out_dir) as tmp:
        with write_archive(tmp / ARCHIVE) as archive:
            results = imap_images(lambda r: _extract_one(r, side_px, given.get(r.image_id, "")), todo, desc="extract")
            for result in results:
                if isinstance(result, BadImage):
                    bad.append(result)
                    continue
                row, png, digest = result
                archive.add(str(row["file"]), png)
                extracted.append((row, digest))
        _check_bad(bad, len(records), on_bad_image, max_bad_fraction)
        rows, duplicates = drop_duplicates(extracted)
        drop_members(tmp / ARCHIVE, [str(row["file"]) for row in duplicates])
        selection = selection_table(records, _with_duplicates(removed or {}, duplicates), bad, rows)
        _check_left(selection)
        write_csv(tmp / "manifest.csv", rows, MANIFEST_COLUMNS)
        write_csv(tmp / SELECTION_FILE, selection, SELECTION_COLUMNS)
        write_csv(tmp / DUPLICATES_FILE, duplicates, DUPLICATE_COLUMNS, extrasaction="ignore")
        write_csv(
            tmp / BAD_IMAGES_FILE,
            (
                {"id": b.image_id, "source_file": b.source_name, "reason": b.reason}
                for b in sorted(bad, key=lambda b: b.image_id)
            ),
            BAD_IMAGE_COLUMNS,
        )
    return len(rows), bad, selection


def _keeping_order(row: Mapping[str, object]) -> tuple[int, int]:
    """Train's copy first, then val's, then test's; within a split the first file: test keeps only images held out."""
    split = str(row["given_split"])
    return (SPLIT_FOLDERS.index(split) if split else 0, int(str(row["id"])))


def drop_duplicates(extracted: Sequence[tuple[Row, str]]) -> tuple[list[Row], list[Row]]:
    """(kept rows, dropped rows with `same_as`): of images with identical pixels, one copy is kept (`_keeping_order`).

    Copies filed under different categories are refused: no rule can tell which label is right.
    """
    first: dict[str, Row] = {}
    dropped = []
    for row, digest in sorted(extracted, key=lambda pair: _keeping_order(pair[0])):
        kept = first.setdefault(digest, row)
        if kept is row:
            continue
        if kept["category"] != row["category"]:
            raise ImgclsError(
                f"extract: {kept['source_file']} ({kept['category']}) and {row['source_file']} ({row['category']}) "
                "are the same image under two labels; delete the wrong copy or fix its label"
            )
        dropped.append({**row, "same_as": kept["source_file"]})
    kept_ids = {id(row) for row in first.values()}
    return [row for row, _ in extracted if id(row) in kept_ids], dropped


def _with_duplicates(
    removed: Mapping[str, Mapping[str, int]], duplicates: Sequence[Mapping[str, object]]
) -> dict[str, Counter[str]]:
    counts = {name: Counter(rules) for name, rules in removed.items()}
    for row in duplicates:
        counts.setdefault(str(row["category"]), Counter())["duplicate"] += 1
    return counts


def selection_table(
    records: Sequence[Selected],
    removed: Mapping[str, Mapping[str, int]],
    bad: Sequence[BadImage],
    kept: Sequence[Mapping[str, object]],
) -> list[dict[str, object]]:
    """One row per category: the images found, how many each rule removed, and how many were kept."""
    category_of = {r.image_id: r.category for r in records}
    counts = {name: Counter(rules) for name, rules in removed.items()}
    for record in records:
        counts.setdefault(record.category, Counter())
    for image in bad:
        counts[category_of[image.image_id]][image.rule] += 1
    for row in kept:
        counts[str(row["category"])]["kept"] += 1
    return [
        {
            "category": name,
            "found": sum(c[rule] for rule in (*RULES, "kept")),
            **{rule: c[rule] for rule in RULES},
            "kept": c["kept"],
        }
        for name, c in counts.items()
    ]


def selection_summary(selection: Sequence[Mapping[str, object]]) -> list[str]:
    """'cat: 6 of 11 kept; crowd removed 1, ...' for each category."""
    lines = []
    for row in selection:
        why = describe_removed(row)
        lines.append(f"{row['category']}: {row['kept']} of {row['found']} kept" + (f"; {why}" if why else ""))
    return lines


def _check_left(selection: Sequence[Mapping[str, object]]) -> None:
    """Refuse to finish with a category that lost every image, naming the rules that removed them."""
    require_eligible(
        {str(row["category"]): range(int(row["kept"])) for row in selection},
        {str(row["category"]): row for row in selection},
        "usable images left",
        "restore those files (extract.on_bad_image: fail lists them)",
    )


def _check_bad(bad: Sequence[BadImage], total: int, on_bad_image: str, max_bad_fraction: float) -> None:
    if not bad:
        return
    listing = "\n  ".join(f"{b.source_name}: {b.reason}" for b in bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
    if on_bad_image == "fail":
        raise ImgclsError(f"extract.on_bad_image is 'fail' and {len(bad)} image(s) are unusable:\n  {listing}")
    fraction = len(bad) / max(total, 1)
    if fraction > max_bad_fraction:
        raise ImgclsError(
            f"extract.max_bad_fraction: {len(bad)} of {total} images ({fraction:.1%}) are unusable, "
            f"more than the allowed {max_bad_fraction:.1%}:\n  {listing}"
        )


def fetch_missing(
    records: Sequence[Selected],
    images_dir: Path,
    workers: int,
    timeout: float,
    retries: int,
    allowed_hosts: Collection[str],
) -> list[BadImage]:
    """Download the selected images into `images_dir` from their `coco_url`; failures come back as bad images."""
    without_url = [r for r in records if not r.url]
    if without_url:
        raise ImgclsError(
            f"extract.download: image {without_url[0].image_id} ({without_url[0].source_name}) has no coco_url in the "
            f"annotation file"
        )
    wanted = [RemoteImage(r.source_name, str(r.url), int(r.width or 0), int(r.height or 0)) for r in records]
    failures = download_images(
        wanted, images_dir, workers=workers, timeout=timeout, retries=retries, allowed_hosts=allowed_hosts
    )
    id_of = {r.source_name: r.image_id for r in records}
    return [
        BadImage(id_of[f.file_name], f.file_name, f"download failed: {f.reason}", "download_failed") for f in failures
    ]
