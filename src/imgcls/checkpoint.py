"""Checkpoints written atomically and read back with `weights_only=True` (no pickle code execution)."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.atomic import atomic_path
from imgcls.errors import ImgclsError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint of plain tensors and containers; anything else is refused, never unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImgclsError(f"{path}: checkpoint not found; run the train stage first") from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ImgclsError(f"{path}: not a readable imgcls checkpoint ({type(exc).__name__}: {exc})") from None


def code_digest(stage_script: Path) -> str:
    """Hash of the code a run executes: the stage script, imgcls's source and the numeric libraries' versions.

    A checkpoint written by other code is never resumed, so an edit anywhere that could change
    the result (the script, the library, an upgraded torch) starts training afresh.
    """
    digest = hashlib.sha256()
    for path in [stage_script, *sorted(Path(__file__).parent.rglob("*.py"))]:
        digest.update(path.read_bytes())
    digest.update(f"python {platform.python_version()} torch {torch.__version__} numpy {np.__version__}".encode())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    if not path.is_file():
        raise ImgclsError(f"weights_path: file not found: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_fingerprint(settings: dict[str, Any], *arrays: np.ndarray) -> str:
    """Hash of a run's settings and training data: a checkpoint resumes only under the same hash."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array in arrays:
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
