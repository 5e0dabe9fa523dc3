"""What a run is built from: the device, the optimizer, the learning-rate schedule and the loss."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.core.params import TrainParams


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
        return torch.optim.SGD(
            params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov, weight_decay=train.weight_decay
        )
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainParams, completed_epochs: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch schedule, fast-forwarded past `completed_epochs` when rebuilt mid-run."""
    if train.scheduler == "step":
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, train.step_size, train.gamma
        )
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
