"""Apply one `Condition` to a `Batch`: the single entry point the engine uses.

Randomness (common random numbers, never the batch's composition):
- which samples a condition affects (rate < 1) is `u_i < rate` with u_i keyed on (seed, touched
  modalities, id i): the same samples for every corruption/fill of those modalities, and nested
  across rates (the samples missing at 30% are also missing at 50%);
- a corruption's noise is keyed on (seed, family, name, modalities, modality, id i) but not on the
  level, so a sample's noise is the same draw at every level, only scaled: severity curves
  compare like with like;
- a conflict donor is keyed on (seed, conflict, modalities, id i), one donor for all its modalities.
Unaffected samples come back bit-identical to the input.
"""

from __future__ import annotations

import torch

from ..datasets.batch import Batch, ModalitySpec
from ..errors import InputError, one_of
from .condition import FAMILIES, Condition
from .conflict import DonorPool
from .registry import get_corruption
from .removal import FILLS, fill
from .rng import SampleRandom


def affected_mask(ids: torch.Tensor, condition: Condition, seed: int) -> torch.Tensor:
    """(B,) bool: the samples this condition perturbs (all False for clean)."""
    if condition.family == "clean":
        return torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    rng = SampleRandom(ids, seed, key=f"affected|{'+'.join(condition.modalities)}")
    return rng.sample_mask(condition.rate)


def condition_random(ids: torch.Tensor, condition: Condition, seed: int, modality: str) -> SampleRandom:
    """The generator a condition uses for one modality (level-independent, see module docstring)."""
    mods = "+".join(condition.modalities)
    return SampleRandom(ids, seed, key=f"{condition.family}|{condition.name}|{mods}|{modality}")


def _validate(batch: Batch, condition: Condition, specs: dict[str, ModalitySpec]) -> None:
    if condition.family not in FAMILIES:
        raise one_of("condition family", condition.family, FAMILIES)
    if condition.family == "clean":
        return
    if not condition.modalities:
        raise InputError(f"condition {condition.key!r}: names no modality")
    for m in condition.modalities:
        if m not in batch.inputs or m not in specs:
            raise one_of("modality", m, [k for k in batch.inputs if k in specs])
    if not 0.0 < condition.rate <= 1.0:
        raise InputError(f"condition {condition.key!r}: rate {condition.rate} out of range; expected 0 < rate <= 1")
    if condition.family == "corruption":
        spec = get_corruption(condition.name)
        for m in condition.modalities:
            why = spec.supports(specs[m])
            if why:
                raise InputError(why)
        if condition.param is None:
            spec.param(condition.level)  # level range check (a raw param overrides the table)
    elif condition.family == "removal" and condition.name not in FILLS:
        raise one_of("removal fill", condition.name, FILLS)


def apply_condition(
    batch: Batch,
    condition: Condition,
    specs: dict[str, ModalitySpec],
    seed: int,
    donors: DonorPool | None = None,
) -> Batch:
    """A new Batch with `condition` applied to its modalities; `batch` is never mutated.

    corruption : the registered function at `condition.param` (raw units) or the level's parameter.
    removal : values filled (`condition.name` = zero|mean|noise|mask), `present[m]` False.
    conflict : values taken from a different-class donor in `donors` (a `DonorPool`).
    """
    _validate(batch, condition, specs)
    if condition.family == "clean":
        return batch
    if condition.family == "conflict" and donors is None:
        raise InputError("a conflict condition needs a donor pool (DonorPool.from_data(data, device))")
    mask = affected_mask(batch.ids, condition, seed)
    partial = condition.rate < 1.0
    donor_index = None
    if condition.family == "conflict":
        mods = "+".join(condition.modalities)
        donor_rng = SampleRandom(batch.ids, seed, key=f"conflict-donor|{condition.name}|{mods}")
        donor_index = donors.donors(batch.ids, batch.labels, donor_rng)
    out = batch
    for m in condition.modalities:
        x = batch.inputs[m]
        spec = specs[m]
        rng = condition_random(batch.ids, condition, seed, m)
        present = None
        if condition.family == "corruption":
            cspec = get_corruption(condition.name)
            param = condition.param if condition.param is not None else cspec.param(condition.level, spec.kind)
            y = cspec(x, float(param), rng, spec)
        elif condition.family == "removal":
            y = fill(x, condition.name, rng, spec)
            present = batch.present[m] & ~mask
        else:
            y = donors.take(m, donor_index).to(dtype=x.dtype)
        if partial:
            y = torch.where(mask.reshape((-1,) + (1,) * (x.dim() - 1)), y, x)
        out = out.with_modality(m, y, present)
    return out
