"""What a reviewer asks of a comparison: who won, by how much and whether that is more than chance, which results
cannot be trusted, and where models err.

Pure functions over scores and label arrays, so the report stage only gathers files and writes Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.evaluate.significance import ALPHA, Interval, Paired, format_p, paired_test
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
    paired: Paired | None  # winner (A) against runner-up (B) on the same test images

    def sentence(self) -> str:
        if self.runner_up is None or self.runner_up_value is None or self.paired is None:
            return f"{self.winner}, the only model: test {self.score} {self.value:.4f}"
        margin = abs(self.value - self.runner_up_value)
        if margin == 0:
            lead = (
                f"{self.winner}, tied with {self.runner_up} on test {self.score} {self.value:.4f} "
                "(the first listed wins a tie)"
            )
        else:
            lead = (
                f"{self.winner}, test {self.score} {self.value:.4f}, ahead of {self.runner_up} "
                f"({self.runner_up_value:.4f}) by {margin:.4f}"
            )
        return f"{lead}, {significance(self.paired, self.runner_up)}"


def significance(paired: Paired, other: str) -> str:
    """Whether a difference to `other` is significant at 0.05, said plainly when it is not."""
    test = f"exact McNemar {format_p(paired.p_value)}"
    if paired.significant:
        return f"significant at {ALPHA} on these {paired.images} images ({test})"
    return f"not significant at {ALPHA} ({test}): not distinguishable from {other} on these {paired.images} images"


def pick_winner(
    scores: Mapping[str, Mapping[str, Any]], monitor: str, y_true: np.ndarray, predictions: Mapping[str, np.ndarray]
) -> Verdict:
    """The best model by the test counterpart of `train.monitor`, tested against the runner-up.

    Ties go to the first listed.
    """
    key, higher_is_better = MONITORED_SCORE[monitor]
    ranked = sorted(scores, key=lambda name: -scores[name][key] if higher_is_better else scores[name][key])
    if len(ranked) == 1:
        return Verdict(ranked[0], key, float(scores[ranked[0]][key]), None, None, None)
    winner, runner_up = ranked[:2]
    return Verdict(
        winner,
        key,
        float(scores[winner][key]),
        runner_up,
        float(scores[runner_up][key]),
        paired_test(y_true, predictions[winner], predictions[runner_up]),
    )


def ensemble_versus_best(
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    scores: Mapping[str, Mapping[str, Any]],
    ensemble: str,
    members: Sequence[str],
) -> str | None:
    """The ensemble against its best member by test macro-F1, tested as the winner is; None with no ensemble rows."""
    if len(predictions.get(ensemble, ())) == 0:
        return None
    best = max(members, key=lambda m: scores[m]["f1_macro"])
    mine, theirs = scores[ensemble]["f1_macro"], scores[best]["f1_macro"]
    paired = paired_test(y_true, predictions[ensemble], predictions[best])
    return f"{ensemble} test f1_macro {mine:.4f}, {best} {theirs:.4f} ({mine - theirs:+.4f}), " + significance(
        paired, best
    )


def flags(
    predictions: Mapping[str, np.ndarray],
    scores: Mapping[str, Mapping[str, Any]],
    classes: Sequence[str],
    ensemble: str | None,
    members: Sequence[str],
) -> list[str]:
    """Results a reader should not take at face value: chance level, one predicted class, an ensemble below a member."""
    chance = 1 / len(classes)
    found = []
    for name, y_pred in predictions.items():
        if scores[name]["recall_macro"] <= chance:
            found.append(
                f"{name}: macro recall (balanced accuracy) {scores[name]['recall_macro']:.4f} is at or below chance "
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


INTERVAL_SCORES = ("accuracy", "f1_macro")


def interval_columns(scores: Mapping[str, Any]) -> dict[str, Interval]:
    """A details file's accuracy and macro-F1 with their 95% intervals, as `<score> [95% interval]` table cells."""
    return {f"{score} [95% interval]": Interval(scores[score], *scores[f"{score}_ci95"]) for score in INTERVAL_SCORES}


def interval_note(y_true: np.ndarray, scores: Mapping[str, Any]) -> str:
    """How the intervals were drawn (from one details file) and how many test images one point is."""
    return (
        f"95% intervals: percentile bootstrap over the {len(y_true)} test images "
        f"({scores['ci95_resamples']} resamples, evaluate.bootstrap_seed {scores['ci95_seed']}); "
        f"a difference of one point of accuracy is {len(y_true) / 100:.2f} test images."
    )


def errors_per_class(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> list[int]:
    """Wrong test predictions per true class."""
    return np.bincount(y_true[y_true != y_pred], minlength=num_classes).tolist()


def error_overlap(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """For every pair of models: images both get wrong, only the first, only the second, and McNemar's exact
    p-value on those last two counts.

    Few images wrong for both is what makes an ensemble of the pair worth trying.
    """
    rows = []
    for a, b in combinations(predictions, 2):
        paired = paired_test(y_true, predictions[a], predictions[b])
        both = int(((predictions[a] != y_true) & (predictions[b] != y_true)).sum())
        rows.append(
            {
                "model A": a,
                "model B": b,
                "both wrong": both,
                "only A wrong": paired.only_a,
                "only B wrong": paired.only_b,
                "exact McNemar": format_p(paired.p_value),
            }
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
