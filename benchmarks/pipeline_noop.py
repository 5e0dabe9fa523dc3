"""How long DVC takes to decide there is nothing to do, with 10,000 extracted images in the pipeline.

Builds a throw-away copy of this project whose extract stage reads `--images` small PNGs
(by default a COCO annotation file and its image folder, the sample's layout), runs the whole
pipeline once (two one-epoch models), then times a no-op `dvc repro` and `dvc status` (target:
at most 3 s each), and checks that changing one model's param reruns only that model's stages
(plus the cheap ensemble and report). `--source folder` measures the image-folder source, whose
folder DVC hashes twice (it is both `extract.annotations` and `extract.images`).

    python benchmarks/pipeline_noop.py [--images 10000] [--repeats 3] [--source coco|folder]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from imgcls.atomic import write_json

from scratch import scratch_dir  # benchmarks/ is on sys.path when a script there runs

REPO = Path(__file__).resolve().parents[1]
_IGNORED_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "cache", "tmp", "__pycache__", "*.egg-info", "metrics")


def IGNORE(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: the pipeline's data/ is at the top only, src/imgcls/data is code."""
    return _IGNORED_ANYWHERE(folder, names) | ({"data"} & set(names) if Path(folder) == REPO else set())
TARGET_SECONDS = 3.0


def run(root: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@imgcls.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@imgcls.invalid"}
    start = time.perf_counter()
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


CATEGORIES = ("even", "odd")
SIDE = 24


def write_images(count: int, path_of: Callable[[int, str], Path]) -> None:
    """`count` 24x24 PNGs in two learnable classes, image `index` of class `category` written to `path_of(index, category)`."""
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        pixels[:, :: 2 + index % 2] = 255
        path = path_of(index, CATEGORIES[index % 2])
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), pixels)


def make_source(root: Path, count: int, source: str) -> dict[str, str]:
    """Write the dataset under `root` and return the `extract` params that read it."""
    if source == "folder":
        write_images(count, lambda index, category: root / category / f"{index:05d}.png")
        return {"source": "folder", "annotations": str(root), "images": str(root)}
    images = root / "images"
    write_images(count, lambda index, category: images / f"{index:05d}.png")
    write_json(root / "annotations.json", {
        "images": [{"id": i + 1, "file_name": f"{i:05d}.png", "width": SIDE, "height": SIDE} for i in range(count)],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [0, 0, SIDE, SIDE], "area": SIDE * SIDE, "iscrowd": 0}
            for i in range(count)
        ],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CATEGORIES)],
    })
    return {"source": "coco", "annotations": str(root / "annotations.json"), "images": str(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", choices=("coco", "folder"), default="coco")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(REPO, project, ignore=IGNORE)
        (project / "dvc.lock").unlink(missing_ok=True)
        (project / "metrics").mkdir()
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["extract"].update(make_source(Path(tmp) / "dataset", args.images, args.source), categories=list(CATEGORIES), side_px=16)
        params["train"]["epochs"] = 1
        params["models"] = {"net1": {}, "net2": {}}
        params["ensemble"] = {"models": ["net1", "net2"], "tie_break": "net1"}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(project, "git", "init", "-q")
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-qm", "benchmark project")

        first, _ = run(project, "dvc", "repro")
        print(f"first dvc repro ({args.images} images, {args.source} source, 2 models): {first:.1f} s")
        repro = [run(project, "dvc", "repro")[0] for _ in range(args.repeats)]
        status = [run(project, "dvc", "status")[0] for _ in range(args.repeats)]
        print(f"no-op dvc repro: median {statistics.median(repro):.2f} s over {args.repeats} runs {[round(t, 2) for t in repro]}")
        print(f"dvc status:      median {statistics.median(status):.2f} s over {args.repeats} runs {[round(t, 2) for t in status]}")

        params["models"]["net2"] = {"epochs": 2}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _, output = run(project, "dvc", "repro")
        ran = sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))
        allowed = {"train@net2", "evaluate@net2", "ensemble", "report"}
        print(f"after models.net2.epochs=2, reran: {', '.join(ran)}")
        only_that_model = {"train@net2", "evaluate@net2"} <= set(ran) <= allowed
        print(f"only net2 (plus ensemble/report) reran: {'yes' if only_that_model else 'NO'}")
        worst = max(statistics.median(repro), statistics.median(status))
        print(f"target <= {TARGET_SECONDS:.0f} s: {'met' if worst <= TARGET_SECONDS else 'NOT met'} (worst median {worst:.2f} s)")


if __name__ == "__main__":
    main()
