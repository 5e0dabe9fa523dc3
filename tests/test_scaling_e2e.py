"""Parallel experiments with `dvc queue`, and sharing data, models and experiments through a local DVC remote."""

import json
import subprocess
import time

import pytest

from conftest import Repo

pytestmark = pytest.mark.e2e


def follow_to_the_end(repo: Repo, name: str, deadline: float) -> None:
    """`dvc queue logs --follow` returns when the experiment's process ends, rather than polling `dvc queue status`
    (a second of CPU each time, taken from the experiments); asked again while no worker has picked it up yet."""
    while True:
        result = repo.run(
            "dvc", "queue", "logs", "--follow", name, check=False, timeout=max(deadline - time.monotonic(), 1)
        )
        if "has not been started" not in result.stderr or time.monotonic() > deadline:
            return
        time.sleep(1)


def test_queued_experiments_run_in_parallel_and_travel_through_a_local_remote(tiny, tmp_path):
    """One tiny pipeline for both: each experiment reruns stages that cost seconds of start-up apiece."""
    storage, origin = tmp_path / "dvc-storage", tmp_path / "origin.git"
    tiny.run("git", "init", "-q", "--bare", str(origin))
    tiny.run("git", "remote", "add", "origin", str(origin))
    tiny.run("dvc", "remote", "add", "-d", "storage", str(storage))
    tiny.commit("local DVC remote")
    tiny.run("git", "push", "-q", "origin", "main")
    tiny.run("dvc", "push")

    for lr in ("0.01", "0.02"):  # one model's lr, so each experiment retrains only that model
        tiny.run("dvc", "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"+models.net2.lr={lr}")
    # The workers it starts outlive it; given its pipes, they would hold this call until the queue is empty.
    tiny.run("dvc", "queue", "start", "-j", "2", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 420
    for name in ("lr-0.01", "lr-0.02"):
        follow_to_the_end(tiny, name, deadline)
    status = tiny.run("dvc", "queue", "status").stdout
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
    tiny.run("dvc", "exp", "push", "origin", "lr-0.01")

    clone = tmp_path / "clone"
    tiny.run("git", "clone", "-q", "-b", "main", str(origin), str(clone))
    elsewhere = type(tiny)(clone)
    elsewhere.run("dvc", "pull")
    assert (clone / "data/models/net1/best.pt").is_file()
    assert "up to date" in elsewhere.run("dvc", "status").stdout
    assert "lr-0.01" in elsewhere.run("dvc", "exp", "list", "origin").stdout
    elsewhere.run("dvc", "exp", "pull", "origin", "lr-0.01")
    elsewhere.run("dvc", "exp", "apply", "lr-0.01")
    assert elsewhere.params()["models"]["net2"]["lr"] == 0.01
    assert "up to date" in elsewhere.run("dvc", "status").stdout, "the experiment's model came with it"
