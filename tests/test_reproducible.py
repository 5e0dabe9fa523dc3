"""pin_cpu_kernels: the same training gives the same weights whether the CPU has AVX-512 or only AVX2."""

import os
import platform
import subprocess
import sys

import pytest

from imgcls.reproducible import PINNED, pin_cpu_kernels

# A few optimizer steps of a real model (convolutions through oneDNN, batch norm, dense layers,
# cross-entropy, Adam) on seeded data; prints a hash of the final weights.
TRAIN_A_LITTLE = """
import hashlib
import torch
from imgcls.models import build_model  # importing imgcls pins the kernels unless the caller exported others
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

# What an AVX2-only CPU picks on its own; exporting it emulates such a machine on an AVX-512 one.
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    return {**env, **extra}


def _train(**machine: str) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_A_LITTLE], env=_clean_env(**machine), capture_output=True, text=True, timeout=120, check=True
    )
    capability, digest = result.stdout.split()
    return capability, digest


@pytest.fixture
def no_pins(monkeypatch):
    """Start with no pinning variable set, and undo whatever the test sets."""
    for name in PINNED:
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


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the AVX2 / AVX-512 choice exists only on x86-64")
def test_training_is_bit_identical_on_avx512_and_avx2_once_pinned():
    # Exported values win over the pin: this is the machine's own choice, as before imgcls pinned anything.
    unpinned = _train(ATEN_CPU_CAPABILITY="avx512", ONEDNN_MAX_CPU_ISA="ALL")
    if unpinned[0] != "AVX512":
        pytest.skip("this CPU has no AVX-512, so there is no second kernel choice to compare against")
    pinned, avx2_machine = _train(), _train(**AVX2_MACHINE)
    assert pinned == avx2_machine == ("AVX2", pinned[1])
    # Unpinned, this CPU runs its AVX-512 kernels and ends with other weights than an AVX2 machine.
    assert unpinned[1] != avx2_machine[1]
