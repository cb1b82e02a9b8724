"""Modality removal: fill strategies and the subsets of modalities a protocol removes.

Every fill marks the removed samples absent (`present[m]` False); models that take a presence
mask use it, others only see the filled values. Fills:

zero  : zeros (PAD ids for tokens).
mean  : the train mean of the modality (PAD for tokens).
noise : draws from N(train mean, train std), clipped to the value range (PAD for tokens).
mask  : zeros, for models that rely on the presence mask alone.
"""

from __future__ import annotations

from itertools import combinations

import torch

from ..datasets.batch import PAD_ID, ModalitySpec
from ..errors import InputError, one_of
from ._util import clip_, train_mean, train_std
from .rng import SampleRandom

FILLS = ("zero", "mean", "noise", "mask")
SUBSET_SHORTCUTS = ("all", "leave-one-out", "keep-one")


def fill(x: torch.Tensor, how: str, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """The replacement values for a removed modality, same shape/dtype/device as x (B, *shape)."""
    if how not in FILLS:
        raise one_of("removal fill", how, FILLS)
    if spec.kind == "tokens":
        return torch.full_like(x, PAD_ID)
    if how in ("zero", "mask"):
        return torch.zeros_like(x)
    if spec.mean is None or (how == "noise" and spec.std is None):
        raise InputError(f"removal fill {how!r} needs train statistics for modality {spec.name!r}; the dataset has none")
    mean = train_mean(spec, x).expand_as(x)
    if how == "mean":
        return mean.clone()
    noise = rng.normal(*x.shape[1:], dtype=x.dtype)
    return clip_(mean + train_std(spec, x) * noise, spec)


def removal_subsets(modalities: list[str] | tuple[str, ...], which: str = "all") -> list[tuple[str, ...]]:
    """Subsets of modalities to remove, in a stable order.

    all : every non-empty proper subset (at least one modality always stays).
    leave-one-out : each single modality removed.
    keep-one : all but one removed (each modality alone stays).
    """
    mods = tuple(modalities)
    if which not in SUBSET_SHORTCUTS:
        raise one_of("removal subset shortcut", which, SUBSET_SHORTCUTS)
    if len(mods) < 2:
        raise InputError(f"modality removal needs at least 2 modalities, got {list(mods)}")
    if which == "leave-one-out":
        return [(m,) for m in mods]
    if which == "keep-one":
        return [tuple(o for o in mods if o != m) for m in mods]
    return [c for r in range(1, len(mods)) for c in combinations(mods, r)]
