"""BatchNorm on small data: statistics recomputed on the train split, and a warning when a model predicts one class."""

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import processed_folder, run_stage_in_process, save_trained
from imgcls.core.params import TrainParams
from imgcls.data.packed import PackedSplit
from imgcls.models.registry import build_model
from imgcls.train.batches import DeviceSplit, standardize
from imgcls.train.batchnorm import recalibrate_batchnorm
from imgcls.train.fit import FitSettings, fit

CPU = torch.device("cpu")
BATCHES_OF_16 = TrainParams(batch_size=16)


def brightness_split(n, seed, side=16):
    """Two classes told apart by brightness alone, both far brighter than BatchNorm's initial running mean assumes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, size=(n, 3, side, side)) + np.where(labels == 1, 215, 150)[:, None, None, None]
    return DeviceSplit(torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64)))


def conv_bn_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def test_three_steps_per_epoch_no_longer_collapse_to_one_class(tmp_path):
    train = TrainParams(epochs=2, batch_size=16, lr=1e-2, seed=0, crop_padding=0, scheduler="none", device="cpu")
    torch.manual_seed(0)
    state = fit(
        conv_bn_model(),
        brightness_split(48, 0),
        brightness_split(40, 1),
        FitSettings(train, 2, tmp_path, "x", CPU, log=lambda m: None),
    )
    assert state.history[-1]["train/acc"] == 1.0
    assert [r["val/acc"] for r in state.history] == [1.0, 1.0], (
        "with 3 batches an epoch, momentum-averaged statistics predicted one class"
    )


def test_running_statistics_are_those_of_the_layer_input_over_the_whole_split():
    torch.manual_seed(0)
    model = nn.Sequential(
        conv_bn_model()[:3], nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 16 * 16, 4), nn.BatchNorm1d(4)
    ).eval()
    data = brightness_split(40, 0)  # batches of 16, 16 and 8: unequal sizes must not skew the statistics
    recalibrate_batchnorm(model, data, BATCHES_OF_16, CPU)
    conv, bn = model[0][0], model[0][1]
    with torch.no_grad():
        inputs = conv(standardize(data.images, BATCHES_OF_16.normalize_mean, BATCHES_OF_16.normalize_std)).double()
    torch.testing.assert_close(bn.running_mean.double(), inputs.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), inputs.var((0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert not model.training and bn.momentum == 0.1, "the model's modes and momenta are restored"

    torch.manual_seed(123)
    again = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, data, BATCHES_OF_16, CPU)
    assert torch.equal(model[-1].running_var, again["4.running_var"]), (
        "dropout is off: the pass draws no random numbers"
    )


def test_a_trailing_chunk_of_one_sample_does_not_crash():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4), nn.BatchNorm1d(4)).train()
    recalibrate_batchnorm(model, brightness_split(17, 0), BATCHES_OF_16, CPU)
    assert model.training


def batchnorm_statistics(model):
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


@pytest.mark.slow
def test_a_frozen_backbone_keeps_its_batchnorm_statistics_until_it_is_unfrozen(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 2, 32, freeze="backbone")
    before = batchnorm_statistics(model)
    after_epoch = {}

    def snapshot(epoch, record):
        after_epoch[epoch] = batchnorm_statistics(model)

    train = TrainParams(epochs=2, batch_size=16, lr=1e-3, seed=0, scheduler="none", device="cpu")
    fit(
        model,
        brightness_split(32, 0, side=32),
        brightness_split(20, 1, side=32),
        FitSettings(train, 2, tmp_path, "x", CPU, unfreeze_at_epoch=2, on_epoch=snapshot, log=lambda m: None),
    )
    assert before.keys() == after_epoch[1].keys() and len(before) == 20 * 3
    assert all(torch.equal(before[k], after_epoch[1][k]) for k in before), (
        "frozen: train-mode passes and recalibration leave them as loaded"
    )
    assert all(not torch.equal(after_epoch[1][k], after_epoch[2][k]) for k in before), (
        "unfrozen in epoch 2: they train and are recalibrated"
    )
    assert after_epoch[2]["bn1.num_batches_tracked"] - after_epoch[1]["bn1.num_batches_tracked"] == 2 + 2, (
        "2 steps, then 2 recalibration batches"
    )


def test_recalibration_skips_the_frozen_part_only():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, 32, freeze="last_block")
    before = batchnorm_statistics(model)
    recalibrate_batchnorm(model, brightness_split(40, 0, side=32), BATCHES_OF_16, CPU)
    after = batchnorm_statistics(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.startswith("layer4.")}, (
        "the last block trains, so its statistics are recomputed"
    )


def test_models_without_batchnorm_are_left_alone():
    model = build_model("net2", 2, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    recalibrate_batchnorm(model, brightness_split(32, 0), BATCHES_OF_16, CPU)
    assert not calls and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_evaluate_warns_when_every_test_image_gets_one_class(tmp_path):
    processed = tmp_path / "processed"
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 3
    classes = ["cat", "dog", "horse"]
    processed_folder(
        processed,
        classes,
        test=PackedSplit(rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8), labels, np.arange(12)),
    )
    model = build_model("net1", 3, 16)
    with torch.no_grad():
        head = model.classifier[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"device": "cpu"}, "models": {"net1": {}}}))
    save_trained(tmp_path / "best.pt", model, params, "net1", classes, 16)
    result = run_stage_in_process(
        "evaluate",
        params,
        "--model",
        "net1",
        "--processed",
        processed,
        "--checkpoint",
        tmp_path / "best.pt",
        "--metrics",
        tmp_path / "net1.json",
        "--details",
        tmp_path / "details.json",
        "--predictions",
        tmp_path / "net1.csv",
        "--figures",
        tmp_path / "figures",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: evaluate@net1: every test image was predicted as 'dog'" in result.stderr


def test_fit_warns_when_the_best_epoch_predicts_one_class(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 5.0]))
    train = TrainParams(epochs=1, batch_size=16, lr=1e-9, seed=0, crop_padding=0, scheduler="none", device="cpu")
    logged = []
    fit(
        model,
        brightness_split(32, 0),
        brightness_split(20, 1),
        FitSettings(train, 2, tmp_path, "x", CPU, log=logged.append),
    )
    assert any(
        m.startswith("warning: epoch 1, the best so far by val/f1_macro, predicts the same class") for m in logged
    ), logged
