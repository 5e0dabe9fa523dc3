"""The one place models are registered by name, and `build_model`, the only way stages get a model."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.models import classic, pretrained
from imgcls.models.names import MODEL_NAMES, TORCHVISION_MODELS

# A builder takes (num_classes, image_size); its keyword-only parameters are the options users may set.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "net1": classic.Net1,
    "net2": classic.Net2,
    "net3": classic.Net3,
    "cnn": classic.CNN,
    "cnn_attention": classic.CNNAttention,
    "plain_cnn": classic.PlainCNN,
    "resnet_scratch": classic.ResNetScratch,
    "medium_cnn": classic.MediumCNN,
    "mish_cnn": classic.MishCNN,
    "bn_cnn": classic.BNCNN,
    "deep_mish_cnn": classic.DeepMishCNN,
    **{name: functools.partial(pretrained.build, name) for name in TORCHVISION_MODELS},
}
if tuple(sorted(_BUILDERS)) != MODEL_NAMES:
    raise RuntimeError("models/names.py must name exactly the models registered here")  # a slip of ours, at import


def build_model(name: str, num_classes: int, image_size: int, **options: object) -> nn.Module:
    """Build model `name` with `num_classes` output logits for square RGB images of side `image_size`."""
    if name not in _BUILDERS:
        raise ImgclsError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    for label, value in (("num_classes", num_classes), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ImgclsError(f"{label} {value!r} for model {name!r} is not a positive integer")
    accepted = _options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ImgclsError(
            f"model {name!r} does not accept option {unknown[0]!r}; "
            f"it accepts: {', '.join(accepted) or 'no options'}{_transfer_hint(name, unknown[0])}"
        )
    try:
        return _BUILDERS[name](num_classes, image_size, **options)
    except ImgclsError as error:
        raise ImgclsError(f"model {name!r}: {error}") from error


def _options(name: str) -> tuple[str, ...]:
    parameters = inspect.signature(_BUILDERS[name]).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _transfer_hint(name: str, option: str) -> str:
    """Say so when a classic net was given an option only the torchvision models take."""
    if name in TORCHVISION_MODELS or option not in _options(TORCHVISION_MODELS[0]):
        return ""
    return f" ({option} applies only to torchvision models: {', '.join(TORCHVISION_MODELS)})"
