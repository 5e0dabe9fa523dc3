"""Parallel experiments with `dvc queue`, and sharing data, models and experiments through a local DVC remote."""

import json
import subprocess
import time

import pytest

from conftest import Repo

pytestmark = pytest.mark.e2e


def queue_status_once_done(repo: Repo, deadline: float) -> str:
    """`dvc queue status` once no experiment is queued or running.

    Rather than asking every few seconds (a second of CPU each time, taken from the experiments), it follows
    the first unfinished experiment's log: `dvc queue logs --follow` returns when that process ends, and fails
    at once while no worker has started it yet.
    """
    while True:
        status = repo.run("dvc", "queue", "status").stdout
        unfinished = [row.split()[1] for row in status.splitlines() if row.split()[-1:] in (["Queued"], ["Running"])]
        if not unfinished or time.monotonic() > deadline:
            return status
        remaining = max(deadline - time.monotonic(), 1)
        if repo.run("dvc", "queue", "logs", "--follow", unfinished[0], check=False, timeout=remaining).returncode:
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
    status = queue_status_once_done(tiny, deadline=time.monotonic() + 420)
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
