"""The training data path: whole splits held as uint8 tensors, batches drawn by index.

Per-sample random flips and crops are batched tensor operations, so there is no
per-image Python in the hot loop (the airbench approach). torchvision's v2
transforms on a batched tensor draw one set of parameters for the whole batch,
which is not per-sample augmentation; hence the hand-rolled ops below.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from imgcls.data.packed import PackedSplit

Channels = tuple[float, float, float]  # one value per RGB channel, on the 0-1 pixel scale


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


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)
) -> Iterator[torch.Tensor]:
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


def training_batches(
    n: int, batch_size: int, generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)
) -> list[torch.Tensor]:
    """`batch_indices` less a trailing batch of one sample, which train-mode BatchNorm cannot normalise.

    Under `shard` the rule applies to each rank's own batch (what its BatchNorm layers see);
    the ranks' batches have equal sizes, so they all drop it and still take the same steps.
    """
    batches = list(batch_indices(n, batch_size, generator, shard))
    return batches[:-1] if batches and len(batches[-1]) == 1 else batches


@functools.lru_cache(maxsize=16)
def _mean_std_images(
    mean: Channels, std: Channels, height: int, width: int, channels_last: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std times 255 as whole (1, 3, H, W) float images, laid out like the batch they scale.

    Broadcast from (1, 3, 1, 1) over a channels_last batch, the innermost loop is three floats
    long and sub_/div_ run unvectorised; against whole images it is the full H*W*3 row (7x faster
    on CPU). Each element is still (x - mean) / std in float32, whatever the layout. Built once per
    shape, not once per batch.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    shape = (1, 3, height, width)

    def whole_image(values: Channels) -> torch.Tensor:
        return (
            (torch.tensor(values, device=device).view(1, 3, 1, 1) * 255)
            .expand(shape)
            .contiguous(memory_format=memory_format)
        )

    return whole_image(mean), whole_image(std)


def standardize(images: torch.Tensor, mean: Channels, std: Channels) -> torch.Tensor:
    """uint8 (B, 3, H, W) to float (x / 255 - mean) / std per channel, kept channels_last.

    `mean` and `std` are `train.normalize_mean` / `normalize_std`: training, evaluation and
    prediction must all pass the model's own, or it sees inputs it was never trained on.
    """
    floats = images.float()
    channels_last = floats.is_contiguous(memory_format=torch.channels_last) and not floats.is_contiguous()
    mean_image, std_image = _mean_std_images(
        tuple(mean), tuple(std), floats.shape[2], floats.shape[3], channels_last, floats.device
    )
    # In place on the fresh float copy: out-of-place arithmetic allocated two more batches and took 5x as long on CPU.
    return floats.sub_(mean_image).div_(std_image).contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=16)
def _positions(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row indices, column indices and the columns mirrored, built once per image size rather than per batch."""
    return (
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        torch.arange(width - 1, -1, -1, device=device),
    )


def crop_flip_draws(
    batch: int, padding: int, hflip: bool, generator: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Each sample's (row, column) shift in [-padding, padding], (B, 2), and whether it is mirrored, (B,) bool.

    None for an augmentation that is off, which draws nothing. On the generator's device.
    """
    offsets = (
        torch.randint(-padding, padding + 1, (batch, 2), generator=generator, device=generator.device)
        if padding
        else None
    )
    flips = torch.rand(batch, generator=generator, device=generator.device) < 0.5 if hflip else None
    return offsets, flips


def crop_flip(
    images: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Shift each sample by its offsets (edge pixels repeated: pad-and-crop without the pad) and mirror
    the flipped ones left-right, as `crop_flip_draws` drew them.

    One index_select of whole pixels picks every sample's window, mirrored or not, on any dtype,
    so it runs on the uint8 batch before normalising (a quarter of the bytes of a float batch).
    With `index` the batch is `images[index]`, picked by that same index_select straight from a
    channels_last split: one copy of the batch instead of two.
    """
    if index is not None and not images.is_contiguous(memory_format=torch.channels_last):
        images, index = images[index], None  # without an NHWC view of the split, gather the batch first
    if offsets is None and flips is None:
        # Whole images are contiguous NHWC blocks: index_select copies them 6x faster than images[index].
        return images if index is None else images.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
    channels, height, width = images.shape[1:]
    batch = images.shape[0] if index is None else len(index)
    device = images.device
    rows, cols, mirrored = _positions(height, width, device)
    if flips is not None:
        cols = torch.where(flips.to(device).view(batch, 1), mirrored, cols)
    if offsets is not None:
        # Clamping after mirroring picks the same columns as mirroring a clamped window: it is symmetric.
        offsets = offsets.to(device)
        rows = (rows + offsets[:, 0:1]).clamp_(0, height - 1)
        cols = (cols + offsets[:, 1:2]).clamp_(0, width - 1)
    samples = torch.arange(batch, device=device) if index is None else index
    row_starts = torch.add((samples * (height * width)).view(batch, 1), rows, alpha=width)
    pixel = row_starts.view(batch, height, 1) + cols.view(batch, 1, width)
    # Rows of the NHWC view are whole pixels; the result permuted back is channels_last.
    pixels = images.permute(0, 2, 3, 1).reshape(-1, channels)
    return pixels.index_select(0, pixel.view(-1)).view(batch, height, width, channels).permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Shift each sample by up to `padding` px and, with `hflip`, mirror a random half of the batch
    left-right; every sample draws its own (`crop_flip_draws` then `crop_flip`)."""
    return crop_flip(images, *crop_flip_draws(images.shape[0], padding, hflip, generator))


def rotation_angles(batch: int, max_degrees: float, generator: torch.Generator) -> torch.Tensor | None:
    """Each sample's angle in radians, uniform in [-max_degrees, max_degrees]; None, drawing nothing, at 0."""
    if max_degrees == 0:
        return None
    return (torch.rand(batch, generator=generator, device=generator.device) * 2 - 1) * math.radians(max_degrees)


def rotate(images: torch.Tensor, angles: torch.Tensor | None) -> torch.Tensor:
    """Rotate each sample of a float batch by its angle, edges extended; None leaves the batch as it is."""
    if angles is None:
        return images
    cos, sin = angles.cos(), angles.sin()
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1).to(images.device)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
