"""Parquet tables and Hugging Face `datasets` data: one row per sample, one column per modality,
`label`, optional `split` and `id`.

A modality column is a (fixed-size or equal-length) list of numbers (vector; a list of lists is a
sequence (T, D)), binary media (PNG/JPEG/... images or WAV files, decoded as in media folders),
strings (text, tokenised as in media folders), or Hugging Face's `Image()` / `Audio()` storage,
`struct<bytes: binary, path: string>` (the bytes decoded with Pillow, or soundfile for audio that is
not WAV; a row without bytes reads its `path`, relative to the file). The table is read whole into
memory (pyarrow, an optional extra: pip install 'robustbench-mm[parquet]'); kinds then follow the
feature-file rules (flat square rows become images with `--kind NAME=image`), media columns being
images or audio. The features a `datasets` table carries in its schema metadata ("huggingface")
name the kinds of its media columns and, for a `ClassLabel` label, the class names.

Three ways in: a .parquet file (what `Dataset.to_parquet` and the Hub write), a folder written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk` (Arrow stream files; a DatasetDict's splits
train / validation / test become ours), and, in the Python API, a `datasets.Dataset` or
`DatasetDict` object (`load_dataset(ds)`). Audio is kept at its stored sampling rate.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..files import assemble
from ..splits import SPLITS
from .common import SPLIT_ALIASES, ReadOptions, confined, few, optional_import
from .media import IMAGE_SCALING, WAV_SCALING, decode_image, decode_wav, image_header, tokenize, wav_header

SUFFIXES = (".parquet", ".pq")
HF_METADATA = b"huggingface"  # the schema-metadata key `datasets` stores its features under
HF_STATE = ("state.json", "dataset_info.json")  # files `Dataset.save_to_disk` writes beside its .arrow files
HF_DICT = "dataset_dict.json"  # what `DatasetDict.save_to_disk` writes beside one folder per split
RESERVED_COLUMNS = ("label", "split", "id")
SOUNDFILE_SCALING = "audio files decoded by soundfile: integer PCM scaled to [-1, 1), channels averaged to mono"


def matches(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def matches_arrow_folder(path: Path) -> bool:
    return path.is_dir() and ((path / HF_DICT).is_file() or (all((path / f).is_file() for f in HF_STATE) and any(path.glob("*.arrow"))))


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
        hint = "; a struct column must be Hugging Face Image()/Audio() storage, struct<bytes, path>" if pa.types.is_struct(values.type) else ""
        raise InputError(f"{where}: column {name!r} holds {'lists of ' if shape else ''}{values.type}; expected numbers{hint}")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), *shape)


def _is_wav(blob: bytes) -> bool:
    return blob[:4] == b"RIFF" and blob[8:12] == b"WAVE"


def _decode_audio(where: str, name: str, blobs: list[bytes]) -> tuple[np.ndarray, str]:
    """Audio files of one length -> (N, L) float32 mono: WAV as media folders decode it, other
    formats (FLAC, OGG...) with soundfile, whose float reads scale PCM the same way; and the rule."""
    if all(_is_wav(b) for b in blobs):
        length = wav_header(blobs[0])
        return np.stack([decode_wav(b, length) for b in blobs]), WAV_SCALING
    soundfile = optional_import("soundfile", "non-WAV audio")
    waves = []
    for i, blob in enumerate(blobs):
        try:
            x, _ = soundfile.read(io.BytesIO(blob), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
            raise InputError(f"{where}: column {name!r} row {i} is not readable audio ({type(e).__name__}: {e})") from None
        waves.append(x.mean(axis=1))
    lengths = {len(w) for w in waves}
    if len(lengths) > 1:
        raise InputError(f"{where}: column {name!r} holds audio of lengths {few(lengths)}; expected one length (trim or pad them)")
    return np.stack(waves).astype(np.float32), SOUNDFILE_SCALING


def _media(where: str, name: str, blobs: list, kind: str | None) -> tuple[np.ndarray, str, str]:
    """Binary images or audio files -> (N, C, H, W) uint8 or (N, L) float32, the kind (`kind` as
    the Hugging Face features say, else from the first file's header) and the scaling rule."""
    if any(b is None for b in blobs):
        raise InputError(f"{where}: column {name!r} has missing values; expected one file per row")
    if kind == "audio" or (kind is None and _is_wav(blobs[0])):
        waves, scaling = _decode_audio(where, name, blobs)
        return waves, "audio", scaling
    mode, size = image_header(blobs[0])
    mode = "L" if mode in ("1", "L", "I", "I;16", "F") else "RGB"
    return np.stack([decode_image(b, mode, size) for b in blobs]).astype(np.uint8), "image", IMAGE_SCALING


def _struct_bytes(where: str, name: str, column, base: Path | None, options: ReadOptions) -> list[bytes]:
    """The files of a Hugging Face Image()/Audio() column, struct<bytes, path>: the bytes, or the
    file at `path` (relative to the table's folder, and inside it: `common.confined`) where a row
    holds none."""
    fields = {column.type.field(i).name for i in range(column.type.num_fields)}
    if "bytes" not in fields:
        raise InputError(f"{where}: column {name!r} is a struct of {', '.join(sorted(fields))}; expected Hugging Face Image()/Audio() storage, struct<bytes, path>")
    blobs = column.field("bytes").to_pylist()
    paths = column.field("path").to_pylist() if "path" in fields else [None] * len(blobs)
    out = []
    for i, (blob, path) in enumerate(zip(blobs, paths)):
        if blob is None and path:
            file = Path(path) if base is None or Path(path).is_absolute() else base / path
            if base is not None:
                file = confined(base, file, f"{where}: column {name!r} row {i}", options)
            if not file.is_file():
                raise InputError(f"{where}: column {name!r} row {i} has no bytes and its path {path!r} is not a file")
            blob = file.read_bytes()
        if blob is None:
            raise InputError(f"{where}: column {name!r} row {i} has neither bytes nor a path; expected one file per row")
        out.append(blob)
    return out


def hf_features(schema) -> dict:
    """The Hugging Face features a table's schema metadata holds ({} for other Parquet files)."""
    raw = (schema.metadata or {}).get(HF_METADATA)
    if not raw:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def _feature_kind(feature) -> str | None:
    kind = feature.get("_type") if isinstance(feature, dict) else None
    return {"Image": "image", "Audio": "audio"}.get(kind)


def read_table(where: str, table, options: ReadOptions, name: str, features: dict | None = None, base: Path | None = None) -> dict:
    """{split: MultimodalData} of an Arrow table (the shared core of Parquet, Arrow folders and
    `datasets` objects). features: Hugging Face features (default: from the schema metadata)."""
    pa = optional_import("pyarrow", "Parquet")
    features = hf_features(table.schema) if features is None else features
    if "label" not in table.column_names:
        raise InputError(f"{where}: no 'label' column; columns: {', '.join(table.column_names)}")
    raw: dict[str, np.ndarray] = {"labels": table.column("label").to_numpy(zero_copy_only=False)}
    label_feature = features.get("label", {})
    class_names = None
    if isinstance(label_feature, dict) and label_feature.get("_type") == "ClassLabel" and label_feature.get("names"):
        class_names = [str(n) for n in label_feature["names"]]
    if "split" in table.column_names:
        split = np.asarray(table.column("split").to_pylist(), dtype=object).astype(str)
        bad = sorted(set(split.tolist()) - set(SPLIT_ALIASES))
        if bad:
            raise InputError(f"{where}: split {bad[0]!r}; expected {', '.join(SPLITS)} (or valid)")
        raw["split"] = np.array([SPLIT_ALIASES[s] for s in split])
    if "id" in table.column_names:
        raw["ids"] = table.column("id").to_numpy(zero_copy_only=False)
    kinds = dict(options.kinds or {})
    texts, scalings = {}, {}
    for column_name in table.column_names:
        if column_name in RESERVED_COLUMNS:
            continue
        column = table.column(column_name).combine_chunks()
        declared = _feature_kind(features.get(column_name))
        if pa.types.is_struct(column.type):
            blobs = _struct_bytes(where, column_name, column, base, options)
            raw[column_name], kind, scalings[column_name] = _media(where, column_name, blobs, declared)
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raw[column_name], kind, scalings[column_name] = _media(where, column_name, column.to_pylist(), declared)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            texts[column_name] = [str(t) for t in column.to_pylist()]
            continue
        else:
            raw[column_name] = _numeric_lists(where, column_name, column)
            continue
        kinds.setdefault(column_name, kind)
    if texts:
        split = raw.get("split")
        train_rows = np.flatnonzero(split == "train") if split is not None else np.arange(len(raw["labels"]))
        for text_name, values in texts.items():
            raw[text_name] = tokenize(values, train_rows, options.tokenizer, where)[0]
    return assemble(where, where, raw, kinds, name=name, seed=options.seed, class_names=class_names, scalings=scalings)


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
    return read_table(where, table, options, name=path.stem, base=path.parent)


def _read_arrow_split(where: str, folder: Path):
    """The rows of one `Dataset.save_to_disk` folder: its .arrow files (Arrow IPC streams) in the
    order state.json lists them."""
    pa = optional_import("pyarrow", "Hugging Face Arrow folders")
    try:
        state = json.loads((folder / "state.json").read_text())
        files = [folder / f["filename"] for f in state.get("_data_files", [])]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{where}: {folder / 'state.json'} is not the state.json of Dataset.save_to_disk ({e})") from None
    if not files:
        raise InputError(f"{where}: {folder / 'state.json'} lists no data files")
    tables = []
    for f in files:
        try:
            with pa.memory_map(str(f)) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"{where}: {f.name} is not a readable Arrow stream ({str(e).splitlines()[0]})") from None
    return pa.concat_tables(tables)


def read_arrow_folder(path: Path, options: ReadOptions) -> dict:
    """A `Dataset.save_to_disk` folder, or a `DatasetDict.save_to_disk` one (its splits -> ours)."""
    optional_import("pyarrow", "Hugging Face Arrow folders")  # a missing pyarrow: one line naming the extra
    where = str(path)
    if not (path / HF_DICT).is_file():
        table = _read_arrow_split(where, path)
        return read_table(where, table, options, name=path.name, base=path)
    try:
        names = json.loads((path / HF_DICT).read_text())["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{where}: {HF_DICT} is not DatasetDict.save_to_disk's ({e})") from None
    return read_table(where, _with_split_column(where, {s: _read_arrow_split(where, path / s) for s in names}), options, name=path.name, base=path)


def _with_split_column(where: str, tables: dict):
    """{split name: table} -> one table with a `split` column (names mapped to ours)."""
    pa = optional_import("pyarrow", "Hugging Face datasets")
    unknown = [s for s in tables if s not in SPLIT_ALIASES]
    if unknown:
        raise InputError(f"{where}: split {unknown[0]!r}; expected train, validation/valid/val and test")
    if "split" in next(iter(tables.values())).column_names:
        raise InputError(f"{where}: the splits hold a 'split' column as well; expected the splits alone to say it")
    parts = [t.append_column("split", pa.array([SPLIT_ALIASES[s]] * len(t), pa.string())) for s, t in tables.items()]
    try:
        return pa.concat_tables(parts)
    except pa.ArrowInvalid as e:
        raise InputError(f"{where}: the splits have different columns ({str(e).splitlines()[0]})") from None


def from_hf_dataset(dataset, options: ReadOptions, name: str = "hf") -> dict:
    """{split: MultimodalData} of a `datasets.Dataset` (its rows, after any select/shuffle) or a
    `datasets.DatasetDict` (its splits -> ours), read through the same table rules as Parquet."""
    if hasattr(dataset, "features") and hasattr(dataset, "with_format"):
        return read_table(name, dataset.with_format("arrow")[:], options, name=name, features=dataset.features.to_dict())
    if hasattr(dataset, "items") and all(hasattr(d, "features") for d in dataset.values()):
        tables = {s: d.with_format("arrow")[:] for s, d in dataset.items()}
        features = next(iter(dataset.values())).features.to_dict()
        return read_table(name, _with_split_column(name, tables), options, name=name, features=features)
    raise InputError(f"dataset object of type {type(dataset).__name__}: expected a datasets.Dataset or DatasetDict")
