"""Training images/s: the project's in-memory data path against the model step alone, and against the course notebook.

project: `imgcls.train.loop.train_one_epoch`, the train stage's loop, on the images held as one
uint8 tensor in channels_last memory: a chunk of batches (about 2**19 pixels) gathered, cropped
and flipped by one index_select, then normalised (`imgcls.train.batches`); the model channels_last, Adam
(lr 1e-3), batch 64, crop padding 2, flips on.
ceiling: the same model, batch size, memory format, optimizer and initial weights taking
forward, backward and Adam steps alone on the very batches the project's epoch trains on,
normalised beforehand by the project's own data functions (net1, without dropout, ends with
the project's weights bit for bit): the speed no data path can pass.

For each case (net1 and cnn at 64 and 32 px unless --models/--sizes pick others) the two
alternate epoch by epoch, `--pairs` pairs of equal epochs, so a burst of load from another
process slows both alike. Printed per case: each path's images/s (all images over all
seconds) and its ceiling share, project images/s over ceiling images/s: the median over the
pairs of each pair's own ratio (the spread of the pairs beside it), since on a shared machine
a pair that a burst hit only half of says nothing. Then one more project epoch under
torch.profiler, broken down per batch into `train_one_epoch`'s ranges (index draw, crop/flip
gather, rotation, normalise, forward, backward, optimizer, bookkeeping; "other" is the
loop and progress bar, and profiling itself adds a few us per op to the profiled total).

Last, the notebook baseline on the first case: one PNG per image on disk, a
Dataset that opens each with PIL and runs torchvision's RandomCrop(padding=2),
RandomHorizontalFlip, ToTensor and Normalize per image, a DataLoader(batch_size=64,
shuffle=True, num_workers=2) and a float32 model in default memory format, its epochs
alternating with the project's after a warm-up. The last two lines are `ratio:`, the
project's speed over the baseline's, and `ceiling share:`, the lowest over the cases.

`--kernels` measures `train.cpu_kernels` instead: for each model at the first size, project
epochs under portable (AVX2) and native kernels. The kernels are fixed once per process, so each
kind trains in a process of its own, the kinds alternating over `--rounds` rounds; printed per
model are each kind's median images/s and the cost of portable, native images/s over portable's.

    python benchmarks/train_throughput.py [--models net1 cnn] [--sizes 64 32] [--pairs N] [--images 4096] [--epochs 2]
    python benchmarks/train_throughput.py --kernels [--models net1 cnn resnet18] [--sizes 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scratch import scratch_dir  # benchmarks/ is on sys.path when a script there runs
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from imgcls import CPU_KERNELS
from imgcls.core.params import TrainParams
from imgcls.core.reproducible import use_cpu_kernels
from imgcls.data.packed import PackedSplit
from imgcls.models.names import MODEL_NAMES
from imgcls.models.registry import build_model
from imgcls.train.batches import DeviceSplit, random_crop_flip, standardize, to_device, training_batches
from imgcls.train.loop import epoch_generator, train_one_epoch

CLASSES = 10
BATCH = 64
TRAIN = TrainParams(batch_size=BATCH, crop_padding=2, hflip=True)
# Enough batches to build the kernels' caches and start the workers once; a full epoch would only cost time.
WARMUP_BATCHES = 8
# (batches per epoch, pairs of epochs) for each model: about half a second of net1 and one and a half of cnn
# at 64 px on 2 cores. Short epochs make many pairs, and a median over many pairs shrugs off bursts of load.
PAIRING = {"net1": (16, 31), "cnn": (2, 15)}
OTHER_PAIRING = (8, 9)
KERNEL_KINDS = ("portable", "native")
KERNEL_EPOCHS = 3
PHASES = ("index draw", "crop/flip gather", "rotation", "normalise", "forward", "backward", "optimizer", "bookkeeping")


@dataclass(frozen=True)
class Case:
    """One row of the comparison: what the project trained against its ceiling, and how each batch's time split."""

    model: str
    size: int
    project_per_s: float
    ceiling_per_s: float
    shares: list[float]
    breakdown_ms: dict[str, float]

    @property
    def name(self) -> str:
        return f"{self.model}@{self.size}"

    @property
    def share(self) -> float:
        return statistics.median(self.shares)


def make_images(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, size, size, 3) uint8 RGB and (count,) int64 labels: a per-class colour ramp under noise.

    Structured rather than pure noise so PNG compression, and so decoding, costs what it does on real images.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    colours = rng.uniform(40, 215, (CLASSES, 3)).astype(np.float32)
    base = colours[labels][:, None, None, :] * (0.6 + 0.4 * ramp[None, :, None, None] * ramp[None, None, :, None])
    noise = rng.normal(0, 12, (count, size, size, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)


def in_memory(images: np.ndarray, labels: np.ndarray) -> DeviceSplit:
    return to_device(PackedSplit(images, labels, np.arange(len(labels))), torch.device("cpu"))


def fresh_model(name: str, size: int, channels_last: bool = True) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Identical initial weights for every path; channels_last as the train stage puts them."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=CLASSES, image_size=size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def project_epoch(model: nn.Module, data: DeviceSplit, optimizer: torch.optim.Optimizer, epoch: int) -> float:
    """Seconds of one `train_one_epoch`, the train stage's own loop."""
    return train_one_epoch(
        model, data, optimizer, nn.CrossEntropyLoss(), TRAIN, epoch_generator(0, epoch), torch.device("cpu")
    )["seconds"]


def ready_batches(data: DeviceSplit, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The very batches `project_epoch(..., epoch)` trains on, normalised ahead of time for the ceiling.

    Drawn by the project's own functions from the same generator, so both models see the same data and
    anything that depends on the values (a loss near zero, denormals) slows both alike.
    """
    generator = epoch_generator(0, epoch)
    batches = training_batches(len(data), BATCH, generator)
    return [
        (
            standardize(
                random_crop_flip(data.images[index], TRAIN.crop_padding, TRAIN.hflip, generator),
                TRAIN.normalize_mean,
                TRAIN.normalize_std,
            ),
            data.labels[index],
        )
        for index in batches
    ]


def ceiling_epoch(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer
) -> float:
    """Seconds of forward, backward and Adam steps on ready batches: no data path at all."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()
    return time.perf_counter() - start


def profiled_breakdown(model: nn.Module, data: DeviceSplit, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Milliseconds per batch in each of `train_one_epoch`'s profiler ranges over one epoch.

    Plus "other" and "total".
    """
    batches = len(data) // BATCH
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        seconds = project_epoch(model, data, optimizer, epoch=0)
    inclusive_us = {event.key: event.cpu_time_total for event in profile.key_averages() if event.key in PHASES}
    breakdown = {phase: inclusive_us.get(phase, 0.0) / 1000 / batches for phase in PHASES}
    total = seconds * 1000 / batches
    return breakdown | {"other": total - sum(breakdown.values()), "total": total}


def measure_case(name: str, size: int, pairs: int | None) -> Case:
    """The project against its ceiling on one model and image size, epochs alternating, then one profiled epoch."""
    batches, default_pairs = PAIRING.get(name, OTHER_PAIRING)
    pairs = pairs or default_pairs
    data = in_memory(*make_images(batches * BATCH, size, seed=0))
    project, project_optimizer = fresh_model(name, size)
    ceiling, ceiling_optimizer = fresh_model(name, size)
    warmup = DeviceSplit(data.images[: 2 * BATCH], data.labels[: 2 * BATCH])
    project_epoch(project, warmup, project_optimizer, epoch=0)
    ceiling_epoch(ceiling, ready_batches(warmup, epoch=0), ceiling_optimizer)
    project_seconds, ceiling_seconds = [], []
    for epoch in range(1, pairs + 1):
        ready = ready_batches(data, epoch)
        # Each path goes first in every other pair, so load that rises or falls within a pair favours neither.
        if epoch % 2:
            project_seconds.append(project_epoch(project, data, project_optimizer, epoch))
        ceiling_seconds.append(ceiling_epoch(ceiling, ready, ceiling_optimizer))
        if not epoch % 2:
            project_seconds.append(project_epoch(project, data, project_optimizer, epoch))
    breakdown = profiled_breakdown(project, data, project_optimizer)
    steps = pairs * batches
    breakdown |= {
        "project, timed": sum(project_seconds) * 1000 / steps,
        "model step alone, timed": sum(ceiling_seconds) * 1000 / steps,
    }
    return Case(
        name,
        size,
        project_per_s=len(data) * pairs / sum(project_seconds),
        ceiling_per_s=len(data) * pairs / sum(ceiling_seconds),
        shares=[c / p for p, c in zip(project_seconds, ceiling_seconds)],
        breakdown_ms=breakdown,
    )


class PngFolder(Dataset):
    """The notebook way: one file per image, decoded and augmented one at a time."""

    def __init__(self, paths: list[Path], labels: np.ndarray, transform: transforms.Compose) -> None:
        self.paths = paths
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


def baseline_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, criterion: nn.Module
) -> float:
    """One epoch of the textbook loop, in seconds, worker start-up included as a notebook pays it."""
    model.train()
    start = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def notebook_loader(images: np.ndarray, labels: np.ndarray, folder: Path) -> DataLoader:
    """Write the images as PNGs into `folder` and load them back the notebook way."""
    paths = []
    for index, pixels in enumerate(images):
        path = folder / f"{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    transform = transforms.Compose(
        [
            transforms.RandomCrop(images.shape[1], padding=2),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(TRAIN.normalize_mean, TRAIN.normalize_std),
        ]
    )
    return DataLoader(PngFolder(paths, labels, transform), batch_size=BATCH, shuffle=True, num_workers=2)


def compare_baseline(name: str, size: int, count: int, folder: Path, epochs: int) -> tuple[float, float]:
    """(baseline, project) images/s over `epochs` full epochs each, the two paths' epochs alternating."""
    images, labels = make_images(count, size, seed=0)
    loader = notebook_loader(images, labels, folder)
    warmup_loader = DataLoader(
        Subset(loader.dataset, range(WARMUP_BATCHES * BATCH)), batch_size=BATCH, shuffle=True, num_workers=2
    )
    baseline, baseline_optimizer = fresh_model(name, size, channels_last=False)
    data = in_memory(images, labels)
    warmup = DeviceSplit(data.images[: WARMUP_BATCHES * BATCH], data.labels[: WARMUP_BATCHES * BATCH])
    project, project_optimizer = fresh_model(name, size)

    criterion = nn.CrossEntropyLoss()
    baseline_epoch(baseline, warmup_loader, baseline_optimizer, criterion)
    project_epoch(project, warmup, project_optimizer, epoch=0)
    baseline_seconds = project_seconds = 0.0
    for epoch in range(1, epochs + 1):
        baseline_seconds += baseline_epoch(baseline, loader, baseline_optimizer, criterion)
        project_seconds += project_epoch(project, data, project_optimizer, epoch)
    return count * epochs / baseline_seconds, count * epochs / project_seconds


def print_breakdown(cases: list[Case]) -> None:
    rows = [*PHASES, "other", "total", "project, timed", "model step alone, timed"]
    width = max(map(len, rows)) + 2
    print(
        f"\nper batch, ms ({', '.join(PHASES[:4])}: the data path; "
        "one profiled project epoch, then the timed epochs' means)"
    )
    print(" " * width + "".join(f"{case.name:>11}" for case in cases))
    for row in rows:
        print(f"{row:<{width}}" + "".join(f"{case.breakdown_ms[row]:>11.3f}" for case in cases))
    print()


def print_load(when: str) -> None:
    """Other processes' load skews every figure here, the data path's many short parallel ops the most.

    Say how much there was.
    """
    print(
        f"load average {when}: " + " ".join(f"{load:.2f}" for load in os.getloadavg()) + " (1, 5, 15 min)", flush=True
    )


def kernel_speed(name: str, size: int) -> float:
    """Project images/s of `name` over KERNEL_EPOCHS epochs after a warm-up, under this process's kernels."""
    batches, _ = PAIRING.get(name, OTHER_PAIRING)
    data = in_memory(*make_images(batches * BATCH, size, seed=0))
    model, optimizer = fresh_model(name, size)
    project_epoch(model, DeviceSplit(data.images[: 2 * BATCH], data.labels[: 2 * BATCH]), optimizer, epoch=0)
    seconds = sum(project_epoch(model, data, optimizer, epoch) for epoch in range(1, KERNEL_EPOCHS + 1))
    return len(data) * KERNEL_EPOCHS / seconds


def kernel_child(kind: str, models: list[str], size: int) -> None:
    """One process of one kernel kind: prints a JSON line of the kernels torch ran and each model's images/s."""
    use_cpu_kernels(kind)  # before this process's first torch operation
    speeds = {name: kernel_speed(name, size) for name in models}
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "images_per_s": speeds}))


def compare_kernels(models: list[str], size: int, rounds: int) -> None:
    """Each kernel kind in processes of its own, alternating which goes first; median images/s and the cost ratio."""
    speeds: dict[str, dict[str, list[float]]] = {kind: {name: [] for name in models} for kind in KERNEL_KINDS}
    capability = {}
    for round_ in range(rounds):
        for kind in KERNEL_KINDS if round_ % 2 == 0 else KERNEL_KINDS[::-1]:
            command = [sys.executable, __file__, "--kernel-child", kind, "--models", *models, "--sizes", str(size)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            result = json.loads(output.splitlines()[-1])
            capability[kind] = result["capability"]
            for name, per_s in result["images_per_s"].items():
                speeds[kind][name].append(per_s)
    print(
        f"kernels: portable runs {capability['portable']}, native runs {capability['native']} "
        f"({rounds} rounds, {KERNEL_EPOCHS} epochs per process; median images/s)"
    )
    for name in models:
        portable, native = (statistics.median(speeds[kind][name]) for kind in KERNEL_KINDS)
        cost = native / portable
        print(
            f"{name}@{size}: portable {portable:.0f} img/s, native {native:.0f} img/s, cost of portable {cost:.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=["net1", "cnn"], choices=MODEL_NAMES, metavar="MODEL", help="models to measure"
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 32], help="image sides in px")
    parser.add_argument(
        "--pairs", type=int, help="project/ceiling epoch pairs per case (default: 31 for net1, 15 for cnn)"
    )
    parser.add_argument(
        "--images", type=int, default=4096, help="images for the baseline comparison (first model, first size)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="timed full epochs per path in the baseline comparison")
    parser.add_argument("--kernels", action="store_true", help="compare train.cpu_kernels portable and native instead")
    parser.add_argument("--rounds", type=int, default=3, help="--kernels: processes per kind")
    parser.add_argument("--kernel-child", choices=KERNEL_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.kernel_child:
        kernel_child(args.kernel_child, args.models, args.sizes[0])
    elif args.kernels:
        print_load("at the start")
        compare_kernels(args.models, args.sizes[0], args.rounds)
        print_load("at the end")
    else:
        compare_paths(parser, args)


def compare_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The project against its ceiling per case, the per-batch breakdown, then against the notebook baseline."""
    if args.images < WARMUP_BATCHES * BATCH:
        parser.error(f"--images must be at least {WARMUP_BATCHES * BATCH} (the warm-up's share), got {args.images}")
    if args.pairs is not None and args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, kernels {CPU_KERNELS}")
    print(f"batch {BATCH}, Adam lr 1e-3, crop padding 2, flips")
    print_load("at the start")
    cases = []
    for name, size in itertools.product(args.models, args.sizes):
        case = measure_case(name, size, args.pairs)
        spread = f"{min(case.shares):.2f}..{max(case.shares):.2f}"
        print(
            f"{case.name}: project images/s {case.project_per_s:.0f}, "
            f"model step alone images/s {case.ceiling_per_s:.0f}, "
            f"ceiling share {case.share:.3f} ({len(case.shares)} pairs: {spread})",
            flush=True,
        )
        cases.append(case)
    print_breakdown(cases)

    name, size = args.models[0], args.sizes[0]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        baseline, project = compare_baseline(name, size, args.images, Path(tmp), args.epochs)
    print(
        f"baseline images/s ({name}@{size}, {args.images} images, {args.epochs} timed epochs per path): {baseline:.0f}"
    )
    print(f"project images/s: {project:.0f}")
    print_load("at the end")
    print(f"ratio: {project / baseline:.2f}")
    print(f"ceiling share: {min(case.share for case in cases):.2f}")


if __name__ == "__main__":
    main()
