"""DVC stage `normalize`: every image to exactly side_px x side_px, RGB, 8-bit."""

from pathlib import Path

from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import ExtractParams, NormalizeParams, load_params
from imgcls.data.square import normalize_images


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--extracted", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    extract: ExtractParams
    params: NormalizeParams
    extract, params = load_params(args.params, "extract", "normalize")
    count = normalize_images(args.extracted, args.out, extract.side_px, params.resize)
    print(f"normalize: {count} images at {extract.side_px}x{extract.side_px} ({params.resize}) -> {args.out}")


if __name__ == "__main__":
    stage_main(main)
