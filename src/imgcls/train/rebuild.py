"""Rebuild a trained model from its checkpoint alone: the recipe inside says how, params.yaml is never read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from imgcls.core.params import ModelSettings
from imgcls.core.reproducible import use_cpu_kernels
from imgcls.data.preprocessing import Preprocessing
from imgcls.models.pretrained import unfreeze_all
from imgcls.models.registry import build_model
from imgcls.train.checkpoint import load_checkpoint, load_weights
from imgcls.train.recipe import ModelRecipe, require_agreement


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint's network, weights loaded and in eval mode, and the recipe to feed it with."""

    model: nn.Module
    recipe: ModelRecipe


def rebuild_trained(checkpoint: Path) -> TrainedModel:
    """The architecture as trained, with the checkpoint's weights; weights that do not fit are refused by name.

    Initial-weight options are dropped (the checkpoint replaces them, and `pretrained`
    would download again); freezing is kept so trainable-parameter counts match training.
    """
    state = load_checkpoint(checkpoint)
    recipe = ModelRecipe.from_plain(state.get("recipe"), checkpoint)
    settings, side = recipe.settings, recipe.preprocessing.side_px
    # The kernels it trained with; in effect only where this process has run no torch operation yet
    # (loading the checkpoint runs none), so the report's later models run with its first one's.
    use_cpu_kernels(settings.train.cpu_kernels)
    options = {k: v for k, v in settings.options.items() if k not in ("pretrained", "weights_path")}
    model = build_model(settings.arch, len(recipe.classes), side, **options)
    if settings.unfreeze_at_epoch is not None and settings.unfreeze_at_epoch <= settings.train.epochs:
        unfreeze_all(model)
    described = f"its recipe ({settings.arch}, {len(recipe.classes)} classes, {side} px)"
    load_weights(model, checkpoint, state["model"], described)
    return TrainedModel(model.eval(), recipe)


def rebuild_current(
    checkpoint: Path, settings: ModelSettings, classes: Sequence[str], preprocessing: Preprocessing
) -> TrainedModel:
    """`rebuild_trained` for a pipeline stage: refused with one line where today's params and data would train
    another model."""
    trained = rebuild_trained(checkpoint)
    require_agreement(ModelRecipe(settings, tuple(classes), preprocessing), checkpoint, trained.recipe)
    return trained
