"""End to end: a trained model is rebuilt and fed from its checkpoint's recipe, never from today's params.yaml.

params.yaml edited after training, without retraining: evaluate and the report refuse in one line
naming the key and both values; `imgcls predict` keeps predicting as the model was trained and says
once that params.yaml differs.
"""

from __future__ import annotations

import csv
import json
import zipfile

import pytest

from conftest import Repo, run_in_process
from imgcls.commands.cli import main

pytestmark = pytest.mark.e2e


def split_images(repo: Repo) -> tuple[list[str], list[str]]:
    """The test split's normalized images unpacked (a re-run extract may drop them), and evaluate's class for each."""
    with open(repo.root / "metrics/predictions/net1.csv", newline="") as file:
        predicted = {row["id"]: row["predicted"] for row in csv.DictReader(file)}
    with open(repo.root / "data/normalized/manifest.csv", newline="") as file:
        members = {row["id"]: row["file"] for row in csv.DictReader(file)}
    ids = sorted(predicted, key=int)
    kept = repo.root.parent / "test_images"
    kept.mkdir()
    with zipfile.ZipFile(repo.root / "data/normalized/images.zip") as archive:
        for i in ids:
            (kept / f"{i}.png").write_bytes(archive.read(members[i]))
    return [str(kept / f"{i}.png") for i in ids], [predicted[i] for i in ids]


def predict(repo: Repo, files: list[str]) -> tuple[list[str], list[str]]:
    """Top-1 class per file from `imgcls predict --model net1` in the repository, and its stderr lines.

    Run in this process: test_predict starts the real command, whose `main` this is.
    """
    argv = ["predict", "--model", "net1", "--json", "--top-k", "1", *files]
    result = run_in_process(main, ["imgcls", *argv], repo.root)
    assert result.returncode == 0, result.stderr
    return [entry["top"][0]["class"] for entry in json.loads(result.stdout)], result.stderr.splitlines()


def refusal(repo: Repo, stage: str) -> str:
    result = repo.run("dvc", "repro", "--single-item", stage, check=False)
    assert result.returncode != 0, result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_params_edited_after_training(tiny: Repo):
    files, evaluated = split_images(tiny)
    trained_mean = tiny.params()["train"]["normalize_mean"]

    tiny.set_params({"train": {"normalize_mean": [0.5, 0.5, 0.5]}})
    top1, stderr = predict(tiny, files)
    assert top1 == evaluated, "predict feeds the model as it was trained"
    assert stderr == [
        "warning: train.normalize_mean: params.yaml has [0.5, 0.5, 0.5], "
        f"but data/models/net1/best.pt was trained with {json.dumps(trained_mean)}; "
        "predicting as the checkpoint was trained (its recipe)"
    ]
    expected = (
        f"error: train.normalize_mean: params.yaml has [0.5, 0.5, 0.5], but data/models/net1/best.pt was trained with "
        f"{json.dumps(trained_mean)}; run `dvc repro` to retrain it"
    )
    assert refusal(tiny, "evaluate@net1") == expected
    assert refusal(tiny, "report") == expected
    tiny.run("git", "checkout", "params.yaml")

    # Categories reordered and the data re-split (as `dvc repro split` would, after re-extracting),
    # the models not retrained.
    params = tiny.params()
    categories = params["extract"]["categories"]
    params["extract"]["categories"] = categories[::-1]
    tiny.write_params(params)
    tiny.run("dvc", "repro", "--single-item", "split")
    top1, stderr = predict(tiny, files)
    assert top1 == evaluated, "the class names are those the model learnt"
    assert stderr[0].startswith(
        f"warning: extract.categories: params.yaml has {json.dumps(categories[::-1])}, but data/models/net1/best.pt"
    )
    assert refusal(tiny, "evaluate@net1").startswith(
        f"error: extract.categories: params.yaml has {json.dumps(categories[::-1])}, "
        f"but data/models/net1/best.pt was trained with {json.dumps(categories)}"
    )
