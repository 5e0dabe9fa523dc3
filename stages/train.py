"""DVC stage `train@<model>`: train one model from `train` defaults overlaid with `models.<name>`.

With `train.nproc` > 1 it relaunches itself under `torchrun --nproc-per-node=<nproc>` and
each process trains on its shard of every batch (DistributedDataParallel); started by an
outer `torchrun` (multi-node), it joins that run as it is.
"""

import argparse
import contextlib
import functools
import sys
from pathlib import Path

import torch
from dvclive import Live

from imgcls.core.atomic import write_json
from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.errors import ImgclsError
from imgcls.core.params import ModelSettings, resolve_model
from imgcls.core.reproducible import use_cpu_kernels
from imgcls.data.packed import load_split, read_classes
from imgcls.data.preprocessing import Preprocessing
from imgcls.manifest import write_csv
from imgcls.models.names import MODEL_NAMES
from imgcls.models.registry import build_model
from imgcls.train import distributed
from imgcls.train.batches import to_device
from imgcls.train.checkpoint import code_digest, file_digest, load_checkpoint, load_weights, run_fingerprint
from imgcls.train.fit import FitSettings, RunState, fit
from imgcls.train.loop import STEP_COLUMNS
from imgcls.train.recipe import INPUT_KEYS, ModelRecipe, require_agreement
from imgcls.train.setup import select_device

# Per-epoch speed: kept out of the metrics so `dvc metrics diff` never reports a timing as a change.
TIMING_KEYS = ("images_per_s", "epoch_seconds")


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
    train = settings.train
    use_cpu_kernels(train.cpu_kernels)  # before the first torch operation, which fixes the kernels for good
    if train.nproc > 1 and not distributed.launched_by_torchrun():
        sys.exit(distributed.relaunch_under_torchrun(train.nproc, sys.argv))

    device = select_device(train.device)
    process = distributed.start(device.type)
    if device.type == "cuda" and process.world > 1:
        device = torch.device("cuda", process.local_rank)
    try:
        train_model(args, settings, device, process)
    finally:
        distributed.stop()


def train_model(
    args: argparse.Namespace, settings: ModelSettings, device: torch.device, process: distributed.Process
) -> None:
    """Build the model (from --init's weights for a finetune), fit it, and log with dvclive on the writing rank."""
    train = settings.train
    classes = read_classes(args.processed / "classes.json")
    preprocessing = Preprocessing.read(args.processed)
    train_split = load_split(args.train_data, mmap=False)
    val_split = load_split(args.processed / "val", mmap=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(train.seed)  # weight initialisation, identical on every rank
    model = build_model(settings.arch, len(classes), preprocessing.side_px, **settings.options)
    run_identity = {**settings.fingerprint(), "code": code_digest(Path(__file__))}
    if args.init is not None:
        start_from(model, args.init, ModelRecipe(settings, tuple(classes), preprocessing))
        run_identity["init"] = file_digest(args.init)
    model = model.to(device, memory_format=torch.channels_last)
    if "weights_path" in settings.options:
        run_identity["weights"] = file_digest(Path(settings.options["weights_path"]))
    fingerprint = run_fingerprint(
        run_identity, train_split.images, train_split.labels, val_split.images, val_split.labels
    )
    recipe = ModelRecipe(settings, tuple(classes), preprocessing, fingerprint)

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        wrapped = distributed.wrap(module, device)
        return torch.compile(wrapped) if train.compile else wrapped

    args.out.mkdir(parents=True, exist_ok=True)
    live = Live(dir=str(args.live), dvcyaml=False, save_dvc_exp=False) if process.is_writer else None
    with live if live is not None else contextlib.nullcontext():
        if live is not None:
            live.log_params(settings.effective())
        run = FitSettings(
            train,
            len(classes),
            args.out,
            fingerprint,
            device,
            settings.unfreeze_at_epoch,
            recipe.to_plain(),
            shard=(process.rank, process.world),
            wrap=wrap,
            on_epoch=functools.partial(log_epoch, live),
            log=print if process.is_writer else lambda message: None,
        )
        state = fit(model, to_device(train_split, device), to_device(val_split, device), run)
        best = state.history[state.best_epoch - 1]
        if live is not None:
            write_summary(live, args.live, state)
    if process.is_writer:
        print(
            f"train@{args.model}: best epoch {state.best_epoch} of {state.epoch} by {train.monitor}: "
            f"val/f1_macro {best['val/f1_macro']:.4f}, val/acc {best['val/acc']:.4f}, val/loss {best['val/loss']:.4f}"
        )


def log_epoch(live: Live | None, epoch: int, record: dict[str, float]) -> None:
    if live is None:
        return
    live.step = epoch
    for name, value in record.items():
        if name not in TIMING_KEYS:
            live.log_metric(name, value)


def write_summary(live: Live, folder: Path, state: RunState) -> None:
    """The best epoch as dvclive's metrics.json, beside timings.json and steps.csv."""
    best = state.history[state.best_epoch - 1]
    live.summary = {"best_epoch": state.best_epoch, "best_val": {"f1_macro": best["val/f1_macro"]}}
    live.make_summary()
    timings = {key: [r[key] for r in state.history] for key in TIMING_KEYS}
    kernels = torch.backends.cpu.get_cpu_capability()  # what train.cpu_kernels came to on this CPU
    write_json(folder / "timings.json", {**timings, "cpu_capability": kernels})
    # Header only when train.log_every_steps is empty: dvc.yaml declares the file either way.
    write_csv(folder / "steps.csv", state.step_losses, STEP_COLUMNS)


def start_from(model: torch.nn.Module, init: Path, expected: ModelRecipe) -> None:
    """Load a finetune's starting weights: trained on other classes or inputs, they would be silently mislabelled."""
    state = load_checkpoint(init)
    require_agreement(expected, init, ModelRecipe.from_plain(state.get("recipe"), init), INPUT_KEYS)
    load_weights(
        model, init, state["model"], f"{expected.settings.name} ({expected.settings.arch} with its finetune: settings)"
    )


if __name__ == "__main__":
    stage_main(main)
