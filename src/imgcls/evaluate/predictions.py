"""Test-split predictions as files: the CSV `dvc plots` draws a confusion matrix from, and review figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from imgcls.figures import image_grid, plt, save_figure
from imgcls.manifest import read_csv, write_csv

PREDICTION_COLUMNS = ("id", "actual", "predicted")
# The label indices let the confusion template (.dvc/plots/confusion_ordered.json) keep label order, not A-Z.
LABEL_ORDER_COLUMNS = ("actual_index", "predicted_index")


def write_predictions(
    path: Path, ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> None:
    rows = [
        {"id": int(i), "actual": classes[t], "predicted": classes[p], "actual_index": int(t), "predicted_index": int(p)}
        for i, t, p in zip(ids, y_true, y_pred)
    ]
    write_csv(path, rows, PREDICTION_COLUMNS + LABEL_ORDER_COLUMNS)


def read_predictions(path: Path, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, y_true, y_pred) as label indices into `classes`."""
    rows = read_csv(path, PREDICTION_COLUMNS)
    index = {name: i for i, name in enumerate(classes)}
    return (
        np.array([int(r["id"]) for r in rows], dtype=np.int64),
        np.array([index[r["actual"]] for r in rows], dtype=np.int64),
        np.array([index[r["predicted"]] for r in rows], dtype=np.int64),
    )


def confusion_figure(path: Path, y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], title: str) -> None:
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(classes), 1.0 + 0.5 * len(classes)))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        display_labels=list(classes),
        ax=ax,
        colorbar=False,
        xticks_rotation=45,
    )
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def misclassified_grid(
    path: Path, images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], limit: int
) -> None:
    """The first `limit` wrong test predictions, titled `true -> predicted`."""
    wrong = np.flatnonzero(y_true != y_pred)[:limit]
    titles = [f"{classes[y_true[i]]} -> {classes[y_pred[i]]}" for i in wrong]
    image_grid(path, [np.asarray(images[i]) for i in wrong], titles, empty="no misclassified test images")
