"""The data files shipped inside the package: read only after checking they are the built ones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import InputError


def read_embedded(path: Path, sha256: str, tool: str) -> dict[str, np.ndarray]:
    """The arrays of an embedded .npz, refused unless its SHA-256 is the one `tool` produces."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the embedded {path.stem} data ({e}); reinstall the package") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise InputError(f"{path}: SHA-256 {digest}, expected {sha256}; rebuild with {tool}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def select_modalities(dataset: str, requested, default: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
    """The modalities a user asked for (default: `default`), each one the dataset has, none twice."""
    names = tuple(requested) if requested else default
    unknown = [m for m in names if m not in available]
    if unknown:
        raise InputError(f"{dataset} has no modality {unknown[0]!r}; available: {', '.join(available)}")
    if len(set(names)) != len(names):
        raise InputError(f"{dataset} modalities {list(names)} repeat a name; expected each at most once")
    return names
