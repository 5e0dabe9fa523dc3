"""Every module a stage executes and every params key it reads is declared in dvc.yaml.

An undeclared module or key means an edit changes results without DVC rerunning the stage, so
`dvc.lock` would vouch for outputs the current code or params did not produce.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from imgcls.core.params import PARAM_SECTIONS

SRC = REPO / "src"
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
# `foreach` stages are checked through their template, with ${key} standing for any model name.
STAGES = {name: stage.get("do", stage) for name, stage in PIPELINE.items()}


def module_file(dotted: str) -> Path | None:
    """The file Python runs for an `imgcls` module, or None for names that are not modules."""
    base = SRC.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST) -> set[str]:
    """Dotted `imgcls` modules a parsed file imports anywhere (functions included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "imgcls"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "imgcls":
            found.add(node.module)
            # `from imgcls.train import distributed` names a module; `from imgcls.core.params import X` names a class.
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")
            }
    return found


def executed_files(script: Path) -> set[Path]:
    """The stage script plus every imgcls file its imports execute, parent packages' __init__ included."""
    files, queue = {script}, [script]
    while queue:
        for dotted in imported_modules(ast.parse(queue.pop().read_text())):
            parts = dotted.split(".")
            for depth in range(1, len(parts) + 1):
                path = module_file(".".join(parts[:depth]))
                if path is not None and path not in files:
                    files.add(path)
                    queue.append(path)
    return files


def declared_deps(stage: dict) -> list[Path]:
    return [REPO / (dep if isinstance(dep, str) else next(iter(dep))) for dep in stage.get("deps", [])]


def stage_scripts(stage: dict) -> list[Path]:
    commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
    return [REPO / re.search(r"python (stages/\w+\.py)", command).group(1) for command in commands]


def model_entry(stage: dict) -> set[str]:
    """The params keys that make up one model's settings in this stage's foreach: its own entry, or a finetune one's."""
    return {"models.${item.from}", "finetune.${key}"} if "${item.from}" in str(stage["cmd"]) else {"models.${key}"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_declared_dependency(name):
    stage = STAGES[name]
    deps = declared_deps(stage)
    executed = set().union(*(executed_files(script) for script in stage_scripts(stage)))
    missing = sorted(str(f.relative_to(REPO)) for f in executed if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"{name}: dvc.yaml lacks these deps, so editing them would not rerun the stage: {missing}"
    code_deps = [d for d in deps if d.is_relative_to(SRC) or d.is_relative_to(REPO / "stages")]
    unused = sorted(str(d.relative_to(REPO)) for d in code_deps if not any(f == d or d in f.parents for f in executed))
    assert not unused, f"{name}: the stage never runs these deps, so editing them would rerun it for nothing: {unused}"


def params_read(script: Path, model: set[str] = frozenset({"models.${key}"})) -> set[str]:
    """The params keys a stage script reads, from its calls to the `imgcls.core.params` loaders.

    `load_params(path, "a", "b")` reads sections a and b; where the script only touches attributes
    of a section (`extract.side_px`), just those keys count. `resolve_model` reads `train` and the
    model's own entry (`model`); `read_params_file` hands the whole file over, which here means the models;
    `exit_on_problems` (the check stage) validates every section.
    """
    tree = ast.parse(script.read_text())
    read: set[str] = set()
    sections: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "load_params"
        ):
            names = [a.value for a in node.value.args[1:]]
            target = node.targets[0]
            variables = [e.id for e in target.elts] if isinstance(target, ast.Tuple) else [target.id]
            sections.update(zip(variables, names))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "resolve_model":
            read |= {"train", *model}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "read_params_file":
            read |= {"models", "finetune"}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "exit_on_problems":
            read |= set(PARAM_SECTIONS)  # the check stage validates the whole file
    for variable, section in sections.items():
        uses = [
            n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == variable and isinstance(n.ctx, ast.Load)
        ]
        attributes = {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) == variable
        }
        whole = len(uses) > sum(
            1 for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) == variable
        )
        read |= {section} if whole or not attributes else {f"{section}.{a}" for a in attributes}
    return read


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_params_key_a_stage_reads_is_declared(name):
    stage = STAGES[name]
    declared = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
    whole_file = {"params.yaml": None} in stage.get("params", [])  # `- params.yaml:` tracks every key
    read = set().union(*(params_read(script, model_entry(stage)) for script in stage_scripts(stage)))
    assert read, f"{name}: found no params reads; the scan no longer matches how stages load params"
    missing = sorted(k for k in read if not whole_file and not any(k == d or k.startswith(f"{d}.") for d in declared))
    assert not missing, f"{name}: reads params {missing} that dvc.yaml does not declare (declared: {declared})"


def test_the_scan_sees_through_imports_to_library_modules():
    files = {str(f.relative_to(REPO)) for f in executed_files(REPO / "stages/train.py")}
    assert {"src/imgcls/evaluate/scores.py", "src/imgcls/models/classic.py", "src/imgcls/__init__.py"} <= files
    assert params_read(REPO / "stages/normalize.py") == {"extract.side_px", "normalize.resize"}
