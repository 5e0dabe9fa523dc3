"""DVC stage `train@<model>`: train one model from `train` defaults overlaid with `models.<name>`.

With `train.nproc` > 1 it relaunches itself under `torchrun --nproc-per-node=<nproc>` and
each process trains on its shard of every batch (DistributedDataParallel); started by an
outer `torchrun` (multi-node), it joins that run as it is.
"""

import argparse
import sys
from pathlib import Path

from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.errors import ImgclsError
from imgcls.core.params import resolve_model
from imgcls.core.reproducible import use_cpu_kernels
from imgcls.models.names import MODEL_NAMES
from imgcls.train.torchrun import launched_by_torchrun, relaunch_under_torchrun


def parse_args() -> argparse.Namespace:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True, help="a key of params.yaml's models:")
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder (val split, classes)")
    parser.add_argument(
        "--train-data", type=Path, required=True, help="packed train arrays (the augment stage's output)"
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder: best.pt, last.pt")
    parser.add_argument(
        "--init",
        type=Path,
        help="for a finetune: entry, the best.pt of its `from` model, whose weights training starts from",
    )
    parser.add_argument(
        "--live",
        type=Path,
        required=True,
        help="dvclive folder: metrics.json (best epoch), plots/ (per-epoch curves), params.yaml (the settings used), "
        "timings.json, steps.csv",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = resolve_model(args.params, args.model, MODEL_NAMES)
    if (settings.init_from is None) != (args.init is None):
        raise ImgclsError(
            f"train@{args.model}: --init is for finetune: entries only (this one starts from "
            f"{settings.init_from or 'scratch'}); dvc.yaml's finetune@ stages pass it"
        )
    use_cpu_kernels(settings.train.cpu_kernels)  # before the first torch operation, which fixes the kernels for good
    if settings.train.nproc > 1 and not launched_by_torchrun():
        sys.exit(relaunch_under_torchrun(settings.train.nproc, sys.argv))
    # torch, scikit-learn and dvclive load only now: a refused setting or a torchrun launcher never waits for them.
    from imgcls.train.run import TrainFiles, train_stage

    train_stage(settings, TrainFiles(args.processed, args.train_data, args.out, args.live, args.init, Path(__file__)))


if __name__ == "__main__":
    stage_main(main)
