"""A resumable `fit`: epochs of the step loop, precise BatchNorm, validation, best.pt and last.pt.

A run is a pure function of its settings: every epoch reseeds its own generators
from (seed, epoch), so a run resumed from `last.pt` draws exactly the batches,
augmentations and dropout masks an uninterrupted run would have drawn.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.core.params import TrainParams
from imgcls.models.pretrained import probe_head, unfreeze_all
from imgcls.train.batches import DeviceSplit
from imgcls.train.batchnorm import recalibrate_batchnorm
from imgcls.train.checkpoint import check_checkpoint, load_checkpoint, save_checkpoint, set_aside
from imgcls.train.loop import EpochRecord, StepRecord, epoch_generator, epoch_seed, evaluate, train_one_epoch
from imgcls.train.probe import cache_features, check_probe, evaluate_probe, train_probe_epoch
from imgcls.train.setup import make_criterion, make_optimizer, make_scheduler


def _unwrapped(model: nn.Module) -> nn.Module:
    return model


def _no_epoch_hook(epoch: int, record: EpochRecord) -> None:
    """The default `on_epoch`: nothing to log."""


@dataclass(frozen=True)
class FitSettings:
    """How `fit` runs, beside the model and its data.

    `on_epoch(epoch, record)` receives every epoch's record, replayed ones included, so a resumed
    run logs the same history as an uninterrupted one. `wrap` lets a distributed caller put
    DistributedDataParallel around the model; only rank 0 (shard[0] == 0) writes checkpoints.
    `recipe` (imgcls.train.recipe, as plain types) goes into both checkpoints, so either can be
    used without the repository.
    """

    train: TrainParams
    num_classes: int
    checkpoint_dir: Path
    fingerprint: str
    device: torch.device
    unfreeze_at_epoch: int | None = None
    recipe: Mapping[str, Any] | None = None
    shard: tuple[int, int] = (0, 1)
    wrap: Callable[[nn.Module], nn.Module] = _unwrapped
    on_epoch: Callable[[int, EpochRecord], None] = _no_epoch_hook
    log: Callable[[str], None] = print

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def carried(self) -> dict[str, Any]:
        """What both checkpoints carry beside the weights and the run's state."""
        return {"fingerprint": self.fingerprint, **({"recipe": dict(self.recipe)} if self.recipe is not None else {})}


@dataclass
class RunState:
    """What a checkpoint carries beyond the weights: where the run is and how it has gone."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    steps: int = 0  # optimizer steps taken
    step_losses: list[StepRecord] = field(default_factory=list)  # every train.log_every_steps-th step's batch loss


def _count_step(state: RunState, epoch: int, log_every_steps: int | None, loss: torch.Tensor) -> None:
    """Count an optimizer step and keep its loss when it is a logged one (this process's batch, under DDP)."""
    state.steps += 1
    if log_every_steps is not None and state.steps % log_every_steps == 0:
        # .item() waits for a GPU to finish the step: paid on the logged steps only.
        state.step_losses.append({"step": state.steps, "epoch": epoch, "loss": loss.item()})


def monitor_score(record: EpochRecord, monitor: str) -> float:
    """Higher is better for every monitor, so val/loss is negated."""
    value = record[monitor]
    return -value if monitor == "val/loss" else value


def _finished(state: RunState, train: TrainParams) -> bool:
    return state.epoch >= train.epochs or (train.patience is not None and state.bad_epochs >= train.patience)


def _resume(
    path: Path, best_path: Path, fingerprint: str, train: TrainParams, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The state of an unfinished run of this very fingerprint, or None to train from scratch.

    A finished run is never resumed: DVC only reruns a stage whose last run finished when
    something changed or the user forced it (`dvc repro -f`), and both mean train again.
    """
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, ("fingerprint",))
        if state["fingerprint"] != fingerprint:
            # Checked first: older code may not have written every key this code resumes from.
            log(f"{path}: written under different settings, data or code; starting afresh")
            return None
        check_checkpoint(path, state, ("model", "optimizer", "scheduler", *(f.name for f in fields(RunState))))
    except ImgclsError as exc:
        # Truncated by a full disk, or another program's file: useless for resuming, but kept for a look.
        log(f"{exc}; moved it to {set_aside(path)} and starting afresh")
        return None
    try:
        best_fingerprint = load_checkpoint(best_path).get("fingerprint") if best_path.is_file() else None
    except ImgclsError:
        best_fingerprint = None  # unreadable: the fresh run's first epoch overwrites it
    if best_fingerprint != fingerprint:
        log(f"{best_path}: missing, unreadable or from another run, so the best epoch so far is lost; starting afresh")
        return None
    if _finished(RunState(**{f.name: state[f.name] for f in fields(RunState)}), train):
        log(f"{path}: that run finished; training again from scratch")
        return None
    log(f"{path}: resuming after epoch {state['epoch']}")
    return state


def _start(model: nn.Module, run: FitSettings) -> tuple[RunState, dict[str, Any] | None]:
    """The run's state so far, and the checkpoint it resumes from (None for a fresh run); loads its weights."""
    resumed = _resume(run.last_path, run.best_path, run.fingerprint, run.train, run.log)
    if resumed is None:
        return RunState(), None
    model.load_state_dict(resumed["model"])
    return RunState(**{f.name: resumed[f.name] for f in fields(RunState)}), resumed


Optimizing = tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


def _optimizing(
    model: nn.Module, head: nn.Module | None, state: RunState, resumed: dict[str, Any] | None, run: FitSettings
) -> Optimizing:
    """The module that trains (wrapped), its optimizer and scheduler, restored when the run resumes."""
    if run.unfreeze_at_epoch is not None and state.epoch + 1 > run.unfreeze_at_epoch:
        unfreeze_all(model)
    # A probe's head is all that trains, so it alone is wrapped (and DDP syncs its gradients).
    trained = run.wrap(model if head is None else head)
    optimizer = make_optimizer(trained, run.train)
    scheduler = make_scheduler(optimizer, run.train)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    return trained, optimizer, scheduler


def _unfrozen(model: nn.Module, epoch: int, run: FitSettings) -> Optimizing:
    """Staged fine-tuning: the frozen phase is over, so every weight joins a fresh optimizer."""
    unfreeze_all(model)
    trained = run.wrap(model)
    optimizer = make_optimizer(trained, run.train)
    return trained, optimizer, make_scheduler(optimizer, run.train, completed_epochs=epoch - 1)


# (trained module, optimizer, criterion, epoch, on_step) -> (train stats, val stats)
EpochStep = Callable[
    [nn.Module, torch.optim.Optimizer, nn.Module, int, Callable[[torch.Tensor], None]], tuple[EpochRecord, EpochRecord]
]


def _model_epochs(model: nn.Module, train_data: DeviceSplit, val_data: DeviceSplit, run: FitSettings) -> EpochStep:
    """An epoch of the whole model: augmented steps, precise BatchNorm, then the val scores."""
    train, device = run.train, run.device

    def run_epoch(
        trained: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, epoch: int, on_step: Callable
    ) -> tuple[EpochRecord, EpochRecord]:
        generator = epoch_generator(train.seed, epoch)
        desc = f"epoch {epoch}/{train.epochs}"
        fit_stats = train_one_epoch(
            trained, train_data, optimizer, criterion, train, generator, device, run.shard, desc, on_step
        )
        # On the unwrapped model, so each DDP rank recomputes the same statistics from the whole split.
        recalibrate_batchnorm(model, train_data, train, device)
        return fit_stats, evaluate(model, val_data, criterion, train, device)

    return run_epoch


def _probe_epochs(
    model: nn.Module, head: nn.Module, train_data: DeviceSplit, val_data: DeviceSplit, run: FitSettings
) -> EpochStep:
    """An epoch of a linear probe: steps of the head on features cached here, once, then the val scores."""
    train, device = run.train, run.device
    started = time.perf_counter()
    train_features, val_features = (
        cache_features(model, head, split, train, device) for split in (train_data, val_data)
    )
    run.log(
        f"probe: cached the features of {len(train_data)} train and {len(val_data)} val images "
        f"in {time.perf_counter() - started:.1f} s"
    )

    def run_epoch(
        trained: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, epoch: int, on_step: Callable
    ) -> tuple[EpochRecord, EpochRecord]:
        generator = epoch_generator(train.seed, epoch)
        fit_stats = train_probe_epoch(
            trained, train_features, optimizer, criterion, train, generator, device, run.shard, on_step
        )
        return fit_stats, evaluate_probe(head, val_features, criterion, device)

    return run_epoch


def _epoch_record(fit_stats: EpochRecord, val_stats: EpochRecord, optimizer: torch.optim.Optimizer) -> EpochRecord:
    return {
        "train/loss": fit_stats["loss"],
        "train/acc": fit_stats["acc"],
        "val/loss": val_stats["loss"],
        "val/acc": val_stats["acc"],
        "val/f1_macro": val_stats["f1_macro"],
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": fit_stats["images_per_s"],
        "epoch_seconds": fit_stats["seconds"],
    }


def _keep(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: RunState,
    val_stats: EpochRecord,
    run: FitSettings,
) -> None:
    """Track the best epoch by `train.monitor` and write best.pt (when it improved) and last.pt (rank 0 only)."""
    writer, epoch = run.shard[0] == 0, state.epoch
    score = monitor_score(state.history[-1], run.train.monitor)
    if score > state.best_score:
        state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
        if val_stats["predicted_classes"] == 1:
            run.log(
                f"warning: epoch {epoch}, the best so far by {run.train.monitor}, "
                "predicts the same class for every val image"
            )
        if writer:
            save_checkpoint(run.best_path, {"model": model.state_dict(), "epoch": epoch, **run.carried()})
    else:
        state.bad_epochs += 1
    if writer:
        weights = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        save_checkpoint(run.last_path, {**weights, **run.carried(), **asdict(state)})


def fit(model: nn.Module, train_data: DeviceSplit, val_data: DeviceSplit, run: FitSettings) -> RunState:
    """Train for `train.epochs`, keeping `best.pt` by `train.monitor` and `last.pt` for resuming.

    A model built with `probe` has its head trained alone, on the frozen backbone's features computed once.
    """
    train = run.train
    head = probe_head(model)
    if head is not None:
        check_probe(train, run.unfreeze_at_epoch)
    state, resumed = _start(model, run)
    trained, optimizer, scheduler = _optimizing(model, head, state, resumed, run)
    for epoch, record in enumerate(state.history, start=1):
        run.on_epoch(epoch, record)

    criterion = make_criterion(train, train_data.labels, run.num_classes)
    if head is None:
        run_epoch = _model_epochs(model, train_data, val_data, run)
    else:
        run_epoch = _probe_epochs(model, head, train_data, val_data, run)
    for epoch in range(state.epoch + 1, train.epochs + 1):
        if _finished(state, train):
            run.log(
                f"early stop: {train.monitor} has not improved for {train.patience} epochs "
                f"(best: epoch {state.best_epoch})"
            )
            break
        if epoch == run.unfreeze_at_epoch:
            trained, optimizer, scheduler = _unfrozen(model, epoch, run)
        torch.manual_seed(epoch_seed(train.seed, epoch))  # dropout masks
        on_step = functools.partial(_count_step, state, epoch, train.log_every_steps)
        fit_stats, val_stats = run_epoch(trained, optimizer, criterion, epoch, on_step)
        record = _epoch_record(fit_stats, val_stats, optimizer)
        scheduler.step()
        state.epoch = epoch
        state.history.append(record)
        _keep(model, optimizer, scheduler, state, val_stats, run)
        run.on_epoch(epoch, record)
        run.log(
            f"epoch {epoch}/{train.epochs}: train/loss {record['train/loss']:.4f} val/acc {record['val/acc']:.4f} "
            f"val/f1_macro {record['val/f1_macro']:.4f} ({record['images_per_s']:.0f} img/s)"
        )
    return state
