"""`imgcls predict` on files the test writes, with a checkpoint saved the way the train stage saves one."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from subprocess import CompletedProcess

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import run_command, run_in_process
from imgcls.commands.cli import main
from imgcls.commands.predict import image_files, predict_files, preprocess
from imgcls.core.errors import ImgclsError
from imgcls.core.params import resolve_model
from imgcls.data.coco import Selected
from imgcls.data.extraction import extract_images
from imgcls.data.preprocessing import Preprocessing
from imgcls.data.splitting import load_normalized
from imgcls.data.square import normalize_images
from imgcls.models.names import MODEL_NAMES
from imgcls.models.registry import build_model
from imgcls.train.checkpoint import save_checkpoint
from imgcls.train.rebuild import rebuild_trained
from imgcls.train.recipe import ModelRecipe

CLASSES = ["cat", "dog", "bird", "fish"]
SIDE = 16
IMGCLS = Path(sys.executable).parent / "imgcls"  # the console script `pip install -e .` puts beside the interpreter


def write_images(folder: Path) -> list[Path]:
    """Every layout the pipeline handles, and two files a folder search must skip; returns the images, sorted."""
    rng = np.random.default_rng(0)
    layouts = {
        "a.png": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
        "sub/b.jpg": rng.integers(
            0, 256, (120, 200, 3), dtype=np.uint8
        ),  # large enough for a reduced-scale JPEG decode
        "sub/c.png": rng.integers(0, 65536, (50, 20), dtype=np.uint16),
        "sub/d.png": rng.integers(0, 256, (24, 24, 4), dtype=np.uint8),
        "sub/e.bmp": rng.integers(0, 256, (8, 12), dtype=np.uint8),  # enlarged, not shrunk
        ".hidden/f.png": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
    }
    for name, pixels in layouts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / name), pixels)
    (folder / "sub/notes.txt").write_text("not an image")
    return sorted(folder / name for name in layouts if not name.startswith("."))


def params_file(folder: Path, **train: object) -> Path:
    """A params.yaml as the test's model was trained with, or edited after (`train` overriding its train: keys)."""
    params = {
        "extract": {"annotations": "unused.json", "images": "unused", "categories": CLASSES, "side_px": SIDE},
        "normalize": {"resize": "pad"},
        # A batch of 2 splits the images into several batches; the course notebooks' 0.5s,
        # not the default ImageNet statistics.
        "train": {
            "batch_size": 2,
            "device": "cpu",
            "normalize_mean": [0.5, 0.5, 0.5],
            "normalize_std": [0.5, 0.5, 0.5],
            **train,
        },
        "models": {"net1": {}},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """params.yaml and a net1 best.pt with its recipe, as a finished `dvc repro train@net1` leaves them."""
    settings = resolve_model(params_file(tmp_path), "net1", MODEL_NAMES)
    torch.manual_seed(0)
    model = build_model("net1", len(CLASSES), SIDE)
    with torch.no_grad():
        [*model.modules()][-1].weight.mul_(
            30
        )  # the output layer: confident, well-separated outputs rather than a near-uniform guess
    recipe = ModelRecipe(settings, tuple(CLASSES), Preprocessing(SIDE, "pad"), "x")
    save_checkpoint(
        tmp_path / "models/net1/best.pt",
        {"model": model.state_dict(), "epoch": 1, "fingerprint": "x", "recipe": recipe.to_plain()},
    )
    (tmp_path / "images").mkdir()
    write_images(tmp_path / "images")
    return tmp_path


def pipeline_images(sources: list[Path], work: Path, resize: str) -> np.ndarray:
    """The images as the extract, normalize and split stages' functions make them, in `sources` order."""
    records = [Selected(i + 1, CLASSES[0], path, path.name) for i, path in enumerate(sources)]
    extract_images(records, work / "extracted", SIDE)
    normalize_images(work / "extracted", work / "normalized", SIDE, resize)
    return load_normalized(work / "normalized", CLASSES)[0].images


def run_cli(project: Path, *args: str) -> CompletedProcess[str]:
    """`imgcls predict` with the project's params and models, in this process: the console script calls this same
    `main` (the checkpoint test starts the real one)."""
    argv = ["predict", "--params", "params.yaml", "--models-dir", "models", *args]
    return run_in_process(main, ["imgcls", *argv], project)


def test_folders_are_searched_for_image_files_only(project):
    files = image_files([project / "images"])
    assert files == write_images(project / "images")
    assert [p.name for p in files] == ["a.png", "b.jpg", "c.png", "d.png", "e.bmp"]


@pytest.mark.parametrize("resize", ["pad", "stretch"])
def test_preprocessing_is_the_pipelines(project, tmp_path, resize):
    sources = image_files([project / "images"])
    expected = pipeline_images(sources, tmp_path / resize, resize)
    for path, packed in zip(sources, expected):
        assert np.array_equal(preprocess(path, SIDE, resize), packed), path.name


def test_probabilities_are_the_models_on_pipeline_images(project, tmp_path):
    sources = image_files([project / "images"])
    model = build_model("net1", len(CLASSES), SIDE)
    model.load_state_dict(torch.load(project / "models/net1/best.pt", weights_only=True)["model"])
    with torch.no_grad():
        pixels = torch.from_numpy(pipeline_images(sources, tmp_path, "pad")).permute(0, 3, 1, 2)
        expected = model.eval()((pixels.float() / 255 - 0.5) / 0.5).softmax(1)

    predictions = predict_files([project / "images"], rebuild_trained(project / "models/net1/best.pt"), top_k=3)

    assert [p.path for p in predictions] == sources
    for prediction, probabilities in zip(predictions, expected):
        assert not prediction.error
        names = [name for name, _ in prediction.top]
        values = [p for _, p in prediction.top]
        order = probabilities.argsort(descending=True)[:3]
        assert names == [CLASSES[i] for i in order]
        torch.testing.assert_close(torch.tensor(values), probabilities[order])
        assert values == sorted(values, reverse=True) and sum(values) <= 1 + 1e-6


def test_top_k_beyond_the_class_count_lists_every_class(project):
    (prediction,) = predict_files(
        [project / "images/a.png"], rebuild_trained(project / "models/net1/best.pt"), top_k=10
    )
    assert sorted(name for name, _ in prediction.top) == sorted(CLASSES)
    assert sum(p for _, p in prediction.top) == pytest.approx(1, abs=1e-5)


def test_cli_prints_a_line_per_image_and_json(project):
    expected = predict_files([project / "images"], rebuild_trained(project / "models/net1/best.pt"), top_k=2)

    lines = run_cli(project, "--model", "net1", "--top-k", "2", "images")
    assert lines.returncode == 0, lines.stderr
    assert lines.stdout.splitlines() == [
        f"{p.path.relative_to(project)}: {p.top[0][0]} {p.top[0][1]:.2f}, {p.top[1][0]} {p.top[1][1]:.2f}"
        for p in expected
    ]
    assert all(re.fullmatch(r"images/\S+: \w+ [01]\.\d\d, \w+ [01]\.\d\d", line) for line in lines.stdout.splitlines())

    as_json = run_cli(project, "--model", "net1", "--top-k", "2", "--json", "images")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {"path": str(p.path.relative_to(project)), "top": [{"class": c, "probability": v} for c, v in p.top]}
        for p in expected
    ]


def test_bad_files_are_named_and_the_others_still_predicted(project):
    (project / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli(project, "--model", "net1", "broken.png", "images/a.png", "missing.jpg", "--json")
    assert result.returncode == 1
    entries = json.loads(result.stdout)
    assert [e["path"] for e in entries] == ["broken.png", "images/a.png", "missing.jpg"]
    assert "top" in entries[1] and "error" in entries[0] and "error" in entries[2]
    errors = result.stderr.splitlines()
    assert len(errors) == 3, result.stderr
    assert errors[0].startswith("error: broken.png: ")
    assert errors[1] == "error: missing.jpg: file not found"
    assert errors[2] == "error: 2 of 3 files could not be read"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            lambda p: (p / "models/net1/best.pt").unlink(),
            ["--model", "net1", "images"],
            "error: models/net1/best.pt: not found; run `dvc repro train@net1` first",
        ),
        (lambda p: None, ["--model", "net9", "images"], "error: models.net9: no such model; did you mean 'net1'?"),
        (
            lambda p: (p / "empty").mkdir(),
            ["--model", "net1", "empty"],
            "error: empty: no image files (.jpg, .jpeg, .png, .bmp, .webp) in this folder or below",
        ),
        (lambda p: None, ["--model", "net1", "--top-k", "0", "images"], "error: top_k: must be at least 1, got 0"),
    ],
    ids=["missing-checkpoint", "unknown-model", "empty-folder", "top-k-0"],
)
def test_unusable_input_is_one_line(project, setup, args, message):
    setup(project)
    result = run_cli(project, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]


@pytest.mark.slow
def test_a_checkpoint_alone_predicts_anywhere_as_in_the_repository(project, tmp_path_factory):
    """A best.pt handed to someone: no params.yaml, no data folder, and `python -m imgcls` works like the `imgcls`
    console script (both started for real here)."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "best.pt").write_bytes((project / "models/net1/best.pt").read_bytes())
    images = str(project / "images")
    in_repo = run_command(IMGCLS, "predict", "--model", "net1", "--models-dir", "models", "--json", images, cwd=project)
    handed = run_command(
        sys.executable, "-m", "imgcls", "predict", "--checkpoint", "best.pt", "--json", images, cwd=elsewhere
    )
    assert in_repo.returncode == 0 and handed.returncode == 0, in_repo.stderr + handed.stderr
    assert handed.stdout == in_repo.stdout
    assert handed.stderr == in_repo.stderr == ""
    assert sorted(p.name for p in elsewhere.iterdir()) == ["best.pt"], "nothing written beside it"


def test_edited_params_are_named_once_and_the_recipe_still_used(project):
    before = predict_files([project / "images"], rebuild_trained(project / "models/net1/best.pt"))
    params_file(project, normalize_mean=[0.485, 0.456, 0.406])

    result = run_cli(project, "--model", "net1", "--json", "images")

    assert result.returncode == 0, result.stderr
    assert [entry["top"][0]["class"] for entry in json.loads(result.stdout)] == [p.top[0][0] for p in before]
    assert result.stderr.splitlines() == [
        "warning: train.normalize_mean: params.yaml has [0.485, 0.456, 0.406], "
        "but models/net1/best.pt was trained with [0.5, 0.5, 0.5]; "
        "predicting as the checkpoint was trained (its recipe)"
    ]


def test_class_names_come_from_the_checkpoint(project):
    """Categories reordered in params.yaml after training: the names stay those the model learnt."""
    expected = predict_files([project / "images"], rebuild_trained(project / "models/net1/best.pt"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["extract"]["categories"] = CLASSES[::-1]
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    result = run_cli(project, "--model", "net1", "--json", "images")

    assert [entry["top"][0]["class"] for entry in json.loads(result.stdout)] == [p.top[0][0] for p in expected]
    assert result.stderr.startswith('warning: extract.categories: params.yaml has ["fish", "bird", "dog", "cat"]')


def test_unusable_checkpoints_and_files_are_one_line(project):
    os.mkfifo(project / "pipe.png")
    old = project / "old.pt"
    save_checkpoint(
        old, {"model": build_model("net1", len(CLASSES), SIDE).state_dict(), "epoch": 1, "fingerprint": "x"}
    )
    (project / "folder.pt").mkdir()

    fifo = run_cli(project, "--model", "net1", "pipe.png", "images/a.png")
    assert fifo.returncode == 1
    assert (
        fifo.stderr.splitlines()[0]
        == "error: pipe.png: not a regular file (a folder, FIFO or device); expected an image file"
    )
    with pytest.raises(
        ImgclsError, match=r"old.pt: written before checkpoints carried their model's recipe .*; retrain it"
    ):
        rebuild_trained(old)
    with pytest.raises(ImgclsError, match=r"folder.pt: not a regular file \(a folder, FIFO or device\)"):
        rebuild_trained(project / "folder.pt")
