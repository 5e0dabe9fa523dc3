"""The training data path: whole splits held as uint8 tensors, batches drawn by index.

Per-sample random flips and crops are batched tensor operations, so there is no
per-image Python in the hot loop (the airbench approach). torchvision's v2
transforms on a batched tensor draw one set of parameters for the whole batch,
which is not per-sample augmentation; hence the hand-rolled ops below.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from imgcls.splits import PackedSplit

# ImageNet statistics: what torchvision's pretrained weights expect, and harmless for scratch nets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DeviceSplit:
    """A split on the training device: images (N, 3, H, W) uint8 in channels_last memory, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def to_device(split: PackedSplit, device: torch.device) -> DeviceSplit:
    # NHWC uint8 permuted to NCHW is already channels_last in memory: no copy on the CPU.
    images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2)
    return DeviceSplit(images.to(device), torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(device))


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)) -> Iterator[torch.Tensor]:
    """Yield index batches: shuffled when a generator is given, else in order.

    `shard=(rank, world)` keeps every world-th sample of the (shuffled) order, so each
    process of a distributed run sees a disjoint part of the same permutation, and with
    `batch_size` = global batch / world the ranks' i-th batches together are the global one.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    rank, world = shard
    # Every rank must run the same number of steps or DDP's all-reduce waits forever: drop the ragged tail.
    order = order[: len(order) - len(order) % world][rank::world]
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def training_batches(n: int, batch_size: int, generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)) -> list[torch.Tensor]:
    """`batch_indices` less a trailing batch of one sample, which train-mode BatchNorm cannot normalise.

    Under `shard` the rule applies to each rank's own batch (what its BatchNorm layers see);
    the ranks' batches have equal sizes, so they all drop it and still take the same steps.
    """
    batches = list(batch_indices(n, batch_size, generator, shard))
    return batches[:-1] if batches and len(batches[-1]) == 1 else batches


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) to float, scaled by the ImageNet mean and std, kept channels_last."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
    # In place on the fresh float copy: out-of-place arithmetic allocated two more batches and took 5x as long on CPU.
    return images.float().sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Shift each sample by up to `padding` px (edge pixels repeated: pad-and-crop without the pad)
    and, with `hflip`, mirror a random half of the batch left-right; every sample draws its own.

    One index_select of whole pixels picks every sample's window, mirrored or not, on any dtype,
    so it runs on the uint8 batch before normalising (a quarter of the bytes of a float batch).
    """
    if padding == 0 and not hflip:
        return images
    batch, channels, height, width = images.shape
    device = images.device
    rows = torch.arange(height, device=device).expand(batch, height)
    cols = torch.arange(width, device=device).expand(batch, width)
    if padding:
        offsets = torch.randint(-padding, padding + 1, (batch, 2), generator=generator, device=generator.device).to(device)
        rows = (rows + offsets[:, 0:1]).clamp(0, height - 1)
        cols = (cols + offsets[:, 1:2]).clamp(0, width - 1)
    if hflip:
        flip = torch.rand(batch, generator=generator, device=generator.device) < 0.5
        cols = torch.where(flip.to(device).view(batch, 1), cols.flip(1), cols)
    pixel = (torch.arange(batch, device=device).view(batch, 1, 1) * height + rows.view(batch, height, 1)) * width + cols.view(batch, 1, width)
    # Rows of the NHWC view are whole pixels; the result permuted back is channels_last.
    pixels = images.permute(0, 2, 3, 1).reshape(-1, channels)
    return pixels.index_select(0, pixel.view(-1)).view(batch, height, width, channels).permute(0, 3, 1, 2)


def random_rotate(images: torch.Tensor, max_degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each sample by its own angle in [-max_degrees, max_degrees], edges extended."""
    if max_degrees == 0:
        return images
    batch = images.shape[0]
    angles = (torch.rand(batch, generator=generator, device=generator.device) * 2 - 1) * math.radians(max_degrees)
    cos, sin = angles.cos(), angles.sin()
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1).to(images.device)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
