"""Token corruptions on (B, L) integer id batches. Ids stay in [0, vocab); PAD (0) positions are
never changed (truncation only turns real tokens into PAD). The parameter is a fraction of tokens.
"""

from __future__ import annotations

import torch

from ..datasets.batch import PAD_ID, UNK_ID, ModalitySpec
from .registry import corruption
from .rng import SampleRandom

_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)


@corruption(
    "blank",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of tokens replaced by the unknown id (QMF blank probability 0.1 x level)",
    description="word dropout to the unknown/blank id",
)
def blank(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    hit = (rng.uniform(x.shape[1], dtype=torch.float64) < param) & (x != PAD_ID)
    return torch.where(hit, torch.full_like(x, UNK_ID), x)


@corruption(
    "replace",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of tokens replaced by a random word id",
    description="random word replacement (ids 2..vocab-1)",
)
def replace(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    hit = (rng.uniform(x.shape[1], dtype=torch.float64) < param) & (x != PAD_ID)
    words = max(1, spec.vocab_size - 2)
    new = (2 + rng.integers(words, x.shape[1])).clamp(max=spec.vocab_size - 1).to(x.dtype)
    return torch.where(hit, new, x)


@corruption(
    "swap",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of adjacent token pairs exchanged",
    description="local swaps: disjoint neighbouring pairs exchanged (a permutation, nothing copied)",
)
def swap(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, length = x.shape
    offset = rng.integers(2)  # (B,) pairs start at 0 or 1
    u = rng.uniform(length, dtype=torch.float64)
    pos = torch.arange(length, device=x.device)[None, :]
    rel = pos - offset[:, None]
    first = rel.remainder(2) == 0
    partner = torch.where(first, pos + 1, pos - 1)
    start = torch.where(first, pos, pos - 1)
    valid = (rel >= 0) & (partner >= 0) & (partner < length) & (start >= 0)
    partner_c = partner.clamp(0, length - 1)
    start_c = start.clamp(0, length - 1)
    real = x != PAD_ID
    chosen = valid & (torch.gather(u, 1, start_c) < param) & real & torch.gather(real, 1, partner_c)
    source = torch.where(chosen, partner_c, pos.expand(b, length))
    return torch.gather(x, 1, source)


@corruption(
    "truncate",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of each sequence's real tokens cut from the end",
    description="truncation: the last tokens replaced by PAD",
)
def truncate(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    real = x != PAD_ID
    rank = torch.cumsum(real.long(), dim=1) - 1
    keep = torch.ceil(real.sum(dim=1, keepdim=True) * (1.0 - param))
    return torch.where(real & (rank >= keep), torch.full_like(x, PAD_ID), x)
