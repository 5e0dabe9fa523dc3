"""Hostile settings, checkpoints and output locations: one line naming the key or file, a non-zero exit,
no traceback and nothing half-written; a corrupt `last.pt` is set aside and training starts afresh."""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import REPO, tool_env
from imgcls.core.atomic import atomic_dir, save_npy
from imgcls.core.errors import ImgclsError
from imgcls.core.params import ModelSettings, TrainParams, load_params, resolve_model
from imgcls.data.augment import check_fits_in_memory
from imgcls.data.preprocessing import Preprocessing
from imgcls.models import MODEL_NAMES, build_model
from imgcls.train.batches import DeviceSplit
from imgcls.train.checkpoint import load_checkpoint, run_fingerprint
from imgcls.train.fit import FitSettings, fit
from imgcls.train.rebuild import rebuild_trained
from imgcls.train.recipe import ModelRecipe

CLASSES = ["a", "b", "c"]
SIDE = 16
PARAMS = {
    "augment": {},
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
    "models": {"net1": {}, "net2": {}},
    "evaluate": {"misclassified": 4},
    "ensemble": {"models": ["net1", "net2"], "tie_break": "net1"},
    "report": {},
}
EXTRACT = "extract:\n  annotations: a.json\n  images: imgs\n  categories: [cat, dog]\n"
SEED_RANGE = "a seed must be an integer from 0 to 4294967295 (2**32 - 1), the range numpy and scikit-learn accept"


# --- settings the libraries would reject later, or silently misread -------------------------------------------

SETTINGS = {
    "lr inf": ("train", "train:\n  lr: .inf\n", "train.lr: Input should be a finite number"),
    "lr nan": ("train", "train:\n  lr: .nan\n", "train.lr: Input should be a finite number"),
    "lr 'inf' as dvc exp run -S writes it": (
        "train",
        "train:\n  lr: inf\n",
        "train.lr: Input should be a finite number",
    ),
    "weight_decay inf": (
        "train",
        "train:\n  weight_decay: .inf\n",
        "train.weight_decay: Input should be a finite number",
    ),
    "momentum nan": ("train", "train:\n  momentum: .nan\n", "train.momentum: Input should be a finite number"),
    "gamma nan": ("train", "train:\n  gamma: .nan\n", "train.gamma: Input should be a finite number"),
    "beta of 1": ("train", "train:\n  betas: [0.9, 1.0]\n", "train.betas[1]: Input should be less than 1"),
    "negative beta": (
        "train",
        "train:\n  betas: [-0.1, 0.999]\n",
        "train.betas[0]: Input should be greater than or equal to 0",
    ),
    "beta nan": ("train", "train:\n  betas: [.nan, 0.999]\n", "train.betas[0]: Input should be a finite number"),
    "negative train seed": ("train", "train:\n  seed: -1\n", f"train.seed: {SEED_RANGE}"),
    "train seed past 2**32 - 1": ("train", "train:\n  seed: 4294967296\n", f"train.seed: {SEED_RANGE}"),
    "split seed past 2**63 - 1": ("split", "split:\n  seed: 9223372036854775808\n", f"split.seed: {SEED_RANGE}"),
    "negative sample seed": ("sample", "sample:\n  seed: -5\n", f"sample.seed: {SEED_RANGE}"),
    "negative augment seed": ("augment", "augment:\n  seed: -1\n", f"augment.seed: {SEED_RANGE}"),
    "extract seed past 2**32 - 1": ("extract", EXTRACT + "  seed: 4294967296\n", f"extract.seed: {SEED_RANGE}"),
    "augment scale inf": (
        "augment",
        "augment:\n  scale: [0.9, .inf]\n",
        "augment.scale[1]: Input should be a finite number",
    ),
    "augment rotation nan": (
        "augment",
        "augment:\n  rotation_deg: .nan\n",
        "augment.rotation_deg: Input should be a finite number",
    ),
    "batch_size true": (
        "train",
        "train:\n  batch_size: true\n",
        "train.batch_size: expected a number, not true/false (got True)",
    ),
    "epochs false": ("train", "train:\n  epochs: false\n", "train.epochs: expected a number, not true/false"),
    "lr true": ("train", "train:\n  lr: true\n", "train.lr: expected a number, not true/false"),
    "seed true": ("train", "train:\n  seed: true\n", "train.seed: expected a number, not true/false"),
    "patience true": ("train", "train:\n  patience: true\n", "train.patience: expected a number, not true/false"),
    "crop_padding true": (
        "train",
        "train:\n  crop_padding: true\n",
        "train.crop_padding: expected a number, not true/false",
    ),
    "augment target true": (
        "augment",
        "augment:\n  target: true\n",
        "augment.target: expected a number, not true/false",
    ),
    "split per_class with true": (
        "split",
        "split:\n  per_class: [true, 1, 1]\n",
        "split.per_class[0]: expected a number, not true/false",
    ),
    "split fraction true": (
        "split",
        "split:\n  fractions: [true, 0.5, 0.5]\n",
        "split.fractions[0]: expected a number, not true/false",
    ),
    "extract side_px true": (
        "extract",
        EXTRACT + "  side_px: true\n",
        "extract.side_px: expected a number, not true/false",
    ),
    "extract per_category true": (
        "extract",
        EXTRACT + "  per_category: true\n",
        "extract.per_category: expected a number, not true/false",
    ),
    "extract download_timeout inf": (
        "extract",
        EXTRACT + "  download_timeout: .inf\n",
        "extract.download_timeout: Input should be a finite number",
    ),
    "extract download_timeout past an hour": (
        "extract",
        EXTRACT + "  download_timeout: 1.0e+12\n",
        "extract.download_timeout: Input should be less than or equal to 3600",
    ),
    "extract download_retries past 10": (
        "extract",
        EXTRACT + "  download_retries: 2000\n",
        "extract.download_retries: Input should be less than or equal to 10",
    ),
    "sample scarce_fraction nan": (
        "sample",
        "sample:\n  scarce_fraction: .nan\n",
        "sample.scarce_fraction: Input should be a finite number",
    ),
    "evaluate misclassified true": (
        "evaluate",
        "evaluate:\n  misclassified: true\n",
        "evaluate.misclassified: expected a number, not true/false",
    ),
    "report feature_image true": (
        "report",
        "report:\n  feature_image: true\n",
        "report.feature_image: expected a number, not true/false",
    ),
    "model override lr inf": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    lr: .inf\n",
        "models.net1.lr: Input should be a finite number",
    ),
    "model override batch_size true": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    batch_size: true\n",
        "models.net1.batch_size: expected a number, not true/false",
    ),
    "model dropout nan": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    dropout: .nan\n",
        "models.net1.dropout: Input should be a finite number",
    ),
    "model head_hidden true": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    head_hidden: true\n",
        "models.net1.head_hidden: expected a number, not true/false",
    ),
    "unfreeze_at_epoch past the last epoch": (
        "models.resnet18",
        "train:\n  epochs: 3\nmodels:\n  resnet18: {pretrained: true, freeze: backbone, unfreeze_at_epoch: 4}\n",
        "models.resnet18.unfreeze_at_epoch: 4 is past the last epoch (epochs: 3)",
    ),
    "unfreeze_at_epoch with nothing frozen": (
        "models.resnet18",
        "models:\n  resnet18: {pretrained: true, unfreeze_at_epoch: 2}\n",
        "models.resnet18.unfreeze_at_epoch: 2 unfreezes a frozen backbone, but nothing is frozen",
    ),
    "frozen backbone of random weights": (
        "models.resnet18",
        "models:\n  resnet18: {freeze: last_block}\n",
        "models.resnet18.freeze: last_block freezes layers of random weights (no pretrained or weights_path)",
    ),
}


def test_a_frozen_random_backbone_is_accepted_when_said_to_be_meant(tmp_path):
    path = write_params(
        tmp_path, text="models:\n  resnet18: {freeze: backbone, random_features: true, unfreeze_at_epoch: 8}\n"
    )
    settings = resolve_model(path, "resnet18", MODEL_NAMES)
    assert settings.options == {"freeze": "backbone"} and settings.unfreeze_at_epoch == 8


def load(path: Path, section: str) -> object:
    if section.startswith("models."):
        return resolve_model(path, section.removeprefix("models."), MODEL_NAMES)
    return load_params(path, section)[0]


@pytest.mark.parametrize("case", list(SETTINGS), ids=list(SETTINGS))
def test_out_of_range_settings_are_refused_by_key(tmp_path, case):
    section, text, message = SETTINGS[case]
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ImgclsError) as error:
        load(path, section)
    assert message in str(error.value)


BOUNDS = {
    # (section, accepted at the bound, refused just past it, message)
    "seed": ("train", "train:\n  seed: 4294967295\n", "train:\n  seed: 4294967296\n", SEED_RANGE),
    "beta": (
        "train",
        "train:\n  betas: [0.0, 0.999999]\n",
        "train:\n  betas: [0.0, 1]\n",
        "train.betas[1]: Input should be less than 1",
    ),
    "download_timeout": (
        "extract",
        EXTRACT + "  download_timeout: 3600\n",
        EXTRACT + "  download_timeout: 3601\n",
        "less than or equal to 3600",
    ),
    "dvc's 1e-07 string": (
        "train",
        "train:\n  lr: 1e-07\n",
        "train:\n  lr: 1e+400\n",
        "train.lr: Input should be a finite number",
    ),
}


@pytest.mark.parametrize("case", list(BOUNDS), ids=list(BOUNDS))
def test_bounds_are_inclusive_where_the_libraries_are(tmp_path, case):
    section, accepted, refused, message = BOUNDS[case]
    path = tmp_path / "params.yaml"
    path.write_text(accepted)
    load(path, section)
    path.write_text(refused)
    with pytest.raises(ImgclsError, match=re.escape(message)):
        load(path, section)


# --- helpers for the real stage scripts -----------------------------------------------------------------------------

# Runs a stage script after `exec`-ing argv[1] (a sabotage: a full disk, a SIGKILL at the next rename).
LAUNCHER = (
    "import runpy, sys\nexec(sys.argv[1])\nsys.argv = sys.argv[2:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_stage(
    stage: str,
    params: Path,
    *args: object,
    sabotage: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    script = str(REPO / "stages" / f"{stage}.py")
    argv = [sys.executable, "-c", LAUNCHER, sabotage, script] if sabotage else [sys.executable, script]
    # In the params file's folder, outside the project, so dvclive finds no DVC repository to touch.
    return subprocess.run(
        [*argv, "--params", str(params), *map(str, args)],
        cwd=params.parent,
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def run_train(params: Path, data: Path, out: Path, live: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """`run_stage` for train@net1 on a split stage's folder `data`; `options` are run_stage's (sabotage, preexec_fn)."""
    return run_stage(
        "train", params, "--model", "net1", "--processed", data, "--train-data", data / "train",
        "--out", out, "--live", live, **options,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporaries of the atomic writers: `.<name>.<8 random>.tmp` and `.<name>.old`."""
    return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"\..+\.([a-z0-9_]{8}\.tmp|old)", p.name))


def write_params(root: Path, params: dict | None = None, text: str | None = None) -> Path:
    path = root / "params.yaml"
    path.write_text(text if text is not None else json.dumps(params or PARAMS))  # JSON is YAML
    return path


def packed_split(folder: Path, per_class: Sequence[int], first_id: int, seed: int) -> list[int]:
    """Write images.npy/labels.npy/ids.npy as the split stage does; a class-dependent stripe makes it learnable."""
    labels = np.repeat(np.arange(len(per_class)), per_class).astype(np.int64)
    images = np.random.default_rng(seed).integers(0, 60, (len(labels), SIDE, SIDE, 3), dtype=np.uint8)
    for label in range(len(per_class)):
        images[labels == label, 3 + 4 * label : 6 + 4 * label, :, label] = 250
    ids = np.arange(first_id, first_id + len(labels), dtype=np.int64)
    folder.mkdir(parents=True)
    for name, array in (("images", images), ("labels", labels), ("ids", ids)):
        np.save(folder / f"{name}.npy", array)
    return ids.tolist()


def processed(root: Path, train_per_class: Sequence[int] = (16, 16, 16)) -> Path:
    """A split stage's output folder: classes.json, splits.csv and train/val/test arrays of 16 px images."""
    folder = root / "processed"
    rows = []
    for name, per_class, first_id in (
        ("train", train_per_class, 0),
        ("val", (6, 6, 6), 1000),
        ("test", (6, 6, 6), 2000),
    ):
        ids = packed_split(folder / name, per_class, first_id, first_id)
        rows += [f"{i},x,{name}" for i in ids]
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    Preprocessing(SIDE, "pad").write(folder)
    (folder / "splits.csv").write_text("id,label,split\n" + "\n".join(rows) + "\n")
    return folder


# --- settings through the real stage scripts --------------------------------------------------------------------

STAGE_SETTINGS = {
    "train with lr inf": (
        "train",
        "train:\n  lr: .inf\nmodels:\n  net1: {}\n",
        "train.lr: Input should be a finite number",
    ),
    "train with batch_size true": (
        "train",
        "train:\n  batch_size: true\nmodels:\n  net1: {}\n",
        "train.batch_size: expected a number",
    ),
    "train with a beta of 1": (
        "train",
        "train:\n  betas: [1.0, 0.999]\nmodels:\n  net1: {}\n",
        "train.betas[0]: Input should be less than 1",
    ),
    "augment with scale inf": (
        "augment",
        "augment:\n  scale: [0.9, .inf]\n",
        "augment.scale[1]: Input should be a finite number",
    ),
    "augment with a negative seed": ("augment", "augment:\n  seed: -1\n", f"augment.seed: {SEED_RANGE}"),
}


@pytest.mark.parametrize("case", list(STAGE_SETTINGS), ids=list(STAGE_SETTINGS))
@pytest.mark.slow
def test_stage_scripts_refuse_the_setting_before_touching_data(tmp_path, case):
    stage, text, message = STAGE_SETTINGS[case]
    params = write_params(tmp_path, text=text)
    data = processed(tmp_path)
    out = tmp_path / "out"
    if stage == "train":
        args = [
            "--model",
            "net1",
            "--processed",
            data,
            "--train-data",
            data / "train",
            "--out",
            out / "net1",
            "--live",
            out / "live",
        ]
    else:
        args = [
            "--processed",
            data,
            "--out",
            out / "train_augmented",
            "--provenance",
            out / "augmented.csv",
            "--preview",
            out / "preview.png",
        ]
    result = run_stage(stage, params, *args)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists(), "nothing written"


# --- foreign and malformed checkpoints ----------------------------------------------------------------------------


def saved(state: object) -> Callable[[Path], None]:
    return lambda path: torch.save(state, path)


def raw_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def truncated(path: Path) -> None:
    torch.save({"model": build_model("net1", 3, SIDE).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:2000])


def with_recipe(model: torch.nn.Module) -> dict:
    """A checkpoint whose recipe says net1 on CLASSES at SIDE px, holding `model`'s weights."""
    settings = ModelSettings("net1", "net1", TrainParams.model_validate(PARAMS["train"]), {}, None)
    return {
        "model": model.state_dict(),
        "recipe": ModelRecipe(settings, tuple(CLASSES), Preprocessing(SIDE, "pad"), "x").to_plain(),
    }


EXPECTED = "expected a checkpoint of the train stage: a dict with ['model']"
CHECKPOINTS = {
    "another model's weights": (
        saved(with_recipe(build_model("cnn", 3, SIDE))),
        "its weights do not fit its recipe (net1, 3 classes, 16 px): missing",
    ),
    "same names, other shapes (net2 pads)": (
        saved(with_recipe(build_model("net2", 3, SIDE))),
        "reshaped: 'classifier.1.weight is (64, 512), not (64, 128)'",
    ),
    "weights for other classes": (
        saved(with_recipe(build_model("net1", 5, SIDE))),
        "reshaped: 'classifier.3.bias is (5,), not (3,)', 'classifier.3.weight is (5, 64), not (3, 64)'",
    ),
    "weights without a recipe (older code)": (
        saved({"model": build_model("net1", 3, SIDE).state_dict(), "epoch": 1, "fingerprint": "x"}),
        "written before checkpoints carried their model's recipe (classes, preprocessing, settings); retrain it",
    ),
    "a recipe of another format": (
        saved({**with_recipe(build_model("net1", 3, SIDE)), "recipe": {"version": 99}}),
        "holds a recipe of format 99, this imgcls reads format 1; retrain it",
    ),
    "a bare state_dict": (
        saved(build_model("net1", 3, SIDE).state_dict()),
        "has no ['model'] (it holds 'classifier.1.bias', 'classifier.1.weight', 'classifier.3.bias', "
        "'classifier.3.weight', 'features.0.bias' and 3 more)",
    ),
    "a bare tensor": (saved(torch.zeros(3)), f"holds a Tensor; {EXPECTED}"),
    "a dict without model": (
        saved({"weights": torch.zeros(3), "epoch": 2}),
        f"has no ['model'] (it holds 'epoch', 'weights'); {EXPECTED}",
    ),
    "model that is no state_dict": (saved({"model": [1, 2, 3]}), "its 'model' is a list, not a state_dict"),
    "truncated file": (
        truncated,
        "not a readable checkpoint (RuntimeError: PytorchStreamReader failed reading zip archive",
    ),
    "garbage": (
        raw_bytes(b"not a checkpoint at all " * 40),
        f"not a readable checkpoint (UnpicklingError: Weights only load failed); {EXPECTED}",
    ),
    "empty file": (raw_bytes(b""), "not a readable checkpoint (EOFError"),
    "a folder": (lambda path: path.mkdir(), f"not a regular file (a folder, FIFO or device); {EXPECTED}"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS), ids=list(CHECKPOINTS))
def test_a_foreign_or_broken_checkpoint_is_refused_by_name(tmp_path, case):
    """What evaluate, the report and predict get from rebuild_trained, in-process.

    A stage run per case would cost seconds each.
    """
    make, message = CHECKPOINTS[case]
    checkpoint = tmp_path / "best.pt"
    make(checkpoint)
    with pytest.raises(ImgclsError) as refused:
        rebuild_trained(checkpoint)
    assert str(refused.value).startswith(f"{checkpoint}: ") and message in str(refused.value), refused.value


@pytest.mark.parametrize("case", ["another model's weights", "truncated file"])
@pytest.mark.slow
def test_evaluate_refuses_a_foreign_or_broken_checkpoint_in_one_line(tmp_path, case):
    make, message = CHECKPOINTS[case]
    checkpoint = tmp_path / "best.pt"
    make(checkpoint)
    out = tmp_path / "out"
    result = run_stage(
        "evaluate",
        write_params(tmp_path),
        "--model",
        "net1",
        "--processed",
        processed(tmp_path),
        "--checkpoint",
        checkpoint,
        "--metrics",
        out / "net1.json",
        "--details",
        out / "details.json",
        "--predictions",
        out / "net1.csv",
        "--figures",
        out / "figures",
    )
    assert_one_line_error(result, f"error: {checkpoint}: ", message)
    assert not out.exists(), "nothing written"


def run_report(params: Path, root: Path, models: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The report stage on `root`'s split output and `models`, writing under `out`; the other inputs need not exist."""
    return run_stage(
        "report", params, "--processed", processed(root), "--models-dir", models,
        "--predictions", root / "predictions", "--ensemble-predictions", root / "ensemble.csv",
        "--details", root / "details", "--train-metrics", root / "train", "--out", out / "report.md",
        "--figures", out / "report", "--curves", out / "curves.csv", "--steps", out / "steps.csv",
        "--near-duplicates", root / "near_duplicates.csv",
    )  # fmt: skip


@pytest.mark.slow
def test_report_refuses_a_broken_checkpoint_in_one_line_and_writes_nothing(tmp_path):
    make, message = CHECKPOINTS["truncated file"]
    models = tmp_path / "models"
    (models / "net1").mkdir(parents=True)
    make(models / "net1" / "best.pt")
    out = tmp_path / "out"
    out.mkdir()
    result = run_report(write_params(tmp_path), tmp_path, models, out)
    assert_one_line_error(result, f"error: {models / 'net1' / 'best.pt'}: ", message)
    assert list(out.iterdir()) == [], "no report and no temporary folder"


def test_report_refuses_a_feature_image_past_the_test_split_naming_its_size(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    params = write_params(tmp_path, {**PARAMS, "report": {"feature_image": 18}})
    result = run_report(params, tmp_path, tmp_path / "models", out)
    assert_one_line_error(
        result, "report.feature_image: 18 is past the end of the test split, which holds 18 images (0 .. 17)"
    )
    assert list(out.iterdir()) == []


LAST_PT = {
    "truncated": truncated,
    "garbage": raw_bytes(b"\x00garbage" * 100),
    "empty": raw_bytes(b""),
    "a bare tensor": saved(torch.ones(4)),
    "a dict without model or fingerprint": saved({"epoch": 3, "optimizer": {}}),
    "another program's checkpoint": saved({"model": build_model("net2", 3, SIDE).state_dict(), "epoch": 9}),
}


@pytest.mark.parametrize("case", list(LAST_PT), ids=list(LAST_PT))
def test_a_corrupt_last_pt_is_set_aside_and_training_starts_afresh(tmp_path, case):
    LAST_PT[case](tmp_path / "last.pt")
    corrupt = (tmp_path / "last.pt").read_bytes()
    logged: list[str] = []
    torch.manual_seed(0)
    train = TrainParams(epochs=1, batch_size=16)
    fit(
        build_model("net1", 3, SIDE),
        tiny_data(32, 0),
        tiny_data(12, 1),
        FitSettings(train, 3, tmp_path, "x", torch.device("cpu"), log=logged.append),
    )
    assert f"moved it to {tmp_path / 'last.pt.corrupt'} and starting afresh" in logged[0] and logged[0].startswith(
        f"{tmp_path / 'last.pt'}: "
    )
    assert (tmp_path / "last.pt.corrupt").read_bytes() == corrupt, "kept for a look"
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1, "a fresh run wrote its own"
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_the_train_stage_sets_a_corrupt_last_pt_aside_and_says_so(tmp_path):
    data = processed(tmp_path)
    out = tmp_path / "models" / "net1"
    out.mkdir(parents=True)
    LAST_PT["truncated"](out / "last.pt")
    corrupt = (out / "last.pt").read_bytes()
    result = run_train(write_params(tmp_path), data, out, tmp_path / "live")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"{out / 'last.pt'}: " in result.stdout
        and f"moved it to {out / 'last.pt.corrupt'} and starting afresh" in result.stdout
    )
    assert (out / "last.pt.corrupt").read_bytes() == corrupt, "kept for a look"
    assert load_checkpoint(out / "last.pt")["epoch"] == 1, "a fresh run wrote its own"
    assert leftovers(out) == []


def tiny_data(n: int, seed: int) -> DeviceSplit:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 3, SIDE, SIDE), dtype=np.uint8)
    return DeviceSplit(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def test_an_unreadable_best_pt_beside_a_resumable_last_pt_starts_afresh(tmp_path):
    train = TrainParams(epochs=2, batch_size=16, seed=3)
    data, val = tiny_data(48, 0), tiny_data(12, 1)

    class Killed(Exception):
        pass

    def die_after_first(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Killed

    def run(on_epoch: Callable[[int, dict], None], log: Callable[[str], None] = lambda m: None):
        torch.manual_seed(train.seed)
        model = build_model("net1", 3, SIDE)
        return fit(
            model,
            data,
            val,
            FitSettings(train, 3, tmp_path, run_fingerprint({"t": 1}), torch.device("cpu"), on_epoch=on_epoch, log=log),
        )

    with pytest.raises(Killed):
        run(die_after_first)
    (tmp_path / "best.pt").write_bytes(b"torn")
    logged: list[str] = []
    state = run(lambda e, r: None, logged.append)
    assert state.epoch == 2 and len(state.history) == 2, "trained both epochs afresh"
    assert any("best.pt: missing, unreadable or from another run" in line for line in logged), logged
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] in (1, 2)


# --- unwritable or full output locations ---------------------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A folder no one may write into, and the preexec_fn that makes even root respect that.

    (It drops CAP_DAC_OVERRIDE.)
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    preexec = _without_root_override if os.geteuid() == 0 else None
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"], preexec_fn=preexec, capture_output=True
    )
    try:
        if probe.returncode == 0:
            pytest.skip("cannot make a folder read-only here")
        yield folder, preexec
    finally:
        folder.chmod(0o755)


def _without_root_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: dropped from the bounding set, gone after exec
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


def test_augment_into_a_read_only_folder_names_the_output(tmp_path, read_only):
    folder, preexec = read_only
    result = run_stage(
        "augment",
        write_params(tmp_path),
        "--processed",
        processed(tmp_path),
        "--out",
        folder / "train_augmented",
        "--provenance",
        folder / "augmented.csv",
        "--preview",
        folder / "preview.png",
        preexec_fn=preexec,
    )
    assert_one_line_error(result, f"error: {folder / 'train_augmented'}: cannot write this output (Permission denied")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_train_into_a_read_only_folder_names_the_folder(tmp_path, read_only):
    folder, preexec = read_only
    data = processed(tmp_path)
    result = run_train(write_params(tmp_path), data, folder / "net1", tmp_path / "live", preexec_fn=preexec)
    assert_one_line_error(result, f"error: {folder / 'net1'}: Permission denied")
    assert list(folder.iterdir()) == []


DISK_FULL = (
    "import errno, os, numpy\n"
    "def full(*args, **kwargs):\n"
    "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    "numpy.save = full\n"
)


def test_augment_onto_a_full_disk_names_the_output_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    result = run_stage(
        "augment",
        write_params(tmp_path),
        "--processed",
        processed(tmp_path),
        "--out",
        out / "train_augmented",
        "--provenance",
        out / "augmented.csv",
        "--preview",
        out / "preview.png",
        sabotage=DISK_FULL,
    )
    # Named by where it was headed, not by the temporary folder it was written into.
    assert_one_line_error(
        result, f"error: {out / 'train_augmented' / 'images.npy'}: cannot write this output (No space left on device)"
    )
    assert list(out.iterdir()) == []


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_train_that_cannot_write_its_checkpoint_names_it_and_leaves_nothing(tmp_path):
    data = processed(tmp_path)
    out = tmp_path / "models" / "net1"
    limit = _file_size_limit(16_384)  # net1's checkpoint is about 55 KB
    result = run_train(write_params(tmp_path), data, out, tmp_path / "live", preexec_fn=limit)
    assert_one_line_error(result, f"error: {out / 'best.pt'}: cannot write this output")
    assert list(out.iterdir()) == []


def test_a_full_disk_keeps_the_previous_output_whole(tmp_path, monkeypatch):
    target = tmp_path / "labels.npy"
    np.save(target, np.arange(3))
    previous = target.read_bytes()

    def full(file, array):
        file.write(b"partial")
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(ImgclsError, match=re.escape(f"{target}: cannot write this output (No space left on device)")):
        save_npy(target, np.arange(5))
    assert target.read_bytes() == previous and leftovers(tmp_path) == []
    with (
        pytest.raises(
            ImgclsError, match=re.escape(f"{tmp_path / 'folder'}: cannot write this output (No space left on device)")
        ),
        atomic_dir(tmp_path / "folder") as tmp,
    ):
        (tmp / "part").write_bytes(b"partial")
        raise OSError(28, os.strerror(28))
    assert not (tmp_path / "folder").exists() and leftovers(tmp_path) == []


# --- a SIGKILL mid-write -----------------------------------------------------------------------------------------

# SIGKILL at the rename of the named output: its temporary is complete but never moved into place,
# and no `finally` runs.
KILL_AT = (
    "import os, signal\nrename = os.replace\n"
    "def replace(src, dst):\n"
    "    if os.path.basename(dst) == {name!r}:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    rename(src, dst)\n"
    "os.replace = replace\n"
)
# Names that are not leftovers of train_augmented or augmented.csv, though they look close: they must survive.
BYSTANDERS = (
    ".train_augmented.notes",
    ".train_augmented.x.abcdefgh.tmp",
    ".other.abcdefgh.tmp",
    "train_augmented.abcdefgh.tmp",
    ".augmented.csv.b.abcdefgh.tmp",
    ".augmented.csv.abcdefg.tmp",
)


@pytest.mark.parametrize(
    ("killed_at", "leftover"), [("images.npy", ".train_augmented."), ("augmented.csv", ".augmented.csv.")]
)
def test_the_next_run_clears_what_a_killed_run_left(tmp_path, killed_at, leftover):
    data, out = processed(tmp_path), tmp_path / "out"
    out.mkdir()
    for name in BYSTANDERS:
        (out / name).write_text("not ours")
    args = [
        write_params(tmp_path),
        "--processed",
        data,
        "--out",
        out / "train_augmented",
        "--provenance",
        out / "augmented.csv",
        "--preview",
        out / "preview.png",
    ]
    killed = run_stage("augment", *args, sabotage=KILL_AT.format(name=killed_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [name for name in leftovers(out) if name.startswith(leftover) and name not in BYSTANDERS], (
        "the kill left a temporary"
    )
    result = run_stage("augment", *args)
    assert result.returncode == 0, result.stderr
    assert [name for name in leftovers(out) if name not in BYSTANDERS] == []
    assert all((out / name).read_text() == "not ours" for name in BYSTANDERS)
    assert (out / "train_augmented" / "images.npy").is_file() and (out / "augmented.csv").is_file()


# --- oversampling ------------------------------------------------------------------------------------------------


def test_heavy_oversampling_is_warned_about_by_class_and_factor(tmp_path):
    out = tmp_path / "out"
    result = run_stage(
        "augment",
        write_params(tmp_path),
        "--processed",
        processed(tmp_path, train_per_class=(30, 6, 5)),
        "--out",
        out / "train_augmented",
        "--provenance",
        out / "augmented.csv",
        "--preview",
        out / "preview.png",
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: augment:")]
    assert len(warnings) == 1, result.stderr  # 'b' grows exactly 5x: not more than 5x
    assert "class 'c' is oversampled 6.0x (5 -> 30 images)" in warnings[0]


def _memory_limit(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_an_absurd_augment_target_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = run_stage(
        "augment",
        write_params(tmp_path, text="augment:\n  target: 1000000000000\n"),
        "--processed",
        processed(tmp_path),
        "--out",
        out / "train_augmented",
        "--provenance",
        out / "augmented.csv",
        "--preview",
        out / "preview.png",
        # A regression must not take the shared machine's memory: it fails within these 4 GiB instead.
        preexec_fn=_memory_limit(4 * 2**30),
        timeout=120,
    )
    assert_one_line_error(
        result,
        "error: augment.target: 1000000000000 per class makes 3000000000000 train images of 16x16x3",
        "use at most",
    )
    assert not out.exists()


def test_the_augment_target_must_fit_in_half_the_memory():
    sizes, shape = [1000] * 10, (32, 32, 3)  # 30 MiB of images
    check_fits_in_memory(1000, sizes, shape, memory_bytes=64 * 2**20)
    message = (
        r"augment.target: 1000 per class makes 10000 train images of 32x32x3 \(0.03 GiB\), "
        r"more than half of .* 0.05 GiB .*use at most 853"
    )
    with pytest.raises(ImgclsError, match=message):
        check_fits_in_memory(1000, sizes, shape, memory_bytes=50 * 2**20)
