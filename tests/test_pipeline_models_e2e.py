"""End to end: train/evaluate/ensemble/report through real `dvc repro`, `dvc exp run` and `dvc metrics diff`."""

import json

import pytest

pytestmark = pytest.mark.e2e

TINY = {
    "extract": {"categories": ["zero", "one", "seven"], "per_category": 40, "size": 16},
    "train": {"epochs": 2, "batch_size": 32},
    "models": {"net1": {}, "net2": {"epochs": 1}},
    "ensemble": {"models": ["net1", "net2"], "tie_break": "net1"},
}


def test_train_evaluate_and_experiments(repo):
    repo.set_params(TINY)
    params = repo.params()
    params["models"] = TINY["models"]  # replaced outright, so only the two tiny models exist
    repo.write_params(params)
    repo.commit("tiny pipeline")

    repo.run("dvc", "repro")
    for name in ("net1", "net2", "ensemble"):
        scores = json.loads((repo.root / f"metrics/{name}.json").read_text())
        assert 0 <= scores["f1_macro"] <= 1 and set(scores["per_class"]) == {"zero", "one", "seven"}
        assert scores["params_total"] >= scores["params_trainable"] > 0
    report = (repo.root / "metrics/report/report.md").read_text()
    assert "\n| net1 |" in report and "\n| net2 |" in report and "\n| ensemble |" in report
    shown = repo.run("dvc", "metrics", "show", "--json").stdout
    for path in ("metrics/net1.json", "metrics/net2.json", "metrics/ensemble.json"):
        assert path in shown
    repo.commit("baseline")

    # One model's setting reruns only that model (plus the cheap aggregates).
    repo.set_params({"models": {"net2": {"epochs": 2}}})
    ran = {line.split("'")[1] for line in repo.run("dvc", "repro").stdout.splitlines() if line.startswith("Running stage")}
    assert {"train@net2", "evaluate@net2"} <= ran <= {"train@net2", "evaluate@net2", "ensemble", "report"}
    repo.commit("net2 for two epochs")

    # An experiment on a shared default reruns every model and shows up in metrics diff.
    repo.run("dvc", "exp", "run", "-S", "train.lr=1e-7")
    applied = repo.params()["train"]["lr"]
    assert str(applied) in ("1e-07", "1e-7") or applied == pytest.approx(1e-7)
    diff = json.loads(repo.run("dvc", "metrics", "diff", "--json").stdout)
    assert "metrics/net1.json" in diff and "f1_macro" in diff["metrics/net1.json"]
    shown = repo.run("dvc", "exp", "show", "--json").stdout
    assert "train.lr" in shown or '"lr"' in shown
    plots = repo.run("dvc", "plots", "diff", "--json")
    assert "metrics/predictions/net1.csv" in plots.stdout
