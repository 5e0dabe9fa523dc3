"""The report's verdict: the winner, its margin and p-value, the flags, the intervals, and where models err."""

import csv

import numpy as np
import pytest

from imgcls.core.errors import ImgclsError
from imgcls.evaluate.curves import read_curve, write_curves
from imgcls.evaluate.review import (
    ensemble_versus_best,
    error_overlap,
    errors_per_class,
    flags,
    interval_columns,
    interval_note,
    pick_winner,
    resolution,
)
from imgcls.evaluate.scores import classification_scores

CLASSES = ["cat", "dog", "owl"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])


def scores_of(predictions: dict[str, np.ndarray]) -> dict[str, dict]:
    return {
        name: {**classification_scores(Y_TRUE, y, CLASSES), "loss": 1.0 - i / 10}
        for i, (name, y) in enumerate(predictions.items())
    }


def test_the_winner_is_the_best_by_the_monitored_score_with_its_margin_and_p_value():
    scores = {
        "a": {"f1_macro": 0.7, "accuracy": 0.9, "loss": 0.5},
        "b": {"f1_macro": 0.8, "accuracy": 0.8, "loss": 0.3},
    }
    predictions = {"a": Y_TRUE.copy(), "b": Y_TRUE.copy()}
    predictions["a"][[0, 1]] = 2
    predictions["b"][2] = 2
    by_f1 = pick_winner(scores, "val/f1_macro", Y_TRUE, predictions)
    assert (by_f1.winner, by_f1.runner_up) == ("b", "a")
    assert (by_f1.paired.only_a, by_f1.paired.only_b) == (1, 2), "only the winner wrong, only the runner-up wrong"
    assert by_f1.sentence() == (
        "b, test f1_macro 0.8000, ahead of a (0.7000) by 0.1000, not significant at 0.05 (exact McNemar p = 1.000): "
        "not distinguishable from a on these 10 images"
    )
    assert pick_winner(scores, "val/acc", Y_TRUE, predictions).winner == "a"
    assert pick_winner(scores, "val/loss", Y_TRUE, predictions).winner == "b", "lower loss wins"
    tie = pick_winner({"a": {"f1_macro": 0.5}, "b": {"f1_macro": 0.5}}, "val/f1_macro", Y_TRUE, predictions)
    assert tie.winner == "a" and "tied with b" in tie.sentence() and "p = 1.000" in tie.sentence()
    only = pick_winner({"a": {"f1_macro": 0.5}}, "val/f1_macro", Y_TRUE, {"a": Y_TRUE})
    assert "the only model" in only.sentence() and "McNemar" not in only.sentence()


def test_a_margin_of_ten_images_against_none_is_significant():
    y_true = np.zeros(40, dtype=np.int64)
    runner_up = y_true.copy()
    runner_up[:10] = 1
    verdict = pick_winner(
        {"a": {"f1_macro": 0.6}, "b": {"f1_macro": 1.0}}, "val/f1_macro", y_true, {"a": runner_up, "b": y_true}
    )
    # Ten discordant images all one way: 2 / 2**10.
    assert verdict.sentence().endswith(", significant at 0.05 on these 40 images (exact McNemar p = 0.002)")


def test_the_ensemble_is_tested_against_its_best_member():
    predictions = {"good": Y_TRUE.copy(), "ok": np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 0])}
    predictions["ensemble"] = predictions["ok"]
    scores = scores_of(predictions)
    line = ensemble_versus_best(Y_TRUE, predictions, scores, "ensemble", ["good", "ok"])
    assert line.startswith(f"ensemble test f1_macro {scores['ensemble']['f1_macro']:.4f}, good 1.0000 (-")
    assert line.endswith(
        "not significant at 0.05 (exact McNemar p = 0.500): not distinguishable from good on these 10 images"
    )
    no_rows = {**predictions, "ensemble": np.array([], int)}
    assert ensemble_versus_best(Y_TRUE, no_rows, scores, "ensemble", ["good", "ok"]) is None


def test_flags_catch_chance_level_a_single_predicted_class_and_a_useless_ensemble():
    predictions = {
        "good": Y_TRUE.copy(),
        "collapsed": np.zeros_like(Y_TRUE),
        "ok": np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 0]),
    }
    predictions["ensemble"] = predictions["ok"]
    found = flags(predictions, scores_of(predictions), CLASSES, "ensemble", ["good", "ok"])
    chance = "collapsed: macro recall (balanced accuracy) 0.3333 is at or below chance (0.3333"
    assert any(f.startswith(chance) for f in found), found
    assert "collapsed: predicts 'cat' for every test image" in found
    assert any(f.startswith("ensemble: macro-F1") and "below its best member good (1.0000)" in f for f in found), found
    assert not [f for f in found if f.startswith(("good", "ok"))]


def test_errors_per_class_and_their_overlap_between_models():
    a = np.array([1, 0, 0, 0, 1, 1, 1, 1, 2, 0])  # wrong: 0, 9
    b = np.array([1, 0, 0, 0, 0, 1, 1, 1, 2, 2])  # wrong: 0, 4
    assert errors_per_class(Y_TRUE, a, 3) == [1, 0, 1]
    c = Y_TRUE.copy()
    overlap = error_overlap(Y_TRUE, {"a": a, "b": b, "c": c})
    assert [(r["model A"], r["model B"], r["both wrong"], r["only A wrong"], r["only B wrong"]) for r in overlap] == [
        ("a", "b", 1, 1, 1),
        ("a", "c", 0, 2, 0),
        ("b", "c", 0, 2, 0),
    ]
    # One-one is an even split; two-none is what a fair coin gives half the time, either way round.
    assert [r["exact McNemar"] for r in overlap] == ["p = 1.000", "p = 0.500", "p = 0.500"]


def test_score_cells_carry_their_intervals_and_say_how_they_were_drawn():
    scores = {
        "accuracy": 0.9,
        "accuracy_ci95": [0.8, 1.0],
        "f1_macro": 0.85,
        "f1_macro_ci95": [0.7, 0.95],
        "ci95_resamples": 1000,
        "ci95_seed": 3,
    }
    cells = interval_columns(scores)
    assert {k: str(v) for k, v in cells.items()} == {
        "accuracy [95% interval]": "0.900 [0.800, 1.000]",
        "f1_macro [95% interval]": "0.850 [0.700, 0.950]",
    }
    assert interval_note(Y_TRUE, scores) == (
        "95% intervals: percentile bootstrap over the 10 test images (1000 resamples, evaluate.bootstrap_seed 3); "
        "a difference of one point of accuracy is 0.10 test images."
    )


def test_resolution_names_the_scarcest_class_and_what_one_image_is_worth():
    text = resolution(Y_TRUE, CLASSES)
    assert "one test image is 10.00 points of accuracy" in text
    assert "the scarcest class, 'owl', has 2 test images, so one of them is 50.00 points of its recall" in text


def write_tsv(path, metric: str, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"step\t{metric}\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values, start=1)))


def test_curves_gather_every_model_in_long_format(tmp_path):
    for name in ("a", "b"):
        for metric in ("train/loss", "val/loss", "train/acc", "val/acc", "val/f1_macro"):
            write_tsv(
                tmp_path / name / "plots/metrics" / f"{metric}.tsv",
                metric.split("/")[-1],
                [0.5, 0.25] if name == "a" else [0.1],
            )
    curves = {name: read_curve(tmp_path / name) for name in ("a", "b")}
    write_curves(tmp_path / "curves.csv", curves)
    rows = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert [(r["model"], r["epoch"], r["val_f1_macro"]) for r in rows] == [
        ("a", "1", "0.5"),
        ("a", "2", "0.25"),
        ("b", "1", "0.1"),
    ]
    (tmp_path / "b/plots/metrics/val/acc.tsv").unlink()
    with pytest.raises(ImgclsError, match=r"val/acc.tsv: missing"):
        read_curve(tmp_path / "b")
