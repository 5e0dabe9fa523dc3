"""DVC stage `report`: compare every model and the ensemble, and show what the convolutions learned."""

from pathlib import Path

from imgcls.atomic import atomic_dir, read_json
from imgcls.cli import stage_main, stage_parser
from imgcls.evaluation import read_predictions
from imgcls.metrics import QUALITY_KEYS, classification_scores
from imgcls.models import MODEL_NAMES, conv_layers, count_parameters
from imgcls.params import EnsembleParams, ReportParams, load_params, model_names, read_params_file, resolve_model
from imgcls.rebuild import rebuild_trained
from imgcls.report import comparison_table, feature_maps, filter_grid
from imgcls.splits import load_split, read_classes

COLUMNS = ("model", "arch", *QUALITY_KEYS, "params_total", "params_trainable", "train_seconds", "figures")


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--models-dir", type=Path, required=True, help="folder of <model>/best.pt")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <model>.csv test predictions")
    parser.add_argument("--ensemble-predictions", type=Path, required=True)
    parser.add_argument("--train-metrics", type=Path, required=True, help="folder of <model>/metrics.json from dvclive")
    parser.add_argument("--out", type=Path, required=True, help="report folder: report.md and figures")
    args = parser.parse_args()
    params: ReportParams
    ensemble: EnsembleParams
    params, ensemble = load_params(args.params, "report", "ensemble")
    names = model_names(read_params_file(args.params))

    classes = read_classes(args.processed / "classes.json")
    test = load_split(args.processed / "test")
    image = test.images[min(params.feature_image, len(test.ids) - 1)]
    rows = []
    with atomic_dir(args.out) as tmp:
        for name in names:
            settings = resolve_model(args.params, name, MODEL_NAMES)
            model = rebuild_trained(settings, len(classes), test.images.shape[1], args.models_dir / name / "best.pt")
            _, y_true, y_pred = read_predictions(args.predictions / f"{name}.csv", classes)
            total, trainable = count_parameters(model)
            links = [f"[confusion](../figures/{name}/confusion.png)", f"[misclassified](../figures/{name}/misclassified.png)"]
            convolutions = conv_layers(model)
            if convolutions:
                filter_grid(tmp / f"{name}_filters.png", convolutions[0], f"{name}: first-layer filters")
                feature_maps(tmp / f"{name}_features.png", model, image, f"{name}: feature maps")
                links += [f"[filters]({name}_filters.png)", f"[feature maps]({name}_features.png)"]
            train_seconds = read_json(args.train_metrics / name / "metrics.json")["train_seconds"]
            rows.append(
                {"model": name, "arch": settings.arch, **classification_scores(y_true, y_pred, classes),
                 "params_total": total, "params_trainable": trainable, "train_seconds": f"{train_seconds:.1f}",
                 "figures": ", ".join(links)}
            )
        _, y_true, y_pred = read_predictions(args.ensemble_predictions, classes)
        member_rows = [r for r in rows if r["model"] in ensemble.models]
        rows.append(
            {"model": "ensemble", "arch": f"vote({', '.join(ensemble.models)})", **classification_scores(y_true, y_pred, classes),
             "params_total": sum(r["params_total"] for r in member_rows),
             "params_trainable": sum(r["params_trainable"] for r in member_rows), "train_seconds": "", "figures": ""}
        )
        text = (
            "# Model comparison (test split)\n\n"
            f"{len(test.ids)} test images, {len(classes)} classes: {', '.join(classes)}. Best score per column in bold.\n\n"
            + comparison_table(rows, COLUMNS)
        )
        (tmp / "report.md").write_text(text)
    print(f"report: {len(rows)} rows -> {args.out / 'report.md'}")


if __name__ == "__main__":
    stage_main(main)
