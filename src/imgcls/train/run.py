"""The train stage's run: a model built (from a source checkpoint for a finetune), fitted, logged with dvclive."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from dvclive import Live

from imgcls.core.atomic import write_json
from imgcls.core.params import ModelSettings
from imgcls.data.packed import PackedSplit, load_split, read_classes
from imgcls.data.preprocessing import Preprocessing
from imgcls.manifest import write_csv
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


@dataclass(frozen=True)
class TrainFiles:
    """What the stage's command line names: the split stage's folder, the train arrays, and where results go."""

    processed: Path  # val split, classes.json, preprocessing.json
    train_data: Path  # packed train arrays (the augment stage's output)
    out: Path  # best.pt, last.pt
    live: Path  # dvclive's folder
    init: Path | None  # a finetune's starting best.pt
    stage_script: Path  # hashed into the run's fingerprint with the imgcls modules it imports


def train_stage(settings: ModelSettings, files: TrainFiles) -> None:
    """Train one model on this process's device, as one rank of a torchrun run or alone."""
    device = select_device(settings.train.device)
    process = distributed.start(device.type)
    if device.type == "cuda" and process.world > 1:
        device = torch.device("cuda", process.local_rank)
    try:
        train_model(settings, files, device, process)
    finally:
        distributed.stop()


def train_model(settings: ModelSettings, files: TrainFiles, device: torch.device, process: distributed.Process) -> None:
    """Build the model, fit it, and log with dvclive on the writing rank."""
    train = settings.train
    classes = read_classes(files.processed / "classes.json")
    preprocessing = Preprocessing.read(files.processed)
    train_split = load_split(files.train_data, mmap=False)
    val_split = load_split(files.processed / "val", mmap=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(train.seed)  # weight initialisation, identical on every rank
    model = build_model(settings.arch, len(classes), preprocessing.side_px, **settings.options)
    recipe = ModelRecipe(settings, tuple(classes), preprocessing)
    if files.init is not None:
        start_from(model, files.init, recipe)
    model = model.to(device, memory_format=torch.channels_last)
    recipe = replace(recipe, fingerprint=fingerprint(settings, files, train_split, val_split))

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        wrapped = distributed.wrap(module, device)
        return torch.compile(wrapped) if train.compile else wrapped

    files.out.mkdir(parents=True, exist_ok=True)  # after the inputs loaded: a refused one leaves no folder behind
    live = Live(dir=str(files.live), dvcyaml=False, save_dvc_exp=False) if process.is_writer else None
    with live if live is not None else contextlib.nullcontext():
        if live is not None:
            live.log_params(settings.effective())
        run = FitSettings(
            train,
            len(classes),
            files.out,
            recipe.fingerprint,
            device,
            settings.unfreeze_at_epoch,
            recipe.to_plain(),
            shard=(process.rank, process.world),
            wrap=wrap,
            on_epoch=functools.partial(log_epoch, live),
            log=print if process.is_writer else lambda message: None,
        )
        state = fit(model, to_device(train_split, device), to_device(val_split, device), run)
        if live is not None:
            write_summary(live, files.live, state)
    if process.is_writer:
        best = state.history[state.best_epoch - 1]
        print(
            f"train@{settings.name}: best epoch {state.best_epoch} of {state.epoch} by {train.monitor}: "
            f"val/f1_macro {best['val/f1_macro']:.4f}, val/acc {best['val/acc']:.4f}, val/loss {best['val/loss']:.4f}"
        )


def fingerprint(settings: ModelSettings, files: TrainFiles, train_split: PackedSplit, val_split: PackedSplit) -> str:
    """What a checkpoint must match to be resumed: settings, code, starting weights and data."""
    run_identity = {**settings.fingerprint(), "code": code_digest(files.stage_script)}
    if files.init is not None:
        run_identity["init"] = file_digest(files.init)
    if "weights_path" in settings.options:
        run_identity["weights"] = file_digest(Path(settings.options["weights_path"]))
    return run_fingerprint(run_identity, train_split.images, train_split.labels, val_split.images, val_split.labels)


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
