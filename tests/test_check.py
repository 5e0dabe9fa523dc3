"""`imgcls check`: the whole params.yaml validated at once, one line per problem, before DVC reads it."""

from __future__ import annotations

import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import yaml

from conftest import REPO, run_command

pytestmark = pytest.mark.slow  # each runs `python -m imgcls check`


def check(params: Path) -> CompletedProcess[str]:
    return run_command(sys.executable, "-m", "imgcls", "check", "--params", params)


def test_the_shipped_params_file_passes():
    result = check(REPO / "params.yaml")
    assert result.returncode == 0, result.stderr
    assert "every section, model, finetune: entry and ensemble member is valid" in result.stdout


def test_every_problem_gets_one_line_naming_its_key(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["lr"] = 0
    params["models"] = {"net1": {}, "resnet18": {"pretrained": True, "unfreeze_at_epoch": 3}}
    params["report"]["feature_imag"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = check(tmp_path / "params.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'params.yaml'}: report.feature_imag: unknown key; did you mean 'feature_image'?",
    ], "an unknown key stops the check: every section's meaning depends on its keys"

    del params["report"]["feature_imag"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lines = check(tmp_path / "params.yaml").stderr.splitlines()
    assert lines == [
        "error: train.lr: Input should be greater than 0 (got 0)",
        "error: ensemble.models: ['net2', 'cnn', 'mish_cnn'] are not in models: or finetune: (net1, resnet18); "
        "list two or more of those, or set ensemble.models: [] to run without an ensemble",
    ]


def test_finetune_mistakes_that_dvc_would_report_first_are_named(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["finetune"] = {
        "a": {"dropout": 0.3},
        "b": {"from": "c"},
        "c": {"from": "b"},
        "net2": {"from": "cnn"},
        "d": {"from": "d"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = check(tmp_path / "params.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: finetune.a.from: missing; expected a mapping with from: <a key of models:>, got {'dropout': 0.3}",
        "error: finetune.b.from: 'c' makes a cycle (b -> c -> b); from: must name a key of models:",
        "error: finetune.c.from: 'b' makes a cycle (c -> b -> c); from: must name a key of models:",
        "error: finetune.net2: also a key of models:; a finetuned model needs a name of its own",
        "error: finetune.d.from: 'd' is this entry itself; "
        "name the key of models: whose trained best.pt it starts from",
    ]


def test_the_check_loads_no_torch(tmp_path):
    """`imgcls check` is the quick look before `dvc repro`: its parser and checks stay clear of torch."""
    probe = "import sys; from imgcls.commands.cli import main; main(sys.argv[1:]); print('torch' in sys.modules)"
    result = run_command(sys.executable, "-c", probe, "check", "--params", REPO / "params.yaml", check=True)
    assert result.stdout.splitlines()[-1] == "False", result.stdout
