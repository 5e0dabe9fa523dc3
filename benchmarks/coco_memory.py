"""Peak memory of the extract stage's annotation loading and selection on a file the size of COCO's train2017.

Generates an instances file with train2017's counts (118,287 images, 860,001 annotations,
80 categories, polygon segmentations of typical length), then loads and selects from it in
a fresh process and prints the peak resident memory against the file size.

    python benchmarks/coco_memory.py [--images 118287] [--annotations 860001]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = """
import resource, sys, time
from pathlib import Path
from imgcls.data.coco import load_coco, select
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
coco = load_coco(Path(sys.argv[1]))
records = select(coco, Path("images"), ["cat", "dog", "horse"], None, seed=0, other_categories="ignore")[0]
print(f"selected {len(records)} images in {time.perf_counter() - start:.1f} s")
print(
    f"peak_rss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
    f"(interpreter and imports: {before / 1024:.0f})"
)
"""

CATEGORIES = ["person", "bicycle", "car", "cat", "dog", "horse"] + [f"category{i}" for i in range(74)]


def write_instances(path: Path, images: int, annotations: int) -> None:
    rng = random.Random(0)
    category_ids = [i + 1 + i // 10 for i in range(len(CATEGORIES))]  # gaps, like COCO's 1..90
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic train2017-scale file"}, "licenses": [], "images": [')
        for i in range(1, images + 1):
            entry = {
                "license": 1,
                "file_name": f"{i:012d}.jpg",
                "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg",
                "height": 480,
                "width": 640,
                "date_captured": "2013-11-14 11:18:45",
                "flickr_url": f"http://farm4.staticflickr.com/1/{i}_abcdef_z.jpg",
                "id": i,
            }
            f.write(("," if i > 1 else "") + json.dumps(entry))
        f.write('], "annotations": [')
        for a in range(1, annotations + 1):
            polygon = [round(rng.uniform(0, 640), 2) for _ in range(rng.choice((24, 32, 48, 64, 80)))]
            entry = {
                "segmentation": [polygon],
                "area": round(rng.uniform(10, 50000), 4),
                "iscrowd": int(rng.random() < 0.01),
                "image_id": rng.randint(1, images),
                "bbox": [round(rng.uniform(0, 600), 2) for _ in range(4)],
                "category_id": rng.choice(category_ids),
                "id": a,
            }
            f.write(("," if a > 1 else "") + json.dumps(entry))
        f.write(
            '], "categories": '
            + json.dumps([{"supercategory": "x", "id": c, "name": n} for c, n in zip(category_ids, CATEGORIES)])
            + "}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--annotations", type=int, default=860_001)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances_synthetic.json"
        start = time.perf_counter()
        write_instances(path, args.images, args.annotations)
        print(
            f"generated {path.stat().st_size / 2**20:.0f} MiB ({args.images} images, {args.annotations} annotations) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True)
        print(result.stdout.strip() or result.stderr)


if __name__ == "__main__":
    main()
