"""Whether the train stage runs under torchrun, and its relaunch there: decided before torch is imported.

A stage with `train.nproc` > 1 only starts `torchrun`; loading torch, scikit-learn and dvclive
first would cost that launcher seconds for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> int:
    """Run this same command as `torchrun --standalone --nproc-per-node=nproc ...`; return its exit code.

    Stages validate their params first and only then relaunch, so a bad setting is one clear
    line rather than torchrun's failure report.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *argv]
    return subprocess.run(command).returncode
