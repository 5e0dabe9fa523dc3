"""`finetune:` entries: a model that starts from another model's trained best.pt, tracked by DVC."""

import json

import pytest
import torch

from conftest import run_stage, write_params
from imgcls.core.errors import ImgclsError
from imgcls.core.params import model_names, read_params_file, resolve_model
from imgcls.models.names import MODEL_NAMES
from imgcls.train.checkpoint import load_checkpoint


def test_a_finetune_entry_inherits_its_source_and_overlays_its_own_keys(tmp_path):
    path = write_params(
        tmp_path,
        {
            "train": {"lr": 0.001, "epochs": 8},
            "models": {"cnn": {"epochs": 5, "dropout": 0.0}, "mine": {"arch": "net2", "lr": 0.01}},
            "finetune": {"cnn_dropout": {"from": "cnn", "dropout": 0.3, "lr": 0.0003}, "mine_more": {"from": "mine"}},
        },
    )
    tuned = resolve_model(path, "cnn_dropout", MODEL_NAMES)
    assert (tuned.arch, tuned.init_from, tuned.options["dropout"]) == ("cnn", "cnn", 0.3)
    assert (tuned.train.lr, tuned.train.epochs) == (0.0003, 5)
    assert resolve_model(path, "mine_more", MODEL_NAMES).arch == "net2", "the source's own arch, not its key"
    assert resolve_model(path, "cnn", MODEL_NAMES).init_from is None
    assert model_names(read_params_file(path)) == ["cnn", "mine", "cnn_dropout", "mine_more"]


@pytest.mark.parametrize(
    ("finetune", "message"),
    [
        ({"x": {"from": "nope"}}, r"finetune.x.from: 'nope' is not a key of models:"),
        ({"x": {"dropout": 0.3}}, r"finetune.x.from: missing; expected a mapping with from:"),
        ({"x": {"from": "x"}}, r"finetune.x.from: 'x' is this entry itself"),
        ({"x": {"from": "y"}, "y": {"from": "x"}}, r"finetune.x.from: 'y' makes a cycle \(x -> y -> x\)"),
        (
            {"x": {"from": "y"}, "y": {"from": "cnn"}},
            r"finetune.x.from: 'y' is a finetune: entry, not a key of models:; start from its model 'cnn'",
        ),
        ({"cnn": {"from": "cnn"}}, r"finetune.cnn: also a key of models:"),
        ({"x": {"from": "cnn", "epoch": 3}}, r"finetune.x.epoch: unknown key; did you mean 'epochs'\?"),
        ({"x": {"from": "cnn", "dropout": 1.5}}, r"finetune.x"),
    ],
)
def test_a_bad_finetune_entry_names_its_key(tmp_path, finetune, message):
    path = write_params(tmp_path, {"train": {}, "models": {"cnn": {}}, "finetune": finetune})
    with pytest.raises(ImgclsError, match=message):
        resolve_model(path, next(iter(finetune)), MODEL_NAMES)


@pytest.mark.e2e
def test_finetune_starts_from_the_source_checkpoint_and_reruns_when_it_changes(tiny):
    tiny.set_params({"finetune": {"net1_more": {"from": "net1", "epochs": 1, "lr": 0.0001}}})
    ran = tiny.run("dvc", "repro").stdout
    assert "Running stage 'finetune@net1_more'" in ran and "Running stage 'train@net1'" not in ran
    source = load_checkpoint(tiny.root / "data/models/net1/best.pt")["model"]
    tuned = load_checkpoint(tiny.root / "data/models/net1_more/best.pt")["model"]
    moved = max(
        float((tuned[k].float() - source[k].float()).abs().max()) for k in source if source[k].is_floating_point()
    )
    assert 0 < moved < 0.05, "one epoch at a small lr nudges net1's weights; from scratch they would be unrelated"
    assert json.loads((tiny.root / "metrics/net1_more.json").read_text())["test"]["f1_macro"] >= 0
    assert "| net1_more |" in (tiny.root / "metrics/report.md").read_text()
    tiny.commit("finetune net1")

    # DVC's graph carries net1's checkpoint into the finetune stage, and nothing else's.
    dag = tiny.run("dvc", "dag", "--dot", "finetune@net1_more").stdout
    assert '"train@net1" -> "finetune@net1_more"' in dag and "train@net2" not in dag, dag
    tiny.set_params({"models": {"net1": {"epochs": 3}, "net2": {"epochs": 1}}})
    assert "finetune@net1_more" in tiny.run("dvc", "status").stdout, "a change to net1 reaches what starts from it"
    tiny.set_params({"models": {"net1": {}, "net2": {"epochs": 3}}})
    assert "finetune@net1_more" not in tiny.run("dvc", "status").stdout


@pytest.mark.e2e
def test_a_finetune_named_like_a_model_deletes_nothing_of_that_model(tiny):
    kept = [
        "data/models/net2/best.pt",
        "metrics/net2.json",
        "metrics/details/net2.json",
        "metrics/predictions/net2.csv",
        "metrics/figures/net2/confusion.png",
        "metrics/train/net2/metrics.json",
        "metrics/train/net2/steps.csv",
    ]
    before = {path: (tiny.root / path).read_bytes() for path in kept}
    tiny.set_params({"finetune": {"net2": {"from": "net1"}}})
    result = tiny.run("dvc", "repro", "-s", "finetune@net2", check=False)
    assert result.returncode != 0
    assert (
        "finetune.net2: also a key of models:; a finetuned model needs a name of its own"
        in result.stdout + result.stderr
    )
    assert {path: (tiny.root / path).read_bytes() for path in kept} == before, (
        "net2's checkpoint, scores and figures untouched"
    )


@pytest.mark.slow
def test_the_train_stage_refuses_init_for_a_model_that_is_not_a_finetune_entry(tmp_path):
    path = write_params(tmp_path, {"train": {}, "models": {"net1": {}}})
    torch.save({}, tmp_path / "w.pt")
    result = run_stage(
        "train",
        path,
        "--model",
        "net1",
        "--init",
        tmp_path / "w.pt",
        "--processed",
        tmp_path,
        "--train-data",
        tmp_path,
        "--out",
        tmp_path / "m",
        "--live",
        tmp_path / "l",
    )
    assert result.returncode != 0 and "--init is for finetune: entries only" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.e2e
def test_a_from_naming_no_model_is_answered_by_imgcls_before_dvc(tiny):
    """To DVC, data/models/nope/best.pt is a missing dependency; the check stage upstream names the key first."""
    tiny.set_params({"finetune": {"net1_more": {"from": "nope"}}})
    result = tiny.run("dvc", "repro", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: finetune.net1_more.from: 'nope'"), result.stderr
    assert "No such file" not in result.stderr, "DVC's missing-dependency message did not speak first"
