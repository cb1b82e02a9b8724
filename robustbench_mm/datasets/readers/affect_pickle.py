"""MultiBench's pickled affect datasets (MOSI, MOSEI, UR-FUNNY, MUStARD): `.pkl` files.

The layout is the one MultiBench's loader reads (pliang279/MultiBench, datasets/affect/get_data.py,
`get_dataloader` and `Affectdataset`): a dict {"train", "valid", "test"} each holding
{"vision": (N, T, Dv), "audio": (N, T, Da), "text": (N, T, 300), "labels": (N, 1, 1), "id": (N, ...)},
sequences already padded to one T. As `get_dataloader` does, `drop_entry` removes from every
split the segments whose text is all zeros (`text[i].sum() == 0`), from every array alike;
`keep_empty_text=True` (--keep-empty-text) keeps them, and the scores are then not comparable with
MultiBench's. As in `Affectdataset.__init__`, audio's -inf values (COVAREP's log of silence)
become 0. Labels stay the stored floats (regression, e.g. sentiment in [-3, 3]); MultiBench's
classification view of them (`_get_class`: label > 0) is the user's to make. The pickle's `id`
rows (e.g. [video, segment]) are kept as the sample ids: each row's values joined by "|" and
hashed (the first 8 bytes of its SHA-256, as a non-negative int64), so a segment keeps its id
whatever is dropped around it; a pickle whose id rows repeat gets split-and-position ids instead.
A pickle runs code while it loads, so this reader refuses unless told `trust=True` (--trust-data).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from ...errors import InputError
from .common import SPLIT_ALIASES, ReadOptions, assemble_with_lengths, stack_splits

SUFFIXES = (".pkl", ".pickle")
MODALITIES = ("vision", "audio", "text")
TRUST_HINT = "pass --trust-data (trust=True) only for files you created or fully trust"


def matches(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read(path: Path, options: ReadOptions) -> dict:
    where = str(path)
    if not options.trust:
        raise InputError(f"{where} is a pickle, which can execute arbitrary code when loaded; {TRUST_HINT}")
    if not path.is_file():
        raise InputError(f"pickle file {where!r} not found")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except Exception as e:  # a damaged pickle fails in many ways
        raise InputError(f"{where} is not a readable pickle ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(obj, dict) or not any(k in obj for k in ("train", "valid", "test")):
        raise InputError(f"{where}: expected a dict with 'train', 'valid' and 'test', got {type(obj).__name__}")
    unknown = [k for k in obj if k not in SPLIT_ALIASES]
    if unknown:
        raise InputError(f"{where}: top-level key {unknown[0]!r}; expected train, valid and test")
    per_split, names = {}, {}
    for key, part in obj.items():
        if not isinstance(part, dict) or "labels" not in part:
            raise InputError(f"{where}: split {key!r} is not a dict with 'labels' and {', '.join(MODALITIES)}")
        arrays = {}
        for name in [m for m in MODALITIES if m in part] + ["labels"]:
            try:
                x = np.asarray(part[name])
            except ValueError:
                raise InputError(f"{where}: {key}/{name} is ragged; expected one padded array (N, T, D)") from None
            if x.dtype == object:
                raise InputError(f"{where}: {key}/{name} holds objects of differing shapes; expected one padded array (N, T, D)")
            arrays[name] = x
        if "audio" in arrays and arrays["audio"].dtype.kind == "f":
            arrays["audio"] = np.where(arrays["audio"] == -np.inf, 0.0, arrays["audio"]).astype(arrays["audio"].dtype)
        if "id" in part:
            if len(part["id"]) != len(arrays["labels"]):
                raise InputError(f"{where}: split {key!r} has {len(part['id'])} ids but {len(arrays['labels'])} labels; expected one id per sample")
            names[SPLIT_ALIASES[key]] = [_id_text(row) for row in part["id"]]
        y = arrays["labels"]
        arrays["labels"] = y.reshape(len(y)) if y.ndim > 1 and y.size == len(y) else y
        if not options.keep_empty_text and "text" in arrays and len({len(v) for v in arrays.values()}) == 1:
            keep = np.array([float(row.sum()) != 0.0 for row in arrays["text"]], dtype=bool)  # drop_entry: k.sum() == 0
            arrays = {k: v[keep] for k, v in arrays.items()}
            if SPLIT_ALIASES[key] in names:
                names[SPLIT_ALIASES[key]] = [n for n, kept in zip(names[SPLIT_ALIASES[key]], keep) if kept]
        per_split[SPLIT_ALIASES[key]] = arrays
    ordered = {s: per_split[s] for s in ("train", "val", "test") if s in per_split}
    table = stack_splits(where, ordered)
    if set(names) == set(ordered):
        hashed = np.array([_id_hash(n) for s in ordered for n in names[s]], dtype=np.int64)
        if len(np.unique(hashed)) == len(hashed):
            table["ids"] = hashed
    return assemble_with_lengths(where, table, options, name=path.stem, lengths={})


def _id_text(row) -> str:
    """One `id` entry of the pickle as text: its values joined by "|" (bytes decoded)."""
    values = np.ravel(np.asarray(row, dtype=object))
    return "|".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values)


def _id_hash(text: str) -> int:
    """A stable non-negative int64 sample id for an id text (SHA-256's first 8 bytes, top bit cleared)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
