"""MultiBench's pickled affect datasets (MOSI, MOSEI, UR-FUNNY, MUStARD): `.pkl` files.

The layout is the one MultiBench's loader reads (pliang279/MultiBench, datasets/affect/get_data.py,
`get_dataloader` and `Affectdataset`): a dict {"train", "valid", "test"} each holding
{"vision": (N, T, Dv), "audio": (N, T, Da), "text": (N, T, 300), "labels": (N, 1, 1), "id": (N, ...)},
sequences already padded to one T. As in `Affectdataset.__init__`, audio's -inf values (COVAREP's
log of silence) become 0. Labels stay the stored floats (regression, e.g. sentiment in [-3, 3]);
MultiBench's classification view of them (`_get_class`: label > 0) is the user's to make.
A pickle runs code while it loads, so this reader refuses unless told `trust=True` (--trust-data).
"""

from __future__ import annotations

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
    per_split = {}
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
        if "id" in part and len(part["id"]) != len(arrays["labels"]):
            raise InputError(f"{where}: split {key!r} has {len(part['id'])} ids but {len(arrays['labels'])} labels; expected one id per sample")
        y = arrays["labels"]
        arrays["labels"] = y.reshape(len(y)) if y.ndim > 1 and y.size == len(y) else y
        per_split[SPLIT_ALIASES[key]] = arrays
    ordered = {s: per_split[s] for s in ("train", "val", "test") if s in per_split}
    return assemble_with_lengths(where, stack_splits(where, ordered), options, name=path.stem, lengths={})
