"""The review report: a Markdown comparison table and what each network's convolutions see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgcls.data import normalize
from imgcls.figures import plt, save_figure
from imgcls.metrics import QUALITY_KEYS
from imgcls.models import conv_layers

FEATURE_CHANNELS = 8


def comparison_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table; floats to 4 places, best quality score per column in bold."""
    best = {c: max(r[c] for r in rows) for c in columns if c in QUALITY_KEYS and rows}
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
    """The first convolution's kernels, each min-max scaled; RGB when the layer reads RGB."""
    weights = conv.weight.detach().float().cpu().numpy()
    count = weights.shape[0]
    columns = min(16, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.6, rows * 0.6 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, kernel in zip(axes.flat, weights):
        kernel = (kernel - kernel.min()) / (np.ptp(kernel) or 1.0)
        ax.imshow(kernel.transpose(1, 2, 0) if kernel.shape[0] == 3 else kernel[0], cmap=None if kernel.shape[0] == 3 else "gray")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def feature_maps(path: Path, model: nn.Module, image: np.ndarray, title: str) -> None:
    """Activations of the first, middle and last convolution for one image, a few channels each."""
    convs = conv_layers(model)
    picked = {"early": convs[0], "middle": convs[len(convs) // 2], "late": convs[-1]}
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach()))
        for name, layer in picked.items()
    ]
    try:
        with torch.no_grad():
            model.eval()(normalize(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]))
    finally:
        for hook in hooks:
            hook.remove()
    fig, axes = plt.subplots(3, FEATURE_CHANNELS + 1, figsize=((FEATURE_CHANNELS + 1) * 0.9, 3 * 1.0))
    for row, name in zip(axes, picked):
        row[0].imshow(image)
        row[0].set_title(name, fontsize=7)
        for ax, channel in zip(row[1:], captured[name][0, :FEATURE_CHANNELS].float().cpu().numpy()):
            ax.imshow(channel, cmap="viridis")
        for ax in row:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
