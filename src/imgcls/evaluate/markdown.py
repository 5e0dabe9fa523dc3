"""report.md from the review's pieces: the report stage gathers every model's results, this says what they show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgcls.evaluate.report import comparison_table
from imgcls.evaluate.review import (
    ensemble_versus_best,
    error_overlap,
    errors_per_class,
    flags,
    interval_note,
    pick_winner,
    resolution,
)

ENSEMBLE = "ensemble"
SCORE_COLUMNS = ("accuracy [95% interval]", "precision_macro", "recall_macro", "f1_macro [95% interval]", "f1_weighted")
OVERLAP_COLUMNS = ("model A", "model B", "both wrong", "only A wrong", "only B wrong", "exact McNemar")
COLUMNS = (
    "model",
    "arch",
    *SCORE_COLUMNS,
    "best val f1_macro (epoch)",
    "params_total",
    "params_trainable",
    "train_seconds",
    "figures",
)


@dataclass(frozen=True)
class Results:
    """The test results the report compares: the trained models' (`names`) and, when one was built, the ensemble's."""

    classes: Sequence[str]
    y_true: np.ndarray
    names: list[str]
    rows: list[dict[str, Any]]  # one per model, then the ensemble: the score table's cells
    scores: dict[str, dict[str, Any]]  # each model's metrics/details JSON
    predictions: dict[str, np.ndarray]  # each model's predicted labels, in y_true's order


def report_markdown(results: Results, members: Sequence[str], monitor: str, data_flags: list[str], figures: str) -> str:
    """The whole report; its first line names the winner, its margin and whether the margin is real."""
    verdict = pick_winner({n: results.scores[n] for n in results.names}, monitor, results.y_true, results.predictions)
    voted = ENSEMBLE in results.predictions
    warnings = flags(results.predictions, results.scores, results.classes, ENSEMBLE if voted else None, members)
    versus_best = ensemble_versus_best(results.y_true, results.predictions, results.scores, ENSEMBLE, members)
    lines = [
        f"# Winner: {verdict.sentence()}",
        "",
        f"Test split: {len(results.y_true)} images, {len(results.classes)} classes ({', '.join(results.classes)}); "
        f"{resolution(results.y_true, results.classes)}. "
        f"The winner is picked by the test counterpart of train.monitor ({monitor}) and tested against the "
        "runner-up with McNemar's exact test on the images only one of them gets wrong.",
        "",
        *([f"Ensemble vs its best member: {versus_best}.", ""] if versus_best else []),
        "## Flags",
        "",
        *(
            [f"- {warning}" for warning in [*warnings, *data_flags]]
            or [
                "None: every model beats chance, predicts more than one class, and the ensemble "
                "is not below its best member."
            ]
        ),
        "",
        *_score_sections(results, figures),
        *_overlap_section(results),
        "## Curves",
        "",
        f"![train vs val, per model]({figures}/train_vs_val.png)",
        "",
        f"![val macro-F1 by epoch, every model]({figures}/val_f1_macro_by_epoch.png)",
        "",
    ]
    return "\n".join(lines)


def _score_sections(results: Results, figures: str) -> list[str]:
    """The score table, then recall and wrong images per class."""
    y_true, classes, scores = results.y_true, results.classes, results.scores
    support = np.bincount(y_true, minlength=len(classes))
    recall_rows = [
        {"class": f"{c} ({support[i]})", **{m: s["per_class"][c]["recall"] for m, s in scores.items()}}
        for i, c in enumerate(classes)
    ]
    errors = {m: errors_per_class(y_true, p, len(classes)) for m, p in results.predictions.items()}
    error_rows = [{"class": c, **{m: wrong[i] for m, wrong in errors.items()}} for i, c in enumerate(classes)]
    return [
        "## Scores (test split)",
        "",
        "Best score per column in bold. The best val macro-F1 is the training run's own pick (best.pt). "
        f"{interval_note(y_true, scores[results.names[0]])}",
        "",
        comparison_table(results.rows, COLUMNS, bold=SCORE_COLUMNS),
        f"![test macro-F1 by model]({figures}/f1_macro_by_model.png)",
        "",
        "## Recall per class (test split, images per class in brackets)",
        "",
        comparison_table(recall_rows, ("class", *scores), bold=()),
        "## Wrong test images per class",
        "",
        comparison_table(error_rows, ("class", *results.predictions), bold=()),
    ]


def _overlap_section(results: Results) -> list[str]:
    overlap = error_overlap(results.y_true, {name: results.predictions[name] for name in results.names})
    return [
        "## Error overlap between models",
        "",
        "Images both models get wrong, and those only one of them does: few shared errors make a pair worth "
        "ensembling. Exact McNemar: the chance of an only-A / only-B split at least that uneven if both models "
        "were equally accurate; below 0.05, their accuracies really differ.",
        "",
        comparison_table(overlap, OVERLAP_COLUMNS, bold=()) if overlap else "One model: nothing to compare.\n",
    ]
