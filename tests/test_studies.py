"""Every classic comparison in the README runs on the embedded sample, one epoch each.

The `dvc exp run` lines are read from the README itself, so a study that stops working, or a line
that stops parsing, fails here. Every value of a `--queue` sweep must validate; the first runs.
"""

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import REPO, Repo, project_copy, run_command
from imgcls.core.params import load_params, model_names, read_params_file, resolve_model
from imgcls.models.names import MODEL_NAMES

pytestmark = pytest.mark.e2e

# The shipped models the studies name, on three small classes at 32 px (resnet18's least) for one epoch;
# resnet18 for three, so the unfreezing study's epoch 3 comes (a later one is refused).
BASE = {
    "extract": {"categories": ["zero", "one", "seven"], "per_category": 20, "side_px": 32},
    "train": {"epochs": 1, "batch_size": 32},
    "models": {"net1": {}, "net2": {}, "cnn": {}, "resnet18": {"lr": 0.0005, "epochs": 3}},
    "ensemble": {"models": ["net1", "net2", "cnn"], "tie_break": "cnn"},
}


def readme_studies() -> list[tuple[str, list[list[str]]]]:
    """(the comment above it, every sweep variant's overrides).

    One for each `dvc exp run` line of the classic comparisons.
    """
    text = (REPO / "README.md").read_text()
    block = text.split("### Classic comparisons", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    from dvc.utils.hydra import get_hydra_sweeps

    studies, comment = [], ""
    for line in block.strip().splitlines():
        if line.startswith("#"):
            comment = line.lstrip("# ")
            continue
        tokens = shlex.split(line.split("&&")[0])
        assert tokens[:3] == ["dvc", "exp", "run"], line
        overrides = [tokens[i + 1] for i, token in enumerate(tokens) if token == "-S"]
        variants = (
            [v["params.yaml"] for v in get_hydra_sweeps({"params.yaml": overrides})]
            if "--queue" in tokens
            else [overrides]
        )
        studies.append((comment, variants))
    return studies


STUDIES = readme_studies()

# What a study must have rerun, beyond its models: the stage its change is about.
RERUNS = {"warm start": "finetune@", "binary": "extract"}


def seed_torchvision_cache(torch_home: Path) -> None:
    """A resnet18 ImageNet-layout file where `pretrained: true` looks first, so no test needs the network."""
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    target = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18().state_dict(), target)


def test_the_readme_lists_a_study_for_each_comparison_the_course_runs():
    names = " | ".join(name for name, _ in STUDIES)
    for study in (
        "padded",
        "self-attention",
        "dropout",
        "last-block",
        "unfreezing",
        "linear probe",
        "warm start",
        "ensemble",
        "train/val",
        "normalisation",
        "per-iteration",
        *RERUNS,
    ):
        assert study in names, names


def study_baseline(root: Path) -> Repo:
    repo = project_copy(root)
    params = repo.params()
    for section, values in BASE.items():
        params[section] = values if section in ("models", "ensemble") else {**params[section], **values}
    repo.write_params(params)
    repo.commit("study baseline")
    return repo


def test_every_value_of_every_readme_study_is_valid_params(tmp_path):
    from dvc.utils.hydra import apply_overrides

    baseline = study_baseline(tmp_path / "baseline").root / "params.yaml"
    for number, (_, variants) in enumerate(STUDIES):
        for index, overrides in enumerate(variants):
            check = tmp_path / f"check/{number}-{index}/params.yaml"
            check.parent.mkdir(parents=True)
            check.write_text(baseline.read_text())
            apply_overrides(check, overrides)
            raw = read_params_file(check)
            load_params(check, "extract", "split", "augment", "train", "ensemble", "report")
            for model in model_names(raw):
                resolve_model(check, model, MODEL_NAMES)


def test_every_readme_study_runs_on_the_embedded_sample(tmp_path):
    """The first value of each study, in one interpreter (two halves in two workers cost more than they saved)."""
    repo = study_baseline(tmp_path / "baseline")
    studies = tmp_path / "studies.json"
    studies.write_text(json.dumps([{"name": name, "overrides": variants[0]} for name, variants in STUDIES]))
    seed_torchvision_cache(tmp_path / "torch")
    results_path = tmp_path / "results.json"
    run_command(
        sys.executable, REPO / "tests/study_runner.py", repo.root, tmp_path / "work", studies, results_path,
        env={**repo.env, "TORCH_HOME": str(tmp_path / "torch")}, check=True, timeout=900,
    )  # fmt: skip
    results = json.loads(results_path.read_text())
    failed = {name: result["error"] for name, result in results.items() if "error" in result}
    assert not failed, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())
    assert list(results) == [name for name, _ in STUDIES]
    for name, result in results.items():
        print(f"{name}: {result['seconds']:.1f} s, ran {result['ran']}")
        assert result["ran"], name
        assert result["report"].startswith("# Winner: "), name
        for topic, stage in RERUNS.items():
            assert topic not in name or any(ran.startswith(stage) for ran in result["ran"]), (name, result["ran"])
