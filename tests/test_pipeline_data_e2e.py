"""End to end: the real `dvc repro` runs the data stages in a fresh git + DVC repository."""

import csv
from collections import Counter

import numpy as np
import pytest

DATA_STAGES = ("sample", "extract", "normalize", "split", "augment")
pytestmark = pytest.mark.e2e


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_data_stages_produce_clean_balanced_leak_free_splits(repo):
    repo.set_params({"extract": {"categories": ["one", "three", "eight"], "side_px": 24}})
    repo.commit("three classes at 24 px")
    repo.run("dvc", "repro", *DATA_STAGES)

    root = repo.root
    extracted = read_rows(root / "data/extracted/manifest.csv")
    assert {r["category"] for r in extracted} == {"one", "three", "eight"}
    assert all(int(r["width"]) > 0 and int(r["height"]) > 0 for r in extracted)

    splits = read_rows(root / "data/processed/splits.csv")
    split_of = {}
    for row in splits:
        assert row["id"] not in split_of, f"image {row['id']} is in two splits"
        split_of[row["id"]] = row["split"]
    for split in ("train", "val", "test"):
        assert {r["label"] for r in splits if r["split"] == split} == {"one", "three", "eight"}
        images = np.load(root / f"data/processed/{split}/images.npy", mmap_mode="r")
        ids = np.load(root / f"data/processed/{split}/ids.npy")
        assert images.dtype == np.uint8 and images.shape[1:] == (24, 24, 3)
        assert sorted(map(str, ids.tolist())) == sorted(i for i, s in split_of.items() if s == split)

    augmented = read_rows(root / "data/processed/augmented.csv")
    counts = Counter(r["label"] for r in augmented)
    assert len(set(counts.values())) == 1, counts
    train_ids = {i for i, s in split_of.items() if s == "train"}
    assert all(r["source_id"] in train_ids for r in augmented)
    assert sum(r["id"] != r["source_id"] for r in augmented) > 0
    for figure in ("augment_preview.png", "class_samples.png"):
        assert (root / "metrics/dataset" / figure).stat().st_size > 1000

    rerun = repo.run("dvc", "repro", *DATA_STAGES)
    assert "Running stage" not in rerun.stdout, rerun.stdout
    assert "up to date" in repo.run("dvc", "status", *DATA_STAGES).stdout


def test_bad_params_fail_before_any_output_is_written(repo):
    repo.set_params({"extract": {"per_categroy": 5}})
    result = repo.run("dvc", "repro", "extract", check=False)
    assert result.returncode != 0
    assert "extract.per_categroy: unknown key; did you mean 'per_category'?" in result.stderr + result.stdout
    assert not (repo.root / "data/extracted").exists()
