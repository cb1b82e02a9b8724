"""Sequence corruptions on (B, T, D) frame batches (Gaussian jitter is `gaussian_noise`).

Magnitudes are in units of each channel's train std; temporal parameters are fractions of frames.
"""

from __future__ import annotations

import torch

from ..datasets.batch import ModalitySpec
from ._util import clip_, train_std
from .registry import corruption
from .rng import SampleRandom

_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)


@corruption(
    "frame_dropout",
    kinds=("sequence",),
    severity=_FRACTIONS,
    unit="fraction of frames zeroed",
    description="frame dropout: whole frames set to zero",
)
def frame_dropout(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    drop = rng.uniform(x.shape[1], dtype=torch.float64) < param
    return clip_(torch.where(drop[:, :, None], torch.zeros_like(x), x), spec)


@corruption(
    "frame_freeze",
    kinds=("sequence",),
    severity=_FRACTIONS,
    unit="fraction of frames replaced by the last fresh frame",
    description="frame freeze/repeat: a stalled stream repeats its previous frame",
)
def frame_freeze(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, t, d = x.shape
    frozen = rng.uniform(t, dtype=torch.float64) < param
    frozen[:, 0] = False
    pos = torch.arange(t, device=x.device).expand(b, t)
    source = torch.cummax(torch.where(frozen, torch.zeros_like(pos), pos), dim=1).values
    return torch.gather(x, 1, source[:, :, None].expand(b, t, d))


@corruption(
    "temporal_shift",
    kinds=("sequence",),
    severity=(0.05, 0.1, 0.2, 0.3, 0.5),
    unit="shift as a fraction of the sequence length (direction per sample)",
    description="temporal shift (cross-modal misalignment), edge frames repeated",
)
def temporal_shift(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, t, d = x.shape
    steps = round(param * t)
    if steps == 0 and param > 0:
        steps = 1
    sign = torch.where(rng.uniform(dtype=torch.float64) < 0.5, -1, 1).to(torch.int64)
    source = (torch.arange(t, device=x.device)[None, :] - sign[:, None] * steps).clamp(0, t - 1)
    return torch.gather(x, 1, source[:, :, None].expand(b, t, d))


@corruption(
    "spikes",
    kinds=("sequence",),
    severity=(0.01, 0.02, 0.05, 0.1, 0.2),
    unit="fraction of values hit by a spike of +-6 train std",
    description="impulsive sensor spikes",
)
def spikes(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    hit = rng.uniform(*x.shape[1:], dtype=torch.float64) < param
    sign = torch.where(rng.uniform(*x.shape[1:], dtype=torch.float64) < 0.5, -6.0, 6.0).to(x.dtype)
    return clip_(torch.where(hit, x + sign * train_std(spec, x), x), spec)
