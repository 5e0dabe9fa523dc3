"""What a reviewer asks of a comparison: who won and by how much, which results cannot be trusted, and where models err.

Pure functions over scores and label arrays, so the report stage only gathers files and writes Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from itertools import combinations
from typing import Any

import numpy as np

from imgcls.figures import plt, save_figure

# train.monitor -> (score in the evaluate details, higher is better)
MONITORED_SCORE = {"val/f1_macro": ("f1_macro", True), "val/acc": ("accuracy", True), "val/loss": ("loss", False)}


@dataclass(frozen=True)
class Verdict:
    winner: str
    score: str  # the key in the evaluate details, e.g. f1_macro
    value: float
    runner_up: str | None
    runner_up_value: float | None

    def sentence(self) -> str:
        if self.runner_up is None or self.runner_up_value is None:
            return f"{self.winner}, the only model: test {self.score} {self.value:.4f}"
        margin = abs(self.value - self.runner_up_value)
        if margin == 0:
            return f"{self.winner}, tied with {self.runner_up} on test {self.score} {self.value:.4f} (the first listed wins a tie)"
        return (
            f"{self.winner}, test {self.score} {self.value:.4f}, ahead of {self.runner_up} "
            f"({self.runner_up_value:.4f}) by {margin:.4f}"
        )


def pick_winner(scores: Mapping[str, Mapping[str, Any]], monitor: str) -> Verdict:
    """The best model by the test counterpart of `train.monitor`; ties go to the first listed."""
    key, higher_is_better = MONITORED_SCORE[monitor]
    ranked = sorted(scores, key=lambda name: -scores[name][key] if higher_is_better else scores[name][key])
    runner_up = ranked[1] if len(ranked) > 1 else None
    return Verdict(ranked[0], key, float(scores[ranked[0]][key]), runner_up, float(scores[runner_up][key]) if runner_up else None)


def flags(
    predictions: Mapping[str, np.ndarray], scores: Mapping[str, Mapping[str, Any]], classes: Sequence[str],
    ensemble: str | None, members: Sequence[str],
) -> list[str]:
    """Results a reader should not take at face value: chance level, one predicted class, an ensemble below a member."""
    chance = 1 / len(classes)
    found = []
    for name, y_pred in predictions.items():
        if scores[name]["balanced_accuracy"] <= chance:
            found.append(
                f"{name}: balanced accuracy {scores[name]['balanced_accuracy']:.4f} is at or below chance "
                f"({chance:.4f} for {len(classes)} classes)"
            )
        predicted = np.unique(y_pred)
        if len(predicted) == 1:
            found.append(f"{name}: predicts '{classes[predicted[0]]}' for every test image")
    if ensemble is not None:
        best = max(members, key=lambda m: scores[m]["f1_macro"])
        if scores[ensemble]["f1_macro"] < scores[best]["f1_macro"]:
            found.append(
                f"{ensemble}: macro-F1 {scores[ensemble]['f1_macro']:.4f} is below its best member "
                f"{best} ({scores[best]['f1_macro']:.4f}); the vote adds nothing here"
            )
    return found


def errors_per_class(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> list[int]:
    """Wrong test predictions per true class."""
    return np.bincount(y_true[y_true != y_pred], minlength=num_classes).tolist()


def error_overlap(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """For every pair of models: images both get wrong, only the first, only the second.

    Few images wrong for both is what makes an ensemble of the pair worth trying.
    """
    rows = []
    for a, b in combinations(predictions, 2):
        wrong_a, wrong_b = predictions[a] != y_true, predictions[b] != y_true
        rows.append(
            {"model A": a, "model B": b, "both wrong": int((wrong_a & wrong_b).sum()),
             "only A wrong": int((wrong_a & ~wrong_b).sum()), "only B wrong": int((~wrong_a & wrong_b).sum())}
        )
    return rows


def resolution(y_true: np.ndarray, classes: Sequence[str]) -> str:
    """How many points of a score one test image moves, overall and in the scarcest class."""
    support = np.bincount(y_true, minlength=len(classes))
    scarce = int(np.argmin(support))
    overall = f"one test image is {100 / len(y_true):.2f} points of accuracy"
    if support[scarce] == 0:
        return f"{overall}; class '{classes[scarce]}' has no test image, so its recall is undefined (reported as 0)"
    return (
        f"{overall}; the scarcest class, '{classes[scarce]}', has {support[scarce]} test images, "
        f"so one of them is {100 / support[scarce]:.2f} points of its recall"
    )


def bar_figure(path: Path, names: Sequence[str], values: Sequence[float], label: str) -> None:
    """Horizontal bars, one per model, each value printed at its bar's end."""
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.45 * len(names)))
    bars = ax.barh(list(names), list(values))
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    ax.invert_yaxis()  # first model on top, as in the tables
    ax.set_xlim(0, 1.12)
    ax.set_xlabel(label)
    fig.tight_layout()
    save_figure(fig, path)
