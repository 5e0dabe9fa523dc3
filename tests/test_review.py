"""The report's verdict: the winner and its margin, the flags, and where models err."""

import csv

import numpy as np
import pytest

from imgcls.evaluate.curves import read_curve, write_curves
from imgcls.errors import ImgclsError
from imgcls.evaluate.scores import classification_scores
from imgcls.evaluate.review import error_overlap, errors_per_class, flags, pick_winner, resolution

CLASSES = ["cat", "dog", "owl"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])


def scores_of(predictions: dict[str, np.ndarray]) -> dict[str, dict]:
    return {name: {**classification_scores(Y_TRUE, y, CLASSES), "loss": 1.0 - i / 10} for i, (name, y) in enumerate(predictions.items())}


def test_the_winner_is_the_best_by_the_monitored_score_with_its_margin():
    scores = {"a": {"f1_macro": 0.7, "accuracy": 0.9, "loss": 0.5}, "b": {"f1_macro": 0.8, "accuracy": 0.8, "loss": 0.3}}
    by_f1 = pick_winner(scores, "val/f1_macro")
    assert (by_f1.winner, by_f1.runner_up) == ("b", "a")
    assert by_f1.sentence() == "b, test f1_macro 0.8000, ahead of a (0.7000) by 0.1000"
    assert pick_winner(scores, "val/acc").winner == "a"
    assert pick_winner(scores, "val/loss").winner == "b", "lower loss wins"
    tie = pick_winner({"a": {"f1_macro": 0.5}, "b": {"f1_macro": 0.5}}, "val/f1_macro")
    assert tie.winner == "a" and "tied with b" in tie.sentence()
    assert "the only model" in pick_winner({"a": {"f1_macro": 0.5}}, "val/f1_macro").sentence()


def test_flags_catch_chance_level_a_single_predicted_class_and_a_useless_ensemble():
    predictions = {
        "good": Y_TRUE.copy(),
        "collapsed": np.zeros_like(Y_TRUE),
        "ok": np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 0]),
    }
    predictions["ensemble"] = predictions["ok"]
    found = flags(predictions, scores_of(predictions), CLASSES, "ensemble", ["good", "ok"])
    assert any(f.startswith("collapsed: balanced accuracy 0.3333 is at or below chance (0.3333") for f in found), found
    assert "collapsed: predicts 'cat' for every test image" in found
    assert any(f.startswith("ensemble: macro-F1") and "below its best member good (1.0000)" in f for f in found), found
    assert not [f for f in found if f.startswith(("good", "ok"))]


def test_errors_per_class_and_their_overlap_between_models():
    a = np.array([1, 0, 0, 0, 1, 1, 1, 1, 2, 0])  # wrong: 0, 9
    b = np.array([1, 0, 0, 0, 0, 1, 1, 1, 2, 2])  # wrong: 0, 4
    assert errors_per_class(Y_TRUE, a, 3) == [1, 0, 1]
    assert error_overlap(Y_TRUE, {"a": a, "b": b}) == [
        {"model A": "a", "model B": "b", "both wrong": 1, "only A wrong": 1, "only B wrong": 1}
    ]


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
            write_tsv(tmp_path / name / "plots/metrics" / f"{metric}.tsv", metric.split("/")[-1], [0.5, 0.25] if name == "a" else [0.1])
    curves = {name: read_curve(tmp_path / name) for name in ("a", "b")}
    write_curves(tmp_path / "curves.csv", curves)
    rows = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert [(r["model"], r["epoch"], r["val_f1_macro"]) for r in rows] == [("a", "1", "0.5"), ("a", "2", "0.25"), ("b", "1", "0.1")]
    (tmp_path / "b/plots/metrics/val/acc.tsv").unlink()
    with pytest.raises(ImgclsError, match=r"val/acc.tsv: missing"):
        read_curve(tmp_path / "b")
