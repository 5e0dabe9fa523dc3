"""Shared fixtures: tiny COCO dicts and a throw-away copy of the repository for end-to-end runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
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
from imgcls.models import MODEL_NAMES
from imgcls.train.checkpoint import save_checkpoint
from imgcls.train.recipe import ModelRecipe

REPO = Path(__file__).resolve().parents[1]
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
    """Environment for the real git and dvc command lines: this venv first, a fixed identity, no analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="imgcls tests",
        GIT_AUTHOR_EMAIL="tests@imgcls.invalid",
        GIT_COMMITTER_NAME="imgcls tests",
        GIT_COMMITTER_EMAIL="tests@imgcls.invalid",
        DVC_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_stage(
    stage: str, params: Path, *args: object, timeout: float = 120, **options: Any
) -> subprocess.CompletedProcess[str]:
    """The real `stages/<stage>.py` on `params`, output captured; `options` (cwd, env) go to subprocess.run."""
    command = [sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params", str(params), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **{"env": tool_env(), **options})


def run_train_stage(params: Path, model: str, processed: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The train stage on a split stage's folder: checkpoints under `out`/models, dvclive's files under `out`/live."""
    return run_stage(
        "train", params, "--model", model, "--processed", processed, "--train-data", processed / "train",
        "--out", out / "models", "--live", out / "live", timeout=300,
    )  # fmt: skip


class Repo:
    """A temporary copy of this project, driven through the real `git` and `dvc` CLIs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = tool_env()

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

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
    repo.run("dvc", "repro")
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
def tiny(tiny_baseline: Path, tmp_path: Path) -> Repo:
    """A private copy of the reproduced tiny pipeline: git history, DVC cache and outputs included."""
    root = tmp_path / "project"
    shutil.copytree(tiny_baseline, root, symlinks=True)
    return Repo(root)


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

    def run_extract(self) -> subprocess.CompletedProcess[str]:
        self.write()
        return subprocess.run(
            [
                sys.executable,
                str(REPO / "stages/extract.py"),
                "--params",
                str(self.root / "params.yaml"),
                "--out",
                str(self.root / "out"),
            ],
            capture_output=True,
            text=True,
            env=tool_env(),
            timeout=120,
        )
