"""The reference architectures: compact MONAI networks that train from scratch on 2 CPU cores."""

from __future__ import annotations

from inference.models.bundle import NetworkSpec, Normalisation

#: HAM10000 images are 4:3 (200x150); the classifier keeps that aspect at a small size.
CLASSIFIER_INPUT = (96, 128)
SEGMENTER_INPUT = (96, 128)

#: Normalisation after Shades-of-Gray: ImageNet-like statistics are close to dermoscopy's after balancing.
NORMALISATION = Normalisation(mean=(0.60, 0.55, 0.52), std=(0.17, 0.17, 0.18), colour_constancy="shades_of_gray")


def classifier_network(n_classes: int = 7) -> NetworkSpec:
    """A slim DenseNet (0.44 M parameters); Grad-CAM reads the last dense block."""
    return NetworkSpec(
        name="DenseNet",
        kwargs={
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": n_classes,
            "init_features": 32,
            "growth_rate": 16,
            "block_config": [4, 6, 8, 6],
            "dropout_prob": 0.1,
        },
        attention_layer="features.denseblock4",
    )


def segmenter_network() -> NetworkSpec:
    """A small residual UNet with one sigmoid output channel."""
    return NetworkSpec(
        name="UNet",
        kwargs={
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 1,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "num_res_units": 1,
            "norm": "batch",
        },
    )
