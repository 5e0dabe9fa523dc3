"""Every model's per-epoch curves side by side: one CSV for `dvc plots`, two figures for the report.

The train stage logs each epoch with dvclive (`<live>/plots/metrics/<name>.tsv`), and with
`train.log_every_steps` every n-th step's loss (`<live>/steps.csv`); this module gathers those
files across models, so a chart can overlay the models or set train beside val.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from imgcls.core.errors import ImgclsError
from imgcls.figures import plt, save_figure
from imgcls.manifest import read_csv, write_csv

# dvclive metric name -> curves.csv column, in the order the columns are written.
SERIES = {
    "train/loss": "train_loss",
    "val/loss": "val_loss",
    "train/acc": "train_acc",
    "val/acc": "val_acc",
    "val/f1_macro": "val_f1_macro",
}
CURVE_COLUMNS = ("model", "epoch", *SERIES.values())

Curve = list[dict[str, float]]  # one row per epoch: {"epoch": 1, "train_loss": ..., ...}

# The train stage's steps.csv, as imgcls.train.loop.STEP_COLUMNS writes it; not imported from there, since
# that module brings torch and scikit-learn to a stage that only reads a CSV.
STEP_COLUMNS = ("step", "epoch", "loss")


def read_curve(live_dir: Path) -> Curve:
    """One model's epochs from its dvclive folder, every series present for every epoch."""
    by_epoch: dict[int, dict[str, float]] = {}
    for metric, column in SERIES.items():
        path = live_dir / "plots" / "metrics" / f"{metric}.tsv"
        if not path.is_file():
            raise ImgclsError(f"{path}: missing; the train stage logs {metric} there every epoch")
        with open(path, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                by_epoch.setdefault(int(row["step"]), {})[column] = float(row[metric.split("/")[-1]])
    incomplete = [epoch for epoch, row in by_epoch.items() if len(row) != len(SERIES)]
    if incomplete:
        raise ImgclsError(f"{live_dir}: epochs {incomplete} lack some of {list(SERIES)}; rerun the train stage")
    return [{"epoch": epoch, **by_epoch[epoch]} for epoch in sorted(by_epoch)]


def write_curves(path: Path, curves: Mapping[str, Curve]) -> None:
    """Long format, a row per model and epoch: what the `.dvc/plots` templates colour by model."""
    write_csv(path, [{"model": name, **row} for name, curve in curves.items() for row in curve], CURVE_COLUMNS)


def write_steps(path: Path, live_dirs: Mapping[str, Path]) -> None:
    """Every model's logged step losses in long format, a row per model and step, for the overlaid `dvc plots` chart."""
    rows = []
    for name, live_dir in live_dirs.items():
        source = live_dir / "steps.csv"
        rows += [{"model": name, **row} for row in read_csv(source, STEP_COLUMNS)]
    write_csv(path, rows, ("model", *STEP_COLUMNS))


def train_val_figure(path: Path, curves: Mapping[str, Curve]) -> None:
    """A row per model: loss, then accuracy, each with its train and val curve."""
    fig, axes = plt.subplots(len(curves), 2, figsize=(8, 2.2 * len(curves)), squeeze=False)
    for (name, curve), (loss_ax, acc_ax) in zip(curves.items(), axes):
        epochs = [row["epoch"] for row in curve]
        for ax, measure in ((loss_ax, "loss"), (acc_ax, "acc")):
            for split in ("train", "val"):
                ax.plot(epochs, [row[f"{split}_{measure}"] for row in curve], marker=".", label=split)
            ax.set_title(f"{name}: {'loss' if measure == 'loss' else 'accuracy'}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def overlay_figure(path: Path, curves: Mapping[str, Curve], column: str, label: str) -> None:
    """One series of every model on one axis, legend = model names."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, curve in curves.items():
        ax.plot([row["epoch"] for row in curve], [row[column] for row in curve], marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.set_title(f"{label} by epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
