"""End to end: train/evaluate/ensemble/report through real `dvc repro`, `dvc exp run` and `dvc metrics diff`."""

import csv
import io
import json
import re

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e


def test_train_evaluate_and_experiments(tiny):
    for name in ("net1", "net2", "ensemble"):
        headline = json.loads((tiny.root / f"metrics/{name}.json").read_text())
        details = json.loads((tiny.root / f"metrics/details/{name}.json").read_text())
        headline_keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
        assert headline == {"test": {k: details[k] for k in headline_keys}}
        assert 0 <= details["f1_macro"] <= 1 and set(details["per_class"]) == {"zero", "one", "seven"}
        for score in ("accuracy", "f1_macro"):
            low, high = details[f"{score}_ci95"]
            assert 0 <= low <= details[score] <= high <= 1, (name, score, low, high)
        if name != "ensemble":  # the report sums its members' counts; ensemble.json does not read theirs
            assert details["params_total"] >= details["params_trainable"] > 0 and details["loss"] > 0
    report = (tiny.root / "metrics/report.md").read_text()
    assert "\n| net1 |" in report and "\n| net2 |" in report and "\n| ensemble |" in report
    shown = tiny.run("dvc", "metrics", "show", "--json").stdout
    for path in ("metrics/net1.json", "metrics/net2.json", "metrics/ensemble.json"):
        assert path in shown
    assert "up to date" in tiny.run("dvc", "status").stdout

    # One model's setting changes only that model's stages (plus the cheap aggregates and the params check):
    # what `dvc repro` would rerun (benchmarks/pipeline_noop.py runs it; the experiment below reruns every model).
    tiny.set_params({"models": {"net2": {"epochs": 2}}})
    changed = set(json.loads(tiny.run("dvc", "status", "--json").stdout))
    assert {"train@net2", "evaluate@net2"} <= changed <= {"check", "train@net2", "evaluate@net2", "ensemble", "report"}
    tiny.run("git", "checkout", "params.yaml")

    # An experiment on a shared default reruns every model and shows up in metrics diff.
    tiny.run("dvc", "exp", "run", "-n", "lr-tiny", "-S", "train.lr=1e-7")
    applied = tiny.params()["train"]["lr"]
    assert str(applied) in ("1e-07", "1e-7") or applied == pytest.approx(1e-7)
    diff = json.loads(tiny.run("dvc", "metrics", "diff", "--json").stdout)
    assert "metrics/net1.json" in diff and "test.f1_macro" in diff["metrics/net1.json"]
    assert_a_review_fits_on_one_screen(tiny)


def assert_a_review_fits_on_one_screen(tiny):
    """What a reviewer reads after `dvc exp run -S train.lr=...`: headline columns, named plots, a verdict."""
    header = next(csv.reader(io.StringIO(tiny.run("dvc", "exp", "show", "--only-changed", "--csv").stdout)))
    assert len(header) <= 40, header
    # Scaled to the shipped params: each model there that takes the shared lr adds as many columns as a tiny
    # model does (scores, best epoch, effective lr, best.pt); the others, with an lr of their own, add none.
    per_model = max(len([column for column in header if f"/{model}" in column]) for model in ("net1", "net2"))
    shared = [column for column in header if "/net1" not in column and "/net2" not in column]
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    taking_lr = [name for name, own in shipped.items() if "lr" not in (own or {})]
    assert len(shared) + per_model * len(taking_lr) <= 40, (per_model, taking_lr, header)
    assert not [column for column in header if "seconds" in column or "per_s" in column], header

    diff = tiny.run("dvc", "metrics", "diff").stdout
    assert len(diff.splitlines()) <= 40, diff
    assert "seconds" not in diff and "per_s" not in diff and "per_class" not in diff, diff
    params = json.loads(tiny.run("dvc", "params", "diff", "--json").stdout)
    assert params["metrics/train/net1/params.yaml"]["lr"]["new"] == pytest.approx(1e-7), "the settings net1 really used"

    plots = json.loads(tiny.run("dvc", "plots", "show", "--json").stdout)["data"]
    overlaid = plots["Validation macro-F1 by epoch, every model"][0]["content"]
    assert {row["model"] for row in overlaid["data"]["values"]} == {"net1", "net2"}
    steps = plots["Training loss by step, every model (train.log_every_steps)"][0]["content"]["data"]["values"]
    assert {row["model"] for row in steps} == {"net1", "net2"}
    assert all(int(row["step"]) % 2 == 0 and float(row["loss"]) > 0 for row in steps), "every second step, as TINY sets"
    images = {path for path, entries in plots.items() if entries and entries[0]["type"] == "image"}
    for expected in (
        "metrics/figures/net1/confusion.png",
        "metrics/figures/ensemble/confusion.png",
        "metrics/report/f1_macro_by_model.png",
        "metrics/dataset/class_samples.png",
    ):
        assert any(path.endswith(expected) for path in images), sorted(images)

    first = (tiny.root / "metrics/report.md").read_text().splitlines()[0]
    assert first.split("Winner: ")[1].split(",")[0] in tiny.params()["models"], first
    assert re.search(r"significant at 0\.05 .*\(exact McNemar p [=<] [01]\.\d{3}\)", first), first


def test_one_model_runs_without_an_ensemble(tiny):
    params = tiny.params()
    params["models"] = {"net1": params["models"]["net1"]}
    tiny.write_params(params)
    refused = tiny.run("dvc", "repro", check=False)
    assert refused.returncode != 0
    assert "ensemble.models: ['net2'] are not in models: or finetune: (net1)" in refused.stderr, refused.stderr
    assert "set ensemble.models: [] to run without an ensemble" in refused.stderr

    params["ensemble"] = {"models": []}
    tiny.write_params(params)
    tiny.run("dvc", "repro")
    assert json.loads((tiny.root / "metrics/ensemble.json").read_text()) == {"members": 0}
    assert (tiny.root / "metrics/ensemble_predictions.csv").read_text().splitlines() == [
        "id,actual,predicted,actual_index,predicted_index"
    ]
    report = (tiny.root / "metrics/report.md").read_text()
    assert "\n| net1 |" in report and "| ensemble |" not in report and "net2" not in report
    shown = json.loads(tiny.run("dvc", "metrics", "show", "--json").stdout)
    assert any("metrics/ensemble.json" in json.dumps(entry) for entry in shown.values())
    plots = json.loads(tiny.run("dvc", "plots", "show", "--json").stdout)["data"]
    assert {
        row["model"] for row in plots["Validation macro-F1 by epoch, every model"][0]["content"]["data"]["values"]
    } == {"net1"}
    assert "up to date" in tiny.run("dvc", "status").stdout
