"""DVC stage `evaluate@<model>`: score the best checkpoint on the test split.

The headline scores go to `--metrics` (what `dvc metrics diff` and `dvc exp show` compare);
every score, the per-class ones, 95% bootstrap intervals, the test loss and the parameter counts go to `--details`.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from imgcls.core.atomic import write_json
from imgcls.core.cli import stage_main, stage_parser
from imgcls.core.params import EvaluateParams, load_params, resolve_model
from imgcls.data.packed import load_split, read_classes
from imgcls.data.preprocessing import Preprocessing
from imgcls.evaluate.predictions import confusion_figure, misclassified_grid, write_predictions
from imgcls.evaluate.scores import classification_scores, headline
from imgcls.evaluate.significance import bootstrap_ci95
from imgcls.models.layers import count_parameters
from imgcls.models.names import MODEL_NAMES
from imgcls.train.batches import to_device
from imgcls.train.loop import predict
from imgcls.train.rebuild import rebuild_current
from imgcls.train.setup import select_device


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True, help="a key of params.yaml's models:")
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="headline scores JSON for dvc metrics")
    parser.add_argument(
        "--details", type=Path, required=True, help="JSON of every score, per class too, for the report"
    )
    parser.add_argument("--predictions", type=Path, required=True, help="id,actual,predicted CSV for dvc plots")
    parser.add_argument("--figures", type=Path, required=True, help="folder for confusion.png and misclassified.png")
    args = parser.parse_args()
    settings = resolve_model(args.params, args.model, MODEL_NAMES)
    params: EvaluateParams
    (params,) = load_params(args.params, "evaluate")

    classes = read_classes(args.processed / "classes.json")
    trained = rebuild_current(args.checkpoint, settings, classes, Preprocessing.read(args.processed))
    test = load_split(args.processed / "test", mmap=False)
    recipe = trained.recipe
    device = select_device(recipe.settings.train.device)
    model = trained.model.to(device, memory_format=torch.channels_last)
    logits = predict(model, to_device(test, device).images, recipe.settings.train, device).float().cpu()
    y_pred = logits.argmax(1).numpy()

    scores = classification_scores(test.labels, y_pred, classes)
    # Plain cross-entropy (no label smoothing or class weights), comparable across models.
    scores["loss"] = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(test.labels)))
    scores["params_total"], scores["params_trainable"] = count_parameters(model)
    scores.update(bootstrap_ci95(test.labels, y_pred, len(classes), params.bootstrap_resamples, params.bootstrap_seed))
    write_json(args.details, scores)
    write_json(args.metrics, headline(scores, "test"))
    write_predictions(args.predictions, test.ids, test.labels, y_pred, classes)
    args.figures.mkdir(parents=True, exist_ok=True)
    confusion_figure(args.figures / "confusion.png", test.labels, y_pred, classes, f"{args.model} (test)")
    misclassified_grid(
        args.figures / "misclassified.png", test.images, test.labels, y_pred, classes, params.misclassified
    )
    print(f"evaluate@{args.model}: accuracy {scores['accuracy']:.4f}, f1_macro {scores['f1_macro']:.4f}")
    predicted_classes = np.unique(y_pred)
    if len(predicted_classes) == 1 and len(np.unique(test.labels)) > 1:
        print(
            f"warning: evaluate@{args.model}: every test image was predicted as '{classes[predicted_classes[0]]}'; "
            "the model has collapsed to one class, so its scores only reflect the class balance",
            file=sys.stderr,
        )


if __name__ == "__main__":
    stage_main(main)
