"""State-dict files, one reader for all: the train stage's checkpoints and a model's `weights_path`.

`torch.load(weights_only=True)` only: plain tensors and containers come back, pickled code is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from imgcls.core.errors import ImgclsError


def read_torch_file(path: Path, label: str, what: str, expected: str) -> Any:
    """What `path` holds; a missing, irregular or unreadable file is refused in one line `<label>: ...; <expected>`.

    torch raises several types for truncated or foreign files, each with paragraphs of advice on
    weights_only; the one line keeps the type and torch's first sentence.
    """
    if not path.exists():
        raise ImgclsError(f"{label}: not found; {expected}")
    if not path.is_file():  # torch.load would wait on a FIFO forever
        raise ImgclsError(f"{label}: not a regular file (a folder, FIFO or device); {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ImgclsError(
            f"{label}: not a readable {what} ({type(exc).__name__}: {_first_sentence(str(exc))}); {expected}"
        ) from None


def _first_sentence(message: str) -> str:
    return message.strip().splitlines()[0].split(". ")[0] if message.strip() else "no detail"


def is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def state_dict_differences(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """The keys `found` lacks, the keys it has beyond `expected`, and the keys whose shapes differ."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [key for key, value in expected.items() if key in found and found[key].shape != value.shape]
    return missing, unexpected, reshaped
