"""Apply one `Condition` to a `Batch`: the single entry point the engine uses, dispatching to the
condition's registered family (`families.py`); the built-in families are defined here.

Randomness (common random numbers, never the batch's composition):
- which samples a condition affects (rate < 1) is `u_i < rate` with u_i keyed on (seed, touched
  modalities, id i): the same samples for every corruption/fill of those modalities, and nested
  across rates (the samples missing at 30% are also missing at 50%);
- a corruption's noise is keyed on (seed, family, name, modalities, modality, id i) but not on the
  level, so a sample's noise is the same draw at every level, only scaled: severity curves
  compare like with like;
- a conflict donor is keyed on (seed, conflict, modalities, id i), one donor for all its modalities.
- a joint condition (several corruptions together, `Condition.parts`) keys each modality's mask
  on that modality alone ("independent" masks) or on all of them ("shared"), and each part's
  noise on (seed, corruption, modality): with independent masks, a joint cell perturbs each
  modality exactly as the single-modality condition at the same parameter and rate does. A part
  may have its own rate (`Part.rate`); a part with shared noise keys one field on its modalities
  together (a kernel's fixed pattern, e.g. gaussian_noise's numpy-seed-0, ignores the generator).
Unaffected samples come back bit-identical to the input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from ..datasets.batch import Batch, ModalitySpec
from ..domain import Family
from ..errors import InputError, one_of
from .condition import MASKS, Condition, Part
from .conflict import DonorPool
from .families import ConditionFamily, FamilyContext, condition_family, family_of
from .registry import get_corruption
from .removal import FILLS, fill
from .rng import SampleRandom

ModalityFn = Callable[[str, torch.Tensor, ModalitySpec, SampleRandom], torch.Tensor]


def affected_mask(ids: torch.Tensor, condition: Condition, seed: int) -> torch.Tensor:
    """(B,) bool: the samples this condition perturbs (all False for clean); for a joint
    condition, the samples at least one of its modalities is perturbed in."""
    if not family_of(condition).perturbs:
        return torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    if condition.parts:
        masks = list(modality_masks(ids, condition, seed).values())
        return torch.stack(masks).any(dim=0)
    rng = SampleRandom(ids, seed, key=f"affected|{'+'.join(condition.modalities)}")
    return rng.sample_mask(condition.rate)


def modality_masks(ids: torch.Tensor, condition: Condition, seed: int) -> dict[str, torch.Tensor]:
    """A joint condition's (B,) bool mask per modality (see the module docstring)."""
    rates = {m: condition.rate if p.rate is None else p.rate for p in condition.parts for m in p.modalities}
    if condition.masks == "shared":
        shared = SampleRandom(ids, seed, key=f"affected|{'+'.join(condition.modalities)}")
        return {m: shared.sample_mask(rates[m]) for m in condition.modalities}
    return {m: SampleRandom(ids, seed, key=f"affected|{m}").sample_mask(rates[m]) for m in condition.modalities}


def _part_random(ids: torch.Tensor, part: Part, seed: int, modality: str) -> SampleRandom:
    """The generator of one modality of a joint part (see the module docstring)."""
    if part.shared_noise:
        return SampleRandom(ids, seed, key=f"corruption|{part.corruption}|{'+'.join(part.modalities)}|shared")
    return SampleRandom(ids, seed, key=f"corruption|{part.corruption}|{modality}|{modality}")


def _apply_part(x: torch.Tensor, part: Part, spec: ModalitySpec, rng: SampleRandom) -> torch.Tensor:
    """One part on one modality; in raw pixel units [0, pixel_max] when the part has a mapping."""
    cspec = get_corruption(part.corruption)
    if part.param == cspec.identity:
        return x.clone()
    to_raw = {m: (s, o) for m, s, o in part.to_raw}.get(spec.name)
    kernel_spec = spec
    if part.pixel_max is not None:
        kernel_spec = replace(spec, value_range=(0.0, float(part.pixel_max)), mean=None, std=None)
    if to_raw is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = torch.tensor(to_raw[0], dtype=x.dtype, device=x.device).reshape(shape)
        offset = torch.tensor(to_raw[1], dtype=x.dtype, device=x.device).reshape(shape)
        y = cspec.fn(x * scale + offset, part.param, rng, kernel_spec, **dict(part.options))
        return (y - offset) / scale
    return cspec.fn(x, part.param, rng, kernel_spec, **dict(part.options))


def _apply_joint(batch: Batch, condition: Condition, specs: dict[str, ModalitySpec], seed: int) -> Batch:
    masks = modality_masks(batch.ids, condition, seed)
    out = batch
    for part in condition.parts:
        shapes = {tuple(batch.inputs[m].shape) for m in part.modalities}
        if part.shared_noise and len(shapes) > 1:
            raise InputError(f"condition {condition.key!r}: one noise field for {', '.join(part.modalities)} needs equal shapes, got {sorted(shapes)}")
        for m in part.modalities:
            x = batch.inputs[m]
            y = _apply_part(x, part, specs[m], _part_random(batch.ids, part, seed, m))
            out = out.with_modality(m, torch.where(masks[m].reshape((-1,) + (1,) * (x.dim() - 1)), y, x))
    return out


def condition_random(ids: torch.Tensor, condition: Condition, seed: int, modality: str) -> SampleRandom:
    """The generator a condition uses for one modality (level-independent, see module docstring)."""
    mods = "+".join(condition.modalities)
    return SampleRandom(ids, seed, key=f"{condition.family}|{condition.name}|{mods}|{modality}")


def perturb_modalities(batch: Batch, condition: Condition, ctx: FamilyContext, values: ModalityFn,
                       removes: bool = False) -> Batch:
    """The batch with each of the condition's modalities replaced by `values(m, x, spec, rng)` in
    the affected samples (all of them at rate 1); `removes` also marks those samples absent.

    The building block of a family that changes each touched modality on its own: it keeps the
    common random numbers (the affected mask and each modality's generator) of the built-ins.
    """
    mask = affected_mask(batch.ids, condition, ctx.seed)
    partial = condition.rate < 1.0
    out = batch
    for m in condition.modalities:
        x = batch.inputs[m]
        y = values(m, x, ctx.specs[m], condition_random(batch.ids, condition, ctx.seed, m))
        if partial:
            y = torch.where(mask.reshape((-1,) + (1,) * (x.dim() - 1)), y, x)
        out = out.with_modality(m, y, batch.present[m] & ~mask if removes else None)
    return out


def _check_supported(cspec, modalities: tuple[str, ...], specs: dict[str, ModalitySpec]) -> None:
    for m in modalities:
        why = cspec.supports(specs[m])
        if why:
            raise InputError(why)


def _check_corruption(condition: Condition, specs: dict[str, ModalitySpec]) -> None:
    if condition.parts:
        if condition.masks not in MASKS:
            raise one_of("joint masks", condition.masks, MASKS)
        for part in condition.parts:
            _check_supported(get_corruption(part.corruption), part.modalities, specs)
        return
    spec = get_corruption(condition.name)
    _check_supported(spec, condition.modalities, specs)
    if condition.param is None:
        spec.param(condition.level)  # level range check (a raw param overrides the table)


def _check_removal(condition: Condition, specs: dict[str, ModalitySpec]) -> None:
    if condition.name not in FILLS:
        raise one_of("removal fill", condition.name, FILLS)


@condition_family(Family.CLEAN, perturbs=False, description="the inputs as they are: the reference every other cell is compared with")
def _clean(batch: Batch, condition: Condition, ctx: FamilyContext) -> Batch:
    return batch


@condition_family(Family.CORRUPTION, check=_check_corruption,
                  description="a registered corruption (or several together, a joint condition) at a severity level or raw parameter")
def _corruption(batch: Batch, condition: Condition, ctx: FamilyContext) -> Batch:
    if condition.parts:
        return _apply_joint(batch, condition, ctx.specs, ctx.seed)
    cspec = get_corruption(condition.name)

    def corrupted(m: str, x: torch.Tensor, spec: ModalitySpec, rng: SampleRandom) -> torch.Tensor:
        param = condition.param if condition.param is not None else cspec.param(condition.level, spec.kind)
        return cspec(x, float(param), rng, spec)

    return perturb_modalities(batch, condition, ctx, corrupted)


@condition_family(Family.REMOVAL, check=_check_removal,
                  description="modalities missing: values filled (name = zero | mean | noise | mask), present[m] False")
def _removal(batch: Batch, condition: Condition, ctx: FamilyContext) -> Batch:
    return perturb_modalities(batch, condition, ctx, lambda m, x, spec, rng: fill(x, condition.name, rng, spec), removes=True)


@condition_family(Family.CONFLICT, needs_donors=True,
                  description="modalities taken from a sample of another class (another sample, for regression)")
def _conflict(batch: Batch, condition: Condition, ctx: FamilyContext) -> Batch:
    mods = "+".join(condition.modalities)
    donor_rng = SampleRandom(batch.ids, ctx.seed, key=f"conflict-donor|{condition.name}|{mods}")
    donor_index = ctx.donors.donors(batch.ids, batch.labels, donor_rng)
    return perturb_modalities(batch, condition, ctx, lambda m, x, spec, rng: ctx.donors.take(m, donor_index).to(dtype=x.dtype))


def _validate(batch: Batch, condition: Condition, specs: dict[str, ModalitySpec]) -> ConditionFamily:
    """The condition's family, once the condition fits the batch (what every family relies on)."""
    family = family_of(condition)
    if not family.perturbs:
        if condition.modalities:
            raise InputError(f"condition {condition.key!r}: a {family.name} condition touches no modality; expected none")
        return family
    if not condition.modalities:
        raise InputError(f"condition {condition.key!r}: names no modality")
    for m in condition.modalities:
        if m not in batch.inputs or m not in specs:
            raise one_of("modality", m, [k for k in batch.inputs if k in specs])
    if not 0.0 < condition.rate <= 1.0:
        raise InputError(f"condition {condition.key!r}: rate {condition.rate} out of range; expected 0 < rate <= 1")
    if family.check is not None:
        family.check(condition, specs)
    return family


def apply_condition(
    batch: Batch,
    condition: Condition,
    specs: dict[str, ModalitySpec],
    seed: int,
    donors: DonorPool | None = None,
) -> Batch:
    """A new Batch with `condition` applied by its registered family; `batch` is never mutated.

    corruption : the registered function at `condition.param` (raw units) or the level's parameter;
        a joint condition applies each of its parts to its modalities, each under its own mask.
    removal : values filled (`condition.name` = zero|mean|noise|mask), `present[m]` False.
    conflict : values taken from a different-class donor in `donors` (a `DonorPool`).
    Other families: see `families.py`.
    """
    family = _validate(batch, condition, specs)
    if family.needs_donors and donors is None:
        raise InputError(f"a {family.name} condition needs a donor pool (DonorPool.from_data(data, device))")
    return family.apply(batch, condition, FamilyContext(specs, seed, donors))
