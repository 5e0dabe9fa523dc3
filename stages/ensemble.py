"""DVC stage `ensemble`: majority vote over the configured models' test predictions.

Headline scores go to `--metrics`, every score and the 95% intervals to `--details`, the confusion matrix to
`--figures`.
"""

import argparse
from pathlib import Path

import numpy as np

from imgcls.core.atomic import write_json
from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import (
    EnsembleParams,
    EvaluateParams,
    builds_ensemble,
    load_params,
    model_names,
    read_params_file,
)
from imgcls.data.packed import read_classes
from imgcls.evaluate.ensemble import NO_ENSEMBLE, check_aligned, check_members, majority_vote
from imgcls.evaluate.predictions import confusion_figure, read_predictions, write_predictions
from imgcls.evaluate.scores import classification_scores, headline
from imgcls.evaluate.significance import bootstrap_ci95
from imgcls.figures import image_grid


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <model>.csv test predictions")
    parser.add_argument("--metrics", type=Path, required=True, help="headline scores JSON for dvc metrics")
    parser.add_argument(
        "--details", type=Path, required=True, help="JSON of every score, per class too, for the report"
    )
    parser.add_argument("--figures", type=Path, required=True, help="folder for confusion.png")
    parser.add_argument("--out-predictions", type=Path, required=True)
    args = parser.parse_args()
    params: EnsembleParams
    evaluate: EvaluateParams
    params, evaluate = load_params(args.params, "ensemble", "evaluate")
    check_members(params.models, model_names(read_params_file(args.params)))
    classes = read_classes(args.processed / "classes.json")
    if not builds_ensemble(params.models):
        write_no_ensemble(args, classes)
        return
    ids, y_true, _ = read_predictions(args.predictions / f"{params.models[0]}.csv", classes)
    votes = []
    for name in params.models:
        member_ids, _, member_pred = read_predictions(args.predictions / f"{name}.csv", classes)
        check_aligned(name, member_ids, ids)
        votes.append(member_pred)
    y_pred = majority_vote(votes, params.models.index(params.tie_break), len(classes))

    scores = classification_scores(y_true, y_pred, classes)
    # Resampled as each model's test images are, so the ensemble's intervals compare with theirs.
    scores.update(bootstrap_ci95(y_true, y_pred, len(classes), evaluate.bootstrap_resamples, evaluate.bootstrap_seed))
    write_json(args.details, scores)
    write_json(args.metrics, headline(scores, "test"))
    write_predictions(args.out_predictions, ids, y_true, y_pred, classes)
    confusion_figure(args.figures / "confusion.png", y_true, y_pred, classes, "ensemble (test)")
    print(
        f"ensemble of {', '.join(params.models)}: accuracy {scores['accuracy']:.4f}, f1_macro {scores['f1_macro']:.4f}"
    )


def write_no_ensemble(args: argparse.Namespace, classes: list[str]) -> None:
    """Every declared output, saying there is no ensemble: DVC, the report and `dvc plots show` still find them."""
    write_json(args.details, NO_ENSEMBLE)
    write_json(args.metrics, NO_ENSEMBLE)
    empty = np.zeros(0, np.int64)
    write_predictions(args.out_predictions, empty, empty, empty, classes)
    image_grid(args.figures / "confusion.png", [], [], empty="no ensemble: ensemble.models lists fewer than two models")
    print(f"ensemble: none built, ensemble.models lists fewer than two models; {args.metrics} says members: 0")


if __name__ == "__main__":
    stage_main(main)
