"""How long DVC takes to decide there is nothing to do, with 10,000 extracted images in the pipeline.

Builds a throw-away copy of this project whose extract stage reads an image folder of
`--images` small PNGs, runs the whole pipeline once (two one-epoch models), then times a
no-op `dvc repro` and `dvc status` (target: at most 3 s each), and checks that changing one
model's param reruns only that model's stages (plus the cheap ensemble and report).

    python benchmarks/pipeline_noop.py [--images 10000] [--repeats 3]
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
from pathlib import Path

import cv2
import numpy as np
import yaml

from scratch import scratch_dir  # benchmarks/ is on sys.path when a script there runs

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "data", "cache", "tmp", "__pycache__", "*.egg-info", "metrics")
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


def make_folder_dataset(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        label = ("even", "odd")[index % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        pixels[:, :: 2 + index % 2] = 255
        cv2.imwrite(str(root / label / f"{index:05d}.png"), pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(REPO, project, ignore=IGNORE)
        (project / "dvc.lock").unlink(missing_ok=True)
        (project / "metrics").mkdir()
        folder = Path(tmp) / "images"
        make_folder_dataset(folder, args.images)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["extract"].update(source="folder", annotations=str(folder), images=str(folder), categories=["even", "odd"], size=16)
        params["train"]["epochs"] = 1
        params["models"] = {"net1": {}, "net2": {}}
        params["ensemble"] = {"models": ["net1", "net2"], "tie_break": "net1"}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(project, "git", "init", "-q")
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-qm", "benchmark project")

        first, _ = run(project, "dvc", "repro")
        print(f"first dvc repro ({args.images} images, 2 models): {first:.1f} s")
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
