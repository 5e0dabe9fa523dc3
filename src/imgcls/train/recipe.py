"""A trained model's recipe: what it takes to rebuild the model and feed it, saved inside best.pt and last.pt.

Everything downstream of train (evaluate, report, finetune's starting point, predict) rebuilds a
model and prepares its inputs from the recipe, never from today's params.yaml, so a checkpoint
can be handed to someone and used without the repository. Stored as plain types, so
`torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from imgcls.core.errors import ImgclsError
from imgcls.core.params import ModelOptions, ModelSettings, TrainParams, jsonable
from imgcls.data.preprocessing import Preprocessing

# Bumped when the recipe's layout changes, so an older checkpoint is named as such rather than misread.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class ModelRecipe:
    """The architecture and its options, class names in label order, input preprocessing, the resolved training
    settings (channel mean/std among them), and the fingerprint of the settings, data and code the weights came from."""

    settings: ModelSettings
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    fingerprint: str = ""  # empty in the recipe today's params and data would give, built to compare against

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.settings.train.normalize_mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.settings.train.normalize_std

    def to_plain(self) -> dict[str, Any]:
        return {
            "version": RECIPE_VERSION,
            "name": self.settings.name,
            **self.settings.fingerprint(),
            "classes": list(self.classes),
            "side_px": self.preprocessing.side_px,
            "resize": self.preprocessing.resize,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_plain(cls, plain: Any, source: Path) -> ModelRecipe:
        """The recipe a checkpoint holds; one from older code, or a damaged one, is refused with a line saying to
        retrain."""
        retrain = "retrain it (`dvc repro --force train@<model>`) with this version of imgcls"
        if plain is None:
            raise ImgclsError(
                f"{source}: written before checkpoints carried their model's recipe (classes, preprocessing, "
                f"settings); {retrain}"
            )
        if not isinstance(plain, dict) or plain.get("version") != RECIPE_VERSION:
            version = plain.get("version") if isinstance(plain, dict) else None
            raise ImgclsError(
                f"{source}: holds a recipe of format {version!r}, this imgcls reads format {RECIPE_VERSION}; {retrain}"
            )
        try:
            options = ModelOptions.model_validate(plain["options"])
            settings = ModelSettings(
                plain["name"],
                plain["arch"],
                TrainParams.model_validate(plain["train"]),
                {
                    k: v
                    for k, v in options.model_dump().items()
                    if v is not None and k not in ("arch", "unfreeze_at_epoch")
                },
                plain["unfreeze_at_epoch"],
                plain["init_from"],
            )
            return cls(
                settings,
                tuple(plain["classes"]),
                Preprocessing(int(plain["side_px"]), plain["resize"]),
                plain["fingerprint"],
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ImgclsError(f"{source}: its recipe is unreadable ({reason}); {retrain}") from None

    def by_params_key(self) -> dict[str, Any]:
        """Each setting under the params.yaml key it comes from, for naming a disagreement."""
        entry = f"finetune.{self.settings.name}" if self.settings.init_from else f"models.{self.settings.name}"
        plain = self.settings.fingerprint()
        return {
            "extract.categories": list(self.classes),
            "extract.side_px": self.preprocessing.side_px,
            "normalize.resize": self.preprocessing.resize,
            f"{entry}.arch": plain["arch"],
            **{f"{entry}.{key}": value for key, value in jsonable(self.settings.options).items()},
            f"{entry}.unfreeze_at_epoch": plain["unfreeze_at_epoch"],
            f"{entry}.from": plain["init_from"],
            **{f"train.{key}": value for key, value in plain["train"].items()},
        }


# The settings a model's inputs depend on: a finetune must start from weights trained on the same ones.
INPUT_KEYS = ("extract.categories", "extract.side_px", "normalize.resize")


def differences(
    expected: ModelRecipe, found: ModelRecipe, keys: tuple[str, ...] | None = None
) -> list[tuple[str, Any, Any]]:
    """(params key, expected value, found value) for every setting (of `keys`, or all) on which the two recipes
    disagree."""
    ours, theirs = expected.by_params_key(), found.by_params_key()
    compared = keys if keys is not None else list({**ours, **theirs})
    return [(key, ours.get(key), theirs.get(key)) for key in compared if ours.get(key) != theirs.get(key)]


def require_agreement(
    expected: ModelRecipe, checkpoint: Path, found: ModelRecipe, keys: tuple[str, ...] | None = None
) -> None:
    """Stop with one line when today's params and data would not give the model `checkpoint` holds."""
    disagreements = differences(expected, found, keys)
    if disagreements:
        raise ImgclsError(f"{disagreement_line(checkpoint, disagreements)}; run `dvc repro` to retrain it")


def disagreement_line(checkpoint: Path, disagreements: list[tuple[str, Any, Any]]) -> str:
    """The first disagreement, both values named, and how many more there are."""
    key, today, trained = disagreements[0]
    others = len(disagreements) - 1
    more = f" (and {others} more setting{'s' if others > 1 else ''})" if others else ""
    return f"{key}: params.yaml has {json.dumps(today)}, but {checkpoint} was trained with {json.dumps(trained)}{more}"
