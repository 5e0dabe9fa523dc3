"""The extract stage's work: decode the selected images and shrink them to the working size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from imgcls.atomic import atomic_dir
from imgcls.coco import Selected
from imgcls.errors import ImgclsError
from imgcls.images import fit_within, read_image, write_png
from imgcls.manifest import write_csv

MANIFEST_COLUMNS = ("id", "category", "file", "source_file", "width", "height")


def safe_source(images_dir: Path, file_name: str) -> Path:
    """Resolve an annotation's file_name inside `images_dir`, refusing anything that could escape it."""
    if (
        not file_name
        or PurePosixPath(file_name).is_absolute()
        or PureWindowsPath(file_name).is_absolute()
        or "/" in file_name
        or "\\" in file_name
        or file_name in (".", "..")
    ):
        raise ImgclsError(
            f"extract.annotations: file_name {file_name!r} must be a plain file name inside extract.images "
            "(no absolute paths, folders or '..')"
        )
    return images_dir / file_name


def _extract_one(record: Selected, images_dir: Path, out_images: Path, size: int) -> dict[str, object]:
    source = safe_source(images_dir, record.file_name)
    pixels = fit_within(read_image(source), size)
    file = f"{record.image_id}.png"
    write_png(out_images / file, pixels)
    return {
        "id": record.image_id,
        "category": record.category,
        "file": f"images/{file}",
        "source_file": record.file_name,
        "width": record.width,
        "height": record.height,
    }


def extract_images(records: Sequence[Selected], images_dir: Path, out_dir: Path, size: int) -> int:
    """Write `out_dir/images/<id>.png` and `out_dir/manifest.csv`; return the image count.

    Decoding and resizing run on all cores: OpenCV releases the GIL, so threads suffice.
    """
    with atomic_dir(out_dir) as tmp:
        out_images = tmp / "images"
        out_images.mkdir()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            rows = list(
                tqdm(
                    pool.map(lambda r: _extract_one(r, images_dir, out_images, size), records),
                    total=len(records),
                    desc="extract",
                    unit="img",
                )
            )
        write_csv(tmp / "manifest.csv", rows, MANIFEST_COLUMNS)
    return len(rows)
