"""HDF5: flat feature files (.h5/.hdf5) and CMU-MultimodalSDK computational sequences (.csd).

A flat file holds root-level datasets laid out like a .npz (one per modality, `labels`, optional
`split` and `ids`). A computational sequence is the SDK's HDF5 layout (CMU-MultiComp-Lab/
CMU-MultimodalSDK, mmsdk/mmdatasdk/computational_sequence/file_ops.py, `write_CSD` and
`read_CSD`): one root group named after the sequence, holding `data/<video id>/features` (T, D)
and `data/<video id>/intervals` (T, 2), plus `metadata/<key>` (JSON strings, not needed here).
A folder of .csd files is one dataset: each file is a modality named by its file stem, the file
whose stem contains "label" gives the targets (one row per video: the SDK's video-level labels,
or segment-level ones after the SDK's `mmdataset.align`), and an optional `splits.json`
({"train": [video ids], "valid": [...], "test": [...]}) gives the folds. Files are aligned by
video id; a video one file lacks is an error, not silently dropped. Sequences of differing
lengths are zero-padded to the longest and their lengths kept (`MultimodalData.lengths`).
h5py is an optional extra (pip install 'robustbench-mm[h5]').
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..files import assemble
from ..limits import check_claimed
from ..splits import SPLITS
from .common import SPLIT_ALIASES, ReadOptions, assemble_with_lengths, check_same_keys, few, optional_import, pad_sequences

SUFFIXES = (".h5", ".hdf5")
CSD_SUFFIX = ".csd"
SPLITS_FILE = "splits.json"


def matches_hdf5(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def matches_csd(path: Path) -> bool:
    return path.suffix.lower() == CSD_SUFFIX or (path.is_dir() and any(path.glob(f"*{CSD_SUFFIX}")))


def _open(path: Path, fmt: str):
    h5py = optional_import("h5py", fmt)
    if not path.is_file():
        raise InputError(f"{fmt} file {str(path)!r} not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{str(path)!r} is not a readable HDF5 file ({str(e).splitlines()[0]})") from None


def read_hdf5(path: Path, options: ReadOptions) -> dict:
    """A flat HDF5 feature file; a file in the SDK's layout is read as one computational sequence."""
    h5py = optional_import("h5py", "HDF5")
    with _open(path, "HDF5") as f:
        if _is_csd(f):
            raise InputError(f"{str(path)!r} is a CMU-MultimodalSDK computational sequence; pass the folder of .csd files with its labels (--format csd)")
        raw = {}
        for key, item in f.items():
            if not isinstance(item, h5py.Dataset):
                raise InputError(f"{str(path)!r}: {key!r} is a group; expected root-level datasets (one per modality, labels, [split, ids])")
            if item.dtype.kind not in "SOU":  # strings (split names) are small and vary in size
                check_claimed(str(path), key, item.shape or (), item.dtype)
            try:
                x = item[()]
            except OSError as e:
                raise InputError(f"{str(path)!r}: dataset {key!r} is unreadable ({str(e).splitlines()[0]})") from None
            raw[key] = x.astype(str) if x.dtype.kind in "SO" else x
    return assemble(str(path), str(path), raw, options.kinds, name=path.stem, seed=options.seed)


def _is_csd(f) -> bool:
    roots = list(f.keys())
    return len(roots) == 1 and hasattr(f[roots[0]], "keys") and "data" in f[roots[0]]


def _read_sequence(path: Path) -> dict[str, np.ndarray]:
    """video id -> features (T, D) of one computational sequence file, intervals checked."""
    with _open(path, "CMU-MultimodalSDK .csd") as f:
        if not _is_csd(f):
            raise InputError(f"{str(path)!r}: expected one root group holding data/<video id>/{{features,intervals}} (a CMU-MultimodalSDK computational sequence)")
        data = f[next(iter(f.keys()))]["data"]
        out = {}
        for vid, group in data.items():
            if "features" not in group or "intervals" not in group:
                raise InputError(f"{str(path)!r}: video {vid!r} lacks 'features' or 'intervals'")
            for part in ("features", "intervals"):
                check_claimed(str(path), f"{vid}/{part}", group[part].shape or (), group[part].dtype)
            try:
                features, intervals = np.asarray(group["features"][()]), np.asarray(group["intervals"][()])
            except OSError as e:
                raise InputError(f"{str(path)!r}: video {vid!r} is unreadable ({str(e).splitlines()[0]})") from None
            if features.ndim == 1:
                features = features[:, None]
            if intervals.shape != (len(features), 2):
                raise InputError(
                    f"{str(path)!r}: video {vid!r} has {len(features)} feature rows but intervals of shape {intervals.shape}; "
                    "expected one (start, end) per row"
                )
            out[vid] = features
    return out


def read_csd(path: Path, options: ReadOptions) -> dict:
    folder = path if path.is_dir() else path.parent
    where = str(folder)
    files = sorted(folder.glob(f"*{CSD_SUFFIX}"))
    label_files = [f for f in files if "label" in f.stem.lower()]
    if len(label_files) != 1:
        raise InputError(
            f"{where}: expected exactly one .csd whose name contains 'label' (the targets), found "
            f"{len(label_files)}{': ' + few(f.name for f in label_files) if label_files else ''}"
        )
    modality_files = [f for f in files if f not in label_files]
    if not modality_files:
        raise InputError(f"{where}: no modality .csd besides {label_files[0].name}")
    sequences = {f.stem: _read_sequence(f) for f in [*modality_files, *label_files]}
    videos = check_same_keys(where, {f"{name}.csd": set(seq) for name, seq in sequences.items()}, what="video ids")
    labels_by_video = sequences.pop(label_files[0].stem)
    labels = []
    for vid in videos:
        y = labels_by_video[vid].reshape(-1)
        if y.size != 1:
            raise InputError(
                f"{label_files[0]}: video {vid!r} has {y.size} label values; expected one per video "
                "(align segment labels with the SDK's mmdataset.align first)"
            )
        labels.append(y[0])
    table: dict[str, np.ndarray] = {"labels": np.asarray(labels)}
    lengths = {}
    for name, seq in sequences.items():
        table[name], lengths[name] = pad_sequences(f"{where}/{name}.csd", name, [seq[v] for v in videos])
    table["ids"] = np.arange(len(videos), dtype=np.int64)  # position in sorted video-id order
    split_file = folder / SPLITS_FILE
    if split_file.is_file():
        table["split"] = _split_column(split_file, videos)
    return assemble_with_lengths(where, table, options, name=folder.name, lengths=lengths)


def _split_column(path: Path, videos: list[str]) -> np.ndarray:
    try:
        folds = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{str(path)!r} is not readable JSON ({e})") from None
    if not isinstance(folds, dict):
        raise InputError(f"{str(path)!r}: expected {{\"train\": [video ids], \"valid\": [...], \"test\": [...]}}")
    column = np.full(len(videos), "", dtype=object)
    position = {v: i for i, v in enumerate(videos)}
    for key, members in folds.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None:
            raise InputError(f"{str(path)!r}: split {key!r}; expected {', '.join(SPLITS)} (or valid)")
        unknown = [v for v in members if v not in position]
        if unknown:
            raise InputError(f"{str(path)!r}: split {key!r} names {len(unknown)} video ids the .csd files lack: {few(unknown)}")
        twice = [v for v in members if column[position[v]] and column[position[v]] != split]
        if twice:
            earlier = column[position[twice[0]]]
            raise InputError(
                f"{str(path)!r}: {len(twice)} video id(s) are in split {earlier!r} and in {key!r}: {few(twice)}; "
                "each video belongs to one split (else test shares videos with train)"
            )
        column[[position[v] for v in members]] = split
    unassigned = [v for v in videos if not column[position[v]]]
    if unassigned:
        raise InputError(f"{str(path)!r}: {len(unassigned)} video ids are in no split: {few(unassigned)}")
    return column.astype(str)
