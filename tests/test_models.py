"""Model registry, architectures, weights loading and freezing (CPU only, no network)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from imgcls.core.errors import ImgclsError
from imgcls.models.classic import SelfAttention, _activate_and_pool
from imgcls.models.layers import conv_layers, count_parameters
from imgcls.models.names import MODEL_NAMES, TORCHVISION_MODELS
from imgcls.models.pretrained import frozen_batchnorm, head_parameters, probe_head, unfreeze_all
from imgcls.models.registry import build_model

CLASSIC_MODELS = tuple(name for name in MODEL_NAMES if name not in TORCHVISION_MODELS)
# Parameter-name prefixes that stay trainable under each freeze mode.
HEAD = {"resnet18": "fc.", "mobilenet_v2": "classifier.", "efficientnet_b0": "classifier.", "swin_t": "head."}
LAST_BLOCK = {
    "resnet18": ("layer4.",),
    "mobilenet_v2": ("features.18.",),
    "efficientnet_b0": ("features.8.",),
    "swin_t": ("features.7.", "norm."),
}


def _minimum_in(error: ImgclsError) -> int:
    return int(re.search(r"minimum for this model is (\d+)", str(error)).group(1))


def test_registry_holds_every_specified_model() -> None:
    assert tuple(sorted(MODEL_NAMES)) == MODEL_NAMES
    assert set(MODEL_NAMES) == {
        "net1",
        "net2",
        "net3",
        "cnn",
        "cnn_attention",
        "plain_cnn",
        "resnet_scratch",
        "medium_cnn",
        "mish_cnn",
        "bn_cnn",
        "deep_mish_cnn",
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "efficientnet_b0",
        "swin_t",
    }


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_gives_logits_per_class(name: str, image_size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, 3, image_size).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, image_size, image_size))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    # Logits, not probabilities: the network ends in a Linear layer, never a softmax.
    assert isinstance(list(model.modules())[-1], nn.Linear)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dense_layers_fit_224_pixel_images(name: str) -> None:
    # The meta device checks every shape without allocating or computing anything.
    with torch.device("meta"):
        model = build_model(name, 5, 224)
        assert model(torch.empty(2, 3, 224, 224)).shape == (2, 5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reported_minimum_image_size_is_exact(name: str) -> None:
    with pytest.raises(ImgclsError, match=rf"model '{name}': image_size 1 is too small") as info:
        build_model(name, 3, 1)
    smallest = _minimum_in(info.value)
    with torch.device("meta"):
        assert build_model(name, 3, smallest)(torch.empty(2, 3, smallest, smallest)).shape == (2, 3)
    if smallest > 2:
        with pytest.raises(ImgclsError) as info:
            build_model(name, 3, smallest - 1)
        assert _minimum_in(info.value) == smallest


def test_too_small_image_names_the_minimum_instead_of_a_shape_error() -> None:
    with pytest.raises(ImgclsError, match=r"model 'net1': image_size 8 is too small; the minimum for this model is 10"):
        build_model("net1", 3, 8)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ImgclsError) as info:
        build_model("resnet19", 3, 32)
    message = str(info.value)
    assert "'resnet19'" in message
    assert all(name in message for name in MODEL_NAMES)


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("net1", {"dropout": 0.2}, r"'net1' does not accept option 'dropout'; it accepts: no options"),
        ("resnet_scratch", {"head_dropout": 0.2}, r"option 'head_dropout'; it accepts: dropout"),
        ("resnet18", {"dropout": 0.2}, r"option 'dropout'; it accepts: pretrained, weights_path, freeze, head_hidden"),
        ("cnn", {"freeze": "backbone"}, r"option 'freeze'.*applies only to torchvision models: efficientnet_b0"),
        ("mish_cnn", {"unfreeze_at_epoch": 3}, r"option 'unfreeze_at_epoch'"),
        ("cnn", {"probe": True}, r"option 'probe'.*applies only to torchvision models"),
    ],
)
def test_unsupported_option_names_it_and_the_accepted_ones(name: str, options: dict, pattern: str) -> None:
    with pytest.raises(ImgclsError, match=pattern):
        build_model(name, 3, 32, **options)


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("resnet_scratch", {"dropout": 1.0}, r"dropout 1.0 is not a probability; use a number in \[0, 1\)"),
        ("resnet18", {"freeze": "all"}, r"freeze 'all' .* valid: none, backbone, last_block"),
        ("resnet18", {"head_dropout": -0.1}, r"head_dropout -0.1 is not a probability"),
        ("resnet18", {"head_hidden": 0}, r"head_hidden 0 is not a layer width"),
        ("resnet18", {"pretrained": "yes"}, r"pretrained 'yes' is not a boolean"),
        (
            "resnet18",
            {"pretrained": True, "weights_path": "w.pth"},
            r"pretrained and weights_path 'w.pth' were both given",
        ),
        ("resnet18", {"probe": "yes", "freeze": "backbone"}, r"probe 'yes' is not a boolean"),
        ("resnet18", {"probe": True}, r"probe .* needs freeze 'backbone', not 'none'"),
        (
            "mobilenet_v2",
            {"probe": True, "freeze": "last_block"},
            r"probe .* needs freeze 'backbone', not 'last_block'",
        ),
    ],
)
def test_bad_option_values_are_user_errors(name: str, options: dict, pattern: str) -> None:
    with pytest.raises(ImgclsError, match=rf"model '{name}': {pattern}"):
        build_model(name, 3, 32, **options)


def test_bad_sizes_are_user_errors() -> None:
    with pytest.raises(ImgclsError, match=r"num_classes 0 for model 'net1' is not a positive integer"):
        build_model("net1", 0, 32)
    with pytest.raises(ImgclsError, match=r"image_size 32.0 for model 'cnn' is not a positive integer"):
        build_model("cnn", 3, 32.0)


@pytest.mark.parametrize("hidden", [None, 16])
def test_head_replacement_shapes(hidden: int | None) -> None:
    model = build_model("mobilenet_v2", 4, 32, head_hidden=hidden, head_dropout=0.3)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    dropouts = [m for m in model.classifier if isinstance(m, nn.Dropout)]
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(1280, 4)] if hidden is None else [(1280, 16), (16, 4)]
    )
    assert [m.p for m in dropouts] == [0.3]
    assert head_parameters(model) == list(model.classifier.parameters())


@pytest.mark.parametrize("freeze", ["none", "backbone", "last_block"])
@pytest.mark.parametrize("name", sorted(HEAD))
def test_freeze_modes_set_requires_grad(name: str, freeze: str) -> None:
    model = build_model(name, 3, 32, freeze=freeze)
    trainable_prefixes = {"none": ("",), "backbone": (HEAD[name],), "last_block": (HEAD[name], *LAST_BLOCK[name])}[
        freeze
    ]
    for parameter_name, parameter in model.named_parameters():
        assert parameter.requires_grad == parameter_name.startswith(trainable_prefixes), parameter_name
    assert conv_layers(model)[0].weight.requires_grad == (freeze == "none")
    assert all(p.requires_grad for p in head_parameters(model))
    unfreeze_all(model)
    assert all(p.requires_grad for p in model.parameters())


def test_backbone_freeze_leaves_only_the_head_trainable() -> None:
    model = build_model("resnet18", 3, 32, freeze="backbone")
    total, trainable = count_parameters(model)
    assert trainable == 512 * 3 + 3
    assert total == 11_176_512 + trainable


@pytest.mark.parametrize("freeze", ["backbone", "last_block"])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_frozen_batchnorm_layers_stay_in_eval_mode_until_unfrozen(name: str, freeze: str) -> None:
    model = build_model(name, 3, 32, freeze=freeze)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    trains = {n for n in layers if f"{n}.".startswith(LAST_BLOCK[name])} if freeze == "last_block" else set()
    for mode in (True, False, True):
        model.train(mode)
        assert {n for n, m in layers.items() if m.training} == (trains if mode else set())
    assert {n for n, m in layers.items() if frozen_batchnorm(m)} == layers.keys() - trains
    unfreeze_all(model)
    assert all(m.training and not frozen_batchnorm(m) for m in layers.values()), (
        "unfrozen, they follow the model's mode"
    )


@pytest.mark.parametrize("name", sorted(HEAD))
def test_probe_puts_l2_normalisation_in_front_of_the_head(name: str) -> None:
    assert probe_head(build_model(name, 3, 32, freeze="backbone")) is None
    model = build_model(name, 3, 32, freeze="backbone", probe=True).eval()
    head = probe_head(model)
    inputs = {}
    getattr(model, HEAD[name][:-1]).register_forward_pre_hook(
        lambda module, args: inputs.setdefault("features", args[0])
    )
    head.register_forward_pre_hook(lambda module, args: inputs.setdefault("head", args[0]))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(inputs["head"], nn.functional.normalize(inputs["features"], dim=1))
    assert logits.shape == (2, 3)
    assert head_parameters(model) == list(head.parameters()) == [p for p in model.parameters() if p.requires_grad]


def test_weights_path_round_trips_a_project_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    saved = build_model("resnet18", 3, 32, head_hidden=8)
    path = tmp_path / "model.pt"
    torch.save(saved.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_model("resnet18", 3, 32, head_hidden=8, weights_path=str(path), freeze="backbone")
    assert saved.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in saved.state_dict().items())
    assert not torch.equal(build_model("resnet18", 3, 32, head_hidden=8).fc[0].weight, saved.fc[0].weight)


def test_weights_path_loads_an_imagenet_state_dict_into_the_backbone(tmp_path) -> None:
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(num_classes=1000).state_dict()
    # Like torchvision's older published files, which predate BatchNorm batch counters.
    published = {k: v for k, v in imagenet.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(published, path)
    torch.manual_seed(1)
    model = build_model("resnet18", 3, 32, weights_path=path)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in published.items() if not k.startswith("fc."))
    assert state["fc.1.weight"].shape == (3, 512)


def test_weights_path_errors_name_the_file_and_the_mismatch(tmp_path) -> None:
    missing = tmp_path / "absent.pth"
    with pytest.raises(ImgclsError, match=rf"weights_path '{re.escape(str(missing))}': not found"):
        build_model("resnet18", 3, 32, weights_path=missing)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ImgclsError, match=r"garbage.pth': not a readable state_dict"):
        build_model("resnet18", 3, 32, weights_path=garbage)

    random_bytes = tmp_path / "random.pth"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImgclsError) as error:
        build_model("resnet18", 3, 32, weights_path=random_bytes)
    assert "\n" not in str(error.value) and "file an issue" not in str(error.value), (
        "one line of ours, not torch's paragraph"
    )
    assert "random.pth': not a readable state_dict" in str(error.value)

    other_architecture = tmp_path / "mobilenet.pth"
    torch.save(build_model("mobilenet_v2", 3, 32).state_dict(), other_architecture)
    with pytest.raises(ImgclsError, match=r"mobilenet.pth' fits neither .* resnet18 .*: missing conv1.weight"):
        build_model("resnet18", 3, 32, weights_path=other_architecture)

    other_classes = tmp_path / "five-classes.pth"
    torch.save(build_model("resnet18", 5, 32).state_dict(), other_classes)
    with pytest.raises(ImgclsError, match=r"fc.1.weight has shape \(5, 512\), expected \(3, 512\)"):
        build_model("resnet18", 3, 32, weights_path=other_classes)


def test_attention_starts_as_the_identity() -> None:
    model = build_model("cnn_attention", 3, 32)
    attention = model.features[-1]
    assert isinstance(attention, SelfAttention)
    assert attention.gamma.item() == 0.0
    x = torch.randn(2, 128, 4, 4)
    assert torch.equal(attention(x), x)
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    assert not torch.allclose(attention(x), x)


def test_attention_softmax_runs_over_positions() -> None:
    attention = SelfAttention(16)
    with torch.no_grad():
        attention.gamma.fill_(1.0)
        # Zero queries make every position attend uniformly, i.e. to the mean value over positions.
        attention.query.weight.zero_()
        attention.query.bias.zero_()
    x = torch.randn(2, 16, 3, 5)
    expected = x + attention.value(x).mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(attention(x), expected)


def test_conv_layers_are_in_forward_order() -> None:
    convs = conv_layers(build_model("net3", 3, 32))
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 16), (16, 32)] + [(32, 32)] * 10
    assert [c.padding for c in conv_layers(build_model("net1", 3, 32))] == [(0, 0), (0, 0)]


def test_net1_parameter_count_matches_the_specified_layers() -> None:
    # 3->16 and 16->32 3x3 convs; 32 px -> 30 -> 15 -> 13 -> 6, so 32*6*6 inputs to the 64-unit layer.
    expected = (3 * 16 * 9 + 16) + (16 * 32 * 9 + 32) + (32 * 6 * 6 * 64 + 64) + (64 * 3 + 3)
    assert count_parameters(build_model("net1", 3, 32)) == (expected, expected)


def test_resnet_scratch_dropout_sits_after_each_blocks_first_conv() -> None:
    model = build_model("resnet_scratch", 3, 32, dropout=0.25)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.25] * 5


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Mish])
def test_activation_and_pooling_reordering_changes_neither_outputs_nor_gradients(activation) -> None:
    # Windows that are all negative, mixed, and tied: where a careless reordering would differ.
    x = torch.randn(4, 8, 16, 16)
    x[:, :, :4, :4] = -torch.rand(4, 8, 4, 4) - 0.1
    x[:, :, 4:6, 4:6] = 0.5
    textbook = nn.Sequential(activation(), nn.MaxPool2d(2))
    reordered = nn.Sequential(*_activate_and_pool(activation))
    inputs = [x.clone().requires_grad_(True) for _ in range(2)]
    outputs = [net(i) for net, i in zip((textbook, reordered), inputs)]
    upstream = torch.randn_like(outputs[0])
    for output in outputs:
        output.backward(upstream)
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(inputs[0].grad, inputs[1].grad)


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout  # weights + bias


def _bn(c: int) -> int:
    return 2 * c


def _fc(cin: int, cout: int) -> int:
    return cin * cout + cout


def _stages(widths: tuple[int, ...], convs: int) -> int:
    total, cin = 0, 3
    for cout in widths:
        for _ in range(convs):
            total += _conv(cin, cout) + _bn(cout)
            cin = cout
    return total


def _expected_parameters(name: str, side: int, classes: int) -> int:
    """Parameter counts worked out by hand from each network's layer list, biases included."""
    if name in ("cnn", "cnn_attention"):
        total = _stages((32, 64, 128), 3) + _fc(128 * (side // 8) ** 2, 256) + _fc(256, classes)
        if name == "cnn_attention":  # query and key project to 128 // 8 channels; gamma is one scalar
            total += 2 * _conv(128, 16, 1) + _conv(128, 128, 1) + 1
        return total
    if name == "medium_cnn":
        return _stages((64, 128, 256, 512), 1) + _fc(512 * (side // 16) ** 2, 1024) + _fc(1024, 512) + _fc(512, classes)
    if name == "bn_cnn":
        return _conv(3, 32, 7) + _bn(32) + _conv(32, 64) + _bn(64) + _conv(64, 64) + _bn(64) + _fc(64, classes)
    assert name == "deep_mish_cnn"
    head = _fc(256 * (side // 8) ** 2, 512) + _bn(512) + _fc(512, 512) + _bn(512) + _fc(512, classes)
    return _stages((64, 128, 256), 2) + head


@pytest.mark.parametrize(("side", "classes"), [(224, 2), (64, 5)])
@pytest.mark.parametrize("name", ["cnn", "cnn_attention", "medium_cnn", "bn_cnn", "deep_mish_cnn"])
def test_batchnorm_nets_have_the_parameter_count_of_their_layer_list(name: str, side: int, classes: int) -> None:
    expected = _expected_parameters(name, side, classes)
    assert count_parameters(build_model(name, classes, side)) == (expected, expected)


def test_cnn_at_224_px_for_two_classes_has_the_textbook_parameter_count() -> None:
    # The figure students report for this network, conv biases included.
    assert count_parameters(build_model("cnn", 2, 224))[0] == 26_172_994


@pytest.mark.parametrize(
    ("name", "default", "count"),
    [("cnn", 0.5, 1), ("cnn_attention", 0.5, 1), ("medium_cnn", 0.5, 2), ("plain_cnn", 0.0, 1)],
)
def test_dropout_option_sets_every_classifier_dropout(name: str, default: float, count: int) -> None:
    def rates(model: nn.Module) -> list[float]:
        return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]

    assert rates(build_model(name, 3, 32)) == [default] * count
    assert rates(build_model(name, 3, 32, dropout=0.3)) == [0.3] * count
    with pytest.raises(ImgclsError, match=r"dropout 1\.5 is not a probability"):
        build_model(name, 3, 32, dropout=1.5)
