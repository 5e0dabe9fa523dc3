"""DVC stage `split`: train/val/test or train/val only, stratified or as the dataset gave it, packed into memory-mappable arrays."""

from pathlib import Path

from imgcls.cli import stage_main, stage_parser
from imgcls.params import ExtractParams, SplitParams, load_params
from imgcls.data.preprocessing import Preprocessing
from imgcls.data.packed import SPLITS
from imgcls.data.splitting import assign_by_counts, assign_by_fractions, assign_given, load_normalized, no_test_split, write_splits


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--normalized", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
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
    shown = SPLITS[:2] if no_test_split(assignment) else SPLITS
    sizes = ", ".join(f"{name} {int((assignment == SPLITS.index(name)).sum())}" for name in shown)
    print(f"split: {sizes} -> {args.out}")
    if no_test_split(assignment):
        print("split: no test split: evaluate scores the val split (test/ holds the val images)")


if __name__ == "__main__":
    stage_main(main)
