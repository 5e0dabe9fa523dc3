"""Linear probe (`probe: true`): the head trained alone on a frozen backbone's L2-normalised features, computed once."""

import numpy as np
import pytest
import torch
import torchvision
import yaml
from torch import nn

from conftest import Killed, die_after_first_epoch, processed_folder, run_train_stage
from imgcls.core.errors import ImgclsError
from imgcls.core.params import TrainParams, resolve_model
from imgcls.data.packed import PackedSplit
from imgcls.models.names import MODEL_NAMES
from imgcls.models.pretrained import probe_head
from imgcls.models.registry import build_model
from imgcls.train.batches import DeviceSplit, standardize
from imgcls.train.checkpoint import load_checkpoint
from imgcls.train.fit import FitSettings, fit
from imgcls.train.loop import predict
from imgcls.train.probe import cache_features

CPU = torch.device("cpu")
PROBE = TrainParams(
    epochs=3, batch_size=16, lr=1e-2, seed=0, crop_padding=0, scheduler="step", step_size=1, gamma=0.5, device="cpu"
)


def stripes(n, seed):
    """Three classes, each a bright stripe in its own channel and rows, on 32 px noise (resnet18's smallest input)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
    for label in range(3):
        images[labels == label, label, 8 + 6 * label : 14 + 6 * label, :] = 250
    return DeviceSplit(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


TRAIN, VAL = stripes(48, 0), stripes(21, 1)


def probe_model(**options):
    torch.manual_seed(0)
    return build_model("resnet18", 3, 32, freeze="backbone", probe=True, **options)


def run_probe(tmp_path, train=PROBE, unfreeze_at_epoch=None, on_epoch=lambda e, r: None, **options):
    model = probe_model(**options)
    state = fit(
        model,
        TRAIN,
        VAL,
        FitSettings(
            train, 3, tmp_path, "probe", CPU, unfreeze_at_epoch=unfreeze_at_epoch, on_epoch=on_epoch, log=lambda m: None
        ),
    )
    return state, model


def test_the_head_trains_and_the_backbone_stays_bit_identical(tmp_path):
    before = {k: v.clone() for k, v in probe_model().state_dict().items()}
    state, model = run_probe(tmp_path)
    after = model.state_dict()
    backbone = [k for k in before if not k.startswith("fc.")]
    assert any(k.endswith("running_mean") for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone), "weights and BatchNorm statistics untouched"
    assert not torch.equal(before["fc.classifier.1.weight"], after["fc.classifier.1.weight"])
    assert state.epoch == 3 and state.history[-1]["train/loss"] < state.history[0]["train/loss"]
    assert {"model", "optimizer", "scheduler", "fingerprint"} <= set(load_checkpoint(tmp_path / "last.pt"))
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == state.best_epoch


@pytest.mark.slow
def test_the_saved_model_computes_what_the_head_was_trained_on(tmp_path):
    state, _ = run_probe(tmp_path, head_hidden=8, head_dropout=0.2)
    model = probe_model(head_hidden=8, head_dropout=0.2)
    model.load_state_dict(load_checkpoint(tmp_path / "best.pt")["model"])
    logits = predict(model, VAL.images, PROBE.model_copy(update={"batch_size": 7}), CPU)

    features = cache_features(model, probe_head(model), VAL, PROBE, CPU).features
    torch.testing.assert_close(features.norm(dim=1), torch.ones(len(VAL)))
    with torch.no_grad():
        backbone = nn.Sequential(*list(model.children())[:-1], nn.Flatten())
        by_hand = model.fc.classifier(
            nn.functional.normalize(backbone(standardize(VAL.images, PROBE.normalize_mean, PROBE.normalize_std)), dim=1)
        )
    torch.testing.assert_close(logits, by_hand, rtol=1e-4, atol=1e-5)
    best = state.history[state.best_epoch - 1]
    assert nn.functional.cross_entropy(logits, VAL.labels).item() == pytest.approx(best["val/loss"], rel=1e-4), (
        "the val loss scored on cached features is the loss of the whole model on the images"
    )


@pytest.mark.slow
def test_a_killed_probe_resumes_to_the_same_result(tmp_path):
    reference, reference_model = run_probe(tmp_path / "whole", head_dropout=0.3)

    with pytest.raises(Killed):
        run_probe(tmp_path / "resumed", on_epoch=die_after_first_epoch, head_dropout=0.3)
    resumed, resumed_model = run_probe(tmp_path / "resumed", head_dropout=0.3)
    keys = ("train/loss", "val/loss", "val/acc", "lr")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in reference.history]
    assert all(
        torch.equal(a, b) for a, b in zip(reference_model.state_dict().values(), resumed_model.state_dict().values())
    )


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"crop_padding": 2}, r"cannot be augmented, but crop_padding: 2; set crop_padding: 0"),
        ({"hflip": True}, r"cannot be augmented, but hflip: True"),
        ({"rotation_deg": 10.0}, r"cannot be augmented, but rotation_deg: 10.0"),
    ],
)
def test_train_time_augmentation_is_refused_before_training(tmp_path, change, pattern):
    with pytest.raises(ImgclsError, match=pattern):
        run_probe(tmp_path, train=PROBE.model_copy(update=change))
    assert not list(tmp_path.iterdir()), "refused before any checkpoint is written"


def test_unfreezing_a_probe_is_refused(tmp_path):
    with pytest.raises(ImgclsError, match=r"unfreeze_at_epoch 2: probe: true keeps the backbone frozen"):
        run_probe(tmp_path, unfreeze_at_epoch=2)


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ({"probe": True}, r"models.m: probe: true .* needs freeze: backbone, not none"),
        ({"probe": True, "freeze": "last_block"}, r"models.m: probe: true .* needs freeze: backbone, not last_block"),
        (
            {"probe": True, "freeze": "backbone", "unfreeze_at_epoch": 3},
            r"models.m: probe: true .* leave unfreeze_at_epoch empty",
        ),
        ({"probe": "sometimes", "freeze": "backbone"}, r"models.m.probe: .*valid boolean"),
    ],
)
def test_bad_probe_settings_in_params_yaml_name_the_key(tmp_path, entry, pattern):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"models": {"m": {"arch": "resnet18", **entry}}}))
    with pytest.raises(ImgclsError, match=pattern):
        resolve_model(path, "m", MODEL_NAMES)


@pytest.mark.e2e
def test_the_train_stage_probes_local_imagenet_weights_on_two_processes_as_on_one(tmp_path):
    """DDP syncs the head's gradients: two half-batch means average to the full-batch mean, up to summation order."""
    processed = tmp_path / "processed"
    packed = {
        name: PackedSplit(split.images.permute(0, 2, 3, 1).numpy(), split.labels.numpy(), np.arange(len(split)))
        for name, split in (("train", TRAIN), ("val", VAL))
    }
    processed_folder(processed, ["a", "b", "c"], **packed)
    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    entry = {"arch": "resnet18", "weights_path": str(weights), "freeze": "backbone", "probe": True, "crop_padding": 0}
    params = tmp_path / "params.yaml"
    train = {"epochs": 3, "batch_size": 16, "lr": 0.01, "device": "cpu", "nproc": 2}
    params.write_text(yaml.safe_dump({"train": train, "models": {"resnet18_probe": entry}}))
    out = tmp_path / "run"
    result = run_train_stage(params, "resnet18_probe", processed, out / "models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("probe: cached the features of 48 train and 21 val images") == 1, "only rank 0 logs"
    assert (out / "models/best.pt").is_file() and (out / "models/last.pt").is_file()

    settings = resolve_model(params, "resnet18_probe", MODEL_NAMES)
    torch.manual_seed(settings.train.seed)
    model = build_model(settings.arch, 3, 32, **settings.options)
    single = fit(model, TRAIN, VAL, FitSettings(settings.train, 3, tmp_path / "single", "x", CPU, log=lambda m: None))
    curve = [
        float(line.split("\t")[1]) for line in (out / "live/plots/metrics/val/loss.tsv").read_text().splitlines()[1:]
    ]
    assert curve == pytest.approx([r["val/loss"] for r in single.history], abs=1e-4)
