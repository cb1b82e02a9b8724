"""Small helpers shared by the built-in kernels (value-range clipping, data scales, broadcasting)."""

from __future__ import annotations

import torch

from ..datasets.batch import ModalitySpec


def clip_(y: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """Clamp to the modality's valid value range, in place (no-op when unbounded).

    In place saves a pass over the batch; pass only a tensor the kernel itself created.
    """
    if spec.value_range is None:
        return y
    return y.clamp_(spec.value_range[0], spec.value_range[1])


def train_std(spec: ModalitySpec, x: torch.Tensor) -> torch.Tensor:
    """The train std broadcastable to x's per-sample shape (ones when the spec has none)."""
    if spec.std is None:
        return torch.ones((), dtype=x.dtype, device=x.device)
    return spec.std.to(device=x.device, dtype=x.dtype)


def train_mean(spec: ModalitySpec, x: torch.Tensor) -> torch.Tensor:
    """The train mean broadcastable to x's per-sample shape (zero when the spec has none)."""
    if spec.mean is None:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return spec.mean.to(device=x.device, dtype=x.dtype)


def value_span(spec: ModalitySpec, x: torch.Tensor) -> float:
    """Width of the value range (images), or 1.0 when unbounded."""
    if spec.value_range is None:
        return 1.0
    return float(spec.value_range[1] - spec.value_range[0])
