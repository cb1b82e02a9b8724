"""Readers for the formats the field's data already lives in; `--data PATH` picks one by the path.

Each reader maps a path and `ReadOptions` to {split: dataset} with the `MultimodalData` interface
(media folders: `StreamedData`, decoded batch by batch). Detection goes by suffix, then by what a
folder holds; `--format` names a reader outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import InputError, one_of
from . import affect_pickle, hdf5, media, npy_folder, parquet
from .common import ReadOptions
from .media import StreamedData


@dataclass(frozen=True)
class Reader:
    name: str
    description: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], dict]


# Detection order matters for folders: a .csd, Hugging Face or AV-MNIST folder may also hold subfolders.
READERS = {
    r.name: r
    for r in (
        Reader("hdf5", "PATH.h5/.hdf5: root datasets laid out like a .npz [extra h5]", hdf5.matches_hdf5, hdf5.read_hdf5),
        Reader("csd", "folder of CMU-MultimodalSDK .csd files, one with 'label' in its name [+ splits.json]; aligned by video id, padded, lengths kept [extra h5]", hdf5.matches_csd, hdf5.read_csd),
        Reader("affect-pickle", "MultiBench affect .pkl {train,valid,test}->{vision,audio,text,labels,id}; needs --trust-data", affect_pickle.matches, affect_pickle.read),
        Reader("parquet", "PATH.parquet: a column per modality (lists, binary media, Hugging Face Image()/Audio()), label (ClassLabel names kept) [, split, id] [extra parquet]", parquet.matches, parquet.read),
        Reader("hf-arrow", "folder of Hugging Face Dataset.save_to_disk / DatasetDict.save_to_disk (Arrow files), read as Parquet is [extra parquet]", parquet.matches_arrow_folder, parquet.read_arrow_folder),
        Reader("npy-folder", "AV-MNIST-style folder: <modality>/<split>_data.npy + <split>_labels.npy", npy_folder.matches, npy_folder.read),
        Reader("media", "folder per class (or index.csv/.jsonl) of images, .wav, .txt; streamed from disk", media.matches, media.read),
    )
}


def detect_format(path: str | Path) -> str | None:
    """The reader for `path`, or None when none claims it (then the feature-file rules apply)."""
    p = Path(path)
    if not p.exists():
        return None
    return next((name for name, r in READERS.items() if r.matches(p)), None)


def read_splits(path: str | Path, fmt: str | None, options: ReadOptions) -> dict:
    """{split: dataset} of `path` read as `fmt` (detected when None)."""
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt not in READERS:
        raise one_of("data format", fmt, list(READERS))
    if not p.exists():
        raise InputError(f"{fmt} data {str(p)!r} not found")
    return READERS[fmt].read(p, options)


__all__ = ["READERS", "ReadOptions", "Reader", "StreamedData", "detect_format", "read_splits"]
