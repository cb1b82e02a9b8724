"""Arrays to `MultimodalData`: the user's feature files (.npz / .pt dict) and `module:factory`
datasets (the splits and statistics they share with the embedded datasets are in `splits.py`).

A feature file holds one array per modality (first axis = samples), `labels` (integer class ids ->
classification, float -> regression, unless `task` says which: whole-number float labels can be
class ids), optionally `split` (strings train/val/test or ints 0/1/2) and `ids` (unique
integers). Without `split`, evaluation uses the whole file, as split "all". Kinds are inferred
from shape and dtype:

    2-D float -> vector     3-D float -> sequence     4-D float or integer -> image (B, C, H, W)
    2-D integer -> tokens   (`kinds={"name": "audio"}` turns a 2-D array into audio, and
    `kinds={"name": "image"}` a 3-D (N, H, W) array or flat square rows (N, S*S) into images)

Values reach the model by one rule (the input contract shows it per modality): pixels stay in
pixel units, uint8 images becoming float32 0..255 with value range (0, 255) (float images in
[0, 1] keep (0, 1)); integer audio is PCM, scaled to [-1, 1) as WAV files are (float audio is kept,
with range (-1, 1) when it lies within it); everything else is kept as stored, as float32.
`--value-range` (`contract.with_value_ranges`) maps a modality's range onto another.

Statistics (mean/std for mean-fill and noise scaling) come from the train split when the file has
one, else from the data itself; every split carries the same statistics.
"""

from __future__ import annotations

import importlib
import inspect
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..domain import Task, parse_task
from ..errors import InputError, one_of
from ..imports import working_directory_last
from .batch import KINDS, UNK_ID, MultimodalData
from .limits import check_npz
from .splits import SPLITS, WHOLE, build_splits, stratified_split

RESERVED = ("labels", "split", "ids")


# --------------------------------------------------------------------------- checking user arrays


def parse_kind_overrides(items: list[str] | None) -> dict[str, str]:
    """The CLI's repeatable `--kind NAME=KIND` -> {name: kind} (kinds checked here, names on load)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, kind = item.partition("=")
        name, kind = name.strip(), kind.strip()
        if not sep or not name or not kind:
            raise InputError(f"--kind {item!r}: expected NAME=KIND, e.g. --kind wave=audio")
        if kind not in KINDS:
            raise one_of(f"kind in --kind {item!r}", kind, KINDS)
        if name in out and out[name] != kind:
            raise InputError(f"--kind gives modality {name!r} two kinds ({out[name]!r} and {kind!r}); expected one")
        out[name] = kind
    return out


def infer_kind(where: str, name: str, x: np.ndarray, override: str | None) -> str:
    """The kind of modality `name` from its array (N, ...) and an optional override."""
    if x.dtype.kind not in "iuf":
        raise InputError(f"{where}: modality {name!r} has dtype {x.dtype}; expected float (or integer ids for tokens)")
    if x.ndim and x.size == 0:
        raise InputError(f"{where}: modality {name!r} has shape {x.shape}, holding no values; expected non-empty samples")
    integer = x.dtype.kind in "iu"
    if override is not None:
        if override not in KINDS:
            raise one_of(f"kind for modality {name!r} in {where}", override, KINDS)
        ndim = {"vector": 2, "audio": 2, "tokens": 2, "sequence": 3, "image": 4}[override]
        ok = x.ndim == ndim or (override == "image" and (x.ndim == 3 or _square_rows(x)))
        if not ok:
            raise InputError(
                f"{where}: modality {name!r} has shape {x.shape}, which cannot be kind {override!r} "
                f"(expected {ndim}-D{', 3-D (N, H, W) or flat square rows (N, S*S)' if override == 'image' else ''})"
            )
        if override == "tokens" and not integer:
            raise InputError(f"{where}: modality {name!r} has dtype {x.dtype}; kind 'tokens' expects integer ids")
        if override == "audio" and integer and x.dtype not in PCM_DTYPES:
            raise InputError(f"{where}: modality {name!r} has dtype {x.dtype}; integer audio must be PCM ({', '.join(map(str, PCM_DTYPES))})")
        return override
    if integer and x.ndim == 2:
        return "tokens"
    if x.ndim == 4:
        return "image"
    if integer:
        raise InputError(
            f"{where}: modality {name!r} is a {x.ndim}-D integer array; expected 2-D token ids or a 4-D image, "
            "or float features"
        )
    if x.ndim in (2, 3):
        return "vector" if x.ndim == 2 else "sequence"
    raise InputError(f"{where}: modality {name!r} has shape {x.shape}; expected 2-D, 3-D or 4-D (samples first)")


PCM_DTYPES = (np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.int32))


def _square_rows(x: np.ndarray) -> bool:
    """Flat rows of a square one-channel image (N, S*S), as MNIST-style files store them."""
    return x.ndim == 2 and x.shape[1] > 0 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]


def pcm_to_float(x: np.ndarray) -> np.ndarray:
    """Integer PCM samples -> float32 in [-1, 1) (8-bit is unsigned, offset 128; others signed),
    the scaling of soundfile's and scipy's float reads of WAV files."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    return x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))


def infer_task(labels: np.ndarray) -> str:
    """The task the labels' dtype implies: integer ids -> classification, floats -> regression."""
    return "regression" if np.asarray(labels).dtype.kind == "f" else "classification"


def check_arrays(where: str, raw: dict[str, Any], kinds: dict[str, str] | None, task: str | None = None) -> dict[str, Any]:
    """Validate a loaded dict of arrays; return modalities, kinds, labels, ids, split rows, extras.

    task : "classification" or "regression" to override the one the labels' dtype implies (whole-
        number float labels as class ids, integer labels as regression targets); None infers it.
    """
    if task is not None:
        parse_task(task)
    raw = {k: _as_numpy(where, k, v) for k, v in raw.items()}
    if "labels" not in raw:
        raise InputError(f"{where}: no 'labels' array; expected one array per modality plus 'labels'")
    labels = raw["labels"]
    if labels.ndim >= 1 and labels.shape[0] == 0:
        raise InputError(f"{where}: 'labels' has zero samples; expected at least one sample")
    if labels.ndim == 2 and labels.shape[1] == 1 and labels.dtype.kind == "f":
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.dtype.kind not in "iuf":
        raise InputError(
            f"{where}: 'labels' has shape {labels.shape} and dtype {labels.dtype}; "
            "expected 1-D integer class ids (classification) or float targets (regression)"
        )
    n = len(labels)
    if labels.dtype.kind == "f":
        bad = int((~np.isfinite(labels)).sum())
        if bad:
            raise InputError(f"{where}: 'labels' has {bad} NaN/Inf values; expected finite targets")
        if task == Task.CLASSIFICATION:
            if not bool((labels == np.round(labels)).all()):
                raise InputError(f"{where}: 'labels' are not whole numbers, so they cannot be class ids (--task classification)")
            labels = labels.astype(np.int64)
    if task == Task.REGRESSION:
        labels = labels.astype(np.float32)
    if labels.dtype.kind == "f":
        labels = labels.astype(np.float32)
    else:
        if n and labels.min() < 0:
            raise InputError(f"{where}: 'labels' has negative class ids (min {labels.min()}); expected ids 0..C-1")
        labels = labels.astype(np.int64)
    modality_names = [k for k in raw if k not in RESERVED]
    if not modality_names:
        raise InputError(f"{where}: no modality arrays besides {', '.join(k for k in raw if k in RESERVED)}")
    kinds = dict(kinds or {})
    unknown = [k for k in kinds if k not in modality_names]
    if unknown:
        raise InputError(f"{where}: kind override for {unknown[0]!r}, which is not a modality; modalities: {', '.join(modality_names)}")
    arrays: dict[str, np.ndarray] = {}
    inferred: dict[str, str] = {}
    for m in modality_names:
        x = raw[m]
        if x.ndim == 0 or x.shape[0] != n:
            raise InputError(f"{where}: modality {m!r} has {x.shape[0] if x.ndim else 0} samples but 'labels' has {n}")
        kind = infer_kind(where, m, x, kinds.get(m))
        if x.dtype.kind == "f":
            bad = int((~np.isfinite(x)).sum())
            if bad:
                raise InputError(f"{where}: modality {m!r} has {bad} NaN/Inf values; expected finite numbers")
        if kind == "image" and x.ndim == 3:
            x = x[:, None]
        if kind == "image" and x.ndim == 2:
            side = math.isqrt(x.shape[1])
            x = x.reshape(n, 1, side, side)
        if kind == "tokens" and n and x.min() < 0:
            raise InputError(f"{where}: modality {m!r} has negative token ids (min {x.min()}); expected ids >= 0 (0 = pad, 1 = unknown)")
        arrays[m] = x
        inferred[m] = kind
    ids = raw.get("ids")
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    elif ids.shape != (n,) or ids.dtype.kind not in "iu" or len(np.unique(ids)) != n:
        raise InputError(f"{where}: 'ids' must be {n} unique integers (one per sample), got shape {ids.shape} dtype {ids.dtype}")
    split = raw.get("split")
    split_rows = None if split is None else _split_rows(where, split, n)
    return {"arrays": arrays, "kinds": inferred, "labels": labels, "ids": ids.astype(np.int64), "split_rows": split_rows}


def _as_numpy(where: str, key: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and key == "split":
        return np.asarray(value)
    if isinstance(value, np.ndarray):
        return value
    raise InputError(f"{where}: entry {key!r} is a {type(value).__name__}; expected an array or tensor")


def _split_rows(where: str, split: np.ndarray, n: int) -> dict[str, np.ndarray]:
    if split.shape != (n,):
        raise InputError(f"{where}: 'split' has shape {split.shape}; expected ({n},), one entry per sample")
    if split.dtype.kind in "iu":
        names = np.array(SPLITS)
        if n and (split.min() < 0 or split.max() > 2):
            raise InputError(f"{where}: 'split' has values outside 0/1/2 (= train/val/test)")
        split = names[split]
    elif split.dtype.kind in "US":
        split = split.astype(str)
        unknown = sorted(set(np.unique(split).tolist()) - set(SPLITS))
        if unknown:
            raise InputError(f"{where}: 'split' has value {unknown[0]!r}; expected train, val or test (or 0/1/2)")
    else:
        raise InputError(f"{where}: 'split' has dtype {split.dtype}; expected strings train/val/test or ints 0/1/2")
    return {s: np.flatnonzero(split == s).astype(np.int64) for s in SPLITS}


# --------------------------------------------------------------------------- feature files


def read_feature_file(path: str | Path) -> dict[str, Any]:
    """The arrays of a .npz (no pickles) or a .pt dict (torch.load with weights_only=True)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"feature file {str(p)!r} not found; expected a .npz or .pt file")
    if p.suffix == ".npz":
        check_npz(p)
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(f"feature file {str(p)!r} is not a readable .npz without pickled objects ({e})") from None
    if p.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for truncated or unsafe files
            raise InputError(f"feature file {str(p)!r} is not a readable weights-only .pt file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if not isinstance(obj, dict):
            raise InputError(f"feature file {str(p)!r} holds a {type(obj).__name__}; expected a dict of tensors")
        return obj
    raise InputError(f"feature file {str(p)!r}: unknown suffix {p.suffix!r}; expected .npz or .pt")


def assemble(
    where: str, source: str, raw: dict[str, Any], kinds: dict[str, str] | None, name: str, seed: int | None = None,
    task: str | None = None, class_names: list[str] | None = None, scalings: dict[str, str] | None = None,
    value_ranges: dict[str, tuple[float, float]] | None = None,
) -> dict[str, MultimodalData]:
    """Checked arrays -> splits. With a `split` array: train/val/test (stats from train). Without
    it: {"all": the whole set} (stats from all of it), or, when `seed` is given (training), a
    60/20/20 `stratified_split` with that seed (stats from its train part).
    class_names : the names of class ids 0..C-1 (C classes even where the labels use fewer).
    scalings, value_ranges : modality -> the rule a reader's decoding applied and the range it
        knows the values have, in place of the array rules."""
    checked = check_arrays(where, raw, kinds, task)
    arrays, labels = checked["arrays"], checked["labels"]
    split_rows = checked["split_rows"]
    if split_rows is None and seed is None:
        split_rows = {WHOLE: np.arange(len(labels), dtype=np.int64)}
        stats_rows = None
    else:
        if split_rows is None:
            split_rows = stratified_split(labels, seed)
        stats_rows = split_rows["train"] if len(split_rows["train"]) else None
    regression = labels.dtype.kind == "f"
    num_classes = None if regression else int(labels.max()) + 1 if len(labels) else 0
    if class_names is not None and not regression:
        if num_classes > len(class_names):
            raise InputError(f"{where}: label {num_classes - 1} has no class name ({len(class_names)} names); expected ids 0..{len(class_names) - 1}")
        num_classes = len(class_names)
    own_ranges, own_scalings = dict(value_ranges or {}), dict(scalings or {})
    value_ranges, vocab_sizes, scalings = {}, {}, {}
    for m, x in arrays.items():
        kind = checked["kinds"][m]
        if kind == "tokens":
            vocab_sizes[m] = max(int(x.max()) + 1 if x.size else 0, UNK_ID + 1)
            scalings[m] = "token ids as stored"
        elif kind == "audio" and x.dtype.kind in "iu":
            arrays[m] = pcm_to_float(x)
            value_ranges[m], scalings[m] = (-1.0, 1.0), f"{x.dtype} PCM scaled to [-1, 1) as a WAV file's samples are"
        elif kind == "audio" and x.size and np.abs(x).max() <= 1.0:
            value_ranges[m], scalings[m] = (-1.0, 1.0), "float waveform as stored (within [-1, 1])"
        elif kind == "image" and x.dtype == np.uint8:
            value_ranges[m], scalings[m] = (0.0, 255.0), "uint8 pixels kept in pixel units 0..255, as float32"
        elif kind == "image" and x.size and x.min() >= 0.0 and x.max() <= 1.0:
            value_ranges[m], scalings[m] = (0.0, 1.0), "float pixels as stored (all within [0, 1])"
        else:
            scalings[m] = f"{x.dtype} values as stored" + ("" if x.dtype == np.float32 else ", as float32") + ("; no known range" if kind == "image" else "")
    return build_splits(
        name,
        source,
        arrays,
        checked["kinds"],
        labels,
        checked["ids"],
        split_rows,
        stats_rows=stats_rows,
        value_ranges={**value_ranges, **own_ranges},
        vocab_sizes=vocab_sizes,
        num_classes=num_classes,
        class_names=None if regression else class_names,
        scalings={**scalings, **own_scalings},
    )


def load_file_splits(
    path: str | Path, kinds: dict[str, str] | None = None, seed: int | None = None, task: str | None = None
) -> dict[str, MultimodalData]:
    """A feature file as splits: train/val/test from its `split` array; without one, {"all":
    everything}, or a seeded 60/20/20 stratified split when `seed` is given (for training)."""
    raw = read_feature_file(path)
    return assemble(str(path), str(path), raw, kinds, name=Path(path).stem, seed=seed, task=task)


# --------------------------------------------------------------------------- module:factory


def resolve_factory(source: str):
    """Import `module:factory` (the working directory on sys.path, after the installed packages) and
    return the callable."""
    module_name, _, attr = source.rpartition(":")
    if not module_name or not attr or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise InputError(f"dataset {source!r}: expected 'module:factory' (dotted module path, colon, function name)")
    working_directory_last()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise InputError(f"dataset {source!r}: cannot import module {module_name!r} ({type(e).__name__}: {e})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"dataset {source!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"dataset {source!r}: {attr!r} is not callable; expected a function returning a Dataset")
    return obj


def _accepts_split(factory) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "split" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def collate_dataset(source: str, dataset) -> dict[str, Any]:
    """A Dataset of dict samples -> dict of stacked arrays ({modality: (N, ...), labels, [ids]})."""
    try:
        samples = [dataset[i] for i in range(len(dataset))] if hasattr(dataset, "__len__") else list(dataset)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"dataset {source!r}: reading its samples failed ({type(e).__name__}: {e})") from None
    if not samples:
        raise InputError(f"dataset {source!r}: the factory returned an empty dataset")
    columns: dict[str, list] = {}
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise InputError(f"dataset {source!r}: sample {i} is a {type(sample).__name__}; expected a dict {{modality: tensor, 'label': ...}}")
        sample = dict(sample)
        if "label" in sample:
            sample["labels"] = sample.pop("label")
        if "id" in sample:
            sample["ids"] = sample.pop("id")
        if "labels" not in sample:
            raise InputError(f"dataset {source!r}: sample {i} has no 'label'; keys: {', '.join(map(str, sample))}")
        if i and set(sample) != set(columns):
            raise InputError(f"dataset {source!r}: sample {i} has keys {sorted(sample)}, sample 0 has {sorted(columns)}")
        for k, v in sample.items():
            columns.setdefault(k, []).append(v)
    out = {}
    for k, values in columns.items():
        try:
            out[k] = np.stack([np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in values])
        except ValueError:
            shapes = sorted({tuple(np.shape(v)) for v in values})
            raise InputError(f"dataset {source!r}: {k!r} has differing shapes across samples {shapes[:3]}; expected one shape") from None
    return out


def load_factory_splits(
    source: str, kinds: dict[str, str] | None = None, seed: int | None = None, task: str | None = None
) -> dict[str, MultimodalData]:
    """`module:factory` as splits. A factory taking `split=` is called for train, val and test
    (stats from train); one without it gives one set, handled like a file without `split`."""
    factory = resolve_factory(source)
    name = source.rpartition(":")[2]
    if not _accepts_split(factory):
        return assemble(source, source, collate_dataset(source, _call(source, factory)), kinds, name=name, seed=seed, task=task)
    raws = {s: collate_dataset(f"{source} (split={s})", _call(source, factory, split=s)) for s in SPLITS}
    # One table with a split column, so the checks and statistics are those of a feature file.
    keys = set(raws["train"])
    for s, raw in raws.items():
        if set(raw) != keys:
            raise InputError(f"dataset {source!r}: split {s!r} has keys {sorted(raw)}, train has {sorted(keys)}")
    merged = {k: np.concatenate([raws[s][k] for s in SPLITS]) for k in keys}
    merged["split"] = np.concatenate([np.full(len(raws[s]["labels"]), s) for s in SPLITS])
    if "ids" not in merged:
        # Stable ids without a user id: split index * 10^9 + position in that split.
        merged["ids"] = np.concatenate([i * 1_000_000_000 + np.arange(len(raws[s]["labels"])) for i, s in enumerate(SPLITS)])
    return assemble(source, source, merged, kinds, name=name, task=task)


def _call(source: str, factory, **kwargs):
    try:
        return factory(**kwargs)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"dataset {source!r}: the factory raised {type(e).__name__}: {e}") from None


__all__ = [
    "infer_task",
    "assemble",
    "check_arrays",
    "collate_dataset",
    "infer_kind",
    "load_factory_splits",
    "load_file_splits",
    "parse_kind_overrides",
    "pcm_to_float",
    "read_feature_file",
    "resolve_factory",
]
