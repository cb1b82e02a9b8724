"""AV-MNIST-style folders of .npy arrays: `<modality>/<split>_data.npy` and `<split>_labels.npy`.

The layout is MultiBench's AV-MNIST (pliang279/MultiBench, datasets/avmnist/get_data.py,
`get_dataloader`): `image/train_data.npy` (60000, 784), `audio/train_data.npy` (60000, 112, 112),
`train_labels.npy`, and the same for `test`. Any subfolder holding `<split>_data.npy` is a
modality; splits are train, valid/val and test, as many as the labels files name. Values are kept
as stored (MultiBench divides both by 255 at load; our statistics standardise instead). A folder
named `image` holding flat square rows (N, s*s) or (N, H, W) becomes one-channel images, as
MultiBench reshapes it; other arrays get their kind from shape and dtype like a feature file.
Loaded with `allow_pickle=False`: an .npy holding Python objects is refused, not run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..limits import check_npy
from .common import SPLIT_ALIASES, ReadOptions, assemble_with_lengths, stack_splits

LABELS_SUFFIX = "_labels.npy"
DATA_FILE = "{split}_data.npy"


def matches(path: Path) -> bool:
    return path.is_dir() and any(path.glob(f"*{LABELS_SUFFIX}"))


def _load(path: Path) -> np.ndarray:
    check_npy(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{str(path)!r} is not a readable .npy array without pickled objects ({str(e).splitlines()[0]})") from None


def _as_image(name: str, x: np.ndarray) -> np.ndarray:
    """MultiBench stores AV-MNIST images as flat rows of 28*28; give them their (1, H, W) shape."""
    if name != "image":
        return x
    if x.ndim == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        return x.reshape(len(x), 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    return x


def read(path: Path, options: ReadOptions) -> dict:
    where = str(path)
    label_files = sorted(path.glob(f"*{LABELS_SUFFIX}"))
    splits: dict[str, str] = {}  # our split name -> the name the files use
    for f in label_files:
        stored = f.name[: -len(LABELS_SUFFIX)]
        ours = SPLIT_ALIASES.get(stored.lower())
        if ours is None:
            raise InputError(f"{where}: {f.name} names split {stored!r}; expected train, valid/val or test")
        splits[ours] = stored
    modalities = sorted(d.name for d in path.iterdir() if d.is_dir() and any(d.glob("*_data.npy")))
    if not modalities:
        raise InputError(f"{where}: no modality folder holding <split>_data.npy (e.g. image/train_data.npy)")
    per_split = {}
    for ours in ("train", "val", "test"):
        if ours not in splits:
            continue
        stored = splits[ours]
        arrays = {"labels": _load(path / f"{stored}{LABELS_SUFFIX}")}
        for m in modalities:
            f = path / m / DATA_FILE.format(split=stored)
            if not f.is_file():
                raise InputError(f"{where}: {stored}{LABELS_SUFFIX} exists but {m}/{f.name} does not; every modality needs every split")
            arrays[m] = _as_image(m, _load(f))
        for m in modalities:
            if len(arrays[m]) != len(arrays["labels"]):
                raise InputError(
                    f"{where}: {m}/{DATA_FILE.format(split=stored)} has {len(arrays[m])} samples, "
                    f"{stored}{LABELS_SUFFIX} has {len(arrays['labels'])}; expected one row per label"
                )
        labels = arrays["labels"]
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.dtype.kind == "f" and np.isfinite(labels).all() and (labels == np.round(labels)).all():
            labels = labels.astype(np.int64)  # class ids stored as floats; MultiBench casts them with astype(int)
        arrays["labels"] = labels
        per_split[ours] = arrays
    return assemble_with_lengths(where, stack_splits(where, per_split), options, name=path.name, lengths={})
