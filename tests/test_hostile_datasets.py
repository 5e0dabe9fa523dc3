"""Real-world dataset damage through the extract stage: refused with one line, or counted per rule, never hidden."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import cv2
import numpy as np
import pytest

from conftest import GOOD_PNG, CocoCase, assert_one_line_error, distinct_png, run_extract

GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


def selection(root: Path) -> dict[str, dict[str, int]]:
    with open(root / "out" / "selection.csv", newline="") as f:
        return {row.pop("category"): {k: int(v) for k, v in row.items()} for row in csv.DictReader(f)}


def assert_refused(result: CompletedProcess[str], root: Path, *messages: str) -> None:
    assert_one_line_error(result, *messages)
    assert not (root / "out").exists() and not list(root.glob(".out.*")), "nothing half-written"


class Coco(CocoCase):
    """The shared cat/dog COCO case, in skip mode, as extract's defaults have it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.extract = self.params["extract"]
        del self.extract["on_bad_image"]

    def run(self) -> CompletedProcess[str]:
        return self.run_extract()


def image_field(index: int, **values: object) -> Callable[[Coco], None]:
    return lambda c: c.coco["images"][index].update(values)


def add_category(category_id: int, name: str) -> Callable[[Coco], None]:
    return lambda c: c.coco["categories"].append({"id": category_id, "name": name})


def annotation_text(text: str) -> Callable[[Coco], None]:
    return lambda c: (c.root / "annotations.json").write_text(text)


def huge_id(c: Coco) -> None:
    c.coco["images"][0]["id"] = c.coco["annotations"][0]["image_id"] = 2**63


def id_of_5000_digits(c: Coco) -> None:
    c.coco["images"][0]["id"] = 0
    text = json.dumps(c.coco).replace('"id": 0,', '"id": 1' + "0" * 5000 + ",", 1)
    annotation_text(text)(c)


def symlink_out_of_images(c: Coco) -> None:
    (c.root / "secret.png").write_bytes(GOOD_PNG)
    (c.images / "0001.png").unlink()
    (c.images / "0001.png").symlink_to(c.root / "secret.png")


def no_clean_dog(c: Coco) -> None:
    """Every dog image also shows a person or is a crowd: the dog class is emptied by two rules."""
    c.coco["categories"].append({"id": 1, "name": "person"})
    for ann in c.coco["annotations"]:
        if ann["category_id"] == 5:
            if ann["image_id"] % 4 == 0:
                ann["iscrowd"] = 1
            else:
                c.coco["annotations"].append(
                    {"id": 1000 + ann["image_id"], "image_id": ann["image_id"], "category_id": 1, "iscrowd": 0}
                )


def dogs_missing(c: Coco) -> None:
    """Skip mode tolerates half the files missing, but the dog class is left with none."""
    c.extract.update(on_bad_image="skip", max_bad_fraction=0.6)
    for image in c.coco["images"]:
        if image["id"] % 2 == 0:
            (c.images / image["file_name"]).unlink()


REFUSED = {
    "duplicate image id": (image_field(1, id=1), ["image id 1 appears twice", "'0001.png'", "'0002.png'"]),
    "duplicate category id": (add_category(5, "hotdog"), ["category id 5 appears twice", "'dog'", "'hotdog'"]),
    "duplicate category name": (add_category(9, "dog"), ["category name 'dog' appears twice", "ids 5 and 9"]),
    "one file under two image ids": (
        image_field(3, file_name="0003.png"),
        ["file_name '0003.png' is listed under image ids 3 and 4"],
    ),
    "file_name symlinked out of images": (symlink_out_of_images, ["file_name '0001.png'", "outside extract.images"]),
    "image id beyond int64": (huge_id, ["images[0].id", str(2**63), "64-bit"]),
    "image id of 5000 digits": (id_of_5000_digits, ["annotations.json", "digits", "64-bit"]),
    "JSON nested too deep": (
        annotation_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ["annotations.json", "nested too deeply"],
    ),
    "class emptied by crowd and other categories": (
        no_clean_dog,
        ["no single-label images for 'dog'", "crowd removed 10", "other_categories removed 10"],
    ),
    "class emptied by missing files": (dogs_missing, ["no usable images left for 'dog'", "missing_file removed 20"]),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_coco_damage_is_refused(tmp_path, case):
    coco = Coco(tmp_path)
    damage, messages = REFUSED[case]
    damage(coco)
    assert_refused(coco.run(), tmp_path, *messages)


def test_bad_images_report_is_byte_identical_across_runs(tmp_path):
    coco = Coco(tmp_path)
    coco.extract.update(on_bad_image="skip", max_bad_fraction=0.1)
    (coco.images / "0001.png").write_bytes(b"plain text, not a picture")
    (coco.images / "0002.png").write_bytes(b"")
    reports = []
    for _ in range(2):
        assert (result := coco.run()).returncode == 0, result.stderr
        reports.append((tmp_path / "out" / "bad_images.csv").read_bytes())
    assert reports[0] == reports[1]
    assert b"0x" not in reports[0]


def test_symlinks_inside_the_images_folder_are_read(tmp_path):
    coco = Coco(tmp_path)
    store = coco.images / ".store"
    store.mkdir()
    (coco.images / "0001.png").rename(store / "one.png")
    (coco.images / "0001.png").symlink_to(Path(".store/one.png"))
    result = coco.run()
    assert result.returncode == 0, result.stderr
    assert selection(tmp_path)["cat"]["kept"] == 20


def write_jpeg(path: Path, value: int) -> None:
    assert cv2.imwrite(str(path), np.full((48, 64, 3), value, np.uint8))


def test_real_shaped_coco_counts_what_each_rule_removed(tmp_path):
    """COCO's own shape (info, licenses, polygons, RLE crowds, large sparse ids) with every kind of image."""
    images_dir = tmp_path / "train2017"
    images_dir.mkdir()
    person, cat, dog, horse = 1, 17, 18, 19
    # image id -> [(category, iscrowd)]; an empty list is an image without annotations.
    plan: dict[int, list[tuple[int, int]]] = {
        **{391895 + i: [(cat, 0)] for i in range(5)},
        391900: [(cat, 0), (cat, 0)],  # two cats: still one category
        391901: [(cat, 0), (cat, 1)],  # crowd
        391902: [(cat, 0), (person, 0)],  # another category
        391903: [(cat, 0), (dog, 0)],  # two chosen categories: counts for both
        391904: [(cat, 0)],  # file missing on disk
        391905: [(cat, 0)],  # file is not an image
        **{522418 + i: [(dog, 0)] for i in range(4)},
        522422: [(dog, 1)],  # a crowd alone
        522423: [(dog, 0), (person, 1)],  # crowd of another category: crowd, not other_categories
        **{184613 + i: [(horse, 0)] for i in range(3)},
        318219: [],
        318220: [],  # unannotated
        554625: [(person, 0)],
        554626: [(person, 0), (person, 1)],
    }
    coco: dict = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017, "date_created": "2017/09/01"},
        "licenses": [
            {
                "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
                "id": 1,
                "name": "Attribution-NonCommercial-ShareAlike License",
            }
        ],
        "images": [],
        "annotations": [],
        "categories": [
            {"supercategory": "person", "id": person, "name": "person"},
            {"supercategory": "animal", "id": cat, "name": "cat"},
            {"supercategory": "animal", "id": dog, "name": "dog"},
            {"supercategory": "animal", "id": horse, "name": "horse"},
        ],
    }
    for image_id, members in plan.items():
        name = f"{image_id:012d}.jpg"
        coco["images"].append(
            {
                "license": 1,
                "file_name": name,
                "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "height": 48,
                "width": 64,
                "date_captured": "2013-11-14 11:18:45",
                "flickr_url": "http://farm4.staticflickr.com/1/1.jpg",
                "id": image_id,
            }
        )
        if image_id == 391905:
            (images_dir / name).write_bytes(b"<html>403 Forbidden</html>")
        elif image_id != 391904:
            write_jpeg(images_dir / name, image_id % 250)
        for category_id, crowd in members:
            segmentation = (
                {"counts": [0, 12, 36, 12], "size": [48, 64]} if crowd else [[1.0, 1.0, 20.0, 1.0, 20.0, 20.0]]
            )
            coco["annotations"].append(
                {
                    "segmentation": segmentation,
                    "area": 180.5,
                    "iscrowd": crowd,
                    "image_id": image_id,
                    "bbox": [1.0, 1.0, 19.0, 19.0],
                    "category_id": category_id,
                    "id": 900100 + len(coco["annotations"]),
                }
            )
    (tmp_path / "instances_train2017.json").write_text(json.dumps(coco))
    extract = {
        "annotations": str(tmp_path / "instances_train2017.json"),
        "images": str(images_dir),
        "categories": ["cat", "dog", "horse"],
        "side_px": 16,
        "on_bad_image": "skip",
        "max_bad_fraction": 0.2,
    }
    result = run_extract(tmp_path, extract)
    assert result.returncode == 0, result.stderr

    zero = dict.fromkeys(
        (
            "hidden",
            "unsupported_extension",
            "crowd",
            "other_categories",
            "several_categories",
            "not_sampled",
            "missing_file",
            "download_failed",
            "unreadable",
            "duplicate",
        ),
        0,
    )
    assert selection(tmp_path) == {
        "cat": {
            **zero,
            "found": 11,
            "crowd": 1,
            "other_categories": 1,
            "several_categories": 1,
            "missing_file": 1,
            "unreadable": 1,
            "kept": 6,
        },
        "dog": {**zero, "found": 7, "crowd": 2, "several_categories": 1, "kept": 4},
        "horse": {**zero, "found": 3, "kept": 3},
    }
    assert (
        "cat: 6 of 11 kept; crowd removed 1, other_categories removed 1, several_categories removed 1, "
        "missing_file removed 1, unreadable removed 1" in result.stdout
    )
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        kept = {int(row["id"]): row["category"] for row in csv.DictReader(f)}
    assert kept == {
        **{391895 + i: "cat" for i in range(6)},
        **{522418 + i: "dog" for i in range(4)},
        **{184613 + i: "horse" for i in range(3)},
    }

    sampled = run_extract(tmp_path, {**extract, "categories": ["dog", "horse"], "per_category": 2})
    assert sampled.returncode == 0, sampled.stderr
    assert selection(tmp_path) == {
        "dog": {
            **zero,
            "found": 7,
            "crowd": 2,
            "other_categories": 1,
            "not_sampled": 2,
            "kept": 2,
        },  # cat is not chosen now
        "horse": {**zero, "found": 3, "not_sampled": 1, "kept": 2},
    }


def make_folder(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def folder_extract(root: Path, categories: list[str]) -> dict:
    return {
        "source": "folder",
        "annotations": str(root),
        "images": str(root),
        "categories": categories,
        "side_px": 16,
        "on_bad_image": "fail",
    }


def test_folder_hidden_and_unsupported_files_are_counted_not_read(tmp_path):
    root = tmp_path / "pets"
    make_folder(
        root,
        {
            "cat/a.png": distinct_png(1),
            "cat/b.png": distinct_png(2),
            "cat/.thumb.png": GOOD_PNG,
            "cat/._b.png": b"\x00\x05\x16\x07 AppleDouble",
            "cat/imageNotFound.gif": GIF,
            "cat/notes.txt": b"scraped from flickr",
            "dog/c.png": distinct_png(3),
            "dog/d.png": distinct_png(4),
        },
    )
    (root / "cat" / "gone.png").symlink_to(Path("../.pool/deleted.png"))
    result = run_extract(tmp_path, folder_extract(root, ["cat", "dog"]))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        assert sorted(row["source_file"] for row in csv.DictReader(f)) == [
            "cat/a.png",
            "cat/b.png",
            "dog/c.png",
            "dog/d.png",
        ]
    cat = selection(tmp_path)["cat"]
    assert (cat["found"], cat["hidden"], cat["unsupported_extension"], cat["missing_file"], cat["kept"]) == (
        7,
        2,
        2,
        1,
        2,
    )
    assert (
        "cat: 2 of 7 kept; hidden removed 2, unsupported_extension removed 2, missing_file removed 1" in result.stdout
    )


def test_folder_class_without_images_names_the_rules(tmp_path):
    root = tmp_path / "pets"
    make_folder(root, {"cat/a.png": GOOD_PNG, "dog/.c.png": GOOD_PNG, "dog/imageNotFound.gif": GIF})
    result = run_extract(tmp_path, folder_extract(root, ["cat", "dog"]))
    assert_refused(result, tmp_path, "dog", "hidden removed 1", "unsupported_extension removed 1")


def test_folder_of_symlinks_inside_the_root_is_read(tmp_path):
    root = tmp_path / "pets"
    make_folder(root, {f".pool/{n}.png": distinct_png(n) for n in (1, 2, 3)})
    for category, number in (("cat", 1), ("cat", 2), ("dog", 3)):
        (root / category).mkdir(exist_ok=True)
        (root / category / f"{number}.png").symlink_to(Path(f"../.pool/{number}.png"))
    result = run_extract(tmp_path, folder_extract(root, ["cat", "dog"]))
    assert result.returncode == 0, result.stderr
    assert {name: row["kept"] for name, row in selection(tmp_path).items()} == {"cat": 2, "dog": 1}


def test_folder_symlink_leading_outside_the_root_is_refused(tmp_path):
    root = tmp_path / "pets"
    make_folder(root, {"cat/a.png": distinct_png(1), "dog/b.png": distinct_png(2)})
    (tmp_path / "elsewhere.png").write_bytes(distinct_png(3))
    (root / "dog" / "c.png").symlink_to(tmp_path / "elsewhere.png")
    result = run_extract(tmp_path, folder_extract(root, ["cat", "dog"]))
    assert_refused(result, tmp_path, "dog/c.png", "outside extract.images")
