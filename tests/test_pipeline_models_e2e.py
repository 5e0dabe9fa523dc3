"""End to end: train/evaluate/ensemble/report through real `dvc repro`, `dvc exp run` and `dvc metrics diff`."""

import json

import pytest

pytestmark = pytest.mark.e2e


def test_train_evaluate_and_experiments(tiny):
    for name in ("net1", "net2", "ensemble"):
        scores = json.loads((tiny.root / f"metrics/{name}.json").read_text())
        assert 0 <= scores["f1_macro"] <= 1 and set(scores["per_class"]) == {"zero", "one", "seven"}
        if name != "ensemble":  # the report sums its members' counts; ensemble.json does not read theirs
            assert scores["params_total"] >= scores["params_trainable"] > 0
    report = (tiny.root / "metrics/report/report.md").read_text()
    assert "\n| net1 |" in report and "\n| net2 |" in report and "\n| ensemble |" in report
    shown = tiny.run("dvc", "metrics", "show", "--json").stdout
    for path in ("metrics/net1.json", "metrics/net2.json", "metrics/ensemble.json"):
        assert path in shown
    assert "up to date" in tiny.run("dvc", "status").stdout

    # One model's setting reruns only that model (plus the cheap aggregates).
    tiny.set_params({"models": {"net2": {"epochs": 2}}})
    ran = {line.split("'")[1] for line in tiny.run("dvc", "repro").stdout.splitlines() if line.startswith("Running stage")}
    assert {"train@net2", "evaluate@net2"} <= ran <= {"train@net2", "evaluate@net2", "ensemble", "report"}
    tiny.commit("net2 for two epochs")

    # An experiment on a shared default reruns every model and shows up in metrics diff.
    tiny.run("dvc", "exp", "run", "-S", "train.lr=1e-7")
    applied = tiny.params()["train"]["lr"]
    assert str(applied) in ("1e-07", "1e-7") or applied == pytest.approx(1e-7)
    diff = json.loads(tiny.run("dvc", "metrics", "diff", "--json").stdout)
    assert "metrics/net1.json" in diff and "f1_macro" in diff["metrics/net1.json"]
    shown = tiny.run("dvc", "exp", "show", "--json").stdout
    assert "train.lr" in shown or '"lr"' in shown
    plots = tiny.run("dvc", "plots", "diff", "--json")
    assert "metrics/predictions/net1.csv" in plots.stdout
