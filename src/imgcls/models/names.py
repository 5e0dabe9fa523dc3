"""Every model name, without importing torch: the params checks (`imgcls check`, the check stage) need the
names only, and torch's import would be most of their time. registry.py builds each of them."""

from __future__ import annotations

CLASSIC_MODELS = (
    "bn_cnn",
    "cnn",
    "cnn_attention",
    "deep_mish_cnn",
    "medium_cnn",
    "mish_cnn",
    "net1",
    "net2",
    "net3",
    "plain_cnn",
    "resnet_scratch",
)
TORCHVISION_MODELS = ("efficientnet_b0", "mobilenet_v2", "resnet18", "resnet50", "swin_t")
MODEL_NAMES = tuple(sorted(CLASSIC_MODELS + TORCHVISION_MODELS))
