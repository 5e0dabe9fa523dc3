"""The step loop: `train_one_epoch` over augmented batches, and `predict` / `evaluate` for scoring.

Like torchvision's references, plain functions: one epoch of optimizer steps, one pass of inference.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from imgcls.core.params import TrainParams
from imgcls.evaluate.scores import f1_macro
from imgcls.train.batches import (
    DeviceSplit,
    batch_indices,
    crop_flip,
    crop_flip_draws,
    rotate,
    rotation_angles,
    standardize,
    training_batches,
)
from imgcls.train.distributed import sum_across_processes

EpochRecord = dict[str, float]
StepRecord = dict[str, float]  # {"step": n, "epoch": e, "loss": the batch's training loss}
STEP_COLUMNS = ("step", "epoch", "loss")  # a StepRecord's keys, as the train stage's steps.csv lists them


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
                (
                    *crop_flip_draws(size, train.crop_padding, train.hflip, generator),
                    rotation_angles(size, train.rotation_deg, generator),
                )
                for size in sizes
            ]
            offsets, flips, angles = zip(*draws)
            # Picked, cropped and flipped in one gather from the split, on uint8 (cheap to move).
            images = crop_flip(data.images, _joined(offsets), _joined(flips), index)
            labels = data.labels.index_select(0, index)  # a third of the time of data.labels[index]
        with _phase("normalise"):
            images = standardize(images, train.normalize_mean, train.normalize_std)
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
    return optimizer_steps(model, augmented, len(batches), optimizer, criterion, device, shard, desc, on_step)


def optimizer_steps(
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
        correct = (
            (torch.cat(predictions) == torch.cat(targets)).sum()
            if predictions
            else torch.zeros((), dtype=torch.long, device=device)
        )
        total_loss, correct, counted = sum_across_processes(total_loss, correct, torch.tensor(seen, device=device))
        elapsed = time.perf_counter() - start
        seen = int(counted.item())
    return {
        "loss": total_loss.item() / seen,
        "acc": correct.item() / seen,
        "images_per_s": seen / elapsed,
        "seconds": elapsed,
    }


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, train: TrainParams, device: torch.device) -> torch.Tensor:
    """Logits for every image of a uint8 (N, 3, H, W) batch on `device`, in order, `train.batch_size` at a time,
    normalised with the model's `train.normalize_mean` / `normalize_std`."""
    model.eval()
    outputs = []
    for index in batch_indices(len(images), train.batch_size, None):
        index = index.to(device)
        batch = standardize(images[index], train.normalize_mean, train.normalize_std)
        with autocast(device):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


def evaluate(
    model: nn.Module, data: DeviceSplit, criterion: nn.Module, train: TrainParams, device: torch.device
) -> EpochRecord:
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
