"""SIGKILL during `dvc repro` training, then `dvc repro` again: it resumes to the weights of an uninterrupted run."""

import os
import signal
import subprocess
import time

import pytest
import torch

from imgcls.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.e2e


def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(tiny):
    """On the tiny pipeline's data: a cnn of six epochs, long enough for the kill to land between two of them."""
    repo = tiny
    repo.set_params({"models": {"cnn": {"epochs": 6}}})
    repo.commit("a cnn to kill")

    last = repo.root / "data/models/cnn/last.pt"
    process = subprocess.Popen(
        ["dvc", "repro", "train@cnn"],
        cwd=repo.root,
        env=repo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < 6, "the kill must land before training finished"

    resumed = repo.run("dvc", "repro", "train@cnn")
    assert f"resuming after epoch {killed_at}" in resumed.stdout + resumed.stderr
    resumed_weights = load_checkpoint(repo.root / "data/models/cnn/best.pt")["model"]
    resumed_curve = (repo.root / "metrics/train/cnn/plots/metrics/val/f1_macro.tsv").read_text()

    last.unlink()
    fresh = repo.run("dvc", "repro", "--force", "train@cnn")
    assert "resuming" not in fresh.stdout + fresh.stderr
    # The same weights score the same in every metric evaluate computes; the curve is each epoch's val score.
    fresh_weights = load_checkpoint(repo.root / "data/models/cnn/best.pt")["model"]
    assert resumed_weights.keys() == fresh_weights.keys()
    assert all(torch.equal(resumed_weights[k], fresh_weights[k]) for k in fresh_weights)
    assert (repo.root / "metrics/train/cnn/plots/metrics/val/f1_macro.tsv").read_text() == resumed_curve
