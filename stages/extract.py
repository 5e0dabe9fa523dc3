"""DVC stage `extract`: select a single-label class subset and shrink it to the working size."""

from pathlib import Path

from imgcls.cli import stage_main, stage_parser
from imgcls.coco import load_coco, select
from imgcls.extraction import extract_images
from imgcls.params import ExtractParams, load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params: ExtractParams
    (params,) = load_params(args.params, "extract")
    coco = load_coco(params.annotations)
    records = select(coco, params.categories, params.per_category, params.seed, params.crowd, params.other_categories)
    count = extract_images(records, params.images, args.out, params.size)
    print(f"extract: {count} images of {len(params.categories)} categories -> {args.out}")


if __name__ == "__main__":
    stage_main(main)
