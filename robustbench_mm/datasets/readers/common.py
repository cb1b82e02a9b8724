"""What the readers share: split names, ids across splits, aligning by id, padding, optional imports.

Every reader turns its format into the plain arrays a feature file holds ({modality: (N, ...),
labels, split, ids}) and hands them to `files.assemble`, so kinds, checks and train statistics are
exactly those of a .npz; only media folders (streamed) build their splits themselves.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ...errors import InputError
from ..batch import MultimodalData
from ..files import assemble
from ..splits import SPLITS

# The names splits go by in the field's layouts (MultiBench says "valid", the SDK's folds "valid"
# and "dev" elsewhere), each mapped to ours.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
# Stable ids when a format has none: split index * 10^9 + position in that split (as for factories).
SPLIT_ID_STRIDE = 1_000_000_000
EXTRAS = {"h5py": "h5", "pyarrow": "parquet", "soundfile": "hf"}


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may be told beyond the path.

    kinds : --kind overrides. seed : the 60/20/20 split seed when training on a set without splits
        (None = evaluation: such a set is one split, "all"). trust : --trust-data (pickles).
    tokenizer : "module:function" mapping a text to a list of token ids (None = whitespace vocabulary).
    keep_empty_text : MultiBench affect pickles: keep the segments without text that MultiBench's
        `drop_entry` removes (--keep-empty-text).
    outside_paths : --allow-outside-paths: a data file may name files outside the dataset's folder.
    classes : --classes: the class names in the model's order (media labels that are names).
    """

    kinds: dict[str, str] | None = None
    seed: int | None = None
    trust: bool = False
    tokenizer: str | None = None
    keep_empty_text: bool = False
    outside_paths: bool = False
    classes: tuple[str, ...] | None = None


def optional_import(module: str, fmt: str):
    """Import an optional dependency, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        try:
            version = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            raise InputError(
                f"reading {fmt} needs the Python package {module!r}: pip install 'robustbench-mm[{EXTRAS[module]}]'"
            ) from None
        found = getattr(sys.modules.get(module), "__file__", None) or e.path or "?"
        raise InputError(
            f"reading {fmt}: {module} {version} is installed but importing it failed ({e}; loaded from {found}); "
            f"a file or folder named {module} on the import path may shadow it"
        ) from None


def few(items: Iterable, limit: int = 3) -> str:
    """'a, b, c (and 4 more)': the first few of a sorted collection, for error messages."""
    items = sorted(items, key=str)
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def check_same_keys(where: str, keys: dict[str, set], what: str = "ids") -> list:
    """The keys every source has (sorted), or one line naming a source whose keys differ."""
    names = list(keys)
    reference = keys[names[0]]
    for name in names[1:]:
        missing, extra = reference - keys[name], keys[name] - reference
        if missing or extra:
            side, other, diff = (name, names[0], missing) if missing else (names[0], name, extra)
            raise InputError(f"{where}: {other} has {len(diff)} {what} that {side} lacks: {few(diff)}; every modality needs the same {what}")
    return sorted(reference, key=str)


def stack_splits(where: str, per_split: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{split: {name: array}} -> one table with `split` and `ids` (split-offset positions)."""
    names = {s: set(arrays) for s, arrays in per_split.items()}
    first = next(iter(per_split))
    for s, keys in names.items():
        if keys != names[first]:
            diff = sorted(keys ^ names[first])
            raise InputError(f"{where}: split {s!r} has {sorted(keys)}, split {first!r} has {sorted(names[first])} (differ in {diff[0]!r})")
    for s, arrays in per_split.items():
        counts = {k: len(v) for k, v in arrays.items()}
        if len(set(counts.values())) > 1:
            raise InputError(f"{where}: split {s!r} has differing sample counts {counts}; expected one per sample in every array")
    table = {}
    for k in names[first]:
        parts = [per_split[s][k] for s in per_split]
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise InputError(f"{where}: {k!r} has per-sample shapes {sorted(shapes)} across splits; expected one")
        table[k] = np.concatenate(parts)
    table["split"] = np.concatenate([np.full(len(per_split[s]["labels"]), s) for s in per_split])
    table["ids"] = np.concatenate(
        [SPLITS.index(s) * SPLIT_ID_STRIDE + np.arange(len(per_split[s]["labels"])) for s in per_split]
    ).astype(np.int64)
    return table


def pad_sequences(where: str, name: str, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length (T_i, D) arrays -> zero-padded (N, max T, D) float32 and the lengths (N,)."""
    dims = {s.shape[1:] for s in sequences}
    if len(dims) > 1 or any(s.ndim != 2 for s in sequences):
        raise InputError(f"{where}: modality {name!r} has step shapes {sorted(dims)[:3]}; expected (T, D) with one D")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), int(lengths.max(initial=0)), *next(iter(dims), (0,))), dtype=np.float32)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


def assemble_with_lengths(
    where: str, table: dict[str, np.ndarray], options: ReadOptions, name: str, lengths: dict[str, np.ndarray], **known
) -> dict[str, MultimodalData]:
    """`assemble` a table (`known`: its scalings / value_ranges), then attach each padded
    modality's lengths to the samples of each split."""
    splits = assemble(where, where, table, options.kinds, name=name, seed=options.seed, **known)
    if not lengths:
        return splits
    ids = table.get("ids", np.arange(len(table["labels"])))
    order = np.argsort(ids)
    out = {}
    for s, data in splits.items():
        rows = order[np.searchsorted(ids[order], data.ids.numpy())]
        out[s] = replace(data, lengths={m: torch.from_numpy(v[rows]) for m, v in lengths.items() if m in data.specs})
    return out


def confined(root: Path, path: Path, where: str, options: ReadOptions) -> Path:
    """`path`, named by a data file (or found in the dataset's folder), if it lies inside `root`
    once symlinks and `..` are resolved; else one line (unless --allow-outside-paths). A data file
    from elsewhere must not make us read (and hash into a manifest) /etc/passwd or a private key."""
    if options.outside_paths:
        return path
    inside = root.resolve()
    if not path.resolve().is_relative_to(inside):
        raise InputError(
            f"{where}: {str(path)!r} lies outside the dataset folder {str(inside)!r} (through '..', an absolute "
            "path or a symlink); move it inside or pass --allow-outside-paths"
        )
    return path
