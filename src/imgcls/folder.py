"""Image-folder datasets: `<root>/<class>/<image>`, the layout of course exercises and torchvision's ImageFolder."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from imgcls.coco import Selected, sample_per_category
from imgcls.errors import ImgclsError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def scan_folder(root: Path, categories: Sequence[str]) -> dict[str, list[Path]]:
    """The image files of each chosen class folder, sorted; symlinks leading outside `root` are ignored."""
    if not root.is_dir():
        raise ImgclsError(f"extract.images: folder not found: {root}")
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [c for c in categories if c not in present]
    if missing:
        hints = [f"'{m}'" + (f" (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(m, present, n=1)) else "") for m in missing]
        raise ImgclsError(f"extract.categories: no class folder for {'; '.join(hints)} in {root}. Available: {', '.join(present)}")
    resolved_root = root.resolve()
    found = {}
    for name in categories:
        files = sorted(
            p for p in (root / name).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve().is_relative_to(resolved_root)
        )
        if not files:
            raise ImgclsError(f"extract.categories: folder {root / name} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        found[name] = files
    return found


def select_from_folder(root: Path, categories: Sequence[str], per_category: int | None, seed: int) -> list[Selected]:
    """Number the files 1..N in (class, file name) order, then draw per category as for COCO."""
    found = scan_folder(root, categories)
    paths: dict[int, Path] = {}
    ids: dict[str, list[int]] = {}
    for name in categories:
        ids[name] = []
        for path in found[name]:
            paths[len(paths) + 1] = path
            ids[name].append(len(paths))
    sampled = sample_per_category(ids, per_category, seed)
    records = [
        Selected(image_id, name, paths[image_id], paths[image_id].relative_to(root).as_posix())
        for name, chosen in sampled.items()
        for image_id in chosen
    ]
    return sorted(records, key=lambda r: r.image_id)
