"""The input contract: what a model receives for each modality, written down once.

Per modality: dtype, layout (the batch tensor's shape), the value range and the rule that put the
stored values there (`ModalitySpec.scaling`), what a removed modality looks like under each fill,
and, per model, whether `forward(inputs, present)` gets the presence mask. The engine hands a model
the values in data units (the rule below), never standardised: the suite's own models standardise
inside with the train mean/std they were built with, a foreign model receives exactly these values.
`rbmm show inputs` prints it; every run's manifest records it (`inputs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from ..errors import InputError
from .batch import PAD_ID, ModalitySpec, SplitData, map_range

VALUES = "data units as listed (the engine does not standardise; the suite's own models standardise inside with their train mean/std)"
LAYOUTS = {
    "vector": "(B, D) features",
    "image": "(B, C, H, W) pixels",
    "sequence": "(B, T, D) time steps",
    "audio": "(B, L) mono waveform",
    "tokens": f"(B, L) token ids, {PAD_ID} = pad, 1 = unknown",
}
# What `corruptions.removal.fill` puts in place of a removed modality (tests/test_contract.py checks
# these sentences against the fills themselves). Every fill also sets present[m] False.
REMOVED = {
    "zero": "zeros",
    "mean": "the train mean",
    "noise": "draws from N(train mean, train std), clipped to the value range",
    "mask": "zeros (for models that read the presence mask)",
}
REMOVED_TOKENS = f"pad ids ({PAD_ID}) under every fill"
# Words in a modality's name that say what it is: an array read as another kind, which `--kind`
# could make it, is worth a warning. (A float "text" array is word embeddings, a sequence by
# design: only integer ids can be tokens, and those are tokens already.)
NAMED_KINDS = {"audio": "audio", "wav": "audio", "image": "image", "img": "image"}


@dataclass(frozen=True)
class ModalityInputs:
    """What one modality's batch tensor is."""

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]  # per sample
    layout: str
    value_range: tuple[float, float] | None
    scaling: str
    removed: dict[str, str]  # fill -> what the model then sees
    padded: bool = False  # zero-padded sequences whose lengths the dataset keeps

    def to_json(self) -> dict:
        return {
            "kind": self.kind, "dtype": self.dtype, "shape": list(self.shape), "layout": self.layout,
            "value_range": None if self.value_range is None else [float(v) for v in self.value_range],
            "scaling": self.scaling, "removed": dict(self.removed), "padded": self.padded,
        }


@dataclass(frozen=True)
class InputContract:
    """The inputs of one evaluation: per modality what is fed, per model whether the mask is passed."""

    modalities: tuple[ModalityInputs, ...]
    presence_mask: dict[str, bool] = field(default_factory=dict)  # model name -> forward(inputs, present)?
    values: str = VALUES

    def to_json(self) -> dict:
        """JSON values, as the manifest's `inputs` field holds them."""
        return {
            "values": self.values,
            "modalities": {m.name: m.to_json() for m in self.modalities},
            "presence_mask": dict(self.presence_mask),
        }

    def lines(self) -> list[str]:
        """The contract as text, one modality per block (for `rbmm show inputs`)."""
        out = [f"values: {self.values}"]
        for m in self.modalities:
            vr = "none (unbounded)" if m.value_range is None else f"[{m.value_range[0]:g}, {m.value_range[1]:g}]"
            out += [
                f"{m.name}: {m.kind}, {m.dtype} {m.layout}, per sample {tuple(m.shape)}"
                + (" (zero-padded; lengths kept)" if m.padded else ""),
                f"  value range: {vr}; {m.scaling}",
                "  removed: " + "; ".join(f"{fill}: {what}" for fill, what in m.removed.items()) + "; present[m] = False",
            ]
        for model, takes in self.presence_mask.items():
            out.append(
                f"model {model}: forward(inputs, present) with the presence mask" if takes
                else f"model {model}: forward(inputs) only; a removed modality is visible to it only through the fill"
            )
        return out


def modality_inputs(spec: ModalitySpec, fills: tuple[str, ...] | list[str] = tuple(REMOVED), padded: bool = False) -> ModalityInputs:
    """The contract entry of one modality, for the removal fills `fills` (listed in `REMOVED`'s order)."""
    unknown = [f for f in fills if f not in REMOVED]
    if unknown:
        raise InputError(f"removal fill {unknown[0]!r}: expected one of {', '.join(REMOVED)}")
    removed = {f: REMOVED_TOKENS if spec.kind == "tokens" else REMOVED[f] for f in REMOVED if f in fills}
    return ModalityInputs(
        name=spec.name, kind=spec.kind, dtype=str(torch.int64 if spec.kind == "tokens" else torch.float32).removeprefix("torch."),
        shape=spec.shape, layout=LAYOUTS[spec.kind], value_range=spec.value_range,
        scaling=spec.scaling or "values as stored", removed=removed, padded=padded,
    )


def input_contract(data: SplitData, fills=tuple(REMOVED), presence_mask: dict[str, bool] | None = None) -> InputContract:
    """The contract of `data`'s modalities (removal `fills`; models -> whether they take `present`)."""
    return InputContract(
        modalities=tuple(modality_inputs(spec, fills, padded=name in data.lengths) for name, spec in data.specs.items()),
        presence_mask=dict(presence_mask or {}),
    )


def kind_warnings(specs: dict[str, ModalitySpec]) -> list[str]:
    """One line per modality whose name says audio or image but whose array was read as another
    kind that `--kind NAME=audio|image` would accept (2-D rows as audio; square rows or (N, H, W)
    as images)."""
    out = []
    for name, spec in specs.items():
        said = next((kind for word, kind in NAMED_KINDS.items() if word in name.lower()), None)
        if said is None or spec.kind == said:
            continue
        square = len(spec.shape) == 1 and math.isqrt(spec.shape[0]) ** 2 == spec.shape[0]
        possible = spec.kind in ("vector", "tokens") if said == "audio" else (spec.kind in ("vector", "tokens") and square) or spec.kind == "sequence"
        if possible:
            out.append(
                f"modality {name!r} is named like {said} but was read as kind {spec.kind!r} (shape {spec.shape}); "
                f"{spec.kind} corruptions apply to it, not {said} ones; pass --kind {name}={said} if it is {said}"
            )
    return out


# --------------------------------------------------------------------------- value ranges


def parse_value_ranges(items: list[str] | str | None) -> dict[str | None, tuple[float, float]]:
    """`--value-range` values -> {modality or None (every image): (lo, hi)}.

    "LO,HI" applies to every image modality; "NAME=LO,HI" to the named modality of any kind.
    """
    out: dict[str | None, tuple[float, float]] = {}
    for item in [items] if isinstance(items, str) else items or []:
        name, sep, numbers = item.rpartition("=")
        name = name.strip() if sep else None
        try:
            lo_hi = [float(v) for v in numbers.split(",")]
        except ValueError:
            lo_hi = []
        if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1] or (sep and not name):
            raise InputError(f"--value-range {item!r}: expected LO,HI (every image) or NAME=LO,HI with LO < HI")
        if name in out and out[name] != tuple(lo_hi):
            raise InputError(f"--value-range gives {('modality ' + repr(name)) if name else 'the images'} two ranges; expected one")
        out[name] = (lo_hi[0], lo_hi[1])
    return out


def with_value_ranges(data: SplitData, ranges: dict[str | None, tuple[float, float]]) -> SplitData:
    """`data` with the stated value ranges: a modality that has a range is rescaled linearly from it
    onto the new one (uint8 pixels 0..255 with (0, 1) are divided by 255; statistics follow); one
    without a range gets the range declared, its values untouched."""
    unknown = [m for m in ranges if m is not None and m not in data.specs]
    if unknown:
        raise InputError(f"--value-range names modality {unknown[0]!r}; the dataset has {', '.join(data.specs)}")
    targets = {m: ranges[m] for m in data.specs if m in ranges}
    if None in ranges:
        targets.update({m: ranges[None] for m, s in data.specs.items() if s.kind == "image" and m not in ranges})
    for m in targets:
        if data.specs[m].kind == "tokens":
            raise InputError(f"--value-range names modality {m!r}, which holds token ids; a value range applies to numbers")
    specs, mapped = dict(data.specs), {}
    for m, (lo, hi) in targets.items():
        spec = specs[m]
        if spec.value_range is None:
            specs[m] = replace(spec, value_range=(lo, hi), scaling=f"{spec.scaling or 'values as stored'}; range declared by --value-range")
            continue
        old = spec.value_range
        if old == (lo, hi):
            continue
        mapped[m] = (old, (lo, hi))
        specs[m] = replace(
            spec, value_range=(lo, hi),
            mean=None if spec.mean is None else map_range(spec.mean, old, (lo, hi)),
            std=None if spec.std is None else spec.std / (old[1] - old[0]) * (hi - lo),
            scaling=f"{spec.scaling or 'values as stored'}, then mapped from [{old[0]:g}, {old[1]:g}] onto [{lo:g}, {hi:g}] by --value-range",
        )
    return data.rescaled(specs, mapped)

