"""Parallel experiments with `dvc queue`, and sharing data, models and experiments through a local DVC remote."""

import json
import time

import pytest

pytestmark = pytest.mark.e2e


def test_two_queued_experiments_run_in_parallel(tiny):
    for lr in ("0.01", "0.02"):  # one model's lr, so each experiment retrains only that model
        tiny.run("dvc", "exp", "run", "--queue", "-S", f"+models.net2.lr={lr}")
    tiny.run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        status = tiny.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    tiny.run("dvc", "queue", "stop", "--kill", check=False)
    assert status.count("Success") == 2, status
    experiments = json.loads(tiny.run("dvc", "exp", "show", "--json").stdout)
    learning_rates = {
        exp["data"]["params"]["params.yaml"]["data"]["models"]["net2"].get("lr")
        for baseline in experiments
        for exp in (baseline.get("experiments") or [])
        for exp in exp["revs"]
        if exp.get("data")
    }
    assert {0.01, 0.02} <= learning_rates


def test_local_remote_shares_data_models_and_experiments(tiny, tmp_path):
    storage, origin = tmp_path / "dvc-storage", tmp_path / "origin.git"
    tiny.run("git", "init", "-q", "--bare", str(origin))
    tiny.run("git", "remote", "add", "origin", str(origin))
    tiny.run("dvc", "remote", "add", "-d", "storage", str(storage))
    tiny.commit("local DVC remote")
    tiny.run("git", "push", "-q", "origin", "main")
    tiny.run("dvc", "push")
    tiny.run("dvc", "exp", "run", "-n", "higher-lr", "-S", "+models.net2.lr=0.01")
    tiny.run("dvc", "exp", "push", "origin", "higher-lr")

    clone = tmp_path / "clone"
    tiny.run("git", "clone", "-q", "-b", "main", str(origin), str(clone))
    elsewhere = type(tiny)(clone)
    elsewhere.run("dvc", "pull")
    assert (clone / "data/models/net1/best.pt").is_file()
    assert "up to date" in elsewhere.run("dvc", "status").stdout
    assert "higher-lr" in elsewhere.run("dvc", "exp", "list", "origin").stdout
    elsewhere.run("dvc", "exp", "pull", "origin", "higher-lr")
    elsewhere.run("dvc", "exp", "apply", "higher-lr")
    assert elsewhere.params()["models"]["net2"]["lr"] == 0.01
