"""The normalize stage's work: every image to exactly side_px x side_px, RGB, 8-bit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imgcls.core.atomic import atomic_dir
from imgcls.data.archive import ARCHIVE, ArchiveReader, read_archive, write_archive
from imgcls.data.images import decode_bytes, encode_png, md5_of, to_rgb8, to_square
from imgcls.data.parallel import imap_images
from imgcls.data.preprocessing import Preprocessing
from imgcls.manifest import read_csv, write_csv

MANIFEST_COLUMNS = ("id", "category", "file", "md5", "given_split")


def _normalize_one(
    row: dict[str, str], extracted: ArchiveReader, side_px: int, resize: Literal["pad", "stretch"]
) -> tuple[dict[str, object], bytes]:
    """The image's manifest row and PNG bytes."""
    pixels, _ = decode_bytes(extracted.read(row["file"]), extracted.path / row["file"])
    png = encode_png(to_square(to_rgb8(pixels), side_px, resize), rgb=True)
    out_row = {"id": row["id"], "category": row["category"], "file": f"images/{row['id']}.png", "md5": md5_of(png)}
    return {**out_row, "given_split": row["given_split"]}, png


def normalize_images(extracted_dir: Path, out_dir: Path, side_px: int, resize: Literal["pad", "stretch"]) -> int:
    """Write `out_dir/images.zip` (viewable `images/<id>.png`), `out_dir/manifest.csv` and what was done to them;
    return the count."""
    rows = read_csv(extracted_dir / "manifest.csv", ("id", "category", "file", "given_split"))
    out_rows = []
    with read_archive(extracted_dir / ARCHIVE) as extracted, atomic_dir(out_dir) as tmp:
        with write_archive(tmp / ARCHIVE) as archive:
            results = imap_images(lambda r: _normalize_one(r, extracted, side_px, resize), rows, desc="normalize")
            for out_row, png in results:
                archive.add(str(out_row["file"]), png)
                out_rows.append(out_row)
        write_csv(tmp / "manifest.csv", out_rows, MANIFEST_COLUMNS)
        Preprocessing(side_px, resize).write(tmp)
    return len(out_rows)
