"""Bootstrap intervals and exact McNemar p-values, checked against scipy and by hand on constructed cases."""

from math import comb

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import confusion_matrix

from imgcls.evaluate.scores import classification_scores
from imgcls.evaluate.significance import (
    Interval,
    bootstrap_ci95,
    format_p,
    mcnemar_exact,
    paired_test,
    scores_from_confusions,
)

CLASSES = ["cat", "dog", "owl"]


def noisy_predictions(count: int, wrong_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels of three classes, and predictions with about `wrong_share` of them replaced by another class."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, count)
    wrong = rng.random(count) < wrong_share
    y_pred = np.where(wrong, (y_true + rng.integers(1, 3, count)) % 3, y_true)
    return y_true, y_pred


def test_mcnemar_is_the_exact_two_sided_binomial_p_of_the_discordant_images():
    # 2 images only A gets wrong, 11 only B: P(X <= 2) doubled for X ~ Binomial(13, 1/2), by hand.
    by_hand = 2 * sum(comb(13, k) for k in range(3)) / 2**13
    assert by_hand == pytest.approx(0.0224609375)
    assert mcnemar_exact(2, 11) == pytest.approx(by_hand) == pytest.approx(binomtest(2, 13, 0.5).pvalue)
    assert mcnemar_exact(11, 2) == mcnemar_exact(2, 11), "which model is A does not matter"
    assert mcnemar_exact(7, 9) == pytest.approx(binomtest(7, 16, 0.5).pvalue)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0, "two models wrong on the same images cannot be told apart"


def test_paired_test_counts_the_images_only_one_model_gets_wrong():
    y_true = np.zeros(30, dtype=np.int64)
    pred_a, pred_b = y_true.copy(), y_true.copy()
    pred_a[[0, 1, 13]] = 1  # 13 is wrong for both and does not count
    pred_b[2:14] = 2
    paired = paired_test(y_true, pred_a, pred_b)
    assert (paired.only_a, paired.only_b, paired.images) == (2, 11, 30)
    assert paired.p_value == pytest.approx(binomtest(2, 13, 0.5).pvalue) and paired.significant
    assert not paired_test(y_true, pred_a, pred_a).significant


def test_p_values_print_with_three_decimals_or_as_below_one_in_a_thousand():
    assert format_p(0.0224609375) == "p = 0.022"
    assert format_p(1.0) == "p = 1.000"
    assert format_p(binomtest(0, 20, 0.5).pvalue) == "p < 0.001"


def test_scores_from_confusion_counts_equal_scikit_learns_even_with_a_class_missing():
    cases = [
        noisy_predictions(60, 0.3),
        (np.array([0, 0, 1, 1, 0]), np.array([0, 1, 1, 1, 0])),  # no owl at all
        (np.zeros(4, int), np.zeros(4, int)),
    ]
    for y_true, y_pred in cases:
        counts = confusion_matrix(y_true, y_pred, labels=[0, 1, 2])[None]
        fast = scores_from_confusions(counts)
        expected = classification_scores(y_true, y_pred, CLASSES)
        assert fast["accuracy"][0] == pytest.approx(expected["accuracy"])
        assert fast["f1_macro"][0] == pytest.approx(expected["f1_macro"])


def test_the_interval_holds_the_score_and_is_the_same_for_the_same_seed():
    y_true, y_pred = noisy_predictions(150, 0.2)
    scores = classification_scores(y_true, y_pred, CLASSES)
    intervals = bootstrap_ci95(y_true, y_pred, 3, 1000, seed=7)
    for score in ("accuracy", "f1_macro"):
        low, high = intervals[f"{score}_ci95"]
        assert low < scores[score] < high and high - low > 0.05, (score, low, high)
    assert intervals == bootstrap_ci95(y_true, y_pred, 3, 1000, seed=7)
    assert intervals["accuracy_ci95"] != bootstrap_ci95(y_true, y_pred, 3, 1000, seed=8)["accuracy_ci95"]
    assert (intervals["ci95_resamples"], intervals["ci95_seed"]) == (1000, 7)


def test_the_interval_narrows_as_the_test_split_grows():
    y_true, y_pred = noisy_predictions(100, 0.2)
    small = bootstrap_ci95(y_true, y_pred, 3, 1000, seed=0)
    # The same images sixteen times over: the same scores on 16x the images, so about a quarter the width.
    large = bootstrap_ci95(np.tile(y_true, 16), np.tile(y_pred, 16), 3, 1000, seed=0)
    for key in ("accuracy_ci95", "f1_macro_ci95"):
        ratio = np.diff(large[key])[0] / np.diff(small[key])[0]
        assert 0.15 < ratio < 0.4, (key, ratio)


def accuracy_along(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    return (y_true == y_pred).mean(axis=axis)


def f1_macro_along(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro-F1 of three classes along `axis` from TP, FP and FN, as scikit-learn defines it, for scipy's resamples."""
    per_class = []
    for c in range(3):
        tp = ((y_true == c) & (y_pred == c)).sum(axis)
        errors = ((y_true == c) != (y_pred == c)).sum(axis)
        per_class.append(np.where(tp + errors > 0, 2 * tp / np.maximum(2 * tp + errors, 1), 0.0))
    return np.mean(per_class, axis=0)


def test_the_interval_matches_scipys_percentile_bootstrap():
    y_true, y_pred = noisy_predictions(200, 0.25, seed=3)
    assert f1_macro_along(y_true, y_pred) == pytest.approx(classification_scores(y_true, y_pred, CLASSES)["f1_macro"])
    ours = bootstrap_ci95(y_true, y_pred, 3, 4000, seed=0)
    for key, statistic in (("accuracy_ci95", accuracy_along), ("f1_macro_ci95", f1_macro_along)):
        scipy = bootstrap(
            (y_true, y_pred),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=4000,
            confidence_level=0.95,
            method="percentile",
            rng=np.random.default_rng(1),
        ).confidence_interval
        # Different draws: the endpoints agree to Monte Carlo error, a fraction of one image's 0.005.
        assert ours[key] == pytest.approx([scipy.low, scipy.high], abs=0.01), key


def test_large_test_splits_are_resampled_in_chunks_with_the_same_result(monkeypatch):
    y_true, y_pred = noisy_predictions(500, 0.2)
    whole = bootstrap_ci95(y_true, y_pred, 3, 1000, seed=0)
    monkeypatch.setattr("imgcls.evaluate.significance.CHUNK_CELLS", 500 * 64)  # 16 chunks
    assert bootstrap_ci95(y_true, y_pred, 3, 1000, seed=0) == whole


def test_an_interval_prints_as_score_and_bounds_and_compares_by_the_score():
    assert str(Interval(0.97531, 0.95101, 0.99301)) == "0.975 [0.951, 0.993]"
    assert Interval(0.9, 0.8, 0.95) == Interval(0.9, 0.85, 0.93)
    assert max([Interval(0.8, 0.7, 0.99), Interval(0.9, 0.6, 0.95)]).value == 0.9
