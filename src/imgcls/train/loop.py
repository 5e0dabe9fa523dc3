"""The training loop: plain `train_one_epoch` / `evaluate` functions and a resumable `fit`.

A run is a pure function of its settings: every epoch reseeds its own generators
from (seed, epoch), so a run resumed from `last.pt` draws exactly the batches,
augmentations and dropout masks an uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from tqdm import tqdm

from imgcls.train.checkpoint import check_checkpoint, load_checkpoint, save_checkpoint, set_aside
from imgcls.train.batches import DeviceSplit, batch_indices, crop_flip, crop_flip_draws, normalize, rotate, rotation_angles, training_batches
from imgcls.train.distributed import sum_across_processes
from imgcls.errors import ImgclsError
from imgcls.evaluate.scores import f1_macro
from imgcls.models import frozen_batchnorm, probe_head, unfreeze_all
from imgcls.params import TrainParams

EpochRecord = dict[str, float]
StepRecord = dict[str, float]  # {"step": n, "epoch": e, "loss": the batch's training loss}
STEP_COLUMNS = ("step", "epoch", "loss")  # a StepRecord's keys, as the train stage's steps.csv lists them


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ImgclsError("train.device: 'cuda' asked but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ImgclsError("train.device: 'mps' asked but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def make_optimizer(model: nn.Module, train: TrainParams) -> torch.optim.Optimizer:
    """An optimizer over the parameters that currently train (frozen ones are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov, weight_decay=train.weight_decay)
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainParams, completed_epochs: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch schedule, fast-forwarded past `completed_epochs` when rebuilt mid-run."""
    if train.scheduler == "step":
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(optimizer, train.step_size, train.gamma)
    elif train.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    with warnings.catch_warnings():
        # Stepping before any optimizer.step() warns; here it only replays the schedule.
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(completed_epochs):
            scheduler.step()
    return scheduler


def make_criterion(train: TrainParams, labels: torch.Tensor, num_classes: int) -> nn.CrossEntropyLoss:
    """Cross-entropy on logits, optionally weighted inversely to class frequency."""
    weight = None
    if train.class_weights == "balanced":
        y = labels.cpu().numpy()
        present = np.unique(y)
        values = np.ones(num_classes, dtype=np.float32)
        values[present] = compute_class_weight("balanced", classes=present, y=y)
        weight = torch.tensor(values, device=labels.device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=train.label_smoothing)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (no loss scaler needed); full precision elsewhere for bit-exact CPU runs."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_seed(seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): a resumed run redraws exactly what an uninterrupted one drew."""
    return seed * 100_003 + epoch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


def _phase(name: str) -> contextlib.AbstractContextManager[Any]:
    """A torch.profiler range over one part of a training step, so a profile breaks the step down by them.

    Only while a profiler records: an idle record_function still costs ~6 us, eight a batch ~1% of net1's step.
    """
    return torch.profiler.record_function(name) if torch.autograd._profiler_enabled() else contextlib.nullcontext()


# Pixels the data path augments in one go. Amid training each op costs ~10 us on a CPU however small, so
# net1's 32 px batches (65k pixels) go 8 at a time, 4% faster a step; their floats (6 MB) stay in cache.
_CHUNK_PIXELS = 2**19


def _joined(draws: tuple[torch.Tensor | None, ...]) -> torch.Tensor | None:
    """A chunk's per-batch draws of one augmentation as one tensor; None when it is off."""
    return None if draws[0] is None else torch.cat([draw for draw in draws if draw is not None])


def _augmented_batches(
    data: DeviceSplit, batches: list[torch.Tensor], train: TrainParams, generator: torch.Generator, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each batch's augmented, normalised channels_last images and its labels, a chunk of batches at a time.

    Each batch draws its crop, flip and rotation in turn, before its chunk is gathered: the same random
    stream as batch by batch, so bit-identical batches. Only the data path uses `generator`.
    """
    height, width = data.images.shape[2:]
    per_chunk = max(1, _CHUNK_PIXELS // (len(batches[0]) * height * width)) if batches else 1
    for start in range(0, len(batches), per_chunk):
        chunk = batches[start : start + per_chunk]
        sizes = [len(index) for index in chunk]
        with _phase("index draw"):
            index = torch.cat(chunk).to(device)
        with _phase("crop/flip gather"):
            draws = [
                (*crop_flip_draws(size, train.crop_padding, train.hflip, generator), rotation_angles(size, train.rotation_deg, generator))
                for size in sizes
            ]
            offsets, flips, angles = zip(*draws)
            # Picked, cropped and flipped in one gather from the split, on uint8 (cheap to move).
            images = crop_flip(data.images, _joined(offsets), _joined(flips), index)
            labels = data.labels.index_select(0, index)  # a third of the time of data.labels[index]
        with _phase("normalise"):
            images = normalize(images, train.normalize_mean, train.normalize_std)
        for batch_images, batch_labels, batch_angles in zip(images.split(sizes), labels.split(sizes), angles):
            with _phase("rotation"):
                # After normalising: rotation interpolates, so it needs floats.
                batch_images = rotate(batch_images, batch_angles).contiguous(memory_format=torch.channels_last)
            yield batch_images, batch_labels


def train_one_epoch(
    model: nn.Module,
    data: DeviceSplit,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    train: TrainParams,
    generator: torch.Generator,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
    desc: str = "train",
    on_step: Callable[[torch.Tensor], None] = lambda loss: None,
) -> EpochRecord:
    """One pass over `data` in augmented batches; `on_step` gets each step's loss, still on the device."""
    with _phase("index draw"):
        batches = training_batches(len(data), train.batch_size // shard[1], generator, shard)
    augmented = _augmented_batches(data, batches, train, generator, device)
    return _optimizer_steps(model, augmented, len(batches), optimizer, criterion, device, shard, desc, on_step)


def _optimizer_steps(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
    shard: tuple[int, int],
    desc: str,
    on_step: Callable[[torch.Tensor], None],
) -> EpochRecord:
    """A step per (inputs, labels) batch: the epoch loop of whole-model training and of a linear probe alike."""
    model.train()
    total_loss = torch.zeros((), device=device)
    predictions: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    seen = 0
    start = time.perf_counter()
    for inputs, labels in tqdm(batches, total=steps, desc=desc, unit="batch", leave=False, disable=shard[0] != 0):
        with _phase("forward"), autocast(device):
            logits = model(inputs)
            loss = criterion(logits, labels)
        with _phase("optimizer"):
            optimizer.zero_grad(set_to_none=True)
        with _phase("backward"):
            loss.backward()
        with _phase("optimizer"):
            optimizer.step()
        with _phase("bookkeeping"):
            # On the device: calling .item() here would sync the GPU every batch. Hits are counted once
            # at the end, since each small op costs ~10 us on a CPU, a share of a small net's step.
            total_loss += loss.detach() * len(labels)
            predictions.append(logits.argmax(1))
            targets.append(labels)
            seen += len(labels)
            on_step(loss.detach())
    with _phase("bookkeeping"):
        correct = (torch.cat(predictions) == torch.cat(targets)).sum() if predictions else torch.zeros((), dtype=torch.long, device=device)
        total_loss, correct, counted = sum_across_processes(total_loss, correct, torch.tensor(seen, device=device))
        elapsed = time.perf_counter() - start
        seen = int(counted.item())
    return {"loss": total_loss.item() / seen, "acc": correct.item() / seen, "images_per_s": seen / elapsed, "seconds": elapsed}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, train: TrainParams, device: torch.device) -> torch.Tensor:
    """Logits for every image of a uint8 (N, 3, H, W) batch on `device`, in order, `train.batch_size` at a time,
    normalised with the model's `train.normalize_mean` / `normalize_std`."""
    model.eval()
    outputs = []
    for index in batch_indices(len(images), train.batch_size, None):
        index = index.to(device)
        batch = normalize(images[index], train.normalize_mean, train.normalize_std)
        with autocast(device):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DeviceSplit, train: TrainParams, device: torch.device) -> None:
    """Set every BatchNorm layer's running mean and variance to those of its input over `data`.

    With a few steps an epoch, momentum-averaged statistics lag the weights so far that eval
    mode can predict one class for everything; recomputing them is "precise BatchNorm". The
    images are normalised as `predict` does and fed in order (less a trailing single sample,
    as in training); the BatchNorm layers run in train mode (batch statistics, as in training)
    and every other layer in eval mode, so dropout is off and the pass draws no random numbers.
    A model without BatchNorm is left untouched, and so are the BatchNorm layers of a frozen part.
    """
    layers = [
        m for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and not frozen_batchnorm(m)
    ]
    if not layers:
        return
    moments: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]] = {layer: [] for layer in layers}

    def keep_batch_statistics(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        count = inputs[0].numel() // inputs[0].shape[1]
        # With momentum 1 the buffers hold this batch's statistics alone, the variance unbiased. Reading
        # them back is several times faster on CPU than torch.var_mean over the layer input.
        moments[layer].append((count, layer.running_mean.clone(), layer.running_var * (count - 1) / count))

    was_training, momenta = model.training, [layer.momentum for layer in layers]
    model.eval()
    hooks = []
    for layer in layers:
        layer.train()
        layer.momentum = 1.0
        hooks.append(layer.register_forward_hook(keep_batch_statistics))
    try:
        for index in training_batches(len(data), train.batch_size, None):
            index = index.to(device)
            with autocast(device):
                model(normalize(data.images[index], train.normalize_mean, train.normalize_std))
    finally:
        for layer, momentum, hook in zip(layers, momenta, hooks):
            layer.momentum = momentum
            hook.remove()
        model.train(was_training)
    for layer, batches in moments.items():
        counts = torch.tensor([count for count, _, _ in batches], dtype=torch.float32, device=device).unsqueeze(1)
        means = torch.stack([mean for _, mean, _ in batches])
        variances = torch.stack([var for _, _, var in batches])
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        # Within-batch spread plus the spread of the batch means: exact for any batch sizes and order.
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var * total / (total - 1))  # unbiased, as BatchNorm keeps it


def evaluate(model: nn.Module, data: DeviceSplit, criterion: nn.Module, train: TrainParams, device: torch.device) -> EpochRecord:
    return score(predict(model, data.images, train, device), data.labels, criterion)


def score(logits: torch.Tensor, labels: torch.Tensor, criterion: nn.Module) -> EpochRecord:
    """Loss, accuracy, macro F1 and the number of distinct classes predicted, from (N, C) logits."""
    predicted = logits.argmax(1)
    num_classes = logits.shape[1]
    return {
        "loss": criterion(logits, labels).item(),
        "acc": (predicted == labels).float().mean().item(),
        "f1_macro": f1_macro(labels.cpu().numpy(), predicted.cpu().numpy(), num_classes),
        "predicted_classes": float(predicted.unique().numel()),
    }


@dataclass(frozen=True)
class FeatureSplit:
    """A split as a probe's cached head inputs on the training device: features (N, D) float32, labels (N,) int64."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def cache_features(model: nn.Module, head: nn.Module, data: DeviceSplit, train: TrainParams, device: torch.device) -> FeatureSplit:
    """What `head` receives from the rest of `model` for each image of `data`, in order, computed as `predict` runs the model."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].float()))
    try:
        predict(model, data.images, train, device)
    finally:
        hook.remove()
    return FeatureSplit(torch.cat(captured), data.labels)


def train_probe_epoch(
    head: nn.Module,
    data: FeatureSplit,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    train: TrainParams,
    generator: torch.Generator,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
    on_step: Callable[[torch.Tensor], None] = lambda loss: None,
) -> EpochRecord:
    """`train_one_epoch` for a linear probe: the head alone, on cached features (never augmented)."""
    # The head has no BatchNorm, so unlike training_batches a trailing batch of one is kept.
    batches = [index.to(device) for index in batch_indices(len(data), train.batch_size // shard[1], generator, shard)]
    pairs = ((data.features[index], data.labels[index]) for index in batches)
    return _optimizer_steps(head, pairs, len(batches), optimizer, criterion, device, shard, "probe", on_step)


@torch.no_grad()
def evaluate_probe(head: nn.Module, data: FeatureSplit, criterion: nn.Module, device: torch.device) -> EpochRecord:
    """`evaluate` on cached features: the same scores as the whole model gives on the images."""
    head.eval()
    with autocast(device):
        logits = head(data.features).float()
    return score(logits, data.labels, criterion)


def _check_probe(train: TrainParams, unfreeze_at_epoch: int | None) -> None:
    """A probe trains on features computed once, so nothing may change them from epoch to epoch."""
    augmentation = {"crop_padding": train.crop_padding, "hflip": train.hflip, "rotation_deg": train.rotation_deg}
    active = [f"{key}: {value}" for key, value in augmentation.items() if value]
    if active:
        raise ImgclsError(
            f"probe: true trains on features cached once, which cannot be augmented, but {', '.join(active)}; "
            "set crop_padding: 0, hflip: false and rotation_deg: 0 for this model (under models.<name> or train)"
        )
    if unfreeze_at_epoch is not None:
        raise ImgclsError(f"unfreeze_at_epoch {unfreeze_at_epoch}: probe: true keeps the backbone frozen; leave unfreeze_at_epoch empty")


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


def _resume(path: Path, best_path: Path, fingerprint: str, train: TrainParams, log: Callable[[str], None]) -> dict[str, Any] | None:
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


def fit(
    model: nn.Module,
    train: TrainParams,
    unfreeze_at_epoch: int | None,
    train_data: DeviceSplit,
    val_data: DeviceSplit,
    num_classes: int,
    checkpoint_dir: Path,
    fingerprint: str,
    device: torch.device,
    on_epoch: Callable[[int, EpochRecord], None] = lambda epoch, record: None,
    log: Callable[[str], None] = print,
    shard: tuple[int, int] = (0, 1),
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
    recipe: Mapping[str, Any] | None = None,
) -> RunState:
    """Train for `train.epochs`, keeping `best.pt` by `train.monitor` and `last.pt` for resuming.

    `on_epoch(epoch, record)` receives every epoch's record, replayed ones included,
    so a resumed run logs the same history as an uninterrupted one. `wrap` lets a
    distributed caller put DistributedDataParallel around the model; only rank 0
    (shard[0] == 0) writes checkpoints. A model built with `probe` has its head trained
    alone, on the frozen backbone's features computed once. `recipe` (imgcls.train.recipe, as plain
    types) goes into both checkpoints, so either can be used without the repository.
    """
    carried = {"fingerprint": fingerprint, **({"recipe": dict(recipe)} if recipe is not None else {})}
    head = probe_head(model)
    if head is not None:
        _check_probe(train, unfreeze_at_epoch)
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    writer = shard[0] == 0
    resumed = _resume(last_path, best_path, fingerprint, train, log)
    state = RunState()
    if resumed is not None:
        state = RunState(**{f.name: resumed[f.name] for f in fields(RunState)})
        model.load_state_dict(resumed["model"])
    if unfreeze_at_epoch is not None and state.epoch + 1 > unfreeze_at_epoch:
        unfreeze_all(model)
    # A probe's head is all that trains, so it alone is wrapped (and DDP syncs its gradients).
    trained = wrap(model if head is None else head)
    optimizer = make_optimizer(trained, train)
    scheduler = make_scheduler(optimizer, train)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    for epoch, record in enumerate(state.history, start=1):
        on_epoch(epoch, record)

    criterion = make_criterion(train, train_data.labels, num_classes)
    if head is not None:
        started = time.perf_counter()
        train_features, val_features = (cache_features(model, head, split, train, device) for split in (train_data, val_data))
        log(f"probe: cached the features of {len(train_data)} train and {len(val_data)} val images in {time.perf_counter() - started:.1f} s")
    for epoch in range(state.epoch + 1, train.epochs + 1):
        if _finished(state, train):
            log(f"early stop: {train.monitor} has not improved for {train.patience} epochs (best: epoch {state.best_epoch})")
            break
        if epoch == unfreeze_at_epoch:
            # Staged fine-tuning: the frozen phase is over, so every weight joins a fresh optimizer.
            unfreeze_all(model)
            trained = wrap(model)
            optimizer = make_optimizer(trained, train)
            scheduler = make_scheduler(optimizer, train, completed_epochs=epoch - 1)
        torch.manual_seed(epoch_seed(train.seed, epoch))  # dropout masks
        on_step = functools.partial(_count_step, state, epoch, train.log_every_steps)
        if head is not None:
            fit_stats = train_probe_epoch(
                trained, train_features, optimizer, criterion, train, epoch_generator(train.seed, epoch), device, shard, on_step
            )
            val_stats = evaluate_probe(head, val_features, criterion, device)
        else:
            fit_stats = train_one_epoch(
                trained, train_data, optimizer, criterion, train, epoch_generator(train.seed, epoch), device, shard,
                f"epoch {epoch}/{train.epochs}", on_step,
            )
            # On the unwrapped model, so each DDP rank recomputes the same statistics from the whole split.
            recalibrate_batchnorm(model, train_data, train, device)
            val_stats = evaluate(model, val_data, criterion, train, device)
        record = {
            "train/loss": fit_stats["loss"],
            "train/acc": fit_stats["acc"],
            "val/loss": val_stats["loss"],
            "val/acc": val_stats["acc"],
            "val/f1_macro": val_stats["f1_macro"],
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": fit_stats["images_per_s"],
            "epoch_seconds": fit_stats["seconds"],
        }
        scheduler.step()
        state.epoch = epoch
        state.history.append(record)
        score = monitor_score(record, train.monitor)
        if score > state.best_score:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
            if val_stats["predicted_classes"] == 1:
                log(f"warning: epoch {epoch}, the best so far by {train.monitor}, predicts the same class for every val image")
            if writer:
                save_checkpoint(best_path, {"model": model.state_dict(), "epoch": epoch, **carried})
        else:
            state.bad_epochs += 1
        if writer:
            save_checkpoint(
                last_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    **carried,
                    **asdict(state),
                },
            )
        on_epoch(epoch, record)
        log(
            f"epoch {epoch}/{train.epochs}: train/loss {record['train/loss']:.4f} val/acc {record['val/acc']:.4f} "
            f"val/f1_macro {record['val/f1_macro']:.4f} ({record['images_per_s']:.0f} img/s)"
        )
    return state

