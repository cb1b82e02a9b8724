"""Feature-vector corruptions on (B, D) batches (additive noise is `gaussian_noise`).

Magnitudes are in units of each feature's train std.
"""

from __future__ import annotations

import torch

from ..datasets.batch import ModalitySpec
from ._util import clip_, train_std
from .registry import corruption
from .rng import SampleRandom


@corruption(
    "feature_dropout",
    kinds=("vector",),
    severity=(0.1, 0.2, 0.3, 0.5, 0.7),
    unit="fraction of features zeroed",
    description="feature dropout: random features set to zero",
)
def feature_dropout(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    drop = rng.uniform(*x.shape[1:], dtype=torch.float64) < param
    return clip_(torch.where(drop, torch.zeros_like(x), x), spec)


@corruption(
    "scale_drift",
    kinds=("vector",),
    severity=(0.1, 0.2, 0.4, 0.7, 1.0),
    unit="log-gain sigma: each feature multiplied by exp(param * N(0, 1))",
    description="sensor gain drift: a random multiplicative gain per feature",
)
def scale_drift(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    z = rng.normal(*x.shape[1:], dtype=x.dtype)
    return clip_(x * torch.exp(param * z), spec)


@corruption(
    "quantize",
    kinds=("vector",),
    severity=(0.25, 0.5, 1.0, 2.0, 3.0),
    unit="quantisation step in train std",
    description="quantisation of each feature to a grid of step param x std",
)
def quantize(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    # in float64 so that tiny steps (levels near 0) stay exact; a step too small to divide by is the identity
    x64 = x.to(torch.float64)
    step = param * train_std(spec, x64).clamp(min=1e-12)
    grid = torch.round(x64 / step) * step
    return clip_(torch.where(torch.isfinite(grid), grid, x64).to(x.dtype), spec)
