"""Train/val-only splits and fixed train/val counts, from params.yaml through the real split stage."""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
import yaml

from conftest import run_stage_in_process
from imgcls.core.errors import ImgclsError
from imgcls.core.params import parse_section
from imgcls.data.archive import ARCHIVE, write_archive
from imgcls.data.images import encode_png
from imgcls.data.packed import load_split
from imgcls.data.preprocessing import Preprocessing

CLASSES = ["ants", "bees"]


@pytest.mark.parametrize(
    ("split", "parsed"),
    [
        ({"fractions": [0.8, 0.2, 0.0]}, ("fractions", (0.8, 0.2, 0.0))),
        ({"per_class": [8, 2]}, ("per_class", (8, 2))),
        ({"per_class": [8, 2, 0]}, ("per_class", (8, 2, 0))),
    ],
)
def test_train_val_only_and_two_counts_are_valid_params(split, parsed):
    key, value = parsed
    assert getattr(parse_section("split", split), key) == value


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            {"per_class": [8]},
            r"split\.per_class: per_class must be \[train, val\] \(the rest of each class to test\) "
            r"or \[train, val, test\]",
        ),
        ({"per_class": [8, 2, 2, 2]}, r"split\.per_class: per_class must be \[train, val\]"),
        ({"per_class": [8, 0]}, r"split\.per_class: every per-class count must be > 0, but test may be 0"),
        ({"per_class": [8, 2, -1]}, r"split\.per_class: every per-class count must be > 0, but test may be 0"),
        ({"fractions": [0.8, 0.0, 0.2]}, r"split\.fractions: every fraction must be > 0, but test may be 0"),
    ],
    ids=["one count", "four counts", "no val count", "negative test count", "no val share"],
)
def test_bad_train_val_layouts_name_the_key_and_what_is_valid(split, message):
    with pytest.raises(ImgclsError, match=message):
        parse_section("split", split)


def normalized_folder(root: Path, per_class: int) -> Path:
    """A normalize stage's output: `per_class` distinct 8x8 PNGs of each class and their manifest."""
    root.mkdir(parents=True)
    rows = ["id,category,file,md5,given_split"]
    with write_archive(root / ARCHIVE) as archive:
        for index in range(per_class * len(CLASSES)):
            archive.add(f"images/{index}.png", encode_png(np.full((8, 8, 3), index, np.uint8)))
            rows.append(f"{index},{CLASSES[index % len(CLASSES)]},images/{index}.png,,")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    Preprocessing(8, "pad").write(root)
    return root


def run_split(root: Path, split: dict) -> CompletedProcess[str]:
    params = {"extract": {"annotations": "a.json", "images": "images", "categories": CLASSES}, "split": split}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return run_stage_in_process(
        "split",
        root / "params.yaml",
        "--normalized",
        normalized_folder(root / "normalized", 15),
        "--out",
        root / "processed",
        "--near-duplicates",
        root / "near_duplicates.csv",
    )


@pytest.mark.parametrize("split", [{"fractions": [0.8, 0.2, 0.0]}, {"per_class": [12, 3, 0]}])
def test_the_stage_without_a_test_split_puts_val_in_test_and_says_so(tmp_path, split):
    result = run_split(tmp_path, split)
    assert result.returncode == 0, result.stderr
    assert "split: train 24, val 6 ->" in result.stdout
    assert "no test split: evaluate scores the val split" in result.stdout
    # Flat grey images differ only in their DC term, so pHash tells none apart: every train x val pair is near.
    assert "split: 144 near-duplicate pair(s) across splits" in result.stdout
    assert len((tmp_path / "near_duplicates.csv").read_text().splitlines()) == 1 + 144
    train, val, test = (load_split(tmp_path / "processed" / name) for name in ("train", "val", "test"))
    assert (test.ids == val.ids).all() and not set(train.ids.tolist()) & set(val.ids.tolist())


def test_the_stage_with_two_counts_sends_the_rest_to_test(tmp_path):
    result = run_split(tmp_path, {"per_class": [10, 3]})
    assert result.returncode == 0, result.stderr
    assert "split: train 20, val 6, test 4 ->" in result.stdout and "no test split" not in result.stdout
