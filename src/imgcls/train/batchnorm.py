"""Precise BatchNorm: running statistics recomputed over the whole training split after each epoch."""

from __future__ import annotations

import torch
from torch import nn

from imgcls.core.params import TrainParams
from imgcls.models.pretrained import frozen_batchnorm
from imgcls.train.batches import DeviceSplit, standardize, training_batches
from imgcls.train.loop import autocast


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
        m
        for m in model.modules()
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
                model(standardize(data.images[index], train.normalize_mean, train.normalize_std))
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
