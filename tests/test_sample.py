import json
from collections import Counter

import cv2
import numpy as np
import pytest

from imgcls.core.errors import ImgclsError
from imgcls.data.sample import DIGIT_NAMES, build_sample, write_sample


@pytest.fixture(scope="module")
def sample():
    return build_sample(seed=0, scarce_category="eight", scarce_fraction=0.25)


def test_looks_like_a_coco_instances_file(sample):
    coco, files = sample
    assert {"id", "file_name", "width", "height"} <= set(coco["images"][0])
    assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd"} <= set(coco["annotations"][0])
    ids = [c["id"] for c in coco["categories"]]
    assert [c["name"] for c in coco["categories"]] == list(DIGIT_NAMES)
    assert ids != list(range(1, len(ids) + 1)), "category ids must have gaps, like COCO's"
    for image in coco["images"]:
        pixels = files[image["file_name"]]
        assert pixels.shape[:2] == (image["height"], image["width"])


def test_sizes_and_channel_layouts_vary(sample):
    coco, files = sample
    sides = [s for im in coco["images"] for s in (im["width"], im["height"])]
    assert min(sides) < 32 and max(sides) > 80
    assert sum(im["width"] != im["height"] for im in coco["images"]) > len(coco["images"]) / 2
    layouts = Counter((p.dtype.name, p.shape[2] if p.ndim == 3 else 1) for p in files.values())
    assert {("uint8", 1), ("uint8", 3), ("uint8", 4), ("uint16", 1)} <= set(layouts)
    rgba = next(p for p in files.values() if p.ndim == 3 and p.shape[2] == 4)
    assert rgba[..., 3].min() == 0, "RGBA images need real transparency"


def test_two_category_images_crowds_and_a_scarce_class(sample):
    coco, _ = sample
    per_image = Counter()
    categories_of = {}
    for ann in coco["annotations"]:
        if not ann["iscrowd"]:
            categories_of.setdefault(ann["image_id"], set()).add(ann["category_id"])
        per_image[ann["iscrowd"]] += 1
    assert sum(len(c) == 2 for c in categories_of.values()) > 10
    assert per_image[1] > 5
    counts = Counter(a["category_id"] for a in coco["annotations"] if not a["iscrowd"])
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    scarce = min(counts, key=counts.get)
    assert name_of[scarce] == "eight" and counts[scarce] < 0.5 * np.median(list(counts.values()))


def test_deterministic_from_seed(sample):
    again, again_files = build_sample(seed=0, scarce_category="eight", scarce_fraction=0.25)
    other, _ = build_sample(seed=1, scarce_category="eight", scarce_fraction=0.25)
    assert again == sample[0] and other != sample[0]
    assert all((again_files[k] == v).all() for k, v in sample[1].items())


def test_written_files_round_trip(tmp_path, sample):
    coco, files = sample
    small = {"images": coco["images"][:20], "annotations": [], "categories": coco["categories"]}
    write_sample(tmp_path / "sample", small, {im["file_name"]: files[im["file_name"]] for im in small["images"]})
    assert json.loads((tmp_path / "sample" / "annotations.json").read_text()) == small
    for image in small["images"]:
        decoded = cv2.imread(str(tmp_path / "sample" / "images" / image["file_name"]), cv2.IMREAD_UNCHANGED)
        assert (decoded == files[image["file_name"]]).all()


def test_unknown_scarce_category_is_named():
    with pytest.raises(ImgclsError, match=r"sample\.scarce_category: 'ate'"):
        build_sample(seed=0, scarce_category="ate", scarce_fraction=0.5)
