import numpy as np
import pytest

from imgcls.errors import ImgclsError
from imgcls.splitting import assign_by_counts, assign_by_fractions

CLASSES = ["a", "b", "c"]


def labels_of(counts):
    return np.concatenate([np.full(n, i) for i, n in enumerate(counts)])


def test_fraction_split_is_stratified_disjoint_and_complete():
    labels = labels_of([200, 100, 30])
    assignment = assign_by_fractions(labels, CLASSES, (0.8, 0.1, 0.1), seed=0)
    assert set(assignment.tolist()) == {0, 1, 2}
    for label, total in enumerate([200, 100, 30]):
        shares = np.bincount(assignment[labels == label], minlength=3) / total
        assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.04)


def test_fraction_split_is_reproducible_from_the_seed():
    labels = labels_of([50, 50, 50])
    assert (assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1) == assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1)).all()
    assert (assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1) != assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 2)).any()


def test_class_too_small_to_stratify_is_named():
    with pytest.raises(ImgclsError, match=r"'c' has 4"):
        assign_by_fractions(labels_of([100, 100, 4]), CLASSES, (0.8, 0.1, 0.1), seed=0)


def test_per_class_counts_are_exact_and_leave_the_rest_out():
    labels = labels_of([20, 15, 12])
    assignment = assign_by_counts(labels, CLASSES, (8, 2, 2), seed=0)
    for label in range(3):
        assert np.bincount(assignment[labels == label] + 1, minlength=4)[1:].tolist() == [8, 2, 2]


def test_per_class_counts_larger_than_a_class_fail_clearly():
    with pytest.raises(ImgclsError, match=r"needs 12 images of class 'c', but it has 10"):
        assign_by_counts(labels_of([20, 20, 10]), CLASSES, (8, 2, 2), seed=0)
