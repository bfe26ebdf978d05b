"""Choosing the torch device explicitly: "cuda" that is not there is an error, never a silent CPU fallback."""

from __future__ import annotations

import torch

from dermnode.kernel.errors import InferenceError


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available else CPU; ``"cpu"``; ``"cuda"``/``"cuda:N"`` only with CUDA present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InferenceError(
                f"Device {name!r} was requested but torch sees no CUDA GPU; use device 'cpu' or 'auto'."
            )
        return torch.device(name)
    raise InferenceError(f"Unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.")
