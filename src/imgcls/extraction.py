"""The extract stage's work: decode the selected images and shrink them to the working size."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgcls.atomic import atomic_dir
from imgcls.coco import Selected
from imgcls.download import RemoteImage, download_images
from imgcls.errors import ImgclsError
from imgcls.images import BadImageError, decode, fit_within, write_png
from imgcls.manifest import write_csv
from imgcls.parallel import map_images

MANIFEST_COLUMNS = ("id", "category", "file", "md5", "source_file", "width", "height")
BAD_IMAGE_COLUMNS = ("id", "source_file", "reason")
BAD_IMAGES_FILE = "bad_images.csv"


@dataclass(frozen=True)
class BadImage:
    image_id: int
    source_name: str
    reason: str


def _extract_one(record: Selected, out_images: Path, size: int) -> dict[str, object] | BadImage:
    expected = (record.width, record.height) if record.width is not None and record.height is not None else None
    try:
        pixels, (width, height) = decode(record.source, expected, target=size)
    except BadImageError as exc:
        return BadImage(record.image_id, record.source_name, str(exc))
    file = f"{record.image_id}.png"
    md5 = write_png(out_images / file, fit_within(pixels, size))
    return {
        "id": record.image_id,
        "category": record.category,
        "file": f"images/{file}",
        "md5": md5,
        "source_file": record.source_name,
        "width": width,
        "height": height,
    }


def extract_images(
    records: Sequence[Selected],
    out_dir: Path,
    size: int,
    on_bad_image: Literal["skip", "fail"] = "fail",
    max_bad_fraction: float = 0.0,
    known_bad: Sequence[BadImage] = (),
) -> tuple[int, list[BadImage]]:
    """Write `out_dir/images/<id>.png`, `manifest.csv` and `bad_images.csv`; return (kept, bad).

    Decoding and resizing run on all cores. Nothing is written unless the run succeeds as a whole.
    """
    known = {b.image_id for b in known_bad}
    todo = [r for r in records if r.image_id not in known]
    with atomic_dir(out_dir) as tmp:
        out_images = tmp / "images"
        out_images.mkdir()
        results = map_images(lambda r: _extract_one(r, out_images, size), todo, desc="extract")
        rows = [r for r in results if isinstance(r, dict)]
        bad = [*known_bad, *(r for r in results if isinstance(r, BadImage))]
        _check_bad(bad, len(records), on_bad_image, max_bad_fraction)
        write_csv(tmp / "manifest.csv", rows, MANIFEST_COLUMNS)
        write_csv(
            tmp / BAD_IMAGES_FILE,
            ({"id": b.image_id, "source_file": b.source_name, "reason": b.reason} for b in sorted(bad, key=lambda b: b.image_id)),
            BAD_IMAGE_COLUMNS,
        )
    return len(rows), bad


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
    records: Sequence[Selected], images_dir: Path, workers: int, timeout: float, retries: int, allowed_hosts: Collection[str]
) -> list[BadImage]:
    """Download the selected images into `images_dir` from their `coco_url`; failures come back as bad images."""
    without_url = [r for r in records if not r.url]
    if without_url:
        raise ImgclsError(
            f"extract.download: image {without_url[0].image_id} ({without_url[0].source_name}) has no coco_url in the annotation file"
        )
    wanted = [RemoteImage(r.source_name, str(r.url), int(r.width or 0), int(r.height or 0)) for r in records]
    failures = download_images(wanted, images_dir, workers=workers, timeout=timeout, retries=retries, allowed_hosts=allowed_hosts)
    id_of = {r.source_name: r.image_id for r in records}
    return [BadImage(id_of[f.file_name], f.file_name, f"download failed: {f.reason}") for f in failures]
