"""Boundary checks between a model and the data it is about to see (one-line InputErrors)."""

from __future__ import annotations

import torch

from ..datasets.batch import ModalitySpec
from ..errors import InputError


def _as_specs(specs) -> dict[str, ModalitySpec]:
    if isinstance(specs, dict):
        return {k: v if isinstance(v, ModalitySpec) else ModalitySpec.from_dict(v) for k, v in specs.items()}
    out = [s if isinstance(s, ModalitySpec) else ModalitySpec.from_dict(s) for s in specs]
    return {s.name: s for s in out}


def check_inputs(model_specs, data_specs, *, model: str = "model", data: str = "data") -> None:
    """Raise InputError unless the data's modalities are exactly the model's, with compatible kind/shape."""
    ms, ds = _as_specs(model_specs), _as_specs(data_specs)
    missing = [m for m in ms if m not in ds]
    if missing:
        raise InputError(
            f"{model} needs modality {missing[0]!r} but {data} has only: {', '.join(ds) or 'none'}"
        )
    extra = [m for m in ds if m not in ms]
    if extra:
        raise InputError(
            f"{data} has modality {extra[0]!r} that {model} does not use (it takes: {', '.join(ms)}); "
            f"select the model's modalities with --modalities"
        )
    for name, spec in ms.items():
        why = spec.compatible_with(ds[name])
        if why:
            raise InputError(f"{data} modality {name!r} has {why}")


def check_tensors(specs, inputs: dict[str, torch.Tensor], *, data: str = "data") -> None:
    """Raise InputError on a wrong dtype (tokens integer, others float) or NaN/Inf values."""
    for name, spec in _as_specs(specs).items():
        if name not in inputs:
            raise InputError(f"{data} lacks modality {name!r}")
        x = inputs[name]
        if spec.kind == "tokens":
            if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
                raise InputError(f"{data} modality {name!r}: token ids must be integers, got {x.dtype}")
            continue
        if not x.dtype.is_floating_point:
            raise InputError(f"{data} modality {name!r} (kind {spec.kind}): expected floating point values, got {x.dtype}")
        bad = ~torch.isfinite(x)
        if bad.any():
            count = int(bad.reshape(x.shape[0], -1).any(1).sum()) if x.dim() else 1
            raise InputError(f"{data} modality {name!r} contains NaN/Inf values in {count} sample(s); expected finite numbers")
