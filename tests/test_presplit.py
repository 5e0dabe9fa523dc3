"""Pre-split image folders (`<root>/train/<class>/`, `<root>/val/<class>/`).

Through the real extract, normalize and split stages.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from subprocess import CompletedProcess

import cv2
import numpy as np
import pytest

from conftest import run_stage_in_process, write_params
from imgcls.core.errors import ImgclsError
from imgcls.core.params import parse_section
from imgcls.data.splitting import assign_given

# The classic hymenoptera layout, scaled down: uneven train and val folders per class.
TRAIN_VAL = {("train", "ants"): 20, ("train", "bees"): 21, ("val", "ants"): 8, ("val", "bees"): 9}


def write_images(folder: Path, count: int, start: int) -> None:
    """`count` distinct real images, alternating JPEG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.full((24 + index % 5, 32, 3), (start + index) % 250, np.uint8)
        assert cv2.imwrite(str(folder / f"{start + index:03d}.{'jpg' if index % 2 else 'png'}"), pixels)


def presplit_folder(root: Path, counts: dict[tuple[str, str], int] = TRAIN_VAL) -> Path:
    start = 0
    for (split, name), count in counts.items():
        write_images(root / split / name, count, start)
        start += count
    return root


def folder_params(images: Path, split: dict | None = None, **extract: object) -> dict:
    return {
        "extract": {
            "source": "folder",
            "annotations": str(images),
            "images": str(images),
            "categories": ["ants", "bees"],
            "side_px": 16,
            **extract,
        },
        "split": split or {},
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def extract_and_normalize(root: Path, params: dict) -> None:
    extracted = run_stage_in_process("extract", write_params(root, params), "--out", str(root / "extracted"))
    assert extracted.returncode == 0, extracted.stderr
    normalized = run_stage_in_process(
        "normalize",
        write_params(root, params),
        "--extracted",
        str(root / "extracted"),
        "--out",
        str(root / "normalized"),
    )
    assert normalized.returncode == 0, normalized.stderr


def split(root: Path, params: dict, out: str) -> CompletedProcess[str]:
    return run_stage_in_process(
        "split", write_params(root, params), "--normalized", root / "normalized", "--out", root / out,
        "--near-duplicates", root / f"{out}_near_duplicates.csv",
    )  # fmt: skip


@pytest.fixture(scope="module")
def hymenoptera(tmp_path_factory) -> tuple[Path, dict]:
    """A pre-split folder, extracted and normalized once for the split tests."""
    root = tmp_path_factory.mktemp("presplit")
    params = folder_params(presplit_folder(root / "hymenoptera"))
    extract_and_normalize(root, params)
    return root, params


def folder_of(root: Path) -> dict[str, str]:
    """Each extracted image id's given folder, read from its source path rather than the manifest column under test."""
    return {row["id"]: row["source_file"].split("/")[0] for row in read_rows(root / "extracted" / "manifest.csv")}


def test_manifests_carry_each_image_given_split(hymenoptera):
    root, _ = hymenoptera
    extracted = read_rows(root / "extracted" / "manifest.csv")
    assert len(extracted) == sum(TRAIN_VAL.values())
    assert all(row["given_split"] == row["source_file"].split("/")[0] for row in extracted)
    assert Counter((row["given_split"], row["category"]) for row in extracted) == TRAIN_VAL
    normalized = {row["id"]: row["given_split"] for row in read_rows(root / "normalized" / "manifest.csv")}
    assert normalized == {row["id"]: row["given_split"] for row in extracted}


def test_given_keeps_train_turns_val_into_test_and_draws_val_from_train(hymenoptera):
    root, params = hymenoptera
    result = split(root, {**params, "split": {"method": "given"}}, "given")
    assert result.returncode == 0, result.stderr
    assert "split: kept the given train/val; val became test; val drawn from train (11%)" in result.stdout

    rows = read_rows(root / "given" / "splits.csv")
    assert len({row["id"] for row in rows}) == len(rows) == sum(TRAIN_VAL.values()), "every image in exactly one split"
    folder = folder_of(root)
    members = {name: {row["id"] for row in rows if row["split"] == name} for name in ("train", "val", "test")}
    assert members["test"] == {i for i, f in folder.items() if f == "val"}
    assert all(folder[i] == "train" for i in members["train"] | members["val"])
    # 0.1 / (0.8 + 0.1) of the 41 given train images, rounded up (scikit-learn), shared out by class
    assert Counter(row["label"] for row in rows if row["split"] == "val") == {"ants": 2, "bees": 3}
    for name, ids in members.items():
        assert {str(i) for i in np.load(root / "given" / name / "ids.npy").tolist()} == ids


def test_stratified_resplits_across_the_given_folders(hymenoptera):
    root, params = hymenoptera
    result = split(root, {**params, "split": {"method": "stratified", "fractions": [0.6, 0.2, 0.2]}}, "stratified")
    assert result.returncode == 0, result.stderr
    rows = read_rows(root / "stratified" / "splits.csv")
    folder = folder_of(root)
    assert Counter(row["split"] for row in rows) == {"train": 34, "val": 12, "test": 12}
    assert {folder[row["id"]] for row in rows if row["split"] == "test"} == {"train", "val"}
    default = split(root, {**params, "split": {"fractions": [0.6, 0.2, 0.2]}}, "default")
    assert default.returncode == 0, default.stderr
    assert (root / "default" / "splits.csv").read_bytes() == (root / "stratified" / "splits.csv").read_bytes()


def test_per_category_samples_each_given_split_in_proportion(tmp_path):
    images = presplit_folder(tmp_path / "hymenoptera")
    (images / "train" / "ants" / ".thumb.png").write_bytes(b"")
    (images / "val" / "bees" / "imageNotFound.gif").write_bytes(b"GIF89a")
    params = folder_params(images, per_category=14)
    result = run_stage_in_process("extract", write_params(tmp_path, params), "--out", str(tmp_path / "extracted"))
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "extracted" / "manifest.csv")
    # ants 20 + 8 -> 10 + 4; bees 21 + 9 -> 9.8 + 4.2, the larger remainder rounding up -> 10 + 4
    assert Counter((row["given_split"], row["category"]) for row in rows) == {
        ("train", "ants"): 10,
        ("val", "ants"): 4,
        ("train", "bees"): 10,
        ("val", "bees"): 4,
    }
    selection = {row["category"]: row for row in read_rows(tmp_path / "extracted" / "selection.csv")}
    assert [selection["ants"][k] for k in ("found", "hidden", "not_sampled", "kept")] == ["29", "1", "14", "14"]
    assert [selection["bees"][k] for k in ("found", "unsupported_extension", "not_sampled", "kept")] == [
        "31",
        "1",
        "16",
        "14",
    ]
    assert (
        "pre-split dataset; each image's folder (train, val) is in the manifest's given_split column" in result.stdout
    )

    too_many = run_stage_in_process(
        "extract", write_params(tmp_path, folder_params(images, per_category=29)), "--out", str(tmp_path / "too_many")
    )
    assert (
        too_many.returncode != 0 and "extract.per_category: 29 asked but category 'ants' has only 28" in too_many.stderr
    )


def test_class_names_are_the_union_of_the_split_folders(tmp_path):
    images = presplit_folder(tmp_path / "hymenoptera", {**TRAIN_VAL, ("train", "wasps"): 3})
    result = run_stage_in_process(
        "extract",
        write_params(tmp_path, folder_params(images, categories=["ants", "wasp"])),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode != 0
    assert "'wasp' (did you mean 'wasps'?)" in result.stderr and "Available: ants, bees, wasps" in result.stderr

    params = folder_params(images, categories=["ants", "wasps"])
    extract_and_normalize(tmp_path, params)
    refused = split(tmp_path, {**params, "split": {"method": "given"}}, "processed")
    assert (
        refused.returncode != 0
        and "split.method" in refused.stderr
        and "val/ folder" in refused.stderr
        and "'wasps'" in refused.stderr
    )
    assert not (tmp_path / "processed").exists()


def test_a_root_mixing_split_and_class_folders_is_refused(tmp_path):
    images = presplit_folder(tmp_path / "hymenoptera")
    write_images(images / "ants", 2, 100)
    params = write_params(tmp_path, folder_params(images))
    result = run_stage_in_process("extract", params, "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "extract.images" in result.stderr and "split folders (train, val) with other folders (ants)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_given_on_data_without_given_splits_is_refused(tmp_path):
    images = tmp_path / "flowers"
    write_images(images / "ants", 10, 0)
    write_images(images / "bees", 10, 10)
    params = folder_params(images)
    extract_and_normalize(tmp_path, params)
    assert {row["given_split"] for row in read_rows(tmp_path / "normalized" / "manifest.csv")} == {""}
    result = split(tmp_path, {**params, "split": {"method": "given"}}, "processed")
    assert result.returncode != 0
    assert (
        "split.method: 'given' keeps a dataset's own train/ val/ test/ folders, but 20 of 20 images came from none"
        in result.stderr
    )
    assert "split.method: stratified" in result.stderr and not (tmp_path / "processed").exists()


def copy_images(source: Path, target: Path, count: int) -> list[str]:
    """Copy the first `count` images of `source` into `target` under other names.

    Return the copies' paths from the root.
    """
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in sorted(source.iterdir())[:count]:
        (target / f"copy_{path.name}").write_bytes(path.read_bytes())
        copies.append(f"{target.parent.name}/{target.name}/copy_{path.name}")
    return copies


def test_identical_images_in_two_given_splits_stay_in_train_only(tmp_path):
    images = presplit_folder(tmp_path / "hymenoptera")
    copies = copy_images(images / "train" / "ants", images / "val" / "ants", 5)
    params = folder_params(images)
    extract_and_normalize(tmp_path, params)
    selection = {row["category"]: row for row in read_rows(tmp_path / "extracted" / "selection.csv")}
    assert (selection["ants"]["duplicate"], selection["ants"]["kept"]) == ("5", "28")
    assert [row["source_file"] for row in read_rows(tmp_path / "extracted" / "duplicates.csv")] == copies
    assert split(tmp_path, {**params, "split": {"method": "given"}}, "processed").returncode == 0
    md5 = {row["id"]: row["md5"] for row in read_rows(tmp_path / "normalized" / "manifest.csv")}
    by_split = {name: set() for name in ("train", "val", "test")}
    for row in read_rows(tmp_path / "processed" / "splits.csv"):
        by_split[row["split"]].add(md5[row["id"]])
    assert not by_split["test"] & (by_split["train"] | by_split["val"]), "no picture in test is also in train or val"


def test_identical_images_under_two_labels_are_refused(tmp_path):
    images = presplit_folder(tmp_path / "hymenoptera")
    [copy] = copy_images(images / "train" / "ants", images / "val" / "bees", 1)
    params = write_params(tmp_path, folder_params(images))
    result = run_stage_in_process("extract", params, "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert f"train/ants/000.png (ants) and {copy} (bees) are the same image under two labels" in result.stderr


LABELS = np.array([0] * 12 + [1] * 12)


def test_given_train_val_test_is_kept_exactly():
    given = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    assignment, done = assign_given(LABELS, given * 2, ["a", "b"], (0.8, 0.1, 0.1), seed=0)
    assert assignment.tolist() == [{"train": 0, "val": 1, "test": 2}[g] for g in given * 2]
    assert done == "kept the given train/val/test"


def test_given_without_val_draws_it_from_train_only():
    given = np.array((["train"] * 10 + ["test"] * 2) * 2)
    assignment, done = assign_given(LABELS, given.tolist(), ["a", "b"], (0.6, 0.2, 0.2), seed=0)
    assert done == "kept the given train/test; val drawn from train (25%)"
    assert (assignment[given == "test"] == 2).all() and set(assignment[given == "train"].tolist()) == {0, 1}
    assert len(np.flatnonzero(assignment == 1)) == 5 and set(LABELS[assignment == 1].tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["train"] * 24, "needs a train/ folder and a val/ or test/ folder, but the dataset has only train/"),
        (["val"] * 12 + ["test"] * 12, "but the dataset has only val/, test/"),
        (["train"] * 23 + [""], "1 of 24 images came from none"),
        (
            ["train"] * 11 + ["val"] + ["train"] * 12,
            "keeps the dataset's val/ folder as it is, but it holds no 'b' images",
        ),
    ],
)
def test_given_splits_that_cannot_be_kept_are_refused(given, message):
    with pytest.raises(ImgclsError, match=rf"split\.method: .*{message}"):
        assign_given(LABELS, given, ["a", "b"], (0.8, 0.1, 0.1), seed=0)


def test_per_class_needs_stratified():
    with pytest.raises(ImgclsError, match="per_class re-splits every class, so it needs method: stratified"):
        parse_section("split", {"method": "given", "per_class": [8, 2, 2]})
