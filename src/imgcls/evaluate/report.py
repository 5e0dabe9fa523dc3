"""The review report: a Markdown comparison table and what each network's convolutions see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from torch import nn

from imgcls.core.errors import ImgclsError, did_you_mean, first_of
from imgcls.figures import min_max, mosaic, plt, save_figure
from imgcls.train.batches import Channels, standardize

FEATURE_CHANNELS = 8
# A map of 2x2 or smaller is at most four numbers, not a picture of what the layer responds to.
SMALLEST_MAP_SIDE = 3
LISTED_LAYERS = 12
VIRIDIS = colormaps["viridis"]

Shape = tuple[int, int, int]  # one image's activation: channels, height, width


def comparison_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], bold: Sequence[str]) -> str:
    """A Markdown table; floats to 4 places, the highest value of each `bold` column in bold."""
    best = {c: max(r[c] for r in rows) for c in columns if c in bold and rows}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            cells.append(f"**{text}**" if column in best and value == best[column] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def filter_grid(path: Path, conv: nn.Conv2d, title: str) -> None:
    """The first convolution's kernels, each min-max scaled; RGB when the layer reads RGB, else its first channel in
    gray. One image of tiles rather than an axes per kernel, which would cost seconds per model."""
    weights = conv.weight.detach().float().cpu().numpy()
    count = weights.shape[0]
    columns = min(16, count)
    rows = -(-count // columns)
    tiles = weights if weights.shape[1] == 3 else np.repeat(weights[:, :1], 3, axis=1)
    tiles = min_max(tiles, axis=(1, 2, 3))
    fig, ax = plt.subplots(figsize=(columns * 0.6, rows * 0.6 + 0.4))
    ax.imshow(mosaic(tiles.transpose(0, 2, 3, 1), columns), interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def _conv_outputs(model: nn.Module, inputs: torch.Tensor) -> dict[str, tuple[Shape, np.ndarray]]:
    """Each Conv2d's output for a (1, 3, H, W) float input, by module name in forward order: its shape and first
    channels."""
    convs = {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    captured: dict[str, tuple[Shape, np.ndarray]] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        # Copied now: an in-place activation after the convolution would otherwise overwrite it.
        captured[name] = (tuple(out.shape[1:]), out[0, :FEATURE_CHANNELS].float().cpu().numpy().copy())

    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: keep(name, out)) for name, module in convs.items()
    ]
    try:
        with torch.no_grad():
            model.eval()(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: captured[name] for name in convs if name in captured}


def conv_shapes(model: nn.Module, image_size: int) -> dict[str, Shape]:
    """Every Conv2d's name and (C, H, W) output for one square image of `image_size` px, in forward order."""
    return {name: shape for name, (shape, _) in _conv_outputs(model, torch.zeros(1, 3, image_size, image_size)).items()}


def _drawable(shape: Shape) -> bool:
    return min(shape[1:]) >= SMALLEST_MAP_SIDE


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _listing(shapes: Mapping[str, Shape]) -> str:
    """A few conv layer names with their shapes, for an error message."""
    names = [f"{name} ({_shape_text(shape)})" for name, shape in shapes.items()]
    return first_of(names, LISTED_LAYERS)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    hint = did_you_mean(name, known)
    return f" ('{name}': {hint})" if hint else ""


def pick_feature_layers(shapes: Mapping[str, Shape], layers: Sequence[str] | None = None) -> list[str]:
    """The layers a figure shows: those of `layers` this model has, in the order given; with None the first,
    middle and last convolution whose maps are larger than 2x2 (none when no map is).

    Named layers are kept even when their maps are 2x2 or smaller, so the figure can say why they are blank.
    """
    if layers is None:
        large = [name for name, shape in shapes.items() if _drawable(shape)]
        return list(dict.fromkeys(large[i] for i in (0, len(large) // 2, -1))) if large else []
    present = [name for name in layers if name in shapes]
    if not present:
        hints = "".join(_did_you_mean(name, list(shapes)) for name in layers)
        raise ImgclsError(
            f"report.feature_layers: this model has no convolution named {list(layers)}{hints}; its conv layers: "
            f"{_listing(shapes)}"
        )
    return present


def check_feature_layers(layers: Sequence[str] | None, shapes_by_model: Mapping[str, Mapping[str, Shape]]) -> None:
    """Raise for a listed layer that no model has: a name drawn in none of the figures is a typo."""
    known = list(dict.fromkeys(name for shapes in shapes_by_model.values() for name in shapes))
    missing = [name for name in layers or () if name not in known]
    if missing:
        hints = "".join(_did_you_mean(name, known) for name in missing)
        models = "; ".join(f"{model}: {_listing(shapes)}" for model, shapes in shapes_by_model.items())
        raise ImgclsError(
            f"report.feature_layers: no model has a convolution named {missing}{hints}; conv layers of {models}"
        )


def _feature_row(ax: Axes, name: str, shape: Shape, channels: np.ndarray, image: np.ndarray) -> None:
    """One layer's row: the input, then its first channels (each min-max scaled, in viridis, enlarged to the input's
    size), under a `name  CxHxW` label. One image of tiles: an axes per tile cost most of the report's time."""
    label = f"{name}  {_shape_text(shape)}"
    if not _drawable(shape):
        label += ": maps of 2x2 or smaller, not drawn"
    # Left-aligned, so a long label runs on over the row's empty title space instead of overlapping both sides.
    ax.set_title(label, fontsize=7, loc="left")
    if not _drawable(shape):
        return
    height, width = image.shape[:2]
    tiles = np.ones((FEATURE_CHANNELS + 1, height, width, 3))  # white where a layer has fewer channels
    tiles[0] = image / 255.0
    for index, scaled in enumerate(min_max(channels, axis=(1, 2)), start=1):
        tiles[index] = VIRIDIS(cv2.resize(scaled, (width, height), interpolation=cv2.INTER_NEAREST))[..., :3]
    ax.imshow(mosaic(tiles, FEATURE_CHANNELS + 1), interpolation="nearest")


def feature_maps(
    path: Path,
    model: nn.Module,
    image: np.ndarray,
    mean: Channels,
    std: Channels,
    title: str,
    layers: Sequence[str] | None = None,
) -> dict[str, Shape]:
    """A few channels of each picked convolution's output for one HxWx3 uint8 image, normalised with the model's
    `mean` and `std` as in training (see `pick_feature_layers`), a row per layer.

    Returns the layers drawn with their (C, H, W) shapes; a named layer whose maps are 2x2 or smaller gets a
    labelled row saying so instead of pictures, and is not returned.
    """
    outputs = _conv_outputs(model, standardize(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None], mean, std))
    picked = pick_feature_layers({name: shape for name, (shape, _) in outputs.items()}, layers)
    rows = max(1, len(picked))
    height = rows * 1.05 + 0.4
    fig, axes = plt.subplots(rows, 1, figsize=((FEATURE_CHANNELS + 1) * 0.9, height), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / height, hspace=0.3)
    for ax in axes.flat:
        ax.axis("off")
    for (ax,), name in zip(axes, picked):
        _feature_row(ax, name, *outputs[name], image)
    if not picked:
        axes[0, 0].set_title(
            f"no convolution has maps larger than 2x2 at {image.shape[1]}x{image.shape[0]} px", fontsize=7, loc="left"
        )
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    return {name: outputs[name][0] for name in picked if _drawable(outputs[name][0])}
