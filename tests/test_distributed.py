"""Two CPU processes on gloo through the real train stage: it completes, writes once, and matches one process.

Tolerance: net1 has no batch norm and no dropout, and augmentation is off, so each DDP step
averages two half-batch mean gradients that together equal the single-process full-batch
mean; the only difference left is floating-point summation order in the all-reduce. That
moves the validation loss by ~1e-7, so we allow 1e-4, and validation accuracy by at most one image.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import processed_folder, run_train_stage
from imgcls.data.packed import PackedSplit

pytestmark = pytest.mark.e2e

EPOCHS = 3


def packed(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 16, 16, 3), dtype=np.uint8)
    for label in range(3):
        images[labels == label, 4 + 3 * label : 7 + 3 * label, :, label] = 250
    return PackedSplit(images, labels.astype(np.int64), np.arange(n, dtype=np.int64) + 1000 * seed)


def train(tmp_path, nproc):
    processed = tmp_path / "processed"
    if not processed.exists():
        processed_folder(processed, ["a", "b", "c"], train=packed(96, 1), val=packed(30, 2))
    params = tmp_path / f"params{nproc}.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "epochs": EPOCHS,
                    "batch_size": 32,
                    "lr": 0.003,
                    "crop_padding": 0,
                    "hflip": False,
                    "nproc": nproc,
                    "device": "cpu",
                },
                "models": {"net1": {}},
            }
        )
    )
    out = tmp_path / f"run{nproc}"
    result = run_train_stage(params, "net1", processed, out / "models")
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


def test_two_gloo_processes_match_one(tmp_path):
    single, _ = train(tmp_path, 1)
    double, stdout = train(tmp_path, 2)
    assert stdout.count("train@net1: best epoch") == 1, "only rank 0 reports"
    curve = (double / "live/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert len(curve) == 1 + EPOCHS, "each epoch logged once, not once per process"
    assert (double / "models/best.pt").is_file() and (double / "models/last.pt").is_file()

    def last_epoch(run: Path, metric: str) -> float:
        return float((run / "live/plots/metrics" / f"{metric}.tsv").read_text().splitlines()[-1].split("\t")[-1])

    assert last_epoch(double, "val/loss") == pytest.approx(last_epoch(single, "val/loss"), abs=1e-4)
    assert abs(last_epoch(double, "val/acc") - last_epoch(single, "val/acc")) <= 1 / 30 + 1e-9
    assert last_epoch(double, "train/loss") == pytest.approx(last_epoch(single, "train/loss"), abs=1e-4)
