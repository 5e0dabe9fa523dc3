"""Hand-written CNNs, from a two-layer baseline to residual and attention networks.

Each network is `features` then `classifier`; dense layers are sized from
`image_size`, and sizes that would leave no feature map are refused up front.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from imgcls.core.errors import ImgclsError


def _conv(side: int, kernel: int, padding: int) -> int:
    return side + 2 * padding - kernel + 1


def _pool(side: int) -> int:
    return side // 2


def _feature_side(image_size: int, side: Callable[[int], int]) -> int:
    """Side of the final feature map, or an error naming the smallest image that leaves one."""
    if side(image_size) >= 1:
        return side(image_size)
    smallest = next(s for s in itertools.count(image_size + 1) if side(s) >= 1)
    raise ImgclsError(f"image_size {image_size} is too small; the minimum for this model is {smallest}")


def _activate_and_pool(activation: type[nn.Module]) -> list[nn.Module]:
    """`activation` then 2x2 max pooling, in whichever order computes that faster.

    ReLU is monotonic, so it commutes with the max: pooling first gives the same outputs
    and gradients while ReLU touches a quarter of the values (net1 trains 1.5x faster on
    CPU). Mish is not monotonic, so it keeps its place.
    """
    if activation is nn.ReLU:
        return [nn.MaxPool2d(2), nn.ReLU()]
    return [activation(), nn.MaxPool2d(2)]


def _check_dropout(dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ImgclsError(f"dropout {dropout!r} is not a probability; use a number in [0, 1)")


def _stage(in_channels: int, out_channels: int, convs: int, activation: type[nn.Module]) -> list[nn.Module]:
    """`convs` x [3x3 conv -> BatchNorm -> activation], then 2x2 max pooling.

    The convolutions keep their bias, as the networks are usually written (and their parameter
    counts reported), although the BatchNorm after each makes it redundant.
    """
    layers: list[nn.Module] = []
    for index in range(convs):
        conv_in = in_channels if index == 0 else out_channels
        layers += [nn.Conv2d(conv_in, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels)]
        layers += [activation()] if index < convs - 1 else _activate_and_pool(activation)
    return layers


class _ConvNet(nn.Sequential):
    """A `features` block then a `classifier` block, so every network is inspected the same way."""

    def __init__(self, features: list[nn.Module], classifier: list[nn.Module]) -> None:
        super().__init__(OrderedDict(features=nn.Sequential(*features), classifier=nn.Sequential(*classifier)))


class Net1(_ConvNet):
    """Two unpadded 3x3 convolutions and two dense layers: the smallest baseline."""

    padding = 0
    extra_convs = 0

    def __init__(self, num_classes: int, image_size: int) -> None:
        p = self.padding
        side = _feature_side(image_size, lambda s: _pool(_conv(_pool(_conv(s, 3, p)), 3, p)))
        features: list[nn.Module] = [
            nn.Conv2d(3, 16, 3, padding=p),
            *_activate_and_pool(nn.ReLU),
            nn.Conv2d(16, 32, 3, padding=p),
            *_activate_and_pool(nn.ReLU),
        ]
        for _ in range(self.extra_convs):
            features += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
        classifier = [nn.Flatten(), nn.Linear(32 * side * side, 64), nn.ReLU(), nn.Linear(64, num_classes)]
        super().__init__(features, classifier)


class Net2(Net1):
    """Net1 with padded convolutions, so the borders are not eroded."""

    padding = 1


class Net3(Net2):
    """Net2 with ten more plain convolutions: deep enough, without normalisation, to show vanishing gradients."""

    extra_convs = 10


class SelfAttention(nn.Module):
    """SAGAN self-attention over spatial positions; gamma starts at 0 so the block begins as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)
        key = self.key(x).flatten(2)
        # attention[b, i, j]: how much position i attends to position j; rows sum to 1.
        attention = torch.softmax(query @ key, dim=-1)
        attended = self.value(x).flatten(2) @ attention.transpose(1, 2)
        return x + self.gamma * attended.view(batch, channels, height, width)


class CNN(_ConvNet):
    """Three VGG-style stages of three batch-normalised convolutions (32, 64, 128 channels)."""

    def __init__(self, num_classes: int, image_size: int, *, dropout: float = 0.5) -> None:
        _check_dropout(dropout)
        side = _feature_side(image_size, lambda s: s // 8)
        features = _stage(3, 32, 3, nn.ReLU) + _stage(32, 64, 3, nn.ReLU) + _stage(64, 128, 3, nn.ReLU)
        classifier = [
            nn.Flatten(),
            nn.Linear(128 * side * side, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        ]
        super().__init__(features, classifier)


class CNNAttention(CNN):
    """CNN with a self-attention block after the last stage, to mix information across the image."""

    def __init__(self, num_classes: int, image_size: int, *, dropout: float = 0.5) -> None:
        super().__init__(num_classes, image_size, dropout=dropout)
        self.features.append(SelfAttention(128))


class PlainCNN(_ConvNet):
    """A deep, wide stack without normalisation or shortcuts: the baseline for `resnet_scratch`."""

    def __init__(self, num_classes: int, image_size: int, *, dropout: float = 0.0) -> None:
        _check_dropout(dropout)
        side = _feature_side(image_size, _pool)
        features: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1), nn.MaxPool2d(2)]
        for in_channels, out_channels in itertools.pairwise((32, 64, 128, 256, 512, 1024)):
            features += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        # Dropout(0) is kept so the state_dict keys and layer indices do not depend on the option.
        super().__init__(features, [nn.Flatten(), nn.Dropout(dropout), nn.Linear(1024 * side * side, num_classes)])


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a 1x1 projection shortcut (every block here changes width)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetScratch(_ConvNet):
    """`plain_cnn`'s widths as residual blocks, to show what shortcuts and BatchNorm buy."""

    def __init__(self, num_classes: int, image_size: int, *, dropout: float = 0.0) -> None:
        _check_dropout(dropout)
        _feature_side(image_size, _pool)
        features: list[nn.Module] = [
            nn.Conv2d(3, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            *_activate_and_pool(nn.ReLU),
        ]
        for in_channels, out_channels in itertools.pairwise((32, 64, 128, 256, 512, 1024)):
            features.append(BasicBlock(in_channels, out_channels, dropout))
        features.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(features, [nn.Flatten(), nn.Linear(1024, num_classes)])


class MediumCNN(_ConvNet):
    """Four conv-BN-ReLU-pool stages (64 to 512 channels) and a heavily regularised dense head."""

    def __init__(self, num_classes: int, image_size: int, *, dropout: float = 0.5) -> None:
        _check_dropout(dropout)
        side = _feature_side(image_size, lambda s: s // 16)
        features = [
            layer
            for in_channels, out_channels in itertools.pairwise((3, 64, 128, 256, 512))
            for layer in _stage(in_channels, out_channels, 1, nn.ReLU)
        ]
        classifier = [
            nn.Flatten(),
            nn.Linear(512 * side * side, 1024),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(1024, 512),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        ]
        super().__init__(features, classifier)


class MishCNN(_ConvNet):
    """A small Mish network with global average pooling, so its size does not depend on the image."""

    def __init__(self, num_classes: int, image_size: int) -> None:
        _feature_side(image_size, _pool)
        features = [
            nn.Conv2d(3, 32, 7, padding=3),
            nn.MaxPool2d(2),
            nn.Mish(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.Mish(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.Mish(),
            nn.AdaptiveAvgPool2d(1),
        ]
        super().__init__(features, [nn.Flatten(), nn.Linear(64, num_classes)])


class BNCNN(_ConvNet):
    """`mish_cnn` with unpadded convolutions and BatchNorm, to compare normalised training."""

    def __init__(self, num_classes: int, image_size: int) -> None:
        _feature_side(image_size, lambda s: _conv(_conv(_pool(_conv(s, 7, 0)), 3, 0), 3, 0))
        features = [
            nn.Conv2d(3, 32, 7),
            nn.BatchNorm2d(32),
            nn.Mish(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.BatchNorm2d(64),
            nn.Mish(),
            nn.Conv2d(64, 64, 3),
            nn.BatchNorm2d(64),
            nn.Mish(),
            nn.AdaptiveAvgPool2d(1),
        ]
        super().__init__(features, [nn.Flatten(), nn.Linear(64, num_classes)])


class DeepMishCNN(_ConvNet):
    """Three stages of two conv-BN-Mish layers (64, 128, 256) and a batch-normalised dense head."""

    def __init__(self, num_classes: int, image_size: int) -> None:
        side = _feature_side(image_size, lambda s: s // 8)
        features = _stage(3, 64, 2, nn.Mish) + _stage(64, 128, 2, nn.Mish) + _stage(128, 256, 2, nn.Mish)
        classifier = [
            nn.Flatten(),
            nn.Linear(256 * side * side, 512),
            nn.BatchNorm1d(512),
            nn.Mish(),
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.Mish(),
            nn.Linear(512, num_classes),
        ]
        super().__init__(features, classifier)
