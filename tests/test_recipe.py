"""A model's recipe survives a checkpoint round trip as plain types and names every disagreement by its params key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.core.errors import ImgclsError
from imgcls.core.params import ModelSettings, TrainParams
from imgcls.data.preprocessing import Preprocessing
from imgcls.train.checkpoint import load_checkpoint, save_checkpoint
from imgcls.train.recipe import INPUT_KEYS, ModelRecipe, differences, require_agreement

SETTINGS = ModelSettings(
    "tuned", "resnet18", TrainParams(lr=3e-4), {"freeze": "backbone", "weights_path": Path("w.pth")}, 3, "base"
)
RECIPE = ModelRecipe(SETTINGS, ("cat", "dog"), Preprocessing(64, "stretch"), "abc")


def test_a_recipe_comes_back_from_a_weights_only_checkpoint_as_it_went_in(tmp_path):
    save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.zeros(1)}, "recipe": RECIPE.to_plain()})
    back = ModelRecipe.from_plain(load_checkpoint(tmp_path / "best.pt")["recipe"], tmp_path / "best.pt")
    assert back == RECIPE
    assert back.mean == (0.485, 0.456, 0.406) and back.settings.options["weights_path"] == Path("w.pth")


def test_every_disagreement_is_named_by_its_params_key():
    today = ModelRecipe(
        ModelSettings(
            "tuned", "resnet18", TrainParams(lr=1e-3), {"freeze": "backbone", "weights_path": Path("w.pth")}, 3, "base"
        ),
        ("dog", "cat"),
        Preprocessing(64, "pad"),
    )
    assert differences(today, RECIPE) == [
        ("extract.categories", ["dog", "cat"], ["cat", "dog"]),
        ("normalize.resize", "pad", "stretch"),
        ("train.lr", 1e-3, 3e-4),
    ]
    assert [key for key, _, _ in differences(today, RECIPE, INPUT_KEYS)] == ["extract.categories", "normalize.resize"]
    with pytest.raises(ImgclsError) as refused:
        require_agreement(today, Path("best.pt"), RECIPE)
    assert str(refused.value) == (
        'extract.categories: params.yaml has ["dog", "cat"], but best.pt was trained with ["cat", "dog"] '
        "(and 2 more settings); run `dvc repro` to retrain it"
    )
    require_agreement(ModelRecipe(SETTINGS, ("cat", "dog"), Preprocessing(64, "stretch")), Path("best.pt"), RECIPE)


@pytest.mark.parametrize(
    ("plain", "message"),
    [
        ({**RECIPE.to_plain(), "classes": None}, "its recipe is unreadable"),
        ({k: v for k, v in RECIPE.to_plain().items() if k != "train"}, "its recipe is unreadable (no 'train')"),
        ({**RECIPE.to_plain(), "train": {"lr": -1}}, "its recipe is unreadable"),
    ],
    ids=["classes-null", "no-train", "bad-lr"],
)
def test_a_damaged_recipe_says_to_retrain(plain, message):
    with pytest.raises(ImgclsError, match=r"best.pt: .*; retrain it"):
        ModelRecipe.from_plain(plain, Path("best.pt"))
    with pytest.raises(ImgclsError) as refused:
        ModelRecipe.from_plain(plain, Path("best.pt"))
    assert message in str(refused.value)
