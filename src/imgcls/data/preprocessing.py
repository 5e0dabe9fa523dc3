"""What the normalize stage did to every image: recorded beside the images, so a model's recipe takes it from the
data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgcls.core.atomic import read_json, write_json
from imgcls.core.errors import ImgclsError

PREPROCESSING_FILE = "preprocessing.json"


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes a model's (side_px, side_px, 3) uint8 RGB input, before channel normalisation."""

    side_px: int
    resize: Literal["pad", "stretch"]

    def write(self, folder: Path) -> None:
        write_json(folder / PREPROCESSING_FILE, {"side_px": self.side_px, "resize": self.resize})

    @classmethod
    def read(cls, folder: Path) -> Preprocessing:
        """What the normalize stage did to the images in `folder` (its own output or the split stage's)."""
        path = folder / PREPROCESSING_FILE
        if not path.is_file():
            raise ImgclsError(f"{path}: not found; run `dvc repro` (the normalize and split stages write it)")
        plain = read_json(path)
        if (
            not isinstance(plain, dict)
            or set(plain) != {"side_px", "resize"}
            or plain["resize"] not in ("pad", "stretch")
        ):
            raise ImgclsError(f"{path}: expected {{'side_px': <int>, 'resize': 'pad' | 'stretch'}}, got {plain!r}")
        return cls(int(plain["side_px"]), plain["resize"])
