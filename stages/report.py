"""DVC stage `report`: name the winner, flag results not to trust, compare every model and the ensemble.

Writes report.md (its first line names the winner), the review figures, and every model's
per-epoch curves as one CSV for the overlaid `dvc plots`. The winner is also the last line printed.
"""

import argparse
from pathlib import Path

import numpy as np

from imgcls.core.atomic import atomic_dir, read_json, write_text
from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.errors import ImgclsError
from imgcls.core.params import (
    EnsembleParams,
    ReportParams,
    TrainParams,
    builds_ensemble,
    load_params,
    model_names,
    read_params_file,
    resolve_model,
)
from imgcls.data.near_duplicates import twin_flag
from imgcls.data.packed import load_split, read_classes
from imgcls.data.preprocessing import Preprocessing
from imgcls.evaluate.curves import overlay_figure, read_curve, train_val_figure, write_curves, write_steps
from imgcls.evaluate.markdown import ENSEMBLE, Results, report_markdown
from imgcls.evaluate.predictions import read_predictions
from imgcls.evaluate.report import Shape, check_feature_layers, conv_shapes, feature_maps, filter_grid
from imgcls.evaluate.review import bar_figure, interval_columns
from imgcls.models.layers import conv_layers
from imgcls.models.names import MODEL_NAMES
from imgcls.train.rebuild import TrainedModel, rebuild_current


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
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
    trained = {
        name: rebuild_current(
            args.models_dir / name / "best.pt", resolve_model(args.params, name, MODEL_NAMES), classes, preprocessing
        )
        for name in names
    }
    shapes = {name: conv_shapes(t.model, preprocessing.side_px) for name, t in trained.items()}
    check_feature_layers(params.feature_layers, shapes)
    curves = {name: read_curve(args.train_metrics / name) for name in names}
    with atomic_dir(args.figures) as tmp:
        image = test.images[params.feature_image]
        links = {
            name: model_figures(tmp, args.figures.name, name, trained[name], shapes[name], image, params.feature_layers)
            for name in names
        }
        results = gather_results(args, classes, trained, links, ensemble.models)
        f1 = [s["f1_macro"] for s in results.scores.values()]
        bar_figure(tmp / "f1_macro_by_model.png", list(results.scores), f1, "test macro-F1")
        train_val_figure(tmp / "train_vs_val.png", curves)
        overlay_figure(tmp / "val_f1_macro_by_epoch.png", curves, "val_f1_macro", "val macro-F1")
    write_curves(args.curves, curves)
    write_steps(args.steps, {name: args.train_metrics / name for name in names})
    near_twins = twin_flag(args.near_duplicates, test.ids.tolist())
    text = report_markdown(results, ensemble.models, train.monitor, near_twins, args.figures.name)
    write_text(args.out, text)
    print(f"report: {len(results.rows)} rows -> {args.out}")
    print(f"report: winner: {text.splitlines()[0].removeprefix('# Winner: ')}")


def model_figures(
    folder: Path,
    final: str,
    name: str,
    trained: TrainedModel,
    shapes: dict[str, Shape],
    image: np.ndarray,
    layers: list[str] | None,
) -> list[str]:
    """Draw a model's first-layer filters and feature maps into `folder` (linked as `final`, the name it will have);
    the links to them and to evaluate's figures."""
    links = [f"[confusion](figures/{name}/confusion.png)", f"[misclassified](figures/{name}/misclassified.png)"]
    if shapes:
        filter_grid(folder / f"{name}_filters.png", conv_layers(trained.model)[0], f"{name}: first-layer filters")
        links.append(f"[filters]({final}/{name}_filters.png)")
    if shapes and (layers is None or set(layers) & set(shapes)):
        recipe = trained.recipe
        title = f"{name}: feature maps"
        feature_maps(folder / f"{name}_features.png", trained.model, image, recipe.mean, recipe.std, title, layers)
        links.append(f"[feature maps]({final}/{name}_features.png)")
    return links


def gather_results(
    args: argparse.Namespace,
    classes: list[str],
    trained: dict[str, TrainedModel],
    links: dict[str, list[str]],
    members: list[str],
) -> Results:
    """Every model's test predictions, scores and score-table row, then the ensemble's when one was built."""
    rows, scores, predictions = [], {}, {}
    for name, model in trained.items():
        _, y_true, predictions[name] = read_predictions(args.predictions / f"{name}.csv", classes)
        scores[name] = read_json(args.details / f"{name}.json")
        summary = read_json(args.train_metrics / name / "metrics.json")
        timings = read_json(args.train_metrics / name / "timings.json")
        rows.append(
            {
                "model": name,
                "arch": model.recipe.settings.arch,
                **scores[name],
                **interval_columns(scores[name]),
                "best val f1_macro (epoch)": f"{summary['best_val']['f1_macro']:.4f} ({summary['best_epoch']})",
                "train_seconds": f"{sum(timings['epoch_seconds']):.1f}",
                "figures": ", ".join(links[name]),
            }
        )
    if builds_ensemble(members):
        _, y_true, predictions[ENSEMBLE] = read_predictions(args.ensemble_predictions, classes)
        scores[ENSEMBLE] = read_json(args.details / f"{ENSEMBLE}.json")
        rows.append(
            {
                "model": ENSEMBLE,
                "arch": f"vote({', '.join(members)})",
                **scores[ENSEMBLE],
                **interval_columns(scores[ENSEMBLE]),
                "params_total": sum(scores[m]["params_total"] for m in members),
                "params_trainable": sum(scores[m]["params_trainable"] for m in members),
                "figures": f"[confusion](figures/{ENSEMBLE}/confusion.png)",
            }
        )
    return Results(classes, y_true, list(trained), rows, scores, predictions)


if __name__ == "__main__":
    stage_main(main)
