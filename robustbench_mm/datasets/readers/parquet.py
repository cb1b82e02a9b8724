"""Parquet tables: one row per sample, one column per modality, `label`, optional `split` and `id`.

A modality column is a (fixed-size or equal-length) list of numbers (vector; a list of lists is a
sequence (T, D)), binary media (PNG/JPEG/... images or WAV files, decoded as in media folders), or
strings (text, tokenised as in media folders). The table is read whole into memory (pyarrow, an
optional extra: pip install 'robustbench-mm[parquet]'); kinds then follow the feature-file rules,
WAV columns being audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from ..files import assemble
from ..splits import SPLITS
from .common import SPLIT_ALIASES, ReadOptions, few, optional_import
from .media import decode_image, decode_wav, image_header, tokenize, wav_header

SUFFIXES = (".parquet", ".pq")


def matches(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def _numeric_lists(where: str, name: str, column) -> np.ndarray:
    """A list<...list<number>> column -> (N, *shape), refusing ragged rows."""
    pa = optional_import("pyarrow", "Parquet")
    shape = []
    values = column
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or pa.types.is_large_list(values.type):
        lengths = np.asarray(values.value_lengths() if not pa.types.is_fixed_size_list(values.type) else [values.type.list_size] * len(values))
        if values.null_count:
            raise InputError(f"{where}: column {name!r} has {values.null_count} missing values; expected one list per row")
        if len(lengths) and (lengths != lengths[0]).any():
            odd = np.flatnonzero(lengths != lengths[0])
            raise InputError(
                f"{where}: column {name!r} is ragged: rows have lengths {few(set(lengths.tolist()))} "
                f"(e.g. row {int(odd[0])} has {int(lengths[odd[0]])}, row 0 has {int(lengths[0])}); expected one length"
            )
        shape.append(int(lengths[0]) if len(lengths) else 0)
        values = values.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise InputError(f"{where}: column {name!r} holds lists of {values.type}; expected numbers")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), *shape)


def _media(where: str, name: str, blobs: list[bytes]) -> tuple[np.ndarray, str]:
    """Binary images or WAV files -> (N, C, H, W) uint8-valued float32 or (N, L) float32, and the kind."""
    if any(b is None for b in blobs):
        raise InputError(f"{where}: column {name!r} has missing values; expected one file per row")
    if blobs[0][:4] == b"RIFF" and blobs[0][8:12] == b"WAVE":
        length = wav_header(blobs[0])
        return np.stack([decode_wav(b, length) for b in blobs]), "audio"
    mode, size = image_header(blobs[0])
    mode = "L" if mode in ("1", "L", "I", "I;16", "F") else "RGB"
    return np.stack([decode_image(b, mode, size) for b in blobs]).astype(np.uint8), "image"


def read(path: Path, options: ReadOptions) -> dict:
    pa = optional_import("pyarrow", "Parquet")
    import pyarrow.parquet as pq

    where = str(path)
    if not path.is_file():
        raise InputError(f"{where!r} is not a file; --format parquet reads one .parquet file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{where} is not a readable Parquet file ({str(e).splitlines()[0]})") from None
    if "label" not in table.column_names:
        raise InputError(f"{where}: no 'label' column; columns: {', '.join(table.column_names)}")
    raw: dict[str, np.ndarray] = {"labels": table.column("label").to_numpy(zero_copy_only=False)}
    if "split" in table.column_names:
        split = np.asarray(table.column("split").to_pylist(), dtype=object).astype(str)
        bad = sorted(set(split.tolist()) - set(SPLIT_ALIASES))
        if bad:
            raise InputError(f"{where}: split {bad[0]!r}; expected {', '.join(SPLITS)} (or valid)")
        raw["split"] = np.array([SPLIT_ALIASES[s] for s in split])
    if "id" in table.column_names:
        raw["ids"] = table.column("id").to_numpy(zero_copy_only=False)
    kinds = dict(options.kinds or {})
    texts = {}
    for name in table.column_names:
        if name in ("label", "split", "id"):
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raw[name], kind = _media(where, name, column.to_pylist())
            kinds.setdefault(name, kind)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            texts[name] = [str(t) for t in column.to_pylist()]
        else:
            raw[name] = _numeric_lists(where, name, column)
    if texts:
        split = raw.get("split")
        train_rows = np.flatnonzero(split == "train") if split is not None else np.arange(len(raw["labels"]))
        for name, values in texts.items():
            raw[name] = tokenize(values, train_rows, options.tokenizer, where)[0]
    return assemble(where, where, raw, kinds, name=path.stem, seed=options.seed)
