"""Which differences between test scores are real: bootstrap intervals and exact McNemar tests.

Pure functions over label arrays, so evaluate, ensemble and the report share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.05
CONFIDENCE = 0.95
# Resamples drawn at once: each (resamples, images) array of a chunk stays near 32 MiB however large the test split.
CHUNK_CELLS = 2**22


@dataclass(frozen=True, order=True)
class Interval:
    """A score with its 95% interval; compares by the score alone, prints as `0.975 [0.951, 0.993]`."""

    value: float
    low: float = field(compare=False)
    high: float = field(compare=False)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _confusions(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, rows: np.ndarray) -> np.ndarray:
    """One confusion matrix (true x predicted counts) per row of test-image indices: shape (len(rows), k, k)."""
    cells = num_classes * num_classes
    pair = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    codes = pair[rows] + np.arange(len(rows))[:, None] * cells
    return np.bincount(codes.ravel(), minlength=len(rows) * cells).reshape(len(rows), num_classes, num_classes)


def scores_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 of each (k, k) confusion matrix in a stack.

    As `metrics.classification_scores` scores them: a class with no true and no predicted image has F1 0
    and still counts in the macro mean (scikit-learn's zero_division=0 over every label).
    """
    hits = np.diagonal(confusions, axis1=1, axis2=2)
    total = confusions.sum(axis=(1, 2))
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + true) for each class.
    marginals = confusions.sum(axis=1) + confusions.sum(axis=2)
    f1 = np.divide(2 * hits, marginals, out=np.zeros(hits.shape), where=marginals > 0)
    return {"accuracy": hits.sum(axis=1) / total, "f1_macro": f1.mean(axis=1)}


def bootstrap_ci95(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, resamples: int, seed: int
) -> dict[str, Any]:
    """95% percentile bootstrap intervals of accuracy and macro-F1 over the test images.

    Each resample draws len(y_true) images with replacement from a generator seeded with `seed`, so the
    intervals are the same on every run. Keys: `accuracy_ci95` and `f1_macro_ci95`, each [low, high], and
    the `ci95_resamples` and `ci95_seed` that made them.
    """
    count = len(y_true)
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // count)
    parts = []
    for start in range(0, resamples, chunk):
        rows = rng.integers(0, count, size=(min(chunk, resamples - start), count))
        parts.append(scores_from_confusions(_confusions(y_true, y_pred, num_classes, rows)))
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals: dict[str, Any] = {}
    for score in ("accuracy", "f1_macro"):
        values = np.concatenate([part[score] for part in parts])
        intervals[f"{score}_ci95"] = [float(v) for v in np.percentile(values, [tail, 100 - tail])]
    return {**intervals, "ci95_resamples": resamples, "ci95_seed": seed}


@dataclass(frozen=True)
class Paired:
    """Two models on the same test images: the images only one of them gets wrong, and McNemar's exact p."""

    only_a: int
    only_b: int
    images: int
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each discordant image is a fair coin's toss."""
    discordant = only_a + only_b
    return 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)


def paired_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> Paired:
    """McNemar's exact test of two models' right/wrong answers on the same test images."""
    wrong_a, wrong_b = pred_a != y_true, pred_b != y_true
    only_a, only_b = int((wrong_a & ~wrong_b).sum()), int((~wrong_a & wrong_b).sum())
    return Paired(only_a, only_b, len(y_true), mcnemar_exact(only_a, only_b))


def format_p(p_value: float) -> str:
    """`p = 0.012`, or `p < 0.001`: more digits would claim a precision a few hundred test images do not have."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"
