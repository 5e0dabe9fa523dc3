"""DVC stage `ensemble`: majority vote over the configured models' test predictions.

Headline scores go to `--metrics`, every score to `--details`, the confusion matrix to `--figures`.
"""

from pathlib import Path

from imgcls.atomic import write_json
from imgcls.cli import stage_main, stage_parser
from imgcls.evaluate.ensemble import check_aligned, majority_vote
from imgcls.errors import ImgclsError
from imgcls.evaluate.predictions import confusion_figure, read_predictions, write_predictions
from imgcls.evaluate.scores import classification_scores, headline
from imgcls.params import EnsembleParams, load_params, model_names, read_params_file
from imgcls.data.packed import read_classes


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <model>.csv test predictions")
    parser.add_argument("--metrics", type=Path, required=True, help="headline scores JSON for dvc metrics")
    parser.add_argument("--details", type=Path, required=True, help="JSON of every score, per class too, for the report")
    parser.add_argument("--figures", type=Path, required=True, help="folder for confusion.png")
    parser.add_argument("--out-predictions", type=Path, required=True)
    args = parser.parse_args()
    params: EnsembleParams
    (params,) = load_params(args.params, "ensemble")
    defined = model_names(read_params_file(args.params))
    unknown = [m for m in params.models if m not in defined]
    if unknown:
        raise ImgclsError(f"ensemble.models: {unknown} are not in models: or finetune: ({', '.join(defined)})")

    classes = read_classes(args.processed / "classes.json")
    ids, y_true, _ = read_predictions(args.predictions / f"{params.models[0]}.csv", classes)
    votes = []
    for name in params.models:
        member_ids, _, member_pred = read_predictions(args.predictions / f"{name}.csv", classes)
        check_aligned(name, member_ids, ids)
        votes.append(member_pred)
    y_pred = majority_vote(votes, params.models.index(params.tie_break), len(classes))

    scores = classification_scores(y_true, y_pred, classes)
    write_json(args.details, scores)
    write_json(args.metrics, headline(scores, "test"))
    write_predictions(args.out_predictions, ids, y_true, y_pred, classes)
    confusion_figure(args.figures / "confusion.png", y_true, y_pred, classes, "ensemble (test)")
    print(f"ensemble of {', '.join(params.models)}: accuracy {scores['accuracy']:.4f}, f1_macro {scores['f1_macro']:.4f}")


if __name__ == "__main__":
    stage_main(main)
