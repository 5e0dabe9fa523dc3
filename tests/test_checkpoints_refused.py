"""Foreign, malformed and torn checkpoints: refused in one line naming the file, by the library and by the
evaluate and report stages; a corrupt `last.pt` is set aside and training starts afresh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
import torch

from conftest import (
    STAGE_PARAMS,
    STRIPED_CLASSES,
    STRIPED_SIDE,
    Killed,
    assert_one_line_error,
    die_after_first_epoch,
    leftovers,
    run_stage_in_process,
    run_train_stage,
    striped_processed,
    write_params,
)
from imgcls.core.errors import ImgclsError
from imgcls.core.params import ModelSettings, TrainParams
from imgcls.data.preprocessing import Preprocessing
from imgcls.models.registry import build_model
from imgcls.train.batches import DeviceSplit
from imgcls.train.checkpoint import load_checkpoint, run_fingerprint
from imgcls.train.fit import FitSettings, fit
from imgcls.train.rebuild import rebuild_trained
from imgcls.train.recipe import ModelRecipe


def saved(state: object) -> Callable[[Path], None]:
    return lambda path: torch.save(state, path)


def raw_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def truncated(path: Path) -> None:
    torch.save({"model": build_model("net1", 3, STRIPED_SIDE).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:2000])


def with_recipe(model: torch.nn.Module) -> dict:
    """A checkpoint whose recipe says net1 on STRIPED_CLASSES at STRIPED_SIDE px, holding `model`'s weights."""
    settings = ModelSettings("net1", "net1", TrainParams.model_validate(STAGE_PARAMS["train"]), {}, None)
    return {
        "model": model.state_dict(),
        "recipe": ModelRecipe(settings, tuple(STRIPED_CLASSES), Preprocessing(STRIPED_SIDE, "pad"), "x").to_plain(),
    }


EXPECTED = "expected a checkpoint of the train stage: a dict with ['model']"
CHECKPOINTS = {
    "another model's weights": (
        saved(with_recipe(build_model("cnn", 3, STRIPED_SIDE))),
        "its weights do not fit its recipe (net1, 3 classes, 16 px): missing",
    ),
    "same names, other shapes (net2 pads)": (
        saved(with_recipe(build_model("net2", 3, STRIPED_SIDE))),
        "reshaped: 'classifier.1.weight is (64, 512), not (64, 128)'",
    ),
    "weights for other classes": (
        saved(with_recipe(build_model("net1", 5, STRIPED_SIDE))),
        "reshaped: 'classifier.3.bias is (5,), not (3,)', 'classifier.3.weight is (5, 64), not (3, 64)'",
    ),
    "weights without a recipe (older code)": (
        saved({"model": build_model("net1", 3, STRIPED_SIDE).state_dict(), "epoch": 1, "fingerprint": "x"}),
        "written before checkpoints carried their model's recipe (classes, preprocessing, settings); retrain it",
    ),
    "a recipe of another format": (
        saved({**with_recipe(build_model("net1", 3, STRIPED_SIDE)), "recipe": {"version": 99}}),
        "holds a recipe of format 99, this imgcls reads format 1; retrain it",
    ),
    "a bare state_dict": (
        saved(build_model("net1", 3, STRIPED_SIDE).state_dict()),
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
def test_evaluate_refuses_a_foreign_or_broken_checkpoint_in_one_line(tmp_path, case):
    make, message = CHECKPOINTS[case]
    checkpoint = tmp_path / "best.pt"
    make(checkpoint)
    out = tmp_path / "out"
    result = run_stage_in_process(
        "evaluate",
        write_params(tmp_path, STAGE_PARAMS),
        "--model",
        "net1",
        "--processed",
        striped_processed(tmp_path),
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


def run_report(params: Path, root: Path, models: Path, out: Path) -> CompletedProcess[str]:
    """The report stage on `root`'s split output and `models`, writing under `out`; the other inputs need not exist."""
    return run_stage_in_process(
        "report", params, "--processed", striped_processed(root), "--models-dir", models,
        "--predictions", root / "predictions", "--ensemble-predictions", root / "ensemble.csv",
        "--details", root / "details", "--train-metrics", root / "train", "--out", out / "report.md",
        "--figures", out / "report", "--curves", out / "curves.csv", "--steps", out / "steps.csv",
        "--near-duplicates", root / "near_duplicates.csv",
    )  # fmt: skip


def test_report_refuses_a_broken_checkpoint_in_one_line_and_writes_nothing(tmp_path):
    make, message = CHECKPOINTS["truncated file"]
    models = tmp_path / "models"
    (models / "net1").mkdir(parents=True)
    make(models / "net1" / "best.pt")
    out = tmp_path / "out"
    out.mkdir()
    result = run_report(write_params(tmp_path, STAGE_PARAMS), tmp_path, models, out)
    assert_one_line_error(result, f"error: {models / 'net1' / 'best.pt'}: ", message)
    assert list(out.iterdir()) == [], "no report and no temporary folder"


def test_report_refuses_a_feature_image_past_the_test_split_naming_its_size(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    params = write_params(tmp_path, {**STAGE_PARAMS, "report": {"feature_image": 18}})
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
    "another program's checkpoint": saved({"model": build_model("net2", 3, STRIPED_SIDE).state_dict(), "epoch": 9}),
}


@pytest.mark.parametrize("case", list(LAST_PT), ids=list(LAST_PT))
def test_a_corrupt_last_pt_is_set_aside_and_training_starts_afresh(tmp_path, case):
    LAST_PT[case](tmp_path / "last.pt")
    corrupt = (tmp_path / "last.pt").read_bytes()
    logged: list[str] = []
    torch.manual_seed(0)
    train = TrainParams(epochs=1, batch_size=16)
    fit(
        build_model("net1", 3, STRIPED_SIDE),
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
    data = striped_processed(tmp_path)
    out = tmp_path / "models" / "net1"
    out.mkdir(parents=True)
    LAST_PT["truncated"](out / "last.pt")
    corrupt = (out / "last.pt").read_bytes()
    result = run_train_stage(write_params(tmp_path, STAGE_PARAMS), "net1", data, out)
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
    images = rng.integers(0, 60, size=(n, 3, STRIPED_SIDE, STRIPED_SIDE), dtype=np.uint8)
    return DeviceSplit(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def test_an_unreadable_best_pt_beside_a_resumable_last_pt_starts_afresh(tmp_path):
    train = TrainParams(epochs=2, batch_size=16, seed=3)
    data, val = tiny_data(48, 0), tiny_data(12, 1)

    def run(on_epoch: Callable[[int, dict], None], log: Callable[[str], None] = lambda m: None):
        torch.manual_seed(train.seed)
        model = build_model("net1", 3, STRIPED_SIDE)
        return fit(
            model,
            data,
            val,
            FitSettings(train, 3, tmp_path, run_fingerprint({"t": 1}), torch.device("cpu"), on_epoch=on_epoch, log=log),
        )

    with pytest.raises(Killed):
        run(die_after_first_epoch)
    (tmp_path / "best.pt").write_bytes(b"torn")
    logged: list[str] = []
    state = run(lambda e, r: None, logged.append)
    assert state.epoch == 2 and len(state.history) == 2, "trained both epochs afresh"
    assert any("best.pt: missing, unreadable or from another run" in line for line in logged), logged
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] in (1, 2)
