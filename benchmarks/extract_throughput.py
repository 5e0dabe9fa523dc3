"""Extraction images/s: a plain OpenCV loop against the project's `extract_images`.

Both shrink the same photo-like 640x480 JPEGs (quality 90) so the longer side is 64 px
(64x48) with INTER_AREA and encode PNGs. (a) baseline: one image at a time, each decoded
at full size with cv2.imread and written to its own file. (b) project:
`imgcls.data.extraction.extract_images` on the records `imgcls.data.coco.select` picks from a COCO
annotation dict; it checks each header, decodes JPEGs at reduced DCT scale, runs on all
cores with threads and appends the same PNG bytes to one archive, as the extract stage does.

Each path runs once to warm up, then `--repeats` times, the two alternating; the figure
is the median images/s. Also printed: the mean absolute pixel difference
between the two paths' outputs (0..255), since the reduced decode must stay close to the
full one. The last line is the project's speed over the baseline's.

    python benchmarks/extract_throughput.py [--images 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from scratch import file_creation_ms, scratch_dir  # benchmarks/ is on sys.path when a script there runs

from imgcls.data.archive import ARCHIVE
from imgcls.data.coco import Selected, coco_from_dict, select
from imgcls.data.extraction import extract_images

WIDTH, HEIGHT = 640, 480
SIZE = 64
CATEGORIES = ("cat", "dog")


def write_photos(count: int, folder: Path, seed: int) -> dict[str, list[dict[str, object]]]:
    """Write `count` photo-like JPEGs into `folder` and return a COCO annotation dict labelling each with one category.

    Smooth gradients plus blurred noise: JPEG decoding of pure noise, or of flat colour, costs unlike a photo's.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        start, slope = rng.uniform(0, 255, 3), rng.uniform(-0.3, 0.3, (2, 3))
        gradient = start + xs[..., None] * slope[0] + ys[..., None] * slope[1]
        texture = cv2.GaussianBlur(rng.normal(0, 60, (HEIGHT, WIDTH, 3)).astype(np.float32), (0, 0), 2.5)
        name = f"{image_id:012d}.jpg"
        pixels = np.clip(gradient + texture, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": 1 + image_id % len(CATEGORIES)})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CATEGORIES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def baseline_extract(records: Sequence[Selected], out_dir: Path) -> None:
    """Full-size decode, INTER_AREA to 64x48, PNG out: one image after another."""
    out_dir.mkdir()
    for record in records:
        pixels = cv2.imread(str(record.source))
        height, width = pixels.shape[:2]
        scale = SIZE / max(height, width)
        small = cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out_dir / f"{record.image_id}.png"), small)


def project_extract(records: Sequence[Selected], out_dir: Path) -> None:
    extract_images(records, out_dir, SIZE)


def images_per_s(run: Callable[[Sequence[Selected], Path], None], records: Sequence[Selected], out_dir: Path) -> float:
    start = time.perf_counter()
    run(records, out_dir)
    return len(records) / (time.perf_counter() - start)


def mean_abs_difference(records: Sequence[Selected], baseline_dir: Path, project_dir: Path) -> float:
    """Mean |a - b| over every pixel and channel of every image, on the 0..255 scale."""
    total, count = 0.0, 0
    with zipfile.ZipFile(project_dir / ARCHIVE) as archive:
        for record in records:
            a = cv2.imread(str(baseline_dir / f"{record.image_id}.png")).astype(np.int16)
            png = np.frombuffer(archive.read(f"images/{record.image_id}.png"), np.uint8)
            b = cv2.imdecode(png, cv2.IMREAD_COLOR).astype(np.int16)
            total += float(np.abs(a - b).sum())
            count += a.size
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="640x480 JPEGs to extract")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path over all images")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)"
    )
    print(
        f"{args.images} JPEGs {WIDTH}x{HEIGHT} quality 90 to {SIZE}x{SIZE * HEIGHT // WIDTH} PNGs, "
        f"median of {args.repeats} runs"
    )
    print(f"scratch folder {scratch_dir()}: {file_creation_ms():.2f} ms to create a 4 KiB file")
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        sources = Path(tmp) / "sources"
        sources.mkdir()
        coco = coco_from_dict(write_photos(args.images, sources, seed=0))
        records, _ = select(coco, sources, list(CATEGORIES), per_category=None, seed=0)
        # The paths alternate, so a burst of load from another process slows both alike; each run
        # writes a fresh folder, so neither pays for deleting the last run's output. Run 0 warms up.
        rates = [
            (
                images_per_s(baseline_extract, records, Path(tmp) / f"baseline{run}"),
                images_per_s(project_extract, records, Path(tmp) / f"project{run}"),
            )
            for run in range(args.repeats + 1)
        ][1:]
        a, b = statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)
        difference = mean_abs_difference(records, Path(tmp) / "baseline0", Path(tmp) / "project0")
    print(f"baseline images/s: {a:.0f}")
    print(f"project images/s: {b:.0f}")
    print(f"mean absolute pixel difference: {difference:.2f}")
    print(f"ratio: {b / a:.2f}")


if __name__ == "__main__":
    main()
