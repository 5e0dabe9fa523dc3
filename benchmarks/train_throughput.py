"""Training images/s: the course-notebook data path against the project's in-memory one.

(a) baseline: one PNG per image on disk, a Dataset that opens each with PIL and runs
torchvision's RandomCrop(64, padding=2), RandomHorizontalFlip, ToTensor and Normalize
per image, a DataLoader(batch_size=64, shuffle=True, num_workers=2) and a float32
model in default memory format.
(b) project: the same images as one uint8 array in memory, batches cropped, flipped and
normalised as tensor ops by `imgcls.training.train_one_epoch`, the model channels_last.

Both train net1 with Adam (lr 1e-3) from the same initial weights on the same images,
after an 8-batch warm-up, their epochs alternating; each figure is all timed images
over all timed seconds. Also printed: the model step alone on a ready batch, the
ceiling no data path can pass. The last line is the project's speed over the baseline's.

    python benchmarks/train_throughput.py [--images 4096] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from imgcls.data import MEAN, STD, DeviceSplit, normalize, to_device
from imgcls.models import build_model
from imgcls.params import TrainParams
from imgcls.splits import PackedSplit
from imgcls.training import epoch_generator, train_one_epoch

from scratch import scratch_dir  # benchmarks/ is on sys.path when a script there runs

SIZE = 64
CLASSES = 10
BATCH = 64
# Enough batches to build the kernels' caches and start the workers once; a full epoch would only cost time.
WARMUP_IMAGES = 8 * BATCH


def make_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, SIZE, SIZE, 3) uint8 RGB and (count,) int64 labels: a per-class colour ramp under noise.

    Structured rather than pure noise so PNG compression, and so decoding, costs what it does on real images.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    colours = rng.uniform(40, 215, (CLASSES, 3)).astype(np.float32)
    base = colours[labels][:, None, None, :] * (0.6 + 0.4 * ramp[None, :, None, None] * ramp[None, None, :, None])
    noise = rng.normal(0, 12, (count, SIZE, SIZE, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)


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


def fresh_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)  # identical initial weights for every path
    model = build_model("net1", num_classes=CLASSES, image_size=SIZE)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def baseline_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, criterion: nn.Module) -> float:
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
    transform = transforms.Compose([
        transforms.RandomCrop(SIZE, padding=2),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    return DataLoader(PngFolder(paths, labels, transform), batch_size=BATCH, shuffle=True, num_workers=2)


def compare(images: np.ndarray, labels: np.ndarray, folder: Path, epochs: int) -> tuple[float, float]:
    """(baseline, project) images/s over `epochs` full epochs each.

    The two paths' epochs alternate, so a burst of load from another process slows both alike.
    """
    loader = notebook_loader(images, labels, folder)
    warmup_loader = DataLoader(Subset(loader.dataset, range(WARMUP_IMAGES)), batch_size=BATCH, shuffle=True, num_workers=2)
    baseline_model, baseline_optimizer = fresh_model()

    device = torch.device("cpu")
    data = to_device(PackedSplit(images, labels, np.arange(len(labels))), device)
    warmup_data = DeviceSplit(data.images[:WARMUP_IMAGES], data.labels[:WARMUP_IMAGES])
    train = TrainParams(batch_size=BATCH, crop_padding=2, hflip=True, epochs=epochs)
    model, optimizer = fresh_model()
    model = model.to(device, memory_format=torch.channels_last)  # as the train stage does

    criterion = nn.CrossEntropyLoss()
    baseline_epoch(baseline_model, warmup_loader, baseline_optimizer, criterion)
    train_one_epoch(model, warmup_data, optimizer, criterion, train, epoch_generator(0, 0), device)
    baseline_seconds = project_seconds = 0.0
    for epoch in range(1, epochs + 1):
        baseline_seconds += baseline_epoch(baseline_model, loader, baseline_optimizer, criterion)
        project_seconds += train_one_epoch(model, data, optimizer, criterion, train, epoch_generator(0, epoch), device)["seconds"]
    return len(data) * epochs / baseline_seconds, len(data) * epochs / project_seconds


def model_step_ceiling(images: np.ndarray, labels: np.ndarray, steps: int = 20, rounds: int = 3) -> float:
    """Images/s of forward, backward and Adam alone on one ready channels_last batch: no data path can beat it.

    The best of `rounds`, since a ceiling measured during a burst of load from elsewhere would be no ceiling.
    """
    model, optimizer = fresh_model()
    model = model.to(memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss()
    batch = normalize(torch.from_numpy(images[:BATCH]).permute(0, 3, 1, 2))
    targets = torch.from_numpy(labels[:BATCH])

    def step() -> None:
        optimizer.zero_grad()
        criterion(model(batch), targets).backward()
        optimizer.step()

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - start)
    return steps * BATCH / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="training images, 64x64 RGB in 10 classes")
    parser.add_argument("--epochs", type=int, default=2, help="timed full epochs per path")
    args = parser.parse_args()
    if args.images < WARMUP_IMAGES:
        parser.error(f"--images must be at least {WARMUP_IMAGES} (the warm-up's share), got {args.images}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"{args.images} images 64x64, batch {BATCH}, net1, Adam lr 1e-3, {args.epochs} timed epochs per path")
    images, labels = make_images(args.images, seed=0)
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        a, b = compare(images, labels, Path(tmp), args.epochs)
    print(f"baseline images/s: {a:.0f}")
    print(f"project images/s: {b:.0f}")
    print(f"model step alone images/s: {model_step_ceiling(images, labels):.0f}")
    print(f"ratio: {b / a:.2f}")


if __name__ == "__main__":
    main()
