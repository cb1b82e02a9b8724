"""AV-MNIST-style folders of .npy arrays: `<modality>/<split>_data.npy` and `<split>_labels.npy`.

The layout is MultiBench's AV-MNIST (pliang279/MultiBench, datasets/avmnist/get_data.py,
`get_dataloader`): `image/train_data.npy` (60000, 784), `audio/train_data.npy` (60000, 112, 112),
`train_labels.npy`, and the same for `test`. Any subfolder holding `<split>_data.npy` is a
modality; splits are train, valid/val and test, as many as the labels files name. Without valid
files, validation is what `get_dataloader` makes it: the last 5,000 training rows (its
`trainlist[55000:60000]`), and train is the rows before them (a train split of 5,000 rows or
fewer gets no validation: it can be evaluated, not trained on). As MultiBench feeds them to its
CNNs, a folder named `image` holding flat square rows (N, s*s) and any 3-D array (N, H, W), such
as AV-MNIST's audio spectrograms, become one-channel images (`--kind` keeps another kind); other
arrays get their kind from shape and dtype like a feature file. Pixel values are kept in pixel
units: images within [0, 255] have value range (0, 255) (MultiBench divides both modalities by 255
at load; `--value-range 0,1` gives exactly its inputs). Loaded with `allow_pickle=False`: an .npy
holding Python objects is refused, not run.
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
VALID_ROWS = 5000  # MultiBench's AV-MNIST validation: trainlist[55000:60000] of 60,000 training rows
PIXEL_SCALING = "pixels as stored, in pixel units 0..255 (MultiBench divides by 255: --value-range 0,1 gives its inputs)"


def matches(path: Path) -> bool:
    return path.is_dir() and any(path.glob(f"*{LABELS_SUFFIX}"))


def _load(path: Path) -> np.ndarray:
    check_npy(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{str(path)!r} is not a readable .npy array without pickled objects ({str(e).splitlines()[0]})") from None


def _as_image(name: str, x: np.ndarray, declared: str | None) -> np.ndarray:
    """MultiBench's shapes for its CNNs: AV-MNIST's flat 28*28 image rows and any (N, H, W) array
    (the audio spectrograms, `unsqueeze_channel`) as one-channel images (1, H, W), unless `--kind`
    declares the modality another kind."""
    if declared not in (None, "image"):
        return x
    if name == "image" and x.ndim == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        return x.reshape(len(x), 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    return x


def _multibench_valid(train: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """(train, val): the last VALID_ROWS training rows become validation, as MultiBench's AV-MNIST loader does."""
    n = len(train["labels"])
    return {k: v[: n - VALID_ROWS] for k, v in train.items()}, {k: v[n - VALID_ROWS :] for k, v in train.items()}


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
            arrays[m] = _as_image(m, _load(f), (options.kinds or {}).get(m))
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
    if "val" not in per_split and "train" in per_split and len(per_split["train"]["labels"]) > VALID_ROWS:
        per_split["train"], per_split["val"] = _multibench_valid(per_split["train"])
    per_split = {s: per_split[s] for s in ("train", "val", "test") if s in per_split}
    table = stack_splits(where, per_split)
    pixels = [m for m in modalities if table[m].ndim == 4 and table[m].dtype.kind in "iuf" and table[m].size
              and table[m].min() >= 0 and table[m].max() <= 255 and table[m].max() > 1]
    return assemble_with_lengths(
        where, table, options, name=path.name, lengths={},
        value_ranges={m: (0.0, 255.0) for m in pixels}, scalings={m: PIXEL_SCALING for m in pixels},
    )
