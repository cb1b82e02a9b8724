"""A `Condition`: one column of the evaluation grid, and nothing about how to compute it."""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("clean", "corruption", "removal", "conflict")


@dataclass(frozen=True)
class Condition:
    """One perturbation setting applied to a whole evaluation set.

    family : "clean", "corruption" (a registered corruption), "removal" (modalities missing,
        `name` is the fill: zero, mean, noise, mask) or "conflict" (modalities swapped in from a
        sample of another class).
    name : corruption name, fill name, "clean" or "conflict".
    modalities : the modalities it touches (empty for clean).
    level : severity level 0-5 (continuous allowed) for corruptions; 0 otherwise.
    param : a raw parameter in the corruption's units that overrides the severity table (presets).
    rate : fraction of samples affected, chosen per sample by common random numbers (1 = all).
    group : the protocol group it came from, for reports.
    """

    family: str
    name: str
    modalities: tuple[str, ...] = ()
    level: float = 0.0
    param: float | None = None
    rate: float = 1.0
    group: str = ""

    @property
    def key(self) -> str:
        """Stable identity, used to seed the condition's randomness and to name its results."""
        mods = "+".join(self.modalities) or "-"
        param = "" if self.param is None else f"|p={self.param:g}"
        return f"{self.family}|{self.name}|{mods}|l={self.level:g}{param}|r={self.rate:g}"

    @property
    def touched(self) -> tuple[str, ...]:
        """Modalities whose inputs change (the engine re-encodes only these)."""
        return () if self.family == "clean" else self.modalities


CLEAN = Condition(family="clean", name="clean", group="clean")
