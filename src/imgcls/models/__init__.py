"""Models by name: `build_model`, plus the helpers stages and the trainer need to inspect, probe and unfreeze them."""

from __future__ import annotations

from torch import nn

from imgcls.models.pretrained import TORCHVISION_MODELS, frozen_batchnorm, head_parameters, probe_head, unfreeze_all
from imgcls.models.registry import MODEL_NAMES, build_model

__all__ = [
    "MODEL_NAMES",
    "TORCHVISION_MODELS",
    "build_model",
    "conv_layers",
    "count_parameters",
    "frozen_batchnorm",
    "head_parameters",
    "probe_head",
    "unfreeze_all",
]


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """Every 2-D convolution in registration order, which is forward order in every registered model."""
    return [module for module in model.modules() if isinstance(module, nn.Conv2d)]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)
