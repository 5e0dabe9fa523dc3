"""How long DVC takes to decide there is nothing to do, with many extracted images in the pipeline.

Builds a throw-away copy of this project whose extract stage reads `--images` COCO-like photos
(640x480 JPEGs in 5 categories; by default a COCO annotation file and its image folder, the
sample's layout), runs the whole pipeline once (two one-epoch models at 16 px), then times a
no-op `dvc repro` and `dvc status` (target: at most 2 s each), and checks that changing one
model's param reruns only that model's stages (plus the cheap ensemble and report). It prints
how many files lie under `data/`: DVC checks each file of every folder it tracks.
`--source folder` measures the image-folder source, whose folder DVC hashes twice (it is both
`extract.annotations` and `extract.images`).

    python benchmarks/pipeline_noop.py [--images 20000] [--repeats 3] [--source coco|folder]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import yaml
from scratch import scratch_dir  # benchmarks/ is on sys.path when a script there runs

from imgcls.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
_IGNORED_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "cache", "tmp", "__pycache__", "*.egg-info", "metrics")


def IGNORE(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: the pipeline's data/ is at the top only, src/imgcls/data is code."""
    return _IGNORED_ANYWHERE(folder, names) | ({"data"} & set(names) if Path(folder) == REPO else set())


TARGET_SECONDS = 2.0


def run(root: Path, *args: str) -> tuple[float, str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@imgcls.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@imgcls.invalid",
    }
    start = time.perf_counter()
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def timed(root: Path, *args: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one command: on a shared machine its CPU time moves far less than its wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, _ = run(root, *args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def report(label: str, times: list[tuple[float, float]]) -> None:
    walls, cpus = [t for t, _ in times], [c for _, c in times]
    print(
        f"{label}: median {statistics.median(walls):.2f} s over {len(times)} runs {[round(t, 2) for t in walls]}, "
        f"CPU median {statistics.median(cpus):.2f} s"
    )


CATEGORIES = ("person", "car", "dog", "cat", "bird")
WIDTH, HEIGHT = 640, 480
TEXTURES = 8


def _textures() -> list[np.ndarray]:
    """A few blurred-noise photos to vary per image: blurring 640x480 anew for every image would take minutes."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    textures = []
    for _ in range(TEXTURES):
        start, slope = rng.uniform(40, 215, 3), rng.uniform(-0.15, 0.15, (2, 3))
        noise = cv2.GaussianBlur(rng.normal(0, 50, (HEIGHT, WIDTH, 3)).astype(np.float32), (0, 0), 2.5)
        photo = start + xs[..., None] * slope[0] + ys[..., None] * slope[1] + noise
        textures.append(np.clip(photo, 0, 255).astype(np.uint8))
    return textures


def write_images(count: int, path_of: Callable[[int, str], Path]) -> None:
    """`count` distinct photo-like 640x480 JPEGs (quality 90), image `index` of `category` at `path_of(...)`.

    Each is a texture with a box of its own place and colour, the category's number of boxes across.
    """
    textures, rng = _textures(), np.random.default_rng(1)
    boxes = rng.integers(0, 256, (count, 5))

    def write(index: int) -> None:
        category = index % len(CATEGORIES)
        pixels = textures[index % TEXTURES].copy()
        x, y, *colour = (int(v) for v in boxes[index])
        for k in range(category + 1):
            cv2.rectangle(pixels, (x + 60 * k, y), (x + 60 * k + 40, y + 120), colour, -1)
        path = path_of(index, CATEGORIES[category])
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])

    with ThreadPool(os.cpu_count() or 1) as pool:
        pool.map(write, range(count), chunksize=64)


def make_source(root: Path, count: int, source: str) -> dict[str, str]:
    """Write the dataset under `root` and return the `extract` params that read it."""
    if source == "folder":
        write_images(count, lambda index, category: root / category / f"{index:06d}.jpg")
        return {"source": "folder", "annotations": str(root), "images": str(root)}
    images = root / "images"
    write_images(count, lambda index, category: images / f"{index:06d}.jpg")
    write_json(
        root / "annotations.json",
        {
            "images": [
                {"id": i + 1, "file_name": f"{i:06d}.jpg", "width": WIDTH, "height": HEIGHT} for i in range(count)
            ],
            "annotations": [
                {
                    "id": i + 1,
                    "image_id": i + 1,
                    "category_id": 1 + i % len(CATEGORIES),
                    "bbox": [0, 0, WIDTH, HEIGHT],
                    "area": WIDTH * HEIGHT,
                    "iscrowd": 0,
                }
                for i in range(count)
            ],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CATEGORIES)],
        },
    )
    return {"source": "coco", "annotations": str(root / "annotations.json"), "images": str(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", choices=("coco", "folder"), default="coco")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(REPO, project, ignore=IGNORE)
        (project / "dvc.lock").unlink(missing_ok=True)
        (project / "metrics").mkdir()
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["extract"].update(
            make_source(Path(tmp) / "dataset", args.images, args.source), categories=list(CATEGORIES), side_px=16
        )
        params["train"]["epochs"] = 1
        params["models"] = {"net1": {}, "net2": {}}
        params["ensemble"] = {"models": ["net1", "net2"], "tie_break": "net1"}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(project, "git", "init", "-q")
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-qm", "benchmark project")

        first, _ = run(project, "dvc", "repro")
        print(f"first dvc repro ({args.images} images, {args.source} source, 2 models): {first:.1f} s")
        files = sum(len(names) for _, _, names in os.walk(project / "data"))
        print(f"files under data/: {files:,} (plus the {args.images:,} source images DVC checks)")
        repro = [timed(project, "dvc", "repro") for _ in range(args.repeats)]
        status = [timed(project, "dvc", "status") for _ in range(args.repeats)]
        report("no-op dvc repro", repro)
        report("dvc status     ", status)

        params["models"]["net2"] = {"epochs": 2}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _, output = run(project, "dvc", "repro")
        ran = sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))
        allowed = {"check", "train@net2", "evaluate@net2", "ensemble", "report"}
        print(f"after models.net2.epochs=2, reran: {', '.join(ran)}")
        only_that_model = {"train@net2", "evaluate@net2"} <= set(ran) <= allowed
        print(f"only net2 (plus check/ensemble/report) reran: {'yes' if only_that_model else 'NO'}")
        worst = max(statistics.median(t for t, _ in repro), statistics.median(t for t, _ in status))
        print(
            f"target <= {TARGET_SECONDS:.0f} s: {'met' if worst <= TARGET_SECONDS else 'NOT met'} "
            f"(worst median {worst:.2f} s)"
        )


if __name__ == "__main__":
    main()
