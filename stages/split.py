"""DVC stage `split`: train/val/test, stratified or as the dataset gave it, packed into memory-mappable arrays."""

from pathlib import Path

from imgcls.cli import stage_main, stage_parser
from imgcls.params import ExtractParams, SplitParams, load_params
from imgcls.splits import SPLITS
from imgcls.splitting import assign_by_counts, assign_by_fractions, assign_given, load_normalized, write_splits


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--normalized", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    extract: ExtractParams
    params: SplitParams
    extract, params = load_params(args.params, "extract", "split")
    classes = extract.categories
    data, given = load_normalized(args.normalized, classes)
    if params.method == "given":
        assignment, done = assign_given(data.labels, given, classes, params.fractions, params.seed)
        print(f"split: {done}")
    elif params.per_class is not None:
        assignment = assign_by_counts(data.labels, classes, params.per_class, params.seed)
    else:
        assignment = assign_by_fractions(data.labels, classes, params.fractions, params.seed)
    write_splits(args.out, data, assignment, classes)
    sizes = ", ".join(f"{name} {int((assignment == i).sum())}" for i, name in enumerate(SPLITS))
    print(f"split: {sizes} -> {args.out}")


if __name__ == "__main__":
    stage_main(main)
