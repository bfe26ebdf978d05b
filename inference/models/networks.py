"""The MONAI networks a bundle may name, built from JSON keyword arguments (no ``eval``, no imports by name).

A bundle says ``{"name": "DenseNet", "kwargs": {...}}``; :func:`build_network` looks the name up in a
fixed registry, so a bundle can only instantiate the architectures listed here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.networks import nets
from torch import nn

from dermnode.kernel.errors import BundleError
from inference.models.efficientnet_lite import EfficientNetLite, EfficientNetLiteUNet

NetworkFactory = Callable[..., nn.Module]


def _registry() -> dict[str, NetworkFactory]:
    return {
        "DenseNet": nets.DenseNet,
        "DenseNet121": nets.DenseNet121,
        "EfficientNet": nets.EfficientNet,
        "EfficientNetBN": nets.EfficientNetBN,
        "ResNet": nets.ResNet,
        "UNet": nets.UNet,
        "BasicUNet": nets.BasicUNet,
        "FlexibleUNet": nets.FlexibleUNet,
        "EfficientNetLite": EfficientNetLite,
        "EfficientNetLiteUNet": EfficientNetLiteUNet,
    }


def network_names() -> tuple[str, ...]:
    """The architecture names a bundle may use."""
    return tuple(sorted(_registry()))


def build_network(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Instantiate the registered MONAI network ``name`` with JSON ``kwargs`` (number lists → tuples)."""
    factories = _registry()
    if name not in factories:
        raise BundleError(
            f"Network {name!r} is not one dermnode can build; use one of {', '.join(network_names())}."
        )
    if name == "FlexibleUNet" and kwargs.get("pretrained"):
        raise BundleError(
            "FlexibleUNet must have pretrained=false: weights come from the bundle, not the network."
        )
    try:
        return factories[name](**{key: _tupled(value) for key, value in kwargs.items()})
    except (TypeError, ValueError, KeyError, AssertionError) as e:
        raise BundleError(f"Network {name!r} could not be built from kwargs {dict(kwargs)!r}: {e}") from e


def output_channels(module: nn.Module, input_size: tuple[int, int]) -> int:
    """Channels of the network's output for one RGB image of ``input_size`` (found by a dry run)."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            parameter = next(module.parameters())
            out = module(torch.zeros((1, 3, *input_size), dtype=parameter.dtype, device=parameter.device))
    finally:
        module.train(was_training)
    return int(out.shape[1])


def _tupled(value: Any) -> Any:
    """JSON has no tuples; MONAI expects tuples for sizes (lists of strings, e.g. block args, stay lists)."""
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return tuple(value)
    if (
        isinstance(value, list)
        and value
        and isinstance(value[0], str)
        and len(value) == 2
        and isinstance(value[1], dict)
    ):
        return (value[0], value[1])  # ("batch", {"eps": ...}) style layer specs
    return value
