"""What the report and the evaluate stage read off any model: its convolutions and parameter counts."""

from __future__ import annotations

from torch import nn


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """Every 2-D convolution in registration order, which is forward order in every registered model."""
    return [module for module in model.modules() if isinstance(module, nn.Conv2d)]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)
