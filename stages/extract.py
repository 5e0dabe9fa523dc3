"""DVC stage `extract`: select a single-label class subset and shrink it to the working size."""

from pathlib import Path

from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import ExtractParams, load_params
from imgcls.data.coco import load_coco, select
from imgcls.data.extraction import (
    BAD_IMAGES_FILE,
    DUPLICATES_FILE,
    SELECTION_FILE,
    extract_images,
    fetch_missing,
    selection_summary,
)
from imgcls.data.folder import SPLIT_FOLDERS, select_from_folder


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params: ExtractParams
    (params,) = load_params(args.params, "extract")
    given_splits: dict[int, str] = {}
    if params.source == "folder":
        records, removed, given_splits = select_from_folder(
            params.images, params.categories, params.per_category, params.seed
        )
    else:
        coco = load_coco(params.annotations)
        records, removed = select(
            coco,
            params.images,
            params.categories,
            params.per_category,
            params.seed,
            params.crowd,
            params.other_categories,
        )
    failed_downloads = []
    if params.download:
        failed_downloads = fetch_missing(
            records,
            params.images,
            params.download_workers,
            params.download_timeout,
            params.download_retries,
            params.allowed_hosts,
        )
    kept, bad, selection = extract_images(
        records,
        args.out,
        params.side_px,
        params.on_bad_image,
        params.max_bad_fraction,
        failed_downloads,
        removed,
        given_splits,
    )
    skipped = f"; skipped {len(bad)} unusable (see {args.out / BAD_IMAGES_FILE})" if bad else ""
    print(f"extract: {kept} images of {len(params.categories)} categories -> {args.out}{skipped}")
    duplicates = sum(int(row["duplicate"]) for row in selection)
    if duplicates:
        listed = args.out / DUPLICATES_FILE
        print(f"extract: {duplicates} image(s) repeat another's pixels and were kept once (listed in {listed})")
    print(f"extract: per category (also in {args.out / SELECTION_FILE}):")
    for line in selection_summary(selection):
        print(f"  {line}")
    splits = sorted(set(given_splits.values()) - {""}, key=SPLIT_FOLDERS.index)
    if splits:
        print(
            f"extract: pre-split dataset; each image's folder ({', '.join(splits)}) is in the manifest's given_split "
            f"column"
        )


if __name__ == "__main__":
    stage_main(main)
