"""DVC stage `sample`: build the embedded default dataset (digits as a COCO download)."""

from pathlib import Path

from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import SampleParams, load_params
from imgcls.data.sample import build_sample, write_sample


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params: SampleParams
    (params,) = load_params(args.params, "sample")
    coco, files = build_sample(params.seed, params.scarce_category, params.scarce_fraction)
    write_sample(args.out, coco, files)
    print(f"sample: {len(coco['images'])} images, {len(coco['annotations'])} annotations -> {args.out}")


if __name__ == "__main__":
    stage_main(main)
