"""The training loop on tiny in-memory data: determinism, resuming, freezing schedule, augmentation ops."""

import sys
import types

import numpy as np
import pytest
import torch

from conftest import Killed, die_after_first_epoch
from imgcls.core.params import TrainParams
from imgcls.models.registry import build_model
from imgcls.train.batches import DeviceSplit, batch_indices, random_crop_flip, standardize, training_batches
from imgcls.train.checkpoint import code_digest, load_checkpoint, run_fingerprint, save_checkpoint
from imgcls.train.fit import FitSettings, fit
from imgcls.train.setup import make_scheduler

CPU = torch.device("cpu")


def tiny_split(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 3, 16, 16), dtype=np.uint8)
    for label in range(3):  # a class-dependent bright stripe makes the task learnable
        images[labels == label, label, 4 + 3 * label : 7 + 3 * label, :] = 250
    return DeviceSplit(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


TRAIN, VAL = tiny_split(96, 0), tiny_split(30, 1)


def run(
    tmp_path, epochs=3, arch="net2", on_epoch=lambda e, r: None, unfreeze_at_epoch=None, log_every_steps=4, **options
):
    train = TrainParams(
        epochs=epochs,
        batch_size=16,
        lr=3e-3,
        seed=7,
        hflip=True,
        crop_padding=1,
        scheduler="step",
        step_size=1,
        gamma=0.5,
        log_every_steps=log_every_steps,
    )
    torch.manual_seed(train.seed)
    model = build_model(arch, 3, 16 if arch != "resnet18" else 32, **options)
    fingerprint = run_fingerprint({"epochs": epochs, "arch": arch})
    state = fit(
        model,
        TRAIN,
        VAL,
        FitSettings(
            train,
            3,
            tmp_path,
            fingerprint,
            CPU,
            unfreeze_at_epoch=unfreeze_at_epoch,
            on_epoch=on_epoch,
            log=lambda m: None,
        ),
    )
    return state, model


def test_same_settings_give_bit_identical_runs(tmp_path):
    first, model_a = run(tmp_path / "a")
    second, model_b = run(tmp_path / "b")

    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_seconds")} for r in history]

    assert strip(first.history) == strip(second.history)
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))
    assert first.history[-1]["val/acc"] > 0.6, "the tiny task should be learnable"


@pytest.mark.parametrize("arch", ["net2", "cnn"])  # cnn: BatchNorm statistics recomputed each epoch, and dropout
@pytest.mark.slow
def test_killed_run_resumes_from_last_pt_to_the_same_result(tmp_path, arch):
    reference, reference_model = run(tmp_path / "whole", arch=arch)

    with pytest.raises(Killed):
        run(tmp_path / "resumed", arch=arch, on_epoch=die_after_first_epoch)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    logged = []
    resumed, resumed_model = run(tmp_path / "resumed", arch=arch, on_epoch=lambda e, r: logged.append(e))
    assert logged == [1, 2, 3], "history is replayed so loggers see every epoch"
    keys = ("train/loss", "val/loss", "val/acc", "val/f1_macro", "lr")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in reference.history]
    assert all(
        torch.equal(a, b) for a, b in zip(reference_model.state_dict().values(), resumed_model.state_dict().values())
    )
    assert resumed.step_losses == reference.step_losses and [r["step"] for r in resumed.step_losses] == [4, 8, 12, 16]


@pytest.mark.slow
def test_logged_step_losses_are_the_epochs_batch_losses(tmp_path):
    state, _ = run(tmp_path, log_every_steps=1)
    steps_per_epoch = len(TRAIN) // 16
    assert state.steps == 3 * steps_per_epoch
    assert [(r["step"], r["epoch"]) for r in state.step_losses] == [
        (s, (s - 1) // steps_per_epoch + 1) for s in range(1, state.steps + 1)
    ]
    for epoch, record in enumerate(state.history, start=1):
        losses = [r["loss"] for r in state.step_losses if r["epoch"] == epoch]
        assert np.mean(losses) == pytest.approx(record["train/loss"], rel=1e-5), (
            "equal batches: the epoch loss is their mean"
        )
    assert run(tmp_path / "off", log_every_steps=None)[0].step_losses == []


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path):
    run(tmp_path, epochs=2)
    logged = []
    state, _ = run(tmp_path, epochs=3, on_epoch=lambda e, r: logged.append(e))
    assert state.epoch == 3 and logged == [1, 2, 3]
    assert load_checkpoint(tmp_path / "last.pt")["fingerprint"] == run_fingerprint({"epochs": 3, "arch": "net2"})


def test_a_last_pt_of_older_code_is_not_resumed_nor_set_aside(tmp_path):
    """A checkpoint written before a key was added (here the step log) is another fingerprint, not a corrupt file."""
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "fingerprint": "older code", "epoch": 1})
    logged = []
    state, _ = run(tmp_path, epochs=1, on_epoch=lambda e, r: logged.append(e))
    assert logged == [1] and state.steps == len(TRAIN) // 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"], "nothing set aside as corrupt"


def test_best_checkpoint_and_last_checkpoint_contents(tmp_path):
    state, _ = run(tmp_path)
    last = load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "fingerprint"} <= set(last)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == state.best_epoch
    assert not list(tmp_path.glob("*.tmp")), "no temporary files are left behind"


@pytest.mark.slow
def test_staged_unfreezing_trains_only_the_head_first(tmp_path):
    snapshots = {}
    captured = {}

    def snapshot(epoch, record):
        snapshots[epoch] = {k: v.clone() for k, v in captured["model"].state_dict().items()}

    train = TrainParams(epochs=2, batch_size=32, lr=1e-3, seed=0, scheduler="none")
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 32, freeze="backbone")
    captured["model"] = model
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def big(s: DeviceSplit) -> DeviceSplit:
        return DeviceSplit(torch.nn.functional.interpolate(s.images.float(), size=32).to(torch.uint8), s.labels)

    fit(
        model,
        big(TRAIN),
        big(VAL),
        FitSettings(train, 3, tmp_path, "x", CPU, unfreeze_at_epoch=2, on_epoch=snapshot, log=lambda m: None),
    )
    assert torch.equal(snapshots[1]["conv1.weight"], before["conv1.weight"]), "backbone frozen in epoch 1"
    assert not torch.equal(snapshots[1]["fc.1.weight"], before["fc.1.weight"]), "head trains in epoch 1"
    assert not torch.equal(snapshots[2]["conv1.weight"], snapshots[1]["conv1.weight"]), "everything trains from epoch 2"
    assert all(p.requires_grad for p in model.parameters())


def test_rebuilt_scheduler_is_fast_forwarded():
    params = TrainParams(lr=1.0, scheduler="step", step_size=1, gamma=0.5, epochs=5)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    make_scheduler(optimizer, params, completed_epochs=3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.125)


@pytest.mark.parametrize(
    "mean, std", [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_inputs_are_normalised_with_the_statistics_given(mean, std, channels_last):
    images = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    by_hand = (images.double() / 255 - torch.tensor(mean, dtype=torch.double).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.double
    ).view(1, 3, 1, 1)
    normalised = standardize(images, mean, std)
    assert normalised.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(normalised.double(), by_hand, rtol=1e-5, atol=1e-5)


def test_batch_augmentation_draws_per_sample():
    images = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    flipped = random_crop_flip(images, 0, True, torch.Generator().manual_seed(0))
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    unchanged = (flipped == images).flatten(1).all(1)
    assert (mirrored ^ unchanged).all() and 10 < int(mirrored.sum()) < 54, "each sample flips independently"

    cropped = random_crop_flip(images, 1, False, torch.Generator().manual_seed(0))
    assert cropped.shape == images.shape
    shifts = {tuple(torch.nonzero(cropped[i, 0] == images[i, 0, 1, 1]).flatten().tolist()) for i in range(64)}
    assert len(shifts) > 3, "crop offsets differ between samples"


def test_crop_and_flip_together_mirror_the_shifted_window():
    images = (
        torch.arange(32 * 3 * 6 * 6, dtype=torch.uint8)
        .reshape(32, 3, 6, 6)
        .contiguous(memory_format=torch.channels_last)
    )
    both = random_crop_flip(images, 2, True, torch.Generator().manual_seed(5))
    # The same draws, crop alone: each output is that window, or that window mirrored.
    cropped = random_crop_flip(images, 2, False, torch.Generator().manual_seed(5))
    mirrored = (both == cropped.flip(3)).flatten(1).all(1)
    unchanged = (both == cropped).flatten(1).all(1)
    assert (mirrored | unchanged).all() and mirrored.any() and not mirrored.all()
    assert both.dtype == torch.uint8 and both.is_contiguous(memory_format=torch.channels_last)


def test_sharded_batches_partition_one_permutation():
    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    whole = torch.cat(list(batch_indices(10, 4, generator())))
    ranks = [torch.cat(list(batch_indices(10, 4, generator(), shard=(r, 2)))) for r in range(2)]
    assert sorted(torch.cat(ranks).tolist()) == list(range(10))
    assert ranks[0].tolist() == whole[0::2].tolist()


def test_training_batches_drop_only_a_trailing_batch_of_one():
    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    whole = list(batch_indices(33, 16, generator()))
    kept = training_batches(33, 16, generator())
    assert [b.tolist() for b in kept] == [b.tolist() for b in whole[:2]]
    assert [b.tolist() for b in training_batches(34, 16, generator())] == [
        b.tolist() for b in batch_indices(34, 16, generator())
    ]
    # Two ranks of 17 samples each: every rank drops its last single sample,
    # so they still take the same number of steps.
    ranks = [training_batches(34, 8, generator(), shard=(r, 2)) for r in range(2)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [8, 8]


@pytest.mark.slow
def test_batchnorm_model_trains_when_the_last_batch_has_one_sample(tmp_path):
    train = TrainParams(epochs=1, batch_size=16, seed=0, scheduler="none")
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 32)

    def big(s: DeviceSplit) -> DeviceSplit:
        return DeviceSplit(torch.nn.functional.interpolate(s.images.float(), size=32).to(torch.uint8), s.labels)

    state = fit(model, big(tiny_split(33, 0)), big(VAL), FitSettings(train, 3, tmp_path, "x", CPU, log=lambda m: None))
    assert state.epoch == 1


def test_the_same_checkpoint_is_saved_as_the_same_bytes(tmp_path):
    state = {"model": build_model("net1", 3, 16).state_dict(), "epoch": 1, "fingerprint": "x"}
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes(), "DVC would see a changed output"


def test_the_code_fingerprint_covers_imported_modules_only(tmp_path, monkeypatch):
    script = tmp_path / "stage.py"
    script.write_text("print('train')\n")
    before = code_digest(script)
    assert code_digest(script) == before
    # A module no stage imports (a new CLI, say) must not change checkpoints behind DVC's back...
    unrelated = tmp_path / "unrelated.py"
    unrelated.write_text("X = 1\n")
    assert code_digest(script) == before
    # ...but an imported module's code and the stage script do.
    fake = types.ModuleType("imgcls.fake_module")
    fake.__file__ = str(unrelated)
    monkeypatch.setitem(sys.modules, "imgcls.fake_module", fake)
    assert code_digest(script) != before
    monkeypatch.delitem(sys.modules, "imgcls.fake_module")
    script.write_text("print('train, edited')\n")
    assert code_digest(script) != before
