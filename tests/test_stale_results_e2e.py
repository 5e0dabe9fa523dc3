"""Through the real `dvc` and `git` command lines: no result in the workspace belongs to other params, code or data."""

import csv
import json

import numpy as np
import pytest

from conftest import archived_image

pytestmark = pytest.mark.e2e


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_changing_the_image_side_reruns_extraction_instead_of_restoring_the_run_cache(tiny):
    # The tiny pipeline ran at 16 px, so DVC's run cache holds an extract run that differs only in the side.
    result = tiny.run("dvc", "exp", "run", "-S", "extract.side_px=20", "augment")
    assert "extract" in stages_run(result.stdout), result.stdout
    with open(tiny.root / "data/extracted/manifest.csv", newline="") as f:
        members = [row["file"] for row in csv.DictReader(f)]
    sides = {max(archived_image(tiny.root / "data/extracted", member).shape[:2]) for member in members}
    assert sides == {20}
    assert np.load(tiny.root / "data/processed/test/images.npy", mmap_mode="r").shape[1:] == (20, 20, 3)

    for bad in ("abc", "[32]"):
        refused = tiny.run("dvc", "exp", "run", "-S", f"extract.side_px={bad}", "extract", check=False)
        assert refused.returncode != 0, f"side_px={bad} was accepted"
        assert "extract.side_px" in refused.stderr + refused.stdout


def test_bytecode_caches_do_not_mark_code_dependencies_changed(tiny):
    env = {k: v for k, v in tiny.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    tiny.env = env
    tiny.run("python", "-m", "compileall", "-q", "src", "stages")
    assert list((tiny.root / "src/imgcls/models").glob("__pycache__/*.pyc")), "bytecode was written"
    assert "up to date" in tiny.run("dvc", "status").stdout


def test_an_edited_stage_script_retrains_from_scratch_instead_of_resuming(tiny):
    script = tiny.root / "stages/train.py"
    script.write_text(script.read_text() + "\n# an edit that DVC and the resume fingerprint must both notice\n")
    result = tiny.run("dvc", "repro", "train@net1")
    assert stages_run(result.stdout) == {"train@net1"}
    output = result.stdout + result.stderr
    assert "resuming" not in output and "different settings, data or code; starting afresh" in output


def test_a_forced_repro_trains_again(tiny):
    before = json.loads((tiny.root / "metrics/train/net1/metrics.json").read_text())
    result = tiny.run("dvc", "repro", "--force", "--single-item", "train@net1")
    output = result.stdout + result.stderr
    assert "resuming" not in output and "that run finished; training again from scratch" in output
    after = json.loads((tiny.root / "metrics/train/net1/metrics.json").read_text())
    assert after == before, "a retrain reproduces the same best epoch and score"
