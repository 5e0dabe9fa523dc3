"""Rebuild a trained model from its settings and checkpoint, for evaluation and reports."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from imgcls.checkpoint import load_weights
from imgcls.models import build_model, unfreeze_all
from imgcls.params import ModelSettings


def rebuild_trained(settings: ModelSettings, num_classes: int, image_size: int, checkpoint: Path) -> nn.Module:
    """The architecture as trained, with the weights of the checkpoint file; one that does not fit is refused by name.

    Initial-weight options are dropped (the checkpoint replaces them, and `pretrained`
    would download again); freezing is kept so trainable-parameter counts match training.
    """
    options = {k: v for k, v in settings.options.items() if k not in ("pretrained", "weights_path")}
    model = build_model(settings.arch, num_classes, image_size, **options)
    if settings.unfreeze_at_epoch is not None and settings.unfreeze_at_epoch <= settings.train.epochs:
        unfreeze_all(model)
    load_weights(model, checkpoint, f"models.{settings.name} ({settings.arch}, {num_classes} classes, {image_size} px)")
    return model.eval()
