"""Run the README's classic comparisons on a reproduced tiny pipeline, in one interpreter.

The baseline: every stage run, then `dvc commit` records it in dvc.lock. Each study: a fresh copy of
the baseline, the study's `-S` overrides applied with the function `dvc exp run -S` uses, then every
stage DVC finds changed, dependencies first, run by its own dvc.yaml command.
Running them here rather than through `dvc exp run` spares each stage torch's start-up, which is most
of a tiny stage's time; what runs is the same code on the same arguments.

    python tests/study_runner.py <baseline repo> [<work folder> <studies.json> <results.json>]

With the baseline alone, it is reproduced and committed and nothing else runs (the tests' tiny pipeline).

studies.json is a list of {"name", "overrides"}; results.json gets {name: {"ran", "report"} or {"error"}}.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path

import networkx as nx
from dvc.repo import Repo
from dvc.utils.hydra import apply_overrides


def run_command(command: str) -> None:
    """One dvc.yaml command (`python stages/x.py ...`) in this interpreter; a non-zero exit raises."""
    argv = shlex.split(command)
    if argv[0] != "python":
        raise ValueError(f"not a python stage command: {command}")
    # Each stage imports imgcls afresh, so its checkpoints' code fingerprint covers the modules it imports,
    # as in a process of its own, not every module an earlier stage left behind.
    for name in [name for name in sys.modules if name.split(".")[0] == "imgcls"]:
        del sys.modules[name]
    saved = sys.argv
    sys.argv = argv[1:]
    try:
        runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise RuntimeError(f"{command} exited {exit_.code}") from exit_
    finally:
        sys.argv = saved


def reproduce(root: Path, everything: bool = False) -> list[str]:
    """`dvc repro` in `root` with the commands run here.

    Runs each stage that changed, dependencies first; returns their names.
    """
    os.chdir(root)
    ran = []
    with Repo(".") as repo, repo.lock:
        # DVC's graph points from a stage to the stages it depends on.
        for stage in reversed(list(nx.topological_sort(repo.index.graph))):
            if everything or stage.changed():  # checked after its upstream ran, as dvc repro does
                for command in stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]:
                    run_command(command)
                ran.append(stage.addressing)
    return ran


# What a study links to rather than copies: see copy_baseline.
LINKED = (".dvc/cache", "data")


def copy_baseline(baseline: Path, root: Path) -> None:
    """A copy of the baseline whose DVC cache and data/ are hard links, the rest copied.

    DVC writes a cache file once, under its hash, and never rewrites it; every stage writes its data/
    files to a temporary path and renames it into place (imgcls.core.atomic), so a study replaces the
    link and leaves the baseline's file alone. metrics/ (dvclive rewrites its files), params.yaml,
    dvc.lock and DVC's state database are edited in place, so they are copied. A linked file keeps its
    inode and mtime, so DVC's state database knows its hash; copied checkpoints were hashed again,
    and copying them (200 MB a study) took over a second.
    """
    shared = [baseline / folder for folder in LINKED]

    def copy(source: str, target: str) -> None:
        if any(Path(source).is_relative_to(folder) for folder in shared):
            try:
                os.link(source, target)
                return
            except OSError:  # another file system
                pass
        shutil.copy2(source, target)

    shutil.copytree(baseline, root, symlinks=True, copy_function=copy)


def linked_files(baseline: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file a study links to: a study writing into one would change the next studies."""
    files = (path for folder in LINKED for path in (baseline / folder).rglob("*") if path.is_file())
    return {str(path): ((info := path.stat()).st_size, info.st_mtime_ns) for path in files}


def changed_since(baseline: Path, before: dict[str, tuple[int, int]]) -> list[str]:
    """The linked files written, added or deleted since `before` was taken with linked_files."""
    after = linked_files(baseline)
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def run_study(baseline: Path, root: Path, overrides: list[str]) -> dict:
    start = time.perf_counter()
    copy_baseline(baseline, root)
    apply_overrides(root / "params.yaml", overrides)
    ran = reproduce(root)
    return {"ran": ran, "report": (root / "metrics/report.md").read_text(), "seconds": time.perf_counter() - start}


def build_baseline(baseline: Path) -> None:
    """Every stage run, then `dvc commit`: dvc.lock records the outputs as `dvc repro` would."""
    reproduce(baseline, everything=True)
    with Repo(baseline) as repo:
        repo.commit(None, force=True)


def main() -> None:
    baseline, *rest = (Path(arg).resolve() for arg in sys.argv[1:])
    build_baseline(baseline)
    if not rest:
        return
    work, studies, results_path = rest
    results = {}
    before = linked_files(baseline)
    for index, study in enumerate(json.loads(studies.read_text())):
        try:
            results[study["name"]] = run_study(baseline, work / f"study{index}", study["overrides"])
        except Exception:
            results[study["name"]] = {"error": traceback.format_exc()}
    changed = changed_since(baseline, before)
    if changed:
        raise RuntimeError(f"the studies wrote into files they share with the baseline (see copy_baseline): {changed}")
    results_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
