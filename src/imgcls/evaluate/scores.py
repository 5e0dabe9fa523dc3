"""Classification scores with scikit-learn, shaped for `dvc metrics show`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

# The few scores `dvc exp show` and `dvc metrics diff` carry per model; the rest lives in the details file.
# No balanced accuracy: for single-label classification it is recall_macro under another name.
HEADLINE_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def headline(scores: dict[str, Any], split: str) -> dict[str, Any]:
    """The headline scores nested under the split they were measured on, so a column reads `test.f1_macro`."""
    return {split: {key: scores[key] for key in HEADLINE_KEYS}}


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted precision-recall-F1 and per-class scores (recall_macro is balanced accuracy).

    A class never predicted scores 0 precision (zero_division=0) rather than raising a warning.
    """
    labels = list(range(len(classes)))
    scores: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        scores.update(
            {f"precision_{average}": float(precision), f"recall_{average}": float(recall), f"f1_{average}": float(f1)}
        )
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    scores["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support)
    }
    return scores
