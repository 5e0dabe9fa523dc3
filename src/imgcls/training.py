"""The training loop: plain `train_one_epoch` / `evaluate` functions and a resumable `fit`.

A run is a pure function of its settings: every epoch reseeds its own generators
from (seed, epoch), so a run resumed from `last.pt` draws exactly the batches,
augmentations and dropout masks an uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from tqdm import tqdm

from imgcls.checkpoint import load_checkpoint, save_checkpoint, set_aside
from imgcls.data import DeviceSplit, batch_indices, normalize, random_crop_flip, random_rotate, training_batches
from imgcls.distributed import sum_across_processes
from imgcls.errors import ImgclsError
from imgcls.metrics import f1_macro
from imgcls.models import unfreeze_all
from imgcls.params import TrainParams

EpochRecord = dict[str, float]


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
) -> EpochRecord:
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    start = time.perf_counter()
    batches = training_batches(len(data), train.batch_size // shard[1], generator, shard)
    for index in tqdm(batches, desc=desc, unit="batch", leave=False, disable=shard[0] != 0):
        index = index.to(device)
        # Crop and flip on uint8 (cheap to move), then normalise, then rotate (needs floats).
        images = random_crop_flip(data.images[index], train.crop_padding, train.hflip, generator)
        images = random_rotate(normalize(images), train.rotation_deg, generator)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = data.labels[index]
        with autocast(device):
            logits = model(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulate on the device: calling .item() here would sync the GPU every batch.
        total_loss += loss.detach() * len(index)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(index)
    total_loss, correct, counted = sum_across_processes(total_loss, correct, torch.tensor(seen, device=device))
    elapsed = time.perf_counter() - start
    seen = int(counted.item())
    return {"loss": total_loss.item() / seen, "acc": correct.item() / seen, "images_per_s": seen / elapsed, "seconds": elapsed}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits for every image of a uint8 (N, 3, H, W) batch on `device`, in order."""
    model.eval()
    outputs = []
    for index in batch_indices(len(images), batch_size, None):
        index = index.to(device)
        batch = normalize(images[index])
        with autocast(device):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DeviceSplit, batch_size: int, device: torch.device) -> None:
    """Set every BatchNorm layer's running mean and variance to those of its input over `data`.

    With a few steps an epoch, momentum-averaged statistics lag the weights so far that eval
    mode can predict one class for everything; recomputing them is "precise BatchNorm". The
    images are normalised as `predict` does and fed in order (less a trailing single sample,
    as in training); the BatchNorm layers run in train mode (batch statistics, as in training)
    and every other layer in eval mode, so dropout is off and the pass draws no random numbers.
    A model without BatchNorm is left untouched.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
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
        for index in training_batches(len(data), batch_size, None):
            index = index.to(device)
            with autocast(device):
                model(normalize(data.images[index]))
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


def evaluate(model: nn.Module, data: DeviceSplit, criterion: nn.Module, batch_size: int, device: torch.device) -> EpochRecord:
    logits = predict(model, data.images, batch_size, device)
    predicted = logits.argmax(1)
    num_classes = logits.shape[1]
    return {
        "loss": criterion(logits, data.labels).item(),
        "acc": (predicted == data.labels).float().mean().item(),
        "f1_macro": f1_macro(data.labels.cpu().numpy(), predicted.cpu().numpy(), num_classes),
        "predicted_classes": float(predicted.unique().numel()),
    }


@dataclass
class RunState:
    """What a checkpoint carries beyond the weights: where the run is and how it has gone."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochRecord] = field(default_factory=list)


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
        state = load_checkpoint(path, ("model", "optimizer", "scheduler", "fingerprint", *(f.name for f in fields(RunState))))
    except ImgclsError as exc:
        # Truncated by a full disk, or another program's file: useless for resuming, but kept for a look.
        log(f"{exc}; moved it to {set_aside(path)} and starting afresh")
        return None
    if state["fingerprint"] != fingerprint:
        log(f"{path}: written under different settings, data or code; starting afresh")
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
) -> RunState:
    """Train for `train.epochs`, keeping `best.pt` by `train.monitor` and `last.pt` for resuming.

    `on_epoch(epoch, record)` receives every epoch's record, replayed ones included,
    so a resumed run logs the same history as an uninterrupted one. `wrap` lets a
    distributed caller put DistributedDataParallel around the model; only rank 0
    (shard[0] == 0) writes checkpoints.
    """
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    writer = shard[0] == 0
    resumed = _resume(last_path, best_path, fingerprint, train, log)
    state = RunState()
    if resumed is not None:
        state = RunState(**{f.name: resumed[f.name] for f in fields(RunState)})
        model.load_state_dict(resumed["model"])
    if unfreeze_at_epoch is not None and state.epoch + 1 > unfreeze_at_epoch:
        unfreeze_all(model)
    trained = wrap(model)
    optimizer = make_optimizer(trained, train)
    scheduler = make_scheduler(optimizer, train)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    for epoch, record in enumerate(state.history, start=1):
        on_epoch(epoch, record)

    criterion = make_criterion(train, train_data.labels, num_classes)
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
        fit_stats = train_one_epoch(
            trained, train_data, optimizer, criterion, train, epoch_generator(train.seed, epoch), device, shard, f"epoch {epoch}/{train.epochs}"
        )
        # On the unwrapped model, so each DDP rank recomputes the same statistics from the whole split.
        recalibrate_batchnorm(model, train_data, train.batch_size, device)
        val_stats = evaluate(model, val_data, criterion, train.batch_size, device)
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
                save_checkpoint(best_path, {"model": model.state_dict(), "epoch": epoch, "fingerprint": fingerprint})
        else:
            state.bad_epochs += 1
        if writer:
            save_checkpoint(
                last_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "fingerprint": fingerprint,
                    **asdict(state),
                },
            )
        on_epoch(epoch, record)
        log(
            f"epoch {epoch}/{train.epochs}: train/loss {record['train/loss']:.4f} val/acc {record['val/acc']:.4f} "
            f"val/f1_macro {record['val/f1_macro']:.4f} ({record['images_per_s']:.0f} img/s)"
        )
    return state

