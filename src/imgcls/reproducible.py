"""Pin PyTorch's CPU kernels to AVX2 so training gives the same bytes on AVX2 and AVX-512 machines.

PyTorch's own kernels (ATen) and oneDNN's convolutions each pick AVX2 or AVX-512 code for
the CPU they find, and the two sum in different orders, so one run's weights differ in the
last bits between machines and the difference grows with every step. Each library reads
its variable once, on its first use, and ignores later changes: `pin_cpu_kernels` must run
before the first torch operation, which is why `imgcls/__init__.py` calls it.
"""

from __future__ import annotations

import os
import platform

# What an AVX2-only x86-64 CPU picks by itself, so pinning changes nothing there.
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
X86_64 = ("x86_64", "amd64")


def pin_cpu_kernels() -> str:
    """Make an x86-64 CPU run PyTorch's AVX2 kernels; a value already exported wins. Returns what is in force.

    The result names the kernels a run used, for its fingerprint: "avx2", "NAME=value,..."
    when the caller exported other values, or "native-<machine>" off x86-64, where nothing is set.
    """
    machine = platform.machine().lower()
    if machine not in X86_64:
        return f"native-{machine}"
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    in_force = {name: os.environ[name] for name in PINNED}
    if in_force == PINNED:
        return "avx2"
    return ",".join(f"{name}={value}" for name, value in in_force.items())
