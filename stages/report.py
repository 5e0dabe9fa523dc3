"""DVC stage `report`: name the winner, flag results not to trust, compare every model and the ensemble.

Writes report.md (its first line names the winner), the review figures, and every model's
per-epoch curves as one CSV for the overlaid `dvc plots`. The winner is also the last line printed.
"""

from pathlib import Path

import numpy as np

from imgcls.atomic import atomic_dir, read_json, write_text
from imgcls.cli import stage_main, stage_parser
from imgcls.data.near_duplicates import twin_flag
from imgcls.data.packed import load_split, read_classes
from imgcls.data.preprocessing import Preprocessing
from imgcls.errors import ImgclsError
from imgcls.evaluate.curves import overlay_figure, read_curve, train_val_figure, write_curves, write_steps
from imgcls.evaluate.predictions import read_predictions
from imgcls.evaluate.report import check_feature_layers, comparison_table, conv_shapes, feature_maps, filter_grid
from imgcls.evaluate.review import (
    bar_figure,
    ensemble_versus_best,
    error_overlap,
    errors_per_class,
    flags,
    interval_columns,
    interval_note,
    pick_winner,
    resolution,
)
from imgcls.models import MODEL_NAMES, conv_layers
from imgcls.params import (
    EnsembleParams,
    ReportParams,
    TrainParams,
    builds_ensemble,
    load_params,
    model_names,
    read_params_file,
    resolve_model,
)
from imgcls.train.rebuild import rebuild_current

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


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--models-dir", type=Path, required=True, help="folder of <model>/best.pt")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <model>.csv test predictions")
    parser.add_argument("--details", type=Path, required=True, help="folder of <model>.json with every test score")
    parser.add_argument("--ensemble-predictions", type=Path, required=True)
    parser.add_argument("--train-metrics", type=Path, required=True, help="folder of each model's dvclive folder")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="report.md; figure links assume --figures and the evaluate figures beside it",
    )
    parser.add_argument("--figures", type=Path, required=True, help="folder for the report's PNG figures, beside --out")
    parser.add_argument("--curves", type=Path, required=True, help="CSV of every model's per-epoch curves")
    parser.add_argument(
        "--steps", type=Path, required=True, help="CSV of every model's logged step losses (train.log_every_steps)"
    )
    parser.add_argument(
        "--near-duplicates", type=Path, required=True, help="the split stage's near-duplicate pairs across splits"
    )
    args = parser.parse_args()
    params: ReportParams
    ensemble: EnsembleParams
    train: TrainParams
    params, ensemble, train = load_params(args.params, "report", "ensemble", "train")
    names = model_names(read_params_file(args.params))

    classes = read_classes(args.processed / "classes.json")
    preprocessing = Preprocessing.read(args.processed)
    test = load_split(args.processed / "test")
    if params.feature_image >= len(test.ids):
        raise ImgclsError(
            f"report.feature_image: {params.feature_image} is past the end of the test split, "
            f"which holds {len(test.ids)} images (0 .. {len(test.ids) - 1})"
        )
    image = test.images[params.feature_image]
    trained = {
        name: rebuild_current(
            args.models_dir / name / "best.pt", resolve_model(args.params, name, MODEL_NAMES), classes, preprocessing
        )
        for name in names
    }
    recipes, models = {name: t.recipe for name, t in trained.items()}, {name: t.model for name, t in trained.items()}
    shapes = {name: conv_shapes(model, preprocessing.side_px) for name, model in models.items()}
    check_feature_layers(params.feature_layers, shapes)
    rows, scores, predictions, curves = [], {}, {}, {}
    with atomic_dir(args.figures) as tmp:
        for name in names:
            _, y_true, predictions[name] = read_predictions(args.predictions / f"{name}.csv", classes)
            scores[name] = read_json(args.details / f"{name}.json")
            curves[name] = read_curve(args.train_metrics / name)
            links = [f"[confusion](figures/{name}/confusion.png)", f"[misclassified](figures/{name}/misclassified.png)"]
            if shapes[name]:
                filter_grid(tmp / f"{name}_filters.png", conv_layers(models[name])[0], f"{name}: first-layer filters")
                links.append(f"[filters]({args.figures.name}/{name}_filters.png)")
            if shapes[name] and (params.feature_layers is None or set(params.feature_layers) & set(shapes[name])):
                feature_maps(
                    tmp / f"{name}_features.png",
                    models[name],
                    image,
                    recipes[name].mean,
                    recipes[name].std,
                    f"{name}: feature maps",
                    params.feature_layers,
                )
                links.append(f"[feature maps]({args.figures.name}/{name}_features.png)")
            summary = read_json(args.train_metrics / name / "metrics.json")
            timings = args.train_metrics / name / "timings.json"
            rows.append(
                {
                    "model": name,
                    "arch": recipes[name].settings.arch,
                    **scores[name],
                    **interval_columns(scores[name]),
                    "best val f1_macro (epoch)": f"{summary['best_val']['f1_macro']:.4f} ({summary['best_epoch']})",
                    "train_seconds": f"{sum(read_json(timings)['epoch_seconds']):.1f}",
                    "figures": ", ".join(links),
                }
            )
        if builds_ensemble(ensemble.models):
            _, y_true, predictions["ensemble"] = read_predictions(args.ensemble_predictions, classes)
            scores["ensemble"] = read_json(args.details / "ensemble.json")
            rows.append(
                {
                    "model": "ensemble",
                    "arch": f"vote({', '.join(ensemble.models)})",
                    **scores["ensemble"],
                    **interval_columns(scores["ensemble"]),
                    "params_total": sum(scores[m]["params_total"] for m in ensemble.models),
                    "params_trainable": sum(scores[m]["params_trainable"] for m in ensemble.models),
                    "figures": "[confusion](figures/ensemble/confusion.png)",
                }
            )
        bar_figure(
            tmp / "f1_macro_by_model.png", list(scores), [s["f1_macro"] for s in scores.values()], "test macro-F1"
        )
        train_val_figure(tmp / "train_vs_val.png", curves)
        overlay_figure(tmp / "val_f1_macro_by_epoch.png", curves, "val_f1_macro", "val macro-F1")
    write_curves(args.curves, curves)
    write_steps(args.steps, {name: args.train_metrics / name for name in names})

    verdict = pick_winner({name: scores[name] for name in names}, train.monitor, y_true, predictions)
    voted = builds_ensemble(ensemble.models)
    versus_best = ensemble_versus_best(y_true, predictions, scores, "ensemble", ensemble.models)
    warnings = flags(predictions, scores, classes, "ensemble" if voted else None, ensemble.models)
    warnings += twin_flag(args.near_duplicates, test.ids.tolist())
    support = np.bincount(y_true, minlength=len(classes))
    recall_rows = [
        {"class": f"{c} ({support[i]})", **{m: s["per_class"][c]["recall"] for m, s in scores.items()}}
        for i, c in enumerate(classes)
    ]
    errors = {m: errors_per_class(y_true, p, len(classes)) for m, p in predictions.items()}
    error_rows = [{"class": c, **{m: wrong[i] for m, wrong in errors.items()}} for i, c in enumerate(classes)]
    overlap = error_overlap(y_true, {name: predictions[name] for name in names})
    text = "\n".join(
        [
            f"# Winner: {verdict.sentence()}",
            "",
            f"Test split: {len(test.ids)} images, {len(classes)} classes ({', '.join(classes)}); "
            f"{resolution(y_true, classes)}. "
            f"The winner is picked by the test counterpart of train.monitor ({train.monitor}) and tested against the "
            "runner-up with McNemar's exact test on the images only one of them gets wrong.",
            "",
            *([f"Ensemble vs its best member: {versus_best}.", ""] if versus_best else []),
            "## Flags",
            "",
            *(
                [f"- {warning}" for warning in warnings]
                or [
                    "None: every model beats chance, predicts more than one class, and the ensemble "
                    "is not below its best member."
                ]
            ),
            "",
            "## Scores (test split)",
            "",
            "Best score per column in bold. The best val macro-F1 is the training run's own pick (best.pt). "
            f"{interval_note(y_true, scores[names[0]])}",
            "",
            comparison_table(rows, COLUMNS, bold=SCORE_COLUMNS),
            f"![test macro-F1 by model]({args.figures.name}/f1_macro_by_model.png)",
            "",
            "## Recall per class (test split, images per class in brackets)",
            "",
            comparison_table(recall_rows, ("class", *scores), bold=()),
            "## Wrong test images per class",
            "",
            comparison_table(error_rows, ("class", *predictions), bold=()),
            "## Error overlap between models",
            "",
            "Images both models get wrong, and those only one of them does: few shared errors make a pair worth "
            "ensembling. Exact McNemar: the chance of an only-A / only-B split at least that uneven if both models "
            "were equally accurate; below 0.05, their accuracies really differ.",
            "",
            comparison_table(overlap, OVERLAP_COLUMNS, bold=()) if overlap else "One model: nothing to compare.\n",
            "## Curves",
            "",
            f"![train vs val, per model]({args.figures.name}/train_vs_val.png)",
            "",
            f"![val macro-F1 by epoch, every model]({args.figures.name}/val_f1_macro_by_epoch.png)",
            "",
        ]
    )
    write_text(args.out, text)
    print(f"report: {len(rows)} rows -> {args.out}")
    print(f"report: winner: {verdict.sentence()}")


if __name__ == "__main__":
    stage_main(main)
