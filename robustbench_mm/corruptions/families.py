"""Condition families (`CONDITION_FAMILIES`, a `Registry`): what a condition does to a batch.

A family is one object registered with the `@condition_family` decorator on its apply function

    fn(batch, condition, ctx) -> Batch

batch : the clean `Batch`, never mutated.
condition : a validated `Condition` of this family (modalities present in the data, 0 < rate <= 1).
ctx : a `FamilyContext`: the modality specs, the cell's seed and, for a family that says it needs
    donors, the `DonorPool` of the whole split.

The family also says what the engine must know about it, so no caller compares family names:
`needs_donors` (the engine builds the split's donor pool), `full_forward` (the engine re-encodes
every modality, no encoder-output reuse, because the family changes more than its touched
modalities' inputs) and `perturbs` (False only for the reference condition, clean: it names no
modality and affects no sample). `check` validates a condition before any batch is touched.

Built-ins (registered in `apply.py`) are named by `domain.Family`; a plug-in file or another
package adds its own with the same decorator and then names it in a protocol's `[[condition]]`
table. Entry-point group: `robustbench_mm.condition_families`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..registry import Registry, source_of
from .condition import Condition

if TYPE_CHECKING:
    from ..datasets.batch import Batch, ModalitySpec
    from .conflict import DonorPool


@dataclass(frozen=True)
class FamilyContext:
    """What a family's apply function may use besides the batch and the condition."""

    specs: dict[str, "ModalitySpec"]
    seed: int
    donors: "DonorPool | None" = None


ApplyFn = Callable[["Batch", Condition, FamilyContext], "Batch"]
CheckFn = Callable[[Condition, dict[str, "ModalitySpec"]], None]


@dataclass(frozen=True)
class ConditionFamily:
    """A registered condition family (see the module docstring for what each field tells the engine);
    where it came from is the registry's to say (`CONDITION_FAMILIES.source(name)`)."""

    name: str
    apply: ApplyFn
    description: str
    needs_donors: bool = False
    full_forward: bool = False
    perturbs: bool = True
    check: CheckFn | None = None


CONDITION_FAMILIES: Registry[ConditionFamily] = Registry(
    "condition family", group="robustbench_mm.condition_families"
)


def condition_family(
    name: str,
    *,
    description: str,
    needs_donors: bool = False,
    full_forward: bool = False,
    perturbs: bool = True,
    check: CheckFn | None = None,
) -> Callable[[ApplyFn], ApplyFn]:
    """Register `fn(batch, condition, ctx) -> Batch` as condition family `name`."""

    def register(fn: ApplyFn) -> ApplyFn:
        key = str(name)  # a `Family` member registers under its plain value
        if key in CONDITION_FAMILIES and CONDITION_FAMILIES[key].apply is fn:
            return fn
        CONDITION_FAMILIES.add(key, ConditionFamily(
            name=key, apply=fn, description=description, needs_donors=needs_donors,
            full_forward=full_forward, perturbs=perturbs, check=check,
        ), source_of(fn))
        return fn

    return register


def get_family(name: str) -> ConditionFamily:
    """The registered family `name`; a miss is one line listing the registered families."""
    return CONDITION_FAMILIES.get(name)


def family_of(condition: Condition) -> ConditionFamily:
    """The family object of a condition."""
    return get_family(condition.family)
