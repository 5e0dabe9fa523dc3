import numpy as np
import pytest

from imgcls.core.errors import ImgclsError
from imgcls.data.packed import PackedSplit, load_split
from imgcls.data.splitting import assign_by_counts, assign_by_fractions, write_splits

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
    assert (
        assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1)
        == assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1)
    ).all()
    assert (
        assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 1)
        != assign_by_fractions(labels, CLASSES, (0.6, 0.2, 0.2), 2)
    ).any()


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


def test_a_zero_test_share_splits_train_val_only_stratified_and_disjoint():
    labels = labels_of([200, 100, 30])
    assignment = assign_by_fractions(labels, CLASSES, (0.8, 0.2, 0.0), seed=0)
    assert set(assignment.tolist()) == {0, 1}
    for label, total in enumerate([200, 100, 30]):
        assert np.allclose(np.bincount(assignment[labels == label], minlength=2) / total, [0.8, 0.2], atol=0.04)


def test_a_zero_test_share_still_needs_every_class_in_train_and_val():
    with pytest.raises(ImgclsError, match=r"needs at least 5 images per class .* but 'c' has 4"):
        assign_by_fractions(labels_of([100, 100, 4]), CLASSES, (0.8, 0.2, 0.0), seed=0)


def test_two_per_class_counts_fix_train_and_val_and_send_the_rest_to_test():
    labels = labels_of([20, 15, 12])
    assignment = assign_by_counts(labels, CLASSES, (8, 2), seed=0)
    for label, total in enumerate([20, 15, 12]):
        assert np.bincount(assignment[labels == label], minlength=3).tolist() == [8, 2, total - 10]


def test_a_zero_test_count_gives_exact_train_and_val_and_no_test():
    labels = labels_of([20, 15, 10])
    assignment = assign_by_counts(labels, CLASSES, (8, 2, 0), seed=0)
    for label in range(3):
        assert np.bincount(assignment[labels == label] + 1, minlength=4)[1:].tolist() == [8, 2, 0]


def test_per_class_counts_a_class_cannot_fill_name_the_class_and_the_counts():
    with pytest.raises(
        ImgclsError, match=r"\[8, 2\] takes 8 train and 2 val images .* class 'c' needs at least 11, but it has 10"
    ):
        assign_by_counts(labels_of([20, 20, 10]), CLASSES, (8, 2), seed=0)
    with pytest.raises(ImgclsError, match=r"\[8, 2, 0\] needs 10 images of class 'b', but it has 9"):
        assign_by_counts(labels_of([20, 9, 10]), CLASSES, (8, 2, 0), seed=0)


def test_without_test_images_the_test_folder_holds_val_and_splits_csv_lists_each_image_once(tmp_path):
    labels = labels_of([10, 10, 10])
    data = PackedSplit(np.arange(30 * 4 * 4 * 3, dtype=np.uint8).reshape(30, 4, 4, 3), labels, np.arange(100, 130))
    assignment = assign_by_counts(labels, CLASSES, (6, 2, 0), seed=0)
    write_splits(tmp_path, data, assignment, CLASSES)
    val, test = load_split(tmp_path / "val", mmap=False), load_split(tmp_path / "test", mmap=False)
    assert (
        len(test.ids) == 6
        and (test.ids == val.ids).all()
        and (test.images == val.images).all()
        and (test.labels == val.labels).all()
    )
    assert not set(val.ids.tolist()) & set(load_split(tmp_path / "train").ids.tolist())
    rows = (tmp_path / "splits.csv").read_text().splitlines()[1:]
    assert len(rows) == 24 and {row.rsplit(",", 1)[1] for row in rows} == {"train", "val"}
