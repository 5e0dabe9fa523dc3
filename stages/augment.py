"""DVC stage `augment`: oversample minority classes of the train split only."""

import os
import sys
from pathlib import Path

import numpy as np

from imgcls.core.atomic import atomic_dir
from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import AugmentParams, load_params
from imgcls.data.augment import (
    check_fits_in_memory,
    class_samples_grid,
    heavy_oversampling,
    oversample,
    preview_grid,
    sizes_after_oversampling,
)
from imgcls.data.packed import load_split, read_classes, save_split
from imgcls.manifest import read_csv, write_csv


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the augmented train arrays")
    parser.add_argument("--provenance", type=Path, required=True, help="augmented.csv: id,source_id,label")
    parser.add_argument("--preview", type=Path, required=True, help="PNG grid of augmented samples")
    parser.add_argument("--samples", type=Path, help="PNG grid of the train originals, a row per class")
    args = parser.parse_args()
    params: AugmentParams
    (params,) = load_params(args.params, "augment")
    classes = read_classes(args.processed / "classes.json")
    train = load_split(args.processed / "train", mmap=False)
    if params.enabled:
        originals = np.bincount(train.labels, minlength=len(classes)).tolist()
        sizes = sizes_after_oversampling(originals, params.target)
        check_fits_in_memory(
            params.target, sizes, train.images.shape[1:], os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        )
        for warning in heavy_oversampling(originals, sizes, classes):
            print(f"warning: augment: {warning}", file=sys.stderr)
        # New ids start past every id in any split, so provenance can never point at val/test.
        all_ids = [int(r["id"]) for r in read_csv(args.processed / "splits.csv", ("id",))]
        result, sources = oversample(
            train, params.target, params.rotation_deg, params.scale, params.hflip, params.seed, max(all_ids) + 1
        )
    else:
        result, sources = train, train.ids.copy()
    with atomic_dir(args.out) as tmp:
        save_split(tmp, result)
    rows = [
        {"id": int(i), "source_id": int(s), "label": classes[int(label)]}
        for i, s, label in zip(result.ids, sources, result.labels)
    ]
    write_csv(args.provenance, rows, ("id", "source_id", "label"))
    preview_grid(args.preview, result, sources, classes)
    if args.samples is not None:
        class_samples_grid(args.samples, train, classes)
    counts = np.bincount(result.labels, minlength=len(classes))
    print(f"augment: train {len(train.ids)} -> {len(result.ids)}; per class {dict(zip(classes, counts.tolist()))}")


if __name__ == "__main__":
    stage_main(main)
