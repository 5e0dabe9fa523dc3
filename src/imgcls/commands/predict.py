"""`imgcls predict`: top-k classes for new, unlabelled images from a trained model's best.pt."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.core.params import ExtractParams, NormalizeParams, TrainParams, load_params, resolve_model
from imgcls.data.folder import IMAGE_SUFFIXES
from imgcls.data.images import BadImageError, decode, fit_within, to_rgb8, to_square
from imgcls.data.preprocessing import Preprocessing
from imgcls.models.names import MODEL_NAMES
from imgcls.train.loop import predict
from imgcls.train.rebuild import TrainedModel, rebuild_trained
from imgcls.train.recipe import ModelRecipe, differences, disagreement_line
from imgcls.train.setup import select_device


@dataclass(frozen=True)
class Prediction:
    """One image's `top` (class, probability) pairs, most probable first; for an unusable file, `error` says why
    instead."""

    path: Path
    top: tuple[tuple[str, float], ...] = ()
    error: str = ""


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and each folder's image files (recursively, sorted, hidden names skipped)."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)  # a missing or non-image file is reported with the others' predictions
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise ImgclsError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
        files += found
    return files


def preprocess(path: Path, side: int, resize: Literal["pad", "stretch"]) -> np.ndarray:
    """An image file as the split stage packs it, (side, side, 3) uint8 RGB: extract's decode and shrink, then
    normalize's squaring."""
    pixels, _ = decode(path, side_px=side)
    return to_square(to_rgb8(fit_within(pixels, side)), side, resize)


def class_probabilities(model: nn.Module, images: np.ndarray, train: TrainParams, device: torch.device) -> torch.Tensor:
    """Softmax over the classes for (N, H, W, 3) uint8 RGB images, the model run as evaluation runs it
    (`train` being its resolved settings: batch size and input normalisation)."""
    # NHWC permuted to NCHW is channels_last, as the model is.
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)
    return predict(model, batch, train, device).softmax(1).cpu()


def _read(path: Path, side: int, resize: Literal["pad", "stretch"]) -> np.ndarray | str:
    """The preprocessed image, or the one-line reason it cannot be used."""
    try:
        return preprocess(path, side, resize)
    except BadImageError as exc:
        return str(exc)
    except ImgclsError as exc:  # to_rgb8's pixel-type refusal does not know the file
        return f"{path}: {exc}"


def predict_files(
    paths: Sequence[str | Path], trained: TrainedModel, top_k: int = 3, device: str = "auto"
) -> list[Prediction]:
    """Top-k classes of a checkpoint's model for each image file (folders searched recursively), in order.

    The checkpoint's recipe alone says how to prepare the images and name the classes.
    Unusable files get a Prediction with `error` set, so one bad file does not cost the others theirs.
    """
    if top_k < 1:
        raise ImgclsError(f"top_k: must be at least 1, got {top_k}")
    files = image_files([Path(p) for p in paths])
    recipe, target = trained.recipe, select_device(device)
    model = trained.model.to(target, memory_format=torch.channels_last)
    side, resize, batch_size = (
        recipe.preprocessing.side_px,
        recipe.preprocessing.resize,
        recipe.settings.train.batch_size,
    )
    predictions = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        read = [_read(path, side, resize) for path in chunk]
        images = [r for r in read if isinstance(r, np.ndarray)]
        probabilities = iter(
            class_probabilities(model, np.stack(images), recipe.settings.train, target) if images else ()
        )
        for path, result in zip(chunk, read):
            if isinstance(result, str):
                predictions.append(Prediction(path, error=result))
                continue
            values, indices = next(probabilities).topk(min(top_k, len(recipe.classes)))
            top = tuple((recipe.classes[i], p) for i, p in zip(indices.tolist(), values.tolist()))
            predictions.append(Prediction(path, top))
    return predictions


def pipeline_checkpoint(model_name: str, models_dir: Path) -> Path:
    """Where the train stage keeps `model_name`'s best.pt."""
    checkpoint = models_dir / model_name / "best.pt"
    if not checkpoint.exists():
        raise ImgclsError(f"{checkpoint}: not found; run `dvc repro train@{model_name}` first")
    return checkpoint


def todays_recipe(params_path: Path, model_name: str) -> ModelRecipe:
    """The recipe `params_path` would train `model_name` with today, to compare a checkpoint's against."""
    settings = resolve_model(params_path, model_name, MODEL_NAMES)
    extract: ExtractParams
    normalize: NormalizeParams
    extract, normalize = load_params(params_path, "extract", "normalize")
    return ModelRecipe(settings, tuple(extract.categories), Preprocessing(extract.side_px, normalize.resize))


def _as_json(prediction: Prediction) -> dict[str, object]:
    if prediction.error:
        return {"path": str(prediction.path), "error": prediction.error}
    return {"path": str(prediction.path), "top": [{"class": name, "probability": p} for name, p in prediction.top]}


def run_predict(args: argparse.Namespace) -> None:
    """`imgcls predict` with the arguments `imgcls.commands.cli` parsed."""
    if args.model is None:
        trained = rebuild_trained(args.checkpoint)
    else:
        today = todays_recipe(args.params, args.model)
        checkpoint = pipeline_checkpoint(args.model, args.models_dir)
        trained = rebuild_trained(checkpoint)
        disagreements = differences(today, trained.recipe)
        if disagreements:
            line = disagreement_line(checkpoint, disagreements)
            print(f"warning: {line}; predicting as the checkpoint was trained (its recipe)", file=sys.stderr)
    predictions = predict_files(args.images, trained, args.top_k, args.device)
    if args.json:
        print(json.dumps([_as_json(p) for p in predictions], indent=2))
    for prediction in predictions:
        if prediction.error:
            print(f"error: {prediction.error}", file=sys.stderr)
        elif not args.json:
            print(f"{prediction.path}: " + ", ".join(f"{name} {p:.2f}" for name, p in prediction.top))
    failed = sum(1 for p in predictions if p.error)
    if failed:
        print(f"error: {failed} of {len(predictions)} files could not be read", file=sys.stderr)
        sys.exit(1)
