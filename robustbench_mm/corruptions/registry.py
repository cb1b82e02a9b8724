"""The corruption registry (`CORRUPTIONS`, a `Registry`): built-ins and plug-ins register here
with the `@corruption` decorator.

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

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from ..datasets.batch import KINDS, ModalitySpec
from ..errors import InputError, one_of
from ..registry import BUILTIN, Registry, source_of
from .rng import SampleRandom

CorruptionFn = Callable[[torch.Tensor, float, SampleRandom, ModalitySpec], torch.Tensor]
SpecCheck = Callable[[ModalitySpec], "str | None"]


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: its function and the facts a protocol and a report need about it.

    severity : the table for levels 1-5 (of the first kind when the table differs per kind).
    tables : kind -> table, when a corruption has one table per modality kind (same name, units
        natural to each kind, e.g. gaussian_noise: value-range fraction for images, train std for
        vectors). Empty when one table serves every kind.
    check : optional extra requirement on the modality (e.g. 3 channels), returning why not or None.
    catalog : False for a preset's kernel that reads its data in units a protocol must state
        (spectrogram_noise: natural-log magnitudes): used by name only, so "all" and "kind:K"
        selections (the `standard` grid) leave it out.
    revision : 1, raised when a built-in kernel's output bits change on purpose (reverb: 2); it
        enters the hash of every protocol that can select the kernel, so runs of the two are not mixed.
    """

    name: str
    kinds: tuple[str, ...]
    severity: tuple[float, float, float, float, float]
    unit: str
    description: str
    fn: CorruptionFn
    identity: float = 0.0
    tables: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    check: SpecCheck | None = None
    catalog: bool = True
    revision: int = 1

    @property
    def source(self) -> str:
        """Where it came from ('builtin', a module, a plug-in file, an entry point): the registry's record."""
        return BUILTIN if self.name in SUITE_CORRUPTIONS else CORRUPTIONS.source(self.name)

    def table(self, kind: str | None = None) -> tuple[float, ...]:
        """The severity table for levels 1-5 of `kind` (the default table when kind is None)."""
        return tuple(self.tables.get(kind, self.severity)) if kind is not None else self.severity

    def param(self, level: float, kind: str | None = None) -> float:
        """The parameter for a level: the table at 1..5, linear in between, `identity` at 0.

        An infinite identity marks a dB quantity (SNR): between levels 0 and 1 the corruption's
        amplitude then grows linearly, i.e. param = table[0] - 20*log10(level).
        """
        if not 0.0 <= level <= 5.0:
            raise InputError(f"corruption {self.name!r}: level {level} out of range; expected 0 to 5")
        table = self.table(kind)
        if level < 1.0 and math.isinf(self.identity):
            return self.identity if level == 0.0 else float(table[0] - 20.0 * math.log10(level))
        points = (self.identity,) + tuple(table)
        low = min(int(level), 4)
        frac = level - low
        return float(points[low] + frac * (points[low + 1] - points[low]))

    def supports(self, spec: ModalitySpec) -> str | None:
        """None when this corruption applies to the modality, else a one-line reason."""
        if spec.kind not in self.kinds:
            return (
                f"corruption {self.name!r} does not apply to modality {spec.name!r} of kind {spec.kind!r}; "
                f"it supports: {', '.join(self.kinds)}"
            )
        if self.check is not None:
            why = self.check(spec)
            if why:
                return f"corruption {self.name!r} does not apply to modality {spec.name!r}: {why}"
        return None

    def __call__(self, x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
        """fn(x, param, rng, spec); the identity parameter returns an exact copy (level 0 is the identity)."""
        if param == self.identity:
            return x.clone()
        return self.fn(x, param, rng, spec)


CORRUPTIONS: Registry[CorruptionSpec] = Registry("corruption")

# ImageNet-C's kernels at ImageNet-C's parameters, one suite per image-size table (imagenet_c.py),
# named `<suite>/<ImageNet-C name>`. Kept beside the catalog, not in it: the catalog's kernels of the
# same ImageNet-C names keep their own tables (and the catalog's contract tests their own rules).
SUITE_CORRUPTIONS: dict[str, CorruptionSpec] = {}

# The two ImageNet-C names the catalog has no kernel of (hendrycks/robustness,
# ImageNet-C/create_c/make_imagenet_c.py) mean ImageNet-C's own operation wherever they are used:
# JPEG through a real codec, the reference's elastic transform. ImageNet-C's `saturate` is not our
# `desaturate` (it scales HSV saturation by 0.3 ... 20, over-saturating from level 3) and so is no alias.
ALIASES: dict[str, str] = {"jpeg_compression": "imagenet-c/jpeg_compression",
                           "elastic_transform": "imagenet-c/elastic_transform"}


def register_suite(spec: CorruptionSpec) -> None:
    """Add one ImageNet-C suite kernel (`<suite>/<name>`)."""
    SUITE_CORRUPTIONS[spec.name] = spec


def corruption(
    name: str,
    *,
    kinds: tuple[str, ...] | list[str],
    severity: Sequence[float] | Mapping[str, Sequence[float]],
    unit: str,
    description: str,
    identity: float = 0.0,
    check: SpecCheck | None = None,
    catalog: bool = True,
    revision: int = 1,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register `fn` as corruption `name` for the given modality kinds and severity table (levels 1-5).

    `severity` is one table of 5 values, or a mapping kind -> table covering every kind in `kinds`.
    """
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError(f"corruption {name!r}: unknown modality kind {bad[0]!r}; expected one of: {', '.join(KINDS)}")
    if isinstance(severity, Mapping):
        if set(severity) != set(kinds):
            raise InputError(f"corruption {name!r}: severity tables given for {sorted(severity)}, kinds are {sorted(kinds)}")
        tables = {k: tuple(float(v) for v in severity[k]) for k in kinds}
    else:
        tables = {k: tuple(float(v) for v in severity) for k in kinds}
    for k, t in tables.items():
        if len(t) != 5:
            raise InputError(f"corruption {name!r}: severity table needs 5 values (levels 1-5), got {len(t)} for {k!r}")
    distinct = len({t for t in tables.values()}) > 1

    def register(fn: CorruptionFn) -> CorruptionFn:
        if name in ALIASES:
            raise InputError(f"corruption {name!r} is already the name of {ALIASES[name]!r} (an ImageNet-C alias)")
        if name in CORRUPTIONS and CORRUPTIONS[name].fn is fn:
            return fn
        source = source_of(fn)
        CORRUPTIONS.add(name, CorruptionSpec(
            name=name,
            kinds=kinds,
            severity=tables[kinds[0]],
            unit=unit,
            description=description,
            fn=fn,
            identity=float(identity),
            tables=tables if distinct else {},
            check=check,
            catalog=catalog,
            revision=revision,
        ), source)
        return fn

    return register


def get_corruption(name: str) -> CorruptionSpec:
    """The registered corruption `name`, an ImageNet-C suite kernel (`imagenet-c/fog`), or the one an
    ImageNet-C alias (`ALIASES`) stands for."""
    name = ALIASES.get(name, name)
    if name in SUITE_CORRUPTIONS:
        return SUITE_CORRUPTIONS[name]
    if name not in CORRUPTIONS:
        raise one_of("corruption", name, CORRUPTIONS.names() + list(ALIASES) + list(SUITE_CORRUPTIONS))
    return CORRUPTIONS[name]


def list_corruptions(kind: str | None = None) -> list[CorruptionSpec]:
    """Registered corruptions, sorted by name, optionally only those applying to `kind`."""
    specs = sorted((spec for _, spec in CORRUPTIONS.items()), key=lambda s: s.name)
    return [s for s in specs if kind is None or kind in s.kinds]


def unregister(name: str) -> None:
    """Remove a corruption (used when a plug-in fails its contract check at load)."""
    CORRUPTIONS.remove(name)


def set_source(name: str, source: str) -> None:
    """Record where a registered corruption came from (a plug-in's file or entry point)."""
    CORRUPTIONS.set_source(name, source)
