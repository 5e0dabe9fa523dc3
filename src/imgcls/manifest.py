"""CSV manifests that travel between stages, read and written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from imgcls.core.atomic import write_text
from imgcls.core.errors import ImgclsError


def write_csv(
    path: Path,
    rows: Iterable[Mapping[str, object]],
    columns: Sequence[str],
    extrasaction: Literal["raise", "ignore"] = "raise",
) -> None:
    """`extrasaction="ignore"` leaves keys outside `columns` out; by default they are a bug, and raise."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction=extrasaction)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Read a manifest, failing clearly if a column another stage relies on is missing."""
    if not path.is_file():
        raise ImgclsError(f"{path}: manifest not found; run the stage that writes it first")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ImgclsError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
        return list(reader)
