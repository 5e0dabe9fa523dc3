"""A linear probe: the head alone trained on the frozen backbone's features, computed once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.core.params import TrainParams
from imgcls.train.batches import DeviceSplit, batch_indices
from imgcls.train.loop import EpochRecord, autocast, optimizer_steps, predict, score


@dataclass(frozen=True)
class FeatureSplit:
    """A split as a probe's cached head inputs on the training device: features (N, D) float32, labels (N,) int64."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def cache_features(
    model: nn.Module, head: nn.Module, data: DeviceSplit, train: TrainParams, device: torch.device
) -> FeatureSplit:
    """What `head` receives from the rest of `model` for each image of `data`, in order, as `predict` runs the model."""
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
    return optimizer_steps(head, pairs, len(batches), optimizer, criterion, device, shard, "probe", on_step)


@torch.no_grad()
def evaluate_probe(head: nn.Module, data: FeatureSplit, criterion: nn.Module, device: torch.device) -> EpochRecord:
    """`evaluate` on cached features: the same scores as the whole model gives on the images."""
    head.eval()
    with autocast(device):
        logits = head(data.features).float()
    return score(logits, data.labels, criterion)


def check_probe(train: TrainParams, unfreeze_at_epoch: int | None) -> None:
    """A probe trains on features computed once, so nothing may change them from epoch to epoch."""
    augmentation = {"crop_padding": train.crop_padding, "hflip": train.hflip, "rotation_deg": train.rotation_deg}
    active = [f"{key}: {value}" for key, value in augmentation.items() if value]
    if active:
        raise ImgclsError(
            f"probe: true trains on features cached once, which cannot be augmented, but {', '.join(active)}; "
            "set crop_padding: 0, hflip: false and rotation_deg: 0 for this model (under models.<name> or train)"
        )
    if unfreeze_at_epoch is not None:
        raise ImgclsError(
            f"unfreeze_at_epoch {unfreeze_at_epoch}: probe: true keeps the backbone frozen; "
            "leave unfreeze_at_epoch empty"
        )
