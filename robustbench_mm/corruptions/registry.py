"""The one corruption registry: built-ins and plug-ins register here with a decorator.

A corruption is a pure batched function

    fn(x, param, rng, spec) -> x'

x : Tensor (B, *spec.shape) of one modality, on any device, never mutated.
param : the severity parameter in real units (dB SNR, sigma in train-std units, fraction of tokens...),
    looked up from the severity table for levels 1-5, interpolated for continuous levels, or given
    directly by a preset protocol.
rng : a `SampleRandom` keyed on (protocol seed, condition, sample ids): the only source of randomness.
spec : the modality's `ModalitySpec` (value range, train statistics, vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..datasets.batch import KINDS, ModalitySpec
from ..errors import InputError, one_of
from .rng import SampleRandom

CorruptionFn = Callable[[torch.Tensor, float, SampleRandom, ModalitySpec], torch.Tensor]


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: its function and the facts a protocol and a report need about it."""

    name: str
    kinds: tuple[str, ...]
    severity: tuple[float, float, float, float, float]
    unit: str
    description: str
    fn: CorruptionFn
    identity: float = 0.0
    source: str = "builtin"

    def param(self, level: float) -> float:
        """The parameter for a level: the table at 1..5, linear in between, `identity` at 0."""
        if not 0.0 <= level <= 5.0:
            raise InputError(f"corruption {self.name!r}: level {level} out of range; expected 0 to 5")
        points = (self.identity,) + tuple(self.severity)
        low = min(int(level), 4)
        frac = level - low
        return float(points[low] + frac * (points[low + 1] - points[low]))

    def __call__(self, x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
        return self.fn(x, param, rng, spec)


_REGISTRY: dict[str, CorruptionSpec] = {}


def corruption(
    name: str,
    *,
    kinds: tuple[str, ...] | list[str],
    severity: tuple[float, ...] | list[float],
    unit: str,
    description: str,
    identity: float = 0.0,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register `fn` as corruption `name` for the given modality kinds and severity table (levels 1-5)."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError(f"corruption {name!r}: unknown modality kind {bad[0]!r}; expected one of: {', '.join(KINDS)}")
    if len(severity) != 5:
        raise InputError(f"corruption {name!r}: severity table needs 5 values (levels 1-5), got {len(severity)}")

    def register(fn: CorruptionFn) -> CorruptionFn:
        source = getattr(fn, "__module__", "builtin")
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise InputError(f"corruption {name!r} is already registered by {_REGISTRY[name].source}")
        _REGISTRY[name] = CorruptionSpec(
            name=name,
            kinds=kinds,
            severity=tuple(float(s) for s in severity),
            unit=unit,
            description=description,
            fn=fn,
            identity=float(identity),
            source="builtin" if source.startswith("robustbench_mm.") else source,
        )
        return fn

    return register


def get_corruption(name: str) -> CorruptionSpec:
    if name not in _REGISTRY:
        raise one_of("corruption", name, _REGISTRY)
    return _REGISTRY[name]


def list_corruptions(kind: str | None = None) -> list[CorruptionSpec]:
    """Registered corruptions, sorted by name, optionally only those applying to `kind`."""
    specs = sorted(_REGISTRY.values(), key=lambda s: s.name)
    return [s for s in specs if kind is None or kind in s.kinds]


def unregister(name: str) -> None:
    """Remove a corruption (used when a plug-in fails its contract check at load)."""
    _REGISTRY.pop(name, None)
