"""Feature-map figures: which convolutions are drawn, how they are labelled, and the `report.feature_layers` key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.core.params import TrainParams, parse_section
from imgcls.evaluate.report import check_feature_layers, conv_shapes, feature_maps, pick_feature_layers
from imgcls.models.registry import build_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGENET = (TrainParams().normalize_mean, TrainParams().normalize_std)


def _image(side: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _model(name: str, side: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, 10, side)


@pytest.mark.parametrize(
    ("name", "side", "expected"),
    [
        # cnn at 8 px: its last block's maps are 2x2, so the last picked is the last 4x4 one.
        ("cnn", 8, {"features.0": (32, 8, 8), "features.10": (64, 4, 4), "features.16": (64, 4, 4)}),
        ("cnn", 32, {"features.0": (32, 32, 32), "features.13": (64, 16, 16), "features.26": (128, 8, 8)}),
        # 3x3 is large enough; two convolutions give two rows, not a repeated one.
        ("net1", 12, {"features.0": (16, 10, 10), "features.3": (32, 3, 3)}),
        ("resnet18", 32, {"conv1": (64, 16, 16), "layer2.0.conv1": (128, 4, 4), "layer2.1.conv2": (128, 4, 4)}),
    ],
)
def test_automatic_picks_skip_maps_of_2x2_or_smaller(tmp_path: Path, name: str, side: int, expected: dict) -> None:
    path = tmp_path / "features.png"
    drawn = feature_maps(path, _model(name, side), _image(side), *IMAGENET, f"{name}: feature maps")
    assert drawn == expected and list(drawn) == list(expected)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_named_layers_are_drawn_in_the_order_given(tmp_path: Path) -> None:
    drawn = feature_maps(
        tmp_path / "f.png", _model("cnn", 32), _image(32), *IMAGENET, "cnn", ["features.13", "features.0"]
    )
    assert list(drawn.items()) == [("features.13", (64, 16, 16)), ("features.0", (32, 32, 32))]


def test_a_named_layer_another_model_has_is_left_out(tmp_path: Path) -> None:
    drawn = feature_maps(
        tmp_path / "f.png", _model("net1", 32), _image(32), *IMAGENET, "net1", ["layer2.1.conv1", "features.3"]
    )
    assert drawn == {"features.3": (32, 13, 13)}


def test_a_named_layer_of_2x2_maps_gets_a_row_but_no_pictures(tmp_path: Path) -> None:
    model, layers = _model("cnn", 8), ["features.0", "features.26"]
    assert pick_feature_layers(conv_shapes(model, 8), layers) == layers
    assert feature_maps(tmp_path / "f.png", model, _image(8), *IMAGENET, "cnn", layers) == {"features.0": (32, 8, 8)}


def test_a_model_with_none_of_the_named_layers_names_its_conv_layers(tmp_path: Path) -> None:
    # features.1 exists but is an activation, not a convolution.
    message = (
        r"report\.feature_layers: .*\['features\.4', 'features\.1'\]"
        r".*features\.0 \(16x30x30\), features\.3 \(32x13x13\)"
    )
    with pytest.raises(ImgclsError, match=message):
        feature_maps(
            tmp_path / "f.png", _model("net1", 32), _image(32), *IMAGENET, "net1", ["features.4", "features.1"]
        )
    assert not (tmp_path / "f.png").exists()


def test_a_close_name_is_suggested() -> None:
    with pytest.raises(ImgclsError, match=r"'layer2\.1\.cnv1': did you mean 'layer2\.1\.conv1'\?"):
        pick_feature_layers(conv_shapes(_model("resnet18", 32), 32), ["layer2.1.cnv1"])


def test_no_map_larger_than_2x2_draws_a_note(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(16, 2))
    assert conv_shapes(model, 8) == {"0": (4, 2, 2)}
    assert feature_maps(tmp_path / "f.png", model, _image(8), *IMAGENET, "tiny") == {}
    assert (tmp_path / "f.png").read_bytes().startswith(PNG_MAGIC)


def test_the_figure_is_byte_identical_across_runs(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        feature_maps(tmp_path / name, _model("cnn", 32), _image(32), *IMAGENET, "cnn: feature maps")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_layer_some_model_has_passes_the_all_models_check() -> None:
    shapes = {name: conv_shapes(_model(name, 32), 32) for name in ("net1", "resnet18")}
    check_feature_layers(["features.3", "layer2.1.conv1"], shapes)
    check_feature_layers(None, shapes)
    with pytest.raises(
        ImgclsError,
        match=(
            r"report\.feature_layers: no model has a convolution named \['layer9'\]"
            r".*net1: features\.0.*resnet18: conv1"
        ),
    ):
        check_feature_layers(["features.3", "layer9"], shapes)


def test_feature_layers_key() -> None:
    assert parse_section("report", {}).feature_layers is None
    assert parse_section("report", {"feature_layers": ["features.0", "conv1"]}).feature_layers == [
        "features.0",
        "conv1",
    ]
    with pytest.raises(
        ImgclsError, match=r"report\.feature_layers: feature_layers must be unique; repeated: \['conv1'\]"
    ):
        parse_section("report", {"feature_layers": ["conv1", "conv1"]})
    with pytest.raises(ImgclsError, match=r"report\.feature_layers"):
        parse_section("report", {"feature_layers": []})
