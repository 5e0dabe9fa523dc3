"""DVC stage `split`: train/val/test or train/val only, stratified or as the dataset gave it, packed into
memory-mappable arrays."""

from pathlib import Path

from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import ExtractParams, SplitParams, load_params
from imgcls.data.near_duplicates import cross_split_pairs, phash, write_near_duplicates
from imgcls.data.packed import SPLITS
from imgcls.data.preprocessing import Preprocessing
from imgcls.data.splitting import (
    assign_by_counts,
    assign_by_fractions,
    assign_given,
    load_normalized,
    no_test_split,
    write_splits,
)


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--normalized", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--near-duplicates", type=Path, required=True, help="CSV of near-duplicate pairs across splits")
    args = parser.parse_args()
    extract: ExtractParams
    params: SplitParams
    extract, params = load_params(args.params, "extract", "split")
    classes = extract.categories
    preprocessing = Preprocessing.read(args.normalized)
    data, given = load_normalized(args.normalized, classes)
    if params.method == "given":
        assignment, done = assign_given(data.labels, given, classes, params.fractions, params.seed)
        print(f"split: {done}")
    elif params.per_class is not None:
        assignment = assign_by_counts(data.labels, classes, params.per_class, params.seed)
    else:
        assignment = assign_by_fractions(data.labels, classes, params.fractions, params.seed)
    write_splits(args.out, data, assignment, classes)
    preprocessing.write(args.out)
    pairs = cross_split_pairs(phash(data.images), assignment, params.near_duplicate_bits)
    write_near_duplicates(args.near_duplicates, pairs, data.ids, data.labels, assignment, classes)
    shown = SPLITS[:2] if no_test_split(assignment) else SPLITS
    sizes = ", ".join(f"{name} {int((assignment == SPLITS.index(name)).sum())}" for name in shown)
    print(f"split: {sizes} -> {args.out}")
    if no_test_split(assignment):
        print("split: no test split: evaluate scores the val split (test/ holds the val images)")
    print(
        f"split: {len(pairs)} near-duplicate pair(s) across splits (pHashes at most split.near_duplicate_bits = "
        f"{params.near_duplicate_bits} of 64 bits apart) -> {args.near_duplicates}"
    )


if __name__ == "__main__":
    stage_main(main)
