"""Torchvision ImageNet networks with a new classification head, optional weights and frozen layers.

A frozen part keeps its BatchNorm statistics as well as its weights: its BatchNorm layers
stay in eval mode under `train()` until `unfreeze_all`. With `probe` the head reads
L2-normalised features, so a frozen backbone's features can be computed once and the
head trained on them alone (a linear probe).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from imgcls.core.errors import ImgclsError, first_of
from imgcls.models.names import TORCHVISION_MODELS
from imgcls.models.state_dicts import is_state_dict, read_torch_file, state_dict_differences

FREEZE_MODES = ("none", "backbone", "last_block")
# These networks downsample 32x: a smaller image reaches the last stage as one zero-padded pixel.
MIN_IMAGE_SIZE = 32


class _Layout(NamedTuple):
    head: str
    last_block: Callable[[nn.Module], list[nn.Module]]


_LAYOUTS: dict[str, _Layout] = {
    "efficientnet_b0": _Layout("classifier", lambda model: [model.features[-1]]),
    "mobilenet_v2": _Layout("classifier", lambda model: [model.features[-1]]),
    "resnet18": _Layout("fc", lambda model: [model.layer4]),
    "resnet50": _Layout("fc", lambda model: [model.layer4]),
    "swin_t": _Layout("head", lambda model: [model.features[-1], model.norm]),
}
if tuple(sorted(_LAYOUTS)) != TORCHVISION_MODELS:
    raise RuntimeError("models/names.py must name exactly the torchvision networks laid out here")  # a slip of ours


class ClassifierHead(nn.Sequential):
    """The replacement head; its own type so freezing and optimisers can find it in any network."""

    def __init__(self, in_features: int, num_classes: int, hidden: int | None, dropout: float) -> None:
        if hidden is None:
            # Dropout(0) is kept so the state_dict keys do not depend on head_dropout.
            super().__init__(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
        else:
            super().__init__(
                nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
            )


class L2Normalize(nn.Module):
    """Scale each (N, D) feature vector to unit length."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(features, dim=1)


class ProbeHead(nn.Sequential):
    """A linear probe's head: L2 normalisation, then the `classifier` the probe trains on cached normalised features.

    The normalisation is part of the model, so evaluating on images computes what the head saw in training.
    """

    def __init__(self, classifier: ClassifierHead) -> None:
        super().__init__(OrderedDict(normalize=L2Normalize(), classifier=classifier))


class FreezableBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose running statistics freeze with its weights: while those do not train, `train()` leaves it
    in eval mode."""

    def train(self, mode: bool = True) -> FreezableBatchNorm2d:
        return super().train(mode and self.weight.requires_grad)

    @classmethod
    def like(cls, layer: nn.BatchNorm2d) -> FreezableBatchNorm2d:
        """`layer` with its settings, weights and statistics; the state_dict keys stay the same."""
        copy = cls(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
        copy.load_state_dict(layer.state_dict())
        return copy


def build(
    name: str,
    num_classes: int,
    image_size: int,
    *,
    pretrained: bool = False,
    weights_path: str | os.PathLike[str] | None = None,
    freeze: str = "none",
    head_hidden: int | None = None,
    head_dropout: float = 0.0,
    probe: bool = False,
) -> nn.Module:
    """Build torchvision's `name` with a `num_classes` head (behind L2 normalisation with `probe`), load any
    weights, then freeze."""
    _check_options(pretrained, weights_path, freeze, head_hidden, head_dropout, probe)
    if image_size < MIN_IMAGE_SIZE:
        raise ImgclsError(f"image_size {image_size} is too small; the minimum for this model is {MIN_IMAGE_SIZE}")
    model = _imagenet_model(name, pretrained)
    layout = _LAYOUTS[name]
    state = None if weights_path is None else _read_state_dict(Path(weights_path))
    imagenet_problems = [] if state is None else _problems(model, state)
    # ImageNet files load before the head is replaced, so torchvision's published .pth files work as-is.
    if state is not None and not imagenet_problems:
        _load(model, state)
    old_head = getattr(model, layout.head)
    in_features = [m for m in old_head.modules() if isinstance(m, nn.Linear)][-1].in_features
    head = ClassifierHead(in_features, num_classes, head_hidden, head_dropout)
    setattr(model, layout.head, ProbeHead(head) if probe else head)
    if state is not None and imagenet_problems:
        project_problems = _problems(model, state)
        if project_problems:
            raise ImgclsError(
                _mismatch_message(name, num_classes, Path(weights_path), imagenet_problems, project_problems)
            )
        _load(model, state)
    if freeze != "none":
        _freeze(model, layout, freeze)
    return model


def _freeze(model: nn.Module, layout: _Layout, freeze: str) -> None:
    """Freeze everything but the head (and, for `last_block`, the last block): weights and BatchNorm statistics."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, child_name, FreezableBatchNorm2d.like(child))
    model.requires_grad_(False)
    trainable = [getattr(model, layout.head)]
    if freeze == "last_block":
        trainable += layout.last_block(model)
    for module in trainable:
        module.requires_grad_(True)
    model.train()  # again, now that it leaves the frozen BatchNorm layers in eval mode


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the replaced head; empty for classic nets, whose last layer is not a replaced head."""
    return [p for module in model.modules() if isinstance(module, ClassifierHead) for p in module.parameters()]


def unfreeze_all(model: nn.Module) -> None:
    """Make every parameter trainable again, e.g. when the trainer reaches `unfreeze_at_epoch`; BatchNorm statistics
    too."""
    model.requires_grad_(True)
    model.train(model.training)  # frozen BatchNorm layers take the model's mode again


def frozen_batchnorm(module: nn.Module) -> bool:
    """Whether `module` is a BatchNorm layer of a frozen part, whose running statistics stay as loaded."""
    return isinstance(module, FreezableBatchNorm2d) and not module.weight.requires_grad


def probe_head(model: nn.Module) -> nn.Module | None:
    """The classifier a linear probe trains on cached L2-normalised features; None for a model built without `probe`."""
    return next((module.classifier for module in model.modules() if isinstance(module, ProbeHead)), None)


def _check_options(
    pretrained: object, weights_path: object, freeze: object, head_hidden: object, head_dropout: object, probe: object
) -> None:
    if not isinstance(pretrained, bool):
        raise ImgclsError(f"pretrained {pretrained!r} is not a boolean; use true or false")
    if weights_path is not None and not isinstance(weights_path, (str, os.PathLike)):
        raise ImgclsError(f"weights_path {weights_path!r} is not a path; use a file path or null")
    if pretrained and weights_path is not None:
        raise ImgclsError(
            f"pretrained and weights_path {str(weights_path)!r} were both given; "
            "use pretrained to download weights or weights_path for a local file, not both"
        )
    if freeze not in FREEZE_MODES:
        raise ImgclsError(f"freeze {freeze!r} is not a freeze mode; valid: {', '.join(FREEZE_MODES)}")
    if head_hidden is not None and (
        isinstance(head_hidden, bool) or not isinstance(head_hidden, int) or head_hidden < 1
    ):
        raise ImgclsError(f"head_hidden {head_hidden!r} is not a layer width; use a positive integer or null")
    if isinstance(head_dropout, bool) or not isinstance(head_dropout, (int, float)) or not 0 <= head_dropout < 1:
        raise ImgclsError(f"head_dropout {head_dropout!r} is not a probability; use a number in [0, 1)")
    if not isinstance(probe, bool):
        raise ImgclsError(f"probe {probe!r} is not a boolean; use true or false")
    if probe and freeze != "backbone":
        raise ImgclsError(
            f"probe trains the head on a frozen backbone's features, so it needs freeze 'backbone', not {freeze!r}"
        )


def _imagenet_model(name: str, pretrained: bool) -> nn.Module:
    # Imported here: torchvision takes ~2 s to import, which every stage building a classic net would pay.
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except OSError as error:
        raise ImgclsError(
            f"pretrained weights {weights} could not be downloaded ({error}); "
            "on an offline machine set weights_path to a local copy instead"
        ) from error


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    expected = "expected a state_dict written by torch.save(model.state_dict(), path)"
    state = read_torch_file(path, f"weights_path '{path}'", "state_dict", expected)
    if not is_state_dict(state):
        raise ImgclsError(f"weights_path '{path}': holds a {type(state).__name__}, not a state_dict; {expected}")
    return state


def _problems(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Why `state` does not fit `model`; empty when it loads completely."""
    expected = model.state_dict()
    missing, unexpected, reshaped = state_dict_differences(expected, state)
    return (
        # Files saved before PyTorch 0.4.1 (torchvision's older .pth files) have no BatchNorm batch counters.
        [f"missing {k}" for k in missing if not k.endswith("num_batches_tracked")]
        + [f"unexpected {k}" for k in unexpected]
        + [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in reshaped]
    )


def _load(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    # strict=False only tolerates the absent batch counters: _problems has checked everything else.
    model.load_state_dict(state, strict=False)


def _mismatch_message(
    name: str, num_classes: int, path: Path, imagenet_problems: list[str], project_problems: list[str]
) -> str:
    problems = min(imagenet_problems, project_problems, key=len)
    shown = first_of(problems, separator="; ")
    return (
        f"weights_path '{path}' fits neither torchvision's ImageNet {name} nor this project's {name} "
        f"with {num_classes} classes: {shown}"
    )
