"""Settings the libraries would reject later, or silently misread: refused by key, in-process and by the
stage scripts before they touch any data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_augment, run_train_stage, striped_processed, write_params
from imgcls.core.errors import ImgclsError
from imgcls.core.params import load_params, resolve_model
from imgcls.models.names import MODEL_NAMES

EXTRACT = "extract:\n  annotations: a.json\n  images: imgs\n  categories: [cat, dog]\n"
SEED_RANGE = "a seed must be an integer from 0 to 4294967295 (2**32 - 1), the range numpy and scikit-learn accept"

SETTINGS = {
    "lr inf": ("train", "train:\n  lr: .inf\n", "train.lr: Input should be a finite number"),
    "lr nan": ("train", "train:\n  lr: .nan\n", "train.lr: Input should be a finite number"),
    "lr 'inf' as dvc exp run -S writes it": (
        "train",
        "train:\n  lr: inf\n",
        "train.lr: Input should be a finite number",
    ),
    "weight_decay inf": (
        "train",
        "train:\n  weight_decay: .inf\n",
        "train.weight_decay: Input should be a finite number",
    ),
    "momentum nan": ("train", "train:\n  momentum: .nan\n", "train.momentum: Input should be a finite number"),
    "gamma nan": ("train", "train:\n  gamma: .nan\n", "train.gamma: Input should be a finite number"),
    "beta of 1": ("train", "train:\n  betas: [0.9, 1.0]\n", "train.betas[1]: Input should be less than 1"),
    "negative beta": (
        "train",
        "train:\n  betas: [-0.1, 0.999]\n",
        "train.betas[0]: Input should be greater than or equal to 0",
    ),
    "beta nan": ("train", "train:\n  betas: [.nan, 0.999]\n", "train.betas[0]: Input should be a finite number"),
    "negative train seed": ("train", "train:\n  seed: -1\n", f"train.seed: {SEED_RANGE}"),
    "train seed past 2**32 - 1": ("train", "train:\n  seed: 4294967296\n", f"train.seed: {SEED_RANGE}"),
    "split seed past 2**63 - 1": ("split", "split:\n  seed: 9223372036854775808\n", f"split.seed: {SEED_RANGE}"),
    "negative sample seed": ("sample", "sample:\n  seed: -5\n", f"sample.seed: {SEED_RANGE}"),
    "negative augment seed": ("augment", "augment:\n  seed: -1\n", f"augment.seed: {SEED_RANGE}"),
    "extract seed past 2**32 - 1": ("extract", EXTRACT + "  seed: 4294967296\n", f"extract.seed: {SEED_RANGE}"),
    "augment scale inf": (
        "augment",
        "augment:\n  scale: [0.9, .inf]\n",
        "augment.scale[1]: Input should be a finite number",
    ),
    "augment rotation nan": (
        "augment",
        "augment:\n  rotation_deg: .nan\n",
        "augment.rotation_deg: Input should be a finite number",
    ),
    "batch_size true": (
        "train",
        "train:\n  batch_size: true\n",
        "train.batch_size: expected a number, not true/false (got True)",
    ),
    "epochs false": ("train", "train:\n  epochs: false\n", "train.epochs: expected a number, not true/false"),
    "lr true": ("train", "train:\n  lr: true\n", "train.lr: expected a number, not true/false"),
    "seed true": ("train", "train:\n  seed: true\n", "train.seed: expected a number, not true/false"),
    "patience true": ("train", "train:\n  patience: true\n", "train.patience: expected a number, not true/false"),
    "crop_padding true": (
        "train",
        "train:\n  crop_padding: true\n",
        "train.crop_padding: expected a number, not true/false",
    ),
    "augment target true": (
        "augment",
        "augment:\n  target: true\n",
        "augment.target: expected a number, not true/false",
    ),
    "split per_class with true": (
        "split",
        "split:\n  per_class: [true, 1, 1]\n",
        "split.per_class[0]: expected a number, not true/false",
    ),
    "split fraction true": (
        "split",
        "split:\n  fractions: [true, 0.5, 0.5]\n",
        "split.fractions[0]: expected a number, not true/false",
    ),
    "extract side_px true": (
        "extract",
        EXTRACT + "  side_px: true\n",
        "extract.side_px: expected a number, not true/false",
    ),
    "extract per_category true": (
        "extract",
        EXTRACT + "  per_category: true\n",
        "extract.per_category: expected a number, not true/false",
    ),
    "extract download_timeout inf": (
        "extract",
        EXTRACT + "  download_timeout: .inf\n",
        "extract.download_timeout: Input should be a finite number",
    ),
    "extract download_timeout past an hour": (
        "extract",
        EXTRACT + "  download_timeout: 1.0e+12\n",
        "extract.download_timeout: Input should be less than or equal to 3600",
    ),
    "extract download_retries past 10": (
        "extract",
        EXTRACT + "  download_retries: 2000\n",
        "extract.download_retries: Input should be less than or equal to 10",
    ),
    "sample scarce_fraction nan": (
        "sample",
        "sample:\n  scarce_fraction: .nan\n",
        "sample.scarce_fraction: Input should be a finite number",
    ),
    "evaluate misclassified true": (
        "evaluate",
        "evaluate:\n  misclassified: true\n",
        "evaluate.misclassified: expected a number, not true/false",
    ),
    "report feature_image true": (
        "report",
        "report:\n  feature_image: true\n",
        "report.feature_image: expected a number, not true/false",
    ),
    "model override lr inf": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    lr: .inf\n",
        "models.net1.lr: Input should be a finite number",
    ),
    "model override batch_size true": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    batch_size: true\n",
        "models.net1.batch_size: expected a number, not true/false",
    ),
    "model dropout nan": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    dropout: .nan\n",
        "models.net1.dropout: Input should be a finite number",
    ),
    "model head_hidden true": (
        "models.net1",
        "train: {}\nmodels:\n  net1:\n    head_hidden: true\n",
        "models.net1.head_hidden: expected a number, not true/false",
    ),
    "unfreeze_at_epoch past the last epoch": (
        "models.resnet18",
        "train:\n  epochs: 3\nmodels:\n  resnet18: {pretrained: true, freeze: backbone, unfreeze_at_epoch: 4}\n",
        "models.resnet18.unfreeze_at_epoch: 4 is past the last epoch (epochs: 3)",
    ),
    "unfreeze_at_epoch with nothing frozen": (
        "models.resnet18",
        "models:\n  resnet18: {pretrained: true, unfreeze_at_epoch: 2}\n",
        "models.resnet18.unfreeze_at_epoch: 2 unfreezes a frozen backbone, but nothing is frozen",
    ),
    "frozen backbone of random weights": (
        "models.resnet18",
        "models:\n  resnet18: {freeze: last_block}\n",
        "models.resnet18.freeze: last_block freezes layers of random weights (no pretrained or weights_path)",
    ),
}


def test_a_frozen_random_backbone_is_accepted_when_said_to_be_meant(tmp_path):
    path = write_params(
        tmp_path, "models:\n  resnet18: {freeze: backbone, random_features: true, unfreeze_at_epoch: 8}\n"
    )
    settings = resolve_model(path, "resnet18", MODEL_NAMES)
    assert settings.options == {"freeze": "backbone"} and settings.unfreeze_at_epoch == 8


def load(path: Path, section: str) -> object:
    if section.startswith("models."):
        return resolve_model(path, section.removeprefix("models."), MODEL_NAMES)
    return load_params(path, section)[0]


@pytest.mark.parametrize("case", list(SETTINGS), ids=list(SETTINGS))
def test_out_of_range_settings_are_refused_by_key(tmp_path, case):
    section, text, message = SETTINGS[case]
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ImgclsError) as error:
        load(path, section)
    assert message in str(error.value)


BOUNDS = {
    # (section, accepted at the bound, refused just past it, message)
    "seed": ("train", "train:\n  seed: 4294967295\n", "train:\n  seed: 4294967296\n", SEED_RANGE),
    "beta": (
        "train",
        "train:\n  betas: [0.0, 0.999999]\n",
        "train:\n  betas: [0.0, 1]\n",
        "train.betas[1]: Input should be less than 1",
    ),
    "download_timeout": (
        "extract",
        EXTRACT + "  download_timeout: 3600\n",
        EXTRACT + "  download_timeout: 3601\n",
        "less than or equal to 3600",
    ),
    "dvc's 1e-07 string": (
        "train",
        "train:\n  lr: 1e-07\n",
        "train:\n  lr: 1e+400\n",
        "train.lr: Input should be a finite number",
    ),
}


@pytest.mark.parametrize("case", list(BOUNDS), ids=list(BOUNDS))
def test_bounds_are_inclusive_where_the_libraries_are(tmp_path, case):
    section, accepted, refused, message = BOUNDS[case]
    path = tmp_path / "params.yaml"
    path.write_text(accepted)
    load(path, section)
    path.write_text(refused)
    with pytest.raises(ImgclsError, match=re.escape(message)):
        load(path, section)


STAGE_SETTINGS = {
    "train with lr inf": (
        "train",
        "train:\n  lr: .inf\nmodels:\n  net1: {}\n",
        "train.lr: Input should be a finite number",
    ),
    "train with batch_size true": (
        "train",
        "train:\n  batch_size: true\nmodels:\n  net1: {}\n",
        "train.batch_size: expected a number",
    ),
    "train with a beta of 1": (
        "train",
        "train:\n  betas: [1.0, 0.999]\nmodels:\n  net1: {}\n",
        "train.betas[0]: Input should be less than 1",
    ),
    "augment with scale inf": (
        "augment",
        "augment:\n  scale: [0.9, .inf]\n",
        "augment.scale[1]: Input should be a finite number",
    ),
    "augment with a negative seed": ("augment", "augment:\n  seed: -1\n", f"augment.seed: {SEED_RANGE}"),
}


@pytest.mark.parametrize("case", list(STAGE_SETTINGS), ids=list(STAGE_SETTINGS))
@pytest.mark.slow
def test_stage_scripts_refuse_the_setting_before_touching_data(tmp_path, case):
    stage, text, message = STAGE_SETTINGS[case]
    params = write_params(tmp_path, text)
    data = striped_processed(tmp_path)
    out = tmp_path / "out"
    result = run_train_stage(params, "net1", data, out / "net1") if stage == "train" else run_augment(params, data, out)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists(), "nothing written"
