"""Majority vote over several models' test predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgcls.core.errors import ImgclsError


def majority_vote(predictions: Sequence[np.ndarray], tie_break: int, num_classes: int) -> np.ndarray:
    """Per sample, the class most models chose; ties go to model `tie_break`'s choice if it is tied, else the lowest
    class."""
    stacked = np.stack(predictions)  # (models, samples)
    votes = np.zeros((stacked.shape[1], num_classes), dtype=np.int64)
    for row in stacked:
        votes[np.arange(stacked.shape[1]), row] += 1
    top = votes.max(axis=1, keepdims=True)
    tied = votes == top
    winners = votes.argmax(axis=1)
    referee = stacked[tie_break]
    referee_tied = tied[np.arange(len(referee)), referee]
    return np.where(referee_tied, referee, winners)


# What the ensemble stage's metrics and details hold when no ensemble is built, so `dvc metrics show` says so.
NO_ENSEMBLE = {"members": 0}


def check_members(members: Sequence[str], defined: Sequence[str]) -> None:
    """Refuse members that are not models, saying how to run without an ensemble."""
    unknown = [m for m in members if m not in defined]
    if unknown:
        raise ImgclsError(
            f"ensemble.models: {unknown} are not in models: or finetune: ({', '.join(defined)}); "
            "list two or more of those, or set ensemble.models: [] to run without an ensemble"
        )


def check_aligned(name: str, ids: np.ndarray, reference: np.ndarray) -> None:
    if not np.array_equal(ids, reference):
        raise ImgclsError(f"ensemble.models: '{name}' was evaluated on different test images; rerun its evaluate stage")
