"""Shared fixtures: tiny COCO dicts and a throw-away copy of the repository for end-to-end runs."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock

from imgcls.core.atomic import write_json
from imgcls.core.params import resolve_model
from imgcls.data.packed import PackedSplit, save_split
from imgcls.data.preprocessing import Preprocessing
from imgcls.models.names import MODEL_NAMES
from imgcls.train.checkpoint import save_checkpoint
from imgcls.train.recipe import ModelRecipe
from study_runner import changed_since, copy_baseline, linked_files

REPO = Path(__file__).resolve().parents[1]
# pytest-xdist runs a worker per core. With torch's default of a thread per core in every worker and in every
# process a test starts, they would fight over the cores, idle threads spinning: one thread each.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests first, then the slow ones, then unit tests, each group in file order.

    Those take from seconds to minutes apiece, a unit test well under one; run last, a long one would keep
    a worker busy long after the other ran out of tests.
    """
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2)


_IGNORED_ANYWHERE = shutil.ignore_patterns(
    ".git", ".venv", "tests", "benchmarks", "cache", "tmp", "__pycache__", "*.egg-info"
)


def COPY_IGNORE(folder: str, names: list[str]) -> set[str]:
    """What a project copy leaves out: the pipeline's data/ is at the top only, src/imgcls/data is code."""
    return _IGNORED_ANYWHERE(folder, names) | ({"data"} & set(names) if Path(folder) == REPO else set())


def coco_dict(images: list[tuple[int, list[tuple[int, int]]]], categories: dict[int, str]) -> dict:
    """A COCO dict from [(image_id, [(category_id, iscrowd), ...]), ...]."""
    anns = []
    for image_id, members in images:
        for category_id, crowd in members:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": [0, 0, 4, 4],
                    "area": 16.0,
                    "iscrowd": crowd,
                }
            )
    return {
        "images": [{"id": i, "file_name": f"{i:012d}.png", "width": 40, "height": 30} for i, _ in images],
        "annotations": anns,
        "categories": [{"id": cid, "name": name} for cid, name in categories.items()],
    }


def processed_folder(folder: Path, classes: list[str], **splits: PackedSplit) -> Path:
    """A split stage's output as the stages after it read it: classes.json, preprocessing.json and packed splits."""
    for name, split in splits.items():
        save_split(folder / name, split)
    write_json(folder / "classes.json", classes)
    Preprocessing(next(iter(splits.values())).images.shape[1], "pad").write(folder)
    return folder


def save_trained(path: Path, model: torch.nn.Module, params: Path, name: str, classes: list[str], side: int) -> None:
    """A best.pt as `train@<name>` writes one under `params`: the weights and the model's recipe."""
    recipe = ModelRecipe(resolve_model(params, name, MODEL_NAMES), tuple(classes), Preprocessing(side, "pad"), "x")
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 1, "fingerprint": "x", "recipe": recipe.to_plain()})


def archived_image(stage_dir: Path, member: str) -> np.ndarray:
    """Decode one image of a stage's `images.zip` (a manifest's `file`), as a user unpacking it would see it."""
    with zipfile.ZipFile(stage_dir / "images.zip") as archive:
        return cv2.imdecode(np.frombuffer(archive.read(member), np.uint8), cv2.IMREAD_UNCHANGED)


def tool_env() -> dict[str, str]:
    """Environment for the real git and dvc command lines: this venv first, a fixed identity, no analytics.

    No proxy either: no test reaches the network, and the loopback servers must be reached directly.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="imgcls tests",
        GIT_AUTHOR_EMAIL="tests@imgcls.invalid",
        GIT_COMMITTER_NAME="imgcls tests",
        GIT_COMMITTER_EMAIL="tests@imgcls.invalid",
        DVC_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",
        no_proxy="*",
    )
    return env


def run_command(*args: object, timeout: float = 120, check: bool = False, **options: Any) -> CompletedProcess[str]:
    """A command line as a user types it, output captured; `options` (cwd, env, preexec_fn, stdout) go to
    subprocess.run.

    With `check`, a non-zero exit fails the test showing the command and both streams.
    """
    command = [str(arg) for arg in args]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    result = subprocess.run(command, text=True, timeout=timeout, **{"env": tool_env(), **streams, **options})
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def run_in_process(main: Callable[[], object], argv: Sequence[str], cwd: Path) -> CompletedProcess[str]:
    """A command line's `main` run in this process, in `cwd` with `argv` as sys.argv (where a console script's
    `main` reads it): streams and exit status as run_command reports them, without the seconds a new process
    spends importing torch."""
    command = [str(arg) for arg in argv]
    code, saved = 0, sys.argv
    sys.argv = command
    with contextlib.chdir(cwd), captured(1, "stdout") as stdout, captured(2, "stderr") as stderr:
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        finally:
            sys.argv = saved
    return CompletedProcess(command, code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def captured(fd: int, name: str) -> Iterator[io.StringIO]:
    """What sys.`name` and file descriptor `fd` receive meanwhile, in the order written: a library's C code
    (OpenCV's log) writes to the descriptor, as it would in a process of its own."""
    text, saved_stream, saved_fd = io.StringIO(), getattr(sys, name), os.dup(fd)
    saved_stream.flush()
    with tempfile.TemporaryFile() as file, open(fd, "w", buffering=1, closefd=False) as stream:
        os.dup2(file.fileno(), fd)
        setattr(sys, name, stream)
        try:
            yield text
        finally:
            stream.flush()
            setattr(sys, name, saved_stream)
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
            file.seek(0)
            text.write(file.read().decode(errors="replace"))


# Runs a stage script after `exec`-ing argv[1] (a sabotage: a full disk, a SIGKILL at the next rename).
SABOTAGE_LAUNCHER = (
    "import runpy, sys\nexec(sys.argv[1])\nsys.argv = sys.argv[2:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_stage(
    stage: str, params: Path, *args: object, sabotage: str | None = None, **options: Any
) -> CompletedProcess[str]:
    """The real `stages/<stage>.py` on `params`, run in the params file's folder.

    There, outside the project, dvclive finds no DVC repository to touch. `sabotage` is Python run first in
    the stage's own process; `options` are run_command's.
    """
    python = [sys.executable, "-c", SABOTAGE_LAUNCHER, sabotage] if sabotage else [sys.executable]
    script = REPO / "stages" / f"{stage}.py"
    return run_command(*python, script, "--params", params, *args, **{"cwd": params.parent, **options})


def run_stage_in_process(stage: str, params: Path, *args: object) -> CompletedProcess[str]:
    """`run_stage` in this process: a process of its own costs a stage its imports (scikit-learn's alone is over a
    second, torch's two), often more than its work. Sabotaged runs, process limits and training need run_stage."""
    script = REPO / "stages" / f"{stage}.py"
    run = functools.partial(runpy.run_path, str(script), run_name="__main__")
    return run_in_process(run, [script, "--params", params, *args], params.parent)


def run_train_stage(
    params: Path, model: str, processed: Path, out: Path, live: Path | None = None, **options: Any
) -> CompletedProcess[str]:
    """The train stage on a split stage's folder: checkpoints in `out`, dvclive's files in `live` (default: ../live)."""
    return run_stage(
        "train", params, "--model", model, "--processed", processed, "--train-data", processed / "train",
        "--out", out, "--live", live or out.parent / "live", **{"timeout": 300, **options},
    )  # fmt: skip


def run_extract(root: Path, extract: dict) -> CompletedProcess[str]:
    """The extract stage on a params file holding only `extract`, writing `root`/out."""
    return run_stage_in_process("extract", write_params(root, {"extract": extract}), "--out", root / "out")


def run_augment(params: Path, processed: Path, out: Path, **options: Any) -> CompletedProcess[str]:
    """The augment stage on a split stage's folder, writing train_augmented, augmented.csv and preview.png in `out`.

    In this process, unless `options` (run_stage's: a sabotage, a process limit) need a process of its own.
    """
    args = (
        "--processed", processed, "--out", out / "train_augmented",
        "--provenance", out / "augmented.csv", "--preview", out / "preview.png",
    )  # fmt: skip
    return run_stage("augment", params, *args, **options) if options else run_stage_in_process("augment", params, *args)


def write_params(root: Path, params: dict | str) -> Path:
    """`root`/params.yaml from a dict, or from YAML text written as it stands."""
    path = root / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False))
    return path


def assert_one_line_error(result: CompletedProcess[str], *fragments: str) -> str:
    """A refusal as users get it: a non-zero exit, no traceback, one `error:` line holding every fragment."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporaries of the atomic writers: `.<name>.<8 random>.tmp` and `.<name>.old`."""
    return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"\..+\.([a-z0-9_]{8}\.tmp|old)", p.name))


STRIPED_CLASSES = ["a", "b", "c"]
STRIPED_SIDE = 16
# Params for the stages after split on a striped_processed folder: one quick epoch of net1 and net2.
STAGE_PARAMS = {
    "augment": {},
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
    "models": {"net1": {}, "net2": {}},
    "evaluate": {"misclassified": 4},
    "ensemble": {"models": ["net1", "net2"], "tie_break": "net1"},
    "report": {},
}


def striped_split(per_class: Sequence[int], first_id: int, seed: int) -> PackedSplit:
    """Dark noise images with a bright stripe whose row and colour give the class: learnable in an epoch."""
    labels = np.repeat(np.arange(len(per_class)), per_class).astype(np.int64)
    side = STRIPED_SIDE
    images = np.random.default_rng(seed).integers(0, 60, (len(labels), side, side, 3), dtype=np.uint8)
    for label in range(len(per_class)):
        images[labels == label, 3 + 4 * label : 6 + 4 * label, :, label] = 250
    return PackedSplit(images, labels, np.arange(first_id, first_id + len(labels), dtype=np.int64))


def striped_processed(root: Path, train_per_class: Sequence[int] = (16, 16, 16)) -> Path:
    """A split stage's output folder under `root`: striped train/val/test, classes, preprocessing and splits.csv."""
    splits = {
        name: striped_split(per_class, first_id, seed=first_id)
        for name, per_class, first_id in (
            ("train", train_per_class, 0),
            ("val", (6, 6, 6), 1000),
            ("test", (6, 6, 6), 2000),
        )
    }
    folder = processed_folder(root / "processed", STRIPED_CLASSES, **splits)
    rows = [f"{i},x,{name}" for name, split in splits.items() for i in split.ids.tolist()]
    (folder / "splits.csv").write_text("id,label,split\n" + "\n".join(rows) + "\n")
    return folder


class Repo:
    """A temporary copy of this project, driven through the real `git` and `dvc` CLIs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = tool_env()

    def run(self, *args: str, check: bool = True, timeout: float = 600, **options: Any) -> CompletedProcess[str]:
        return run_command(*args, cwd=self.root, env=self.env, check=check, timeout=timeout, **options)

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def write_params(self, params: dict) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def set_params(self, updates: dict[str, dict]) -> None:
        """Merge `updates` into params.yaml one section deep."""
        params = self.params()
        for section, values in updates.items():
            params.setdefault(section, {}).update(values)
        self.write_params(params)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def project_copy(root: Path) -> Repo:
    """A fresh git + DVC repository at `root` holding this project's pipeline, with no data or lock file."""
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    for generated in ("dvc.lock",):
        (root / generated).unlink(missing_ok=True)
    shutil.rmtree(root / "metrics", ignore_errors=True)
    (root / "metrics").mkdir()
    repo = Repo(root)
    repo.run("git", "init", "-q", "-b", "main")
    repo.commit("project copy")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return project_copy(tmp_path / "project")


# Two tiny models on three small classes at 16 px: the whole pipeline in well under a minute.
TINY = {
    "extract": {"categories": ["zero", "one", "seven"], "per_category": 40, "side_px": 16},
    "train": {"epochs": 2, "batch_size": 32, "log_every_steps": 2},
    "models": {"net1": {}, "net2": {"epochs": 1}},
    "ensemble": {"models": ["net1", "net2"], "tie_break": "net1"},
}


def build_tiny_baseline(root: Path) -> None:
    repo = project_copy(root)
    params = repo.params()
    for section, values in TINY.items():
        params[section] = values if section in ("models", "ensemble") else {**params[section], **values}
    repo.write_params(params)
    repo.commit("tiny pipeline")
    # Every stage's own command in one interpreter, then `dvc commit`: the same outputs and dvc.lock as
    # `dvc repro`, without paying each stage's imports (torch, scikit-learn) again; the tests drive dvc after it.
    run_command(sys.executable, REPO / "tests/study_runner.py", root, env=repo.env, check=True, timeout=600)
    repo.commit("baseline")


@pytest.fixture(scope="session")
def tiny_baseline(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The tiny pipeline reproduced once and committed; tests get copies (see `tiny`).

    Under pytest-xdist the first worker to ask builds it in the run's shared temporary folder
    and the others wait on the lock, so the run pays for it once.
    """
    if worker_id == "master":
        root = tmp_path_factory.mktemp("baseline") / "project"
        build_tiny_baseline(root)
        return root
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, holding every worker's own
    root = shared / "tiny-baseline" / "project"
    with FileLock(shared / "tiny-baseline.lock"):
        if not (root.parent / "built").is_file():
            shutil.rmtree(root, ignore_errors=True)  # a worker that failed half-way
            build_tiny_baseline(root)
            (root.parent / "built").touch()
    return root


@pytest.fixture
def tiny(tiny_baseline: Path, tmp_path: Path) -> Iterator[Repo]:
    """A private copy of the reproduced tiny pipeline: git history, DVC cache and outputs included.

    Its data/ and DVC cache are hard links to the baseline's, which every test shares: one written in
    place rather than replaced fails the test that wrote it.
    """
    root = tmp_path / "project"
    before = linked_files(tiny_baseline)
    copy_baseline(tiny_baseline, root)
    yield Repo(root)
    changed = changed_since(tiny_baseline, before)
    assert not changed, f"written in place, so changed for every later test too: {changed}"


class Killed(Exception):
    """Stands in for a kill signal between two epochs."""


def die_after_first_epoch(epoch: int, record: dict) -> None:
    if epoch == 1:
        raise Killed


GOOD_PNG = cv2.imencode(".png", np.full((30, 40, 3), 90, np.uint8))[1].tobytes()


def distinct_png(index: int) -> bytes:
    """GOOD_PNG with one pixel set from `index`: a different picture each, as extract keeps identical ones only once."""
    pixels = np.full((30, 40, 3), 90, np.uint8)
    pixels[index // 40 % 30, index % 40] = (index * 37 % 256, index // 256 % 256, 200)
    return cv2.imencode(".png", pixels)[1].tobytes()


class CocoCase:
    """Twenty cats and twenty dogs as PNGs with a COCO file and params.

    Each hostile case then breaks them in one way.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"
        self.images.mkdir()
        self.coco: dict = {
            "images": [],
            "annotations": [],
            "categories": [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}],
        }
        for image_id in range(1, 41):
            name = f"{image_id:04d}.png"
            (self.images / name).write_bytes(distinct_png(image_id))
            self.coco["images"].append({"id": image_id, "file_name": name, "width": 40, "height": 30})
            self.coco["annotations"].append(
                {
                    "id": image_id,
                    "image_id": image_id,
                    "category_id": 2 if image_id % 2 else 5,
                    "bbox": [0, 0, 4, 4],
                    "area": 16,
                    "iscrowd": 0,
                }
            )
        self.params = {
            "extract": {
                "annotations": str(root / "annotations.json"),
                "images": str(self.images),
                "categories": ["cat", "dog"],
                "side_px": 16,
                "on_bad_image": "fail",
            }
        }

    def write(self) -> None:
        if not (self.root / "annotations.json").exists():
            (self.root / "annotations.json").write_text(json.dumps(self.coco))
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.params))

    def run_extract(self) -> CompletedProcess[str]:
        self.write()
        return run_stage_in_process("extract", self.root / "params.yaml", "--out", self.root / "out")
