"""Splits and train statistics shared by every dataset source: the embedded datasets (mfeat,
avdigits, synthetic), feature files, factories and the readers.

`stratified_split` cuts 60/20/20 per class, identically on any machine; `train_stats` gives the
mean/std a `ModalitySpec` carries (for mean-fill and noise scaling); `build_splits` turns checked
arrays into one `MultimodalData` per split, every split carrying the train statistics.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .batch import ModalitySpec, MultimodalData

SPLITS = ("train", "val", "test")
WHOLE = "all"  # the split name of a file or factory without a `split`: every sample is evaluated
# A std this small relative to max(1, |mean|) marks a feature constant in the train split; it is
# replaced by 1.0 (scikit-learn's StandardScaler convention), so standardising neither divides by
# zero nor blows a perturbation of that feature up by orders of magnitude.
CONSTANT_STD_REL = 1e-8


def stratified_split(labels: np.ndarray, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Row indices of train/val/test, stratified by class, sorted; identical on any machine.

    Each class's rows are permuted with `numpy.random.default_rng(seed)` (classes in increasing
    order) and cut at round(fraction * class size). Regression labels (float) are split unstratified.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if labels.dtype.kind in "iu" else [np.arange(len(labels))]
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for rows in groups:
        rows = rows[rng.permutation(len(rows))]
        n_train = int(round(fractions[0] * len(rows)))
        n_val = int(round((fractions[0] + fractions[1]) * len(rows))) - n_train
        parts["train"].append(rows[:n_train])
        parts["val"].append(rows[n_train : n_train + n_val])
        parts["test"].append(rows[n_train + n_val :])
    return {s: np.sort(np.concatenate(p)).astype(np.int64) for s, p in parts.items()}


def train_stats(x: np.ndarray, kind: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Mean and std (float32) over the samples of `x` (N, *shape), shaped as `ModalitySpec` says.

    vector: per feature (D,); image: per pixel (C, H, W); sequence: per channel (D,); audio: one
    scalar (0-d); tokens: none. Population std (ddof=0); constant features get std 1.0.
    """
    if kind == "tokens":
        return None, None
    x = x.astype(np.float64)
    axes = {"vector": (0,), "image": (0,), "sequence": (0, 1), "audio": None}[kind]
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std = np.where(std <= CONSTANT_STD_REL * np.maximum(1.0, np.abs(mean)), 1.0, std)
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def build_splits(
    name: str,
    source: str,
    arrays: dict[str, np.ndarray],
    kinds: dict[str, str],
    labels: np.ndarray,
    ids: np.ndarray,
    split_rows: dict[str, np.ndarray],
    *,
    stats_rows: np.ndarray | None = None,
    value_ranges: dict[str, tuple[float, float] | None] | None = None,
    vocab_sizes: dict[str, int] | None = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    scalings: dict[str, str] | None = None,
) -> dict[str, MultimodalData]:
    """One `MultimodalData` per entry of `split_rows`, all carrying the same specs.

    arrays : modality -> (N, *shape) array, already checked; float arrays become float32 tensors,
        tokens int64. stats_rows : rows the mean/std come from (the train split; all rows if None).
    scalings : modality -> the rule that put the values in their range (for the input contract).
    """
    value_ranges = value_ranges or {}
    vocab_sizes = vocab_sizes or {}
    scalings = scalings or {}
    specs = {}
    for m, x in arrays.items():
        rows = stats_rows if stats_rows is not None else slice(None)
        mean, std = train_stats(x[rows], kinds[m])
        specs[m] = ModalitySpec(
            name=m,
            kind=kinds[m],
            shape=x.shape[1:],
            mean=mean,
            std=std,
            value_range=value_ranges.get(m),
            vocab_size=vocab_sizes.get(m),
            scaling=scalings.get(m, ""),
        )
    regression = labels.dtype.kind == "f"
    out = {}
    for split, rows in split_rows.items():
        out[split] = MultimodalData(
            name=name,
            split=split,
            specs=dict(specs),
            inputs={m: _to_tensor(x[rows], kinds[m]) for m, x in arrays.items()},
            labels=torch.from_numpy(np.ascontiguousarray(labels[rows])).to(torch.float32 if regression else torch.int64),
            ids=torch.from_numpy(np.ascontiguousarray(ids[rows]).astype(np.int64)),
            task="regression" if regression else "classification",
            num_classes=None if regression else num_classes,
            source=source,
            class_names=class_names,
        )
    return out


def _to_tensor(x: np.ndarray, kind: str) -> torch.Tensor:
    dtype = torch.int64 if kind == "tokens" else torch.float32
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
