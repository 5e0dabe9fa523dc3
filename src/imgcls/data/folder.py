"""Image-folder datasets: `<root>/<class>/<image>` (torchvision's ImageFolder), or pre-split as
`<root>/<split>/<class>/<image>`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from imgcls.core.errors import ImgclsError, did_you_mean
from imgcls.data.coco import Removed, Selected, require_eligible, resolves_inside, sample_per_category

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_FOLDERS = ("train", "val", "test")


def _file_rule(path: Path, resolved_root: Path) -> str | None:
    """The rule keeping a class folder's file out of its class (None: an image to read); refuses links out of the
    root."""
    # Thumbnails, macOS `._` resource forks and .DS_Store are metadata, not pictures of the class.
    if path.name.startswith("."):
        return "hidden"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "unsupported_extension"
    if not resolves_inside(path, resolved_root):
        raise ImgclsError(
            f"extract.images: {path} resolves outside extract.images ({resolved_root}) through a symlink; "
            "nothing outside that folder is read"
        )
    if not path.is_file():
        return "missing_file"  # a dangling symlink
    return None


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def given_splits(root: Path) -> tuple[str, ...]:
    """The split folders of a pre-split dataset, in train, val, test order; () for a `<root>/<class>/` dataset."""
    present = _subfolders(root)
    splits = tuple(s for s in SPLIT_FOLDERS if s in present)
    others = [name for name in present if name not in SPLIT_FOLDERS]
    if splits and others:
        raise ImgclsError(
            f"extract.images: {root} mixes split folders ({', '.join(splits)}) with other folders "
            f"({', '.join(others)}); "
            f"use either <root>/<class>/<image> or <root>/<split>/<class>/<image> with only "
            f"{', '.join(SPLIT_FOLDERS)} as splits"
        )
    return splits


def _class_images(folder: Path, resolved_root: Path, removed: Counter[str]) -> list[Path]:
    """A class folder's image files, sorted; counts into `removed` the files each rule leaves out."""
    images = []
    for path in sorted(p for p in folder.iterdir() if not p.is_dir()):
        rule = _file_rule(path, resolved_root)
        if rule is None:
            images.append(path)
        else:
            removed[rule] += 1
    return images


def scan_folder(root: Path, categories: Sequence[str]) -> tuple[dict[str, dict[str, list[Path]]], Removed]:
    """Per chosen class and given split ('' without split folders) the image files, sorted, and per class what each
    rule left out."""
    if not root.is_dir():
        raise ImgclsError(f"extract.images: folder not found: {root}")
    # A class is in the dataset when any split has a folder for it; the split stage checks each split has it.
    splits = given_splits(root) or ("",)
    present = sorted({name for split in splits for name in _subfolders(root / split)})
    missing = [c for c in categories if c not in present]
    if missing:
        hints = [f"'{m}'" + (f" ({close})" if (close := did_you_mean(m, present)) else "") for m in missing]
        where = ", ".join(str(root / split) for split in splits)
        raise ImgclsError(
            f"extract.categories: no class folder for {'; '.join(hints)} in {where}. Available: {', '.join(present)}"
        )
    resolved_root = root.resolve()
    found: dict[str, dict[str, list[Path]]] = {}
    removed: Removed = {}
    for name in categories:
        removed[name] = Counter()
        found[name] = {
            split: _class_images(root / split / name, resolved_root, removed[name])
            for split in splits
            if (root / split / name).is_dir()
        }
    require_eligible(
        {name: [path for paths in by_split.values() for path in paths] for name, by_split in found.items()},
        removed,
        f"images in the class folder under {root}",
        f"images need a {'/'.join(IMAGE_SUFFIXES)} name not starting with '.'",
    )
    return found, removed


def select_from_folder(
    root: Path, categories: Sequence[str], per_category: int | None, seed: int
) -> tuple[list[Selected], Removed, dict[int, str]]:
    """Number the files 1..N in (class, given split, file name) order and draw per category.

    Also returns what each rule removed and each selected image's given split ('' without split folders).
    """
    found, removed = scan_folder(root, categories)
    paths: dict[int, Path] = {}
    split_of: dict[int, str] = {}
    ids: dict[str, dict[str, list[int]]] = {}
    for name in categories:
        ids[name] = {}
        for split, files in found[name].items():
            ids[name][split] = []
            for path in files:
                image_id = len(paths) + 1
                paths[image_id], split_of[image_id] = path, split
                ids[name][split].append(image_id)
    sampled = sample_per_category(ids, per_category, seed, removed)
    for name, chosen in sampled.items():
        removed[name]["not_sampled"] = sum(map(len, ids[name].values())) - len(chosen)
    records = [
        Selected(image_id, name, paths[image_id], paths[image_id].relative_to(root).as_posix())
        for name, chosen in sampled.items()
        for image_id in chosen
    ]
    return sorted(records, key=lambda r: r.image_id), removed, {r.image_id: split_of[r.image_id] for r in records}
