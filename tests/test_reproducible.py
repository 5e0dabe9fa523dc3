"""pin_cpu_kernels: the same training gives the same weights whether the CPU has AVX-512 or only AVX2.

train.cpu_kernels: native lifts the pin in the stages that train and score a model.
"""

import json
import os
import platform
import sys

import numpy as np
import pytest
import yaml

from conftest import processed_folder, run_command, run_train_stage
from imgcls.core.errors import ImgclsError
from imgcls.core.params import resolve_model
from imgcls.core.reproducible import PINNED, PINNED_BY_IMGCLS, pin_cpu_kernels, use_cpu_kernels
from imgcls.data.packed import PackedSplit
from imgcls.models.names import MODEL_NAMES

# A few optimizer steps of a real model (convolutions through oneDNN, batch norm, dense layers,
# cross-entropy, Adam) on seeded data; prints a hash of the final weights.
TRAIN_A_LITTLE = """
import hashlib
import torch
from imgcls.models.registry import build_model  # importing imgcls pins the kernels unless the caller exported others
torch.manual_seed(0)
model = build_model("cnn", 10, 32).to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
images = torch.randn(4, 32, 3, 32, 32)
labels = torch.randint(0, 10, (4, 32))
for x, y in zip(images, labels):
    loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
digest = hashlib.sha256()
for tensor in model.state_dict().values():
    digest.update(tensor.contiguous().numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), digest.hexdigest())
"""

ONLY_X86_64 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the AVX2 / AVX-512 choice exists only on x86-64"
)
# What an AVX2-only CPU picks on its own; exporting it emulates such a machine on an AVX-512 one.
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in [*PINNED, PINNED_BY_IMGCLS]}
    return {**env, **extra}


def _train(**machine: str) -> tuple[str, str]:
    result = run_command(sys.executable, "-c", TRAIN_A_LITTLE, env=_clean_env(**machine), check=True)
    capability, digest = result.stdout.split()
    return capability, digest


@pytest.fixture
def no_pins(monkeypatch):
    """Start with no pinning variable set, and undo whatever the test sets."""
    for name in [*PINNED, PINNED_BY_IMGCLS]:
        monkeypatch.setenv(name, "")  # makes monkeypatch restore the original value afterwards
        monkeypatch.delenv(name)


def test_pins_avx2_on_x86_64_and_says_so(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert pin_cpu_kernels() == "avx2"
    assert {name: os.environ[name] for name in PINNED} == PINNED


def test_a_value_the_user_exported_wins_and_is_named(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert pin_cpu_kernels() == "ATEN_CPU_CAPABILITY=avx512,ONEDNN_MAX_CPU_ISA=AVX2"
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx512"


def test_other_architectures_are_left_alone(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert pin_cpu_kernels() == "native-aarch64"
    assert not any(name in os.environ for name in PINNED)


@pytest.mark.slow
@ONLY_X86_64
def test_training_is_bit_identical_on_avx512_and_avx2_once_pinned():
    # Asked first: forcing AVX-512 kernels on a CPU without it dies of an illegal instruction.
    if _own_choice() != "AVX512":
        pytest.skip("this CPU has no AVX-512, so there is no second kernel choice to compare against")
    # Exported values win over the pin: this is the machine's own choice, as before imgcls pinned anything.
    unpinned = _train(ATEN_CPU_CAPABILITY="avx512", ONEDNN_MAX_CPU_ISA="ALL")
    pinned, avx2_machine = _train(), _train(**AVX2_MACHINE)
    assert pinned == avx2_machine == ("AVX2", pinned[1])
    # Unpinned, this CPU runs its AVX-512 kernels and ends with other weights than an AVX2 machine.
    assert unpinned[1] != avx2_machine[1]


def test_native_lifts_the_pin_and_portable_keeps_it(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    pin_cpu_kernels()
    assert use_cpu_kernels("portable") == "avx2"
    assert {name: os.environ[name] for name in PINNED} == PINNED
    assert use_cpu_kernels("native") == "native"
    assert not any(name in os.environ for name in PINNED)


def test_a_child_process_lifts_what_its_parent_pinned(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    pin_cpu_kernels()
    child = "from imgcls.core.reproducible import use_cpu_kernels; print(use_cpu_kernels('native'))"
    result = run_command(sys.executable, "-c", child, env=dict(os.environ), check=True)
    assert result.stdout.strip() == "native"


def test_native_keeps_a_value_the_user_exported(monkeypatch, no_pins):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    pin_cpu_kernels()
    assert use_cpu_kernels("native") == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert "ATEN_CPU_CAPABILITY" not in os.environ


def test_switching_kernels_is_another_run_and_a_model_may_choose_its_own(tmp_path):
    params = tmp_path / "params.yaml"

    def settings(train: dict, model: str = "net1", models: dict | None = None):
        params.write_text(yaml.safe_dump({"train": train, "models": models or {"net1": {}}}))
        return resolve_model(params, model, MODEL_NAMES)

    native, portable = settings({"cpu_kernels": "native"}), settings({})
    assert (native.train.cpu_kernels, portable.train.cpu_kernels) == ("native", "portable")
    assert native.fingerprint() != portable.fingerprint(), "a last.pt of the other kind must not be resumed"
    assert native.effective()["cpu_kernels"] == "native"
    own = settings({"cpu_kernels": "native"}, "cnn", {"cnn": {"cpu_kernels": "portable"}})
    assert own.train.cpu_kernels == "portable"
    with pytest.raises(ImgclsError, match=r"train.cpu_kernels: .*'portable' or 'native'"):
        settings({"cpu_kernels": "avx512"})


def _own_choice() -> str:
    """The kernels torch picks on this CPU when nothing is pinned or exported."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    result = run_command(sys.executable, "-c", probe, env=_clean_env(), check=True)
    return result.stdout.strip()


@pytest.mark.e2e
@ONLY_X86_64
def test_the_train_stage_runs_the_kernels_its_params_name(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        split: PackedSplit(rng.integers(0, 255, (count, 16, 16, 3), np.uint8), np.arange(count) % 2, np.arange(count))
        for split, count in (("train", 32), ("val", 8))
    }
    processed_folder(tmp_path, ["a", "b"], **splits)
    used = {}
    for kind in ("portable", "native"):
        params = tmp_path / f"{kind}.yaml"
        train = {"epochs": 1, "batch_size": 16, "device": "cpu", "cpu_kernels": kind}
        params.write_text(yaml.safe_dump({"train": train, "models": {"net1": {}}}))
        # In this process's environment, as pinned by its import of imgcls: the params alone lift the pin.
        result = run_train_stage(params, "net1", tmp_path, tmp_path / kind / "models", tmp_path / kind / "live")
        assert result.returncode == 0, result.stdout + result.stderr
        used[kind] = json.loads((tmp_path / kind / "live/timings.json").read_text())["cpu_capability"]
    assert used == {"portable": "AVX2", "native": _own_choice()}
