"""Pin PyTorch's CPU kernels to AVX2 so training gives the same bytes on AVX2 and AVX-512 machines.

PyTorch's own kernels (ATen) and oneDNN's convolutions each pick AVX2 or AVX-512 code for
the CPU they find, and the two sum in different orders, so one run's weights differ in the
last bits between machines and the difference grows with every step. Each library reads
its variable once, on its first use, and ignores later changes: `pin_cpu_kernels` must run
before the first torch operation, which is why `imgcls/__init__.py` calls it, and a stage that
reads `train.cpu_kernels: native` lifts the pin with `use_cpu_kernels` before its first one.
"""

from __future__ import annotations

import os
import platform
from typing import Literal

# What an AVX2-only x86-64 CPU picks by itself, so pinning changes nothing there.
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
X86_64 = ("x86_64", "amd64")
# Names the variables imgcls set, as opposed to ones the user exported: only those are lifted. An
# environment variable, so that a child process (a stage dvc or pytest starts) can tell them apart too.
PINNED_BY_IMGCLS = "IMGCLS_PINNED_CPU_KERNELS"


def pin_cpu_kernels() -> str:
    """Make an x86-64 CPU run PyTorch's AVX2 kernels; a value already exported wins. Returns what is in force.

    The result names the kernels a run used, for its fingerprint: "avx2", "NAME=value,..."
    when the caller exported other values, or "native-<machine>" off x86-64, where nothing is set.
    """
    machine = platform.machine().lower()
    if machine not in X86_64:
        return f"native-{machine}"
    pinned = {name for name in os.environ.get(PINNED_BY_IMGCLS, "").split(",") if name in PINNED}
    for name, value in PINNED.items():
        if name not in os.environ:
            os.environ[name] = value
            pinned.add(name)
    if pinned:
        os.environ[PINNED_BY_IMGCLS] = ",".join(sorted(pinned))
    return _in_force(machine)


def use_cpu_kernels(kind: Literal["portable", "native"]) -> str:
    """Apply `train.cpu_kernels` to this process, before its first torch operation. Returns what is in force.

    portable keeps the pin; native removes what imgcls pinned, so each library picks the CPU's own
    kernels: faster on AVX-512, but the weights then depend on the CPU kind. A value the user
    exported still wins. Child processes (torchrun's) inherit the choice.
    """
    if kind == "native":
        for name in os.environ.pop(PINNED_BY_IMGCLS, "").split(","):
            if name in PINNED and os.environ.get(name) == PINNED[name]:
                del os.environ[name]
    return _in_force(platform.machine().lower())


def _in_force(machine: str) -> str:
    if machine not in X86_64:
        return f"native-{machine}"
    in_force = {name: os.environ[name] for name in PINNED if name in os.environ}
    if in_force == PINNED:
        return "avx2"
    if not in_force:
        return "native"
    return ",".join(f"{name}={value}" for name, value in in_force.items())
