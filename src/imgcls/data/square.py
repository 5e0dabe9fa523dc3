"""The normalize stage's work: every image to exactly size x size, RGB, 8-bit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imgcls.atomic import atomic_dir
from imgcls.data.images import read_image, to_rgb8, to_square, write_png
from imgcls.manifest import read_csv, write_csv
from imgcls.data.parallel import map_images
from imgcls.data.preprocessing import Preprocessing

MANIFEST_COLUMNS = ("id", "category", "file", "md5", "given_split")


def normalize_images(extracted_dir: Path, out_dir: Path, size: int, resize: Literal["pad", "stretch"]) -> int:
    """Write viewable `out_dir/images/<id>.png`, `out_dir/manifest.csv` and what was done to them; return the image count."""
    rows = read_csv(extracted_dir / "manifest.csv", ("id", "category", "file", "given_split"))

    def normalize_one(row: dict[str, str], out_images: Path) -> dict[str, object]:
        rgb = to_square(to_rgb8(read_image(extracted_dir / row["file"])), size, resize)
        file = f"{row['id']}.png"
        md5 = write_png(out_images / file, rgb, rgb=True)
        return {"id": row["id"], "category": row["category"], "file": f"images/{file}", "md5": md5, "given_split": row["given_split"]}

    with atomic_dir(out_dir) as tmp:
        out_images = tmp / "images"
        out_images.mkdir()
        out_rows = map_images(lambda r: normalize_one(r, out_images), rows, desc="normalize")
        write_csv(tmp / "manifest.csv", out_rows, MANIFEST_COLUMNS)
        Preprocessing(size, resize).write(tmp)
    return len(out_rows)
