"""Checkpoints written atomically and read back with `weights_only=True` (no pickle code execution)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgcls.core.atomic import atomic_path
from imgcls.core.errors import ImgclsError, first_of
from imgcls.models.state_dicts import is_state_dict, read_torch_file, state_dict_differences


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # Through a file object: given a path, torch.save names the archive's inner folder after the
    # (random) temporary file, so the same weights would be saved as different bytes every time.
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        try:
            torch.save(state, file)
        except RuntimeError as exc:  # torch reports a failed write (a full disk) as RuntimeError, not OSError
            raise OSError(f"torch.save: {str(exc).strip().splitlines()[0]}") from None


def load_checkpoint(path: Path, keys: Collection[str] = ("model",)) -> dict[str, Any]:
    """A checkpoint of the train stage, refused with one line naming it unless a dict holding `keys`.

    Its `model` must be a state_dict: a bare tensor or another program's file is refused, never unpickled.
    """
    state = read_torch_file(path, str(path), "checkpoint", _expected(keys))
    if not isinstance(state, dict):
        raise ImgclsError(f"{path}: holds a {type(state).__name__}; {_expected(keys)}")
    return check_checkpoint(path, state, keys)


def check_checkpoint(path: Path, state: dict[str, Any], keys: Collection[str]) -> dict[str, Any]:
    """`state`, loaded from `path`, if it holds `keys` (its `model` a state_dict); else one line naming what is
    wrong."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise ImgclsError(f"{path}: has no {missing} (it holds {_some(map(str, state))}); {_expected(keys)}")
    if "model" in keys and not is_state_dict(state["model"]):
        raise ImgclsError(
            f"{path}: its 'model' is a {type(state['model']).__name__}, not a state_dict of named tensors; "
            f"{_expected(keys)}"
        )
    return state


def _expected(keys: Collection[str]) -> str:
    return f"expected a checkpoint of the train stage: a dict with {sorted(keys)}"


def _some(names: Iterable[str], shown: int = 5) -> str:
    """A few names of a possibly long list (a foreign state_dict has hundreds), for a one-line message."""
    ordered = sorted(names)
    return first_of(map(repr, ordered), shown) if ordered else "nothing"


def load_weights(model: nn.Module, path: Path, weights: Mapping[str, torch.Tensor], described: str) -> None:
    """Load `weights`, read from `path`, into `model` (`described`, for the message), refusing ones that do not fit."""
    mismatch = state_dict_mismatch(model.state_dict(), weights)
    if mismatch:
        raise ImgclsError(
            f"{path}: its weights do not fit {described}: {mismatch}; retrain it or point to its own checkpoint"
        )
    model.load_state_dict(weights)


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """What keeps `found` from loading into a model whose state_dict is `expected`, or "" if nothing does."""
    missing, unexpected, reshaped_keys = state_dict_differences(expected, found)
    reshaped = [f"{key} is {tuple(found[key].shape)}, not {tuple(expected[key].shape)}" for key in reshaped_keys]
    problems = [
        f"{label} {_some(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("reshaped:", reshaped))
        if keys
    ]
    return "; ".join(problems)


def set_aside(path: Path) -> Path:
    """Move an unusable checkpoint to `<name>.corrupt`, out of the way but kept for a look (replacing an older one)."""
    aside = path.with_name(f"{path.name}.corrupt")
    with contextlib.suppress(FileNotFoundError):  # another DDP rank moved it first
        os.replace(path, aside)
    return aside


def code_digest(stage_script: Path) -> str:
    """Hash of the code a run executes: the stage script, the imgcls modules it imported, the libraries and CPU kernels.

    A checkpoint written by other code is never resumed, so an edit that could change the result
    (the script, an imported module, an upgraded torch, other CPU kernels or thread count) starts
    training afresh. Only imported modules count, the same ones dvc.yaml declares, so a module the
    run never loads cannot change the checkpoint's bytes behind DVC's back.
    """
    digest = hashlib.sha256()
    imported = {
        Path(m.__file__)
        for name, m in sys.modules.items()
        if name.split(".")[0] == "imgcls" and getattr(m, "__file__", None)
    }
    for path in [stage_script, *sorted(imported)]:
        digest.update(path.read_bytes())
    runtime = (
        f"python {platform.python_version()} torch {torch.__version__} numpy {np.__version__} "
        f"kernels {torch.backends.cpu.get_cpu_capability()} threads {torch.get_num_threads()}"
    )
    digest.update(runtime.encode())
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
