"""Media folders: images, WAV files and text, decoded batch by batch so memory stays bounded.

Two layouts:
- one folder per class, `ROOT/<class>/<stem>.<ext>` (or `ROOT/<split>/<class>/...` with split
  folders train, val/valid, test); files sharing a stem are one sample's modalities, named by
  kind: `image` (.png .jpg .jpeg .bmp .tif .tiff), `audio` (.wav), `text` (.txt);
- an index, `index.csv` / `index.jsonl` in the folder (or the file itself): columns `label`,
  optional `id` (integer) and `split`, a `text` column of literal text, and one column per
  modality holding paths relative to the index (its kind from the files' suffix).
Labels of an index are integer class ids (or numbers, for regression); names need `--classes`,
which also orders class folders (else sorted by name). Every path, named by the index or found
in a class folder, must lie inside the dataset's folder once symlinks are resolved
(`common.confined`; `--allow-outside-paths` opts out).
Images must share one size (mode L or RGB, from the first); values 0..255. WAV files must share
one length; integer PCM is scaled to [-1, 1), channels are averaged to mono. Text becomes token
ids (0 pad, 1 unknown) from a user `module:function` (text -> list of ints) or from a whitespace
vocabulary (lower-cased) built on the train split, padded to the longest text.

Loading reads only the file headers (sizes, lengths) and the text; the train split (all of it
without splits) is decoded once, in batches, for the mean/std statistics. Evaluation then decodes
each batch when the engine asks for it (`StreamedData.batches`), so peak memory depends on the
batch size, not on the number of files. Training needs everything in memory (`in_memory()`).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch

from ...errors import InputError
from ..batch import PAD_ID, UNK_ID, ModalitySpec, MultimodalData, SplitData, map_range
from ..files import pcm_to_float, resolve_factory
from ..splits import CONSTANT_STD_REL, SPLITS, WHOLE, stratified_split
from .common import SPLIT_ALIASES, ReadOptions, confined, few

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav",)
TEXT_SUFFIXES = (".txt",)
INDEX_NAMES = ("index.csv", "index.jsonl")
# The rules that put decoded values in their range (the input contract shows them).
IMAGE_SCALING = "decoded image files (Pillow, mode L or RGB): pixels kept in pixel units 0..255, as float32"
WAV_SCALING = "WAV files: integer PCM scaled to [-1, 1), float kept, channels averaged to mono"
TEXT_SCALING = "text tokenised to ids (a --tokenizer, or the train split's whitespace vocabulary)"
STATS_BATCH = 64  # samples decoded at once for the statistics pass
DECODE_THREADS = min(8, os.cpu_count() or 1)  # PIL and file reads release the GIL
_pool: ThreadPoolExecutor | None = None


def _decode_pool() -> ThreadPoolExecutor:
    """One pool for the process: threads (and their malloc arenas) are made once, not per batch."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="rbmm-decode")
    return _pool


def matches(path: Path) -> bool:
    if path.suffix.lower() in (".csv", ".jsonl"):
        return True
    return path.is_dir() and (any((path / n).is_file() for n in INDEX_NAMES) or any(d.is_dir() for d in path.iterdir()))


def kind_of_suffix(suffix: str) -> str | None:
    suffix = suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return None


# --------------------------------------------------------------------------- decoding one file


def _image_module():
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading images needs Pillow: pip install pillow") from None
    return Image


def image_header(source) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) without decoding the pixels. `source`: a path or bytes."""
    Image = _image_module()
    try:
        with Image.open(_as_file(source)) as im:
            return im.mode, im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        raise InputError(f"{_name(source)} is not a readable image ({type(e).__name__}: {e})") from None


def decode_image(source, mode: str, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 in 0..255, C = 1 for mode L, 3 for RGB."""
    Image = _image_module()
    try:
        with Image.open(_as_file(source)) as im:
            if im.size != size:
                raise InputError(f"{_name(source)} is {im.size[0]}x{im.size[1]}; the other images are {size[0]}x{size[1]} (resize them to one size)")
            x = np.asarray(im.convert(mode), dtype=np.float32)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{_name(source)} is not a decodable image ({type(e).__name__}: {e})") from None
    return x[None] if x.ndim == 2 else x.transpose(2, 0, 1)


def wav_header(source) -> int:
    """Number of samples of a WAV, read through a memory map (the samples are not decoded)."""
    from scipy.io import wavfile

    try:
        _, x = wavfile.read(_as_file(source), mmap=isinstance(source, (str, Path)))
    except Exception as e:  # scipy raises ValueError for non-WAV data, EOFError/OSError for truncation
        raise InputError(f"{_name(source)} is not a readable WAV file ({type(e).__name__}: {e})") from None
    return int(x.shape[0])


def decode_wav(source, length: int) -> np.ndarray:
    """(length,) float32 mono; integer PCM scaled to [-1, 1)."""
    from scipy.io import wavfile

    try:
        _, x = wavfile.read(_as_file(source))
    except Exception as e:
        raise InputError(f"{_name(source)} is not a readable WAV file ({type(e).__name__}: {e})") from None
    if x.shape[0] != length:
        raise InputError(f"{_name(source)} has {x.shape[0]} samples; the other WAV files have {length} (trim or pad them to one length)")
    if x.dtype.kind in "iu":
        x = pcm_to_float(x)
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError(f"{_name(source)} holds NaN/Inf samples; expected finite audio")
    return x.mean(axis=1) if x.ndim == 2 else x


def _as_file(source):
    import io

    return io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source


def _name(source) -> str:
    return "binary media value" if isinstance(source, (bytes, bytearray)) else repr(str(source))


# --------------------------------------------------------------------------- text


def whitespace_vocabulary(texts: list[str]) -> dict[str, int]:
    """Lower-cased whitespace words -> ids from 2, most frequent first (ties alphabetical)."""
    counts = Counter(w for t in texts for w in t.lower().split())
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return {w: UNK_ID + 1 + i for i, w in enumerate(ranked)}


def tokenize(texts: list[str], train_rows: np.ndarray, tokenizer: str | None, where: str) -> tuple[np.ndarray, int]:
    """(N, L) int64 ids padded with PAD_ID to the longest text, and the vocabulary size."""
    if tokenizer:
        fn = resolve_factory(tokenizer)
        ids = []
        for t in texts:
            try:
                seq = [int(i) for i in fn(t)]
            except Exception as e:
                raise InputError(f"tokenizer {tokenizer!r} failed on a text of {where} ({type(e).__name__}: {e})") from None
            if any(i < 0 for i in seq):
                raise InputError(f"tokenizer {tokenizer!r} returned a negative id; expected ids >= 2 (0 pad, 1 unknown)")
            ids.append(seq)
        vocab_size = max([UNK_ID + 1] + [max(s) + 1 for s in ids if s])
    else:
        vocab = whitespace_vocabulary([texts[i] for i in train_rows])
        ids = [[vocab.get(w, UNK_ID) for w in t.lower().split()] for t in texts]
        vocab_size = UNK_ID + 1 + len(vocab)
    out = np.full((len(ids), max([1] + [len(s) for s in ids])), PAD_ID, dtype=np.int64)
    for i, s in enumerate(ids):
        out[i, : len(s)] = s
    return out, vocab_size


# --------------------------------------------------------------------------- the streamed split


@dataclass(kw_only=True)
class StreamedData(SplitData):
    """One split whose samples stay on disk until a batch of them is needed.

    `items[m]` holds one reference per sample (a path, bytes, or token ids) and `decoders[m]`
    turns one into its (*shape) array, checking size and finiteness as it goes.
    """

    streamed: ClassVar[bool] = True

    items: dict[str, np.ndarray]
    decoders: dict[str, Callable[[object], np.ndarray]]

    @property
    def inputs(self):
        raise InputError(
            f"dataset {self.name!r} is streamed from files; this step needs every sample in memory "
            "(e.g. cross-modal conflict draws donors from the whole split): convert it to a .npz first"
        )

    def _samples(self, rows) -> dict:
        rows = np.asarray(rows.cpu()) if isinstance(rows, torch.Tensor) else rows
        return {"items": {k: v[rows] for k, v in self.items.items()}}

    def _samples_of(self, modalities: list[str]) -> dict:
        return {"items": {m: self.items[m] for m in modalities}, "decoders": {m: self.decoders[m] for m in modalities}}

    def _batch_inputs(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        return self.decode(lo, hi)

    def _rescaled_samples(self, ranges: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> dict:
        return {"decoders": {m: _mapped(d, *ranges[m]) if m in ranges else d for m, d in self.decoders.items()}}

    def decode(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """The inputs of samples lo..hi-1, decoded now (threads: decoding releases the GIL)."""
        pool = _decode_pool()
        return {m: torch.from_numpy(np.stack(list(pool.map(decoder, self.items[m][lo:hi])))) for m, decoder in self.decoders.items()}

    def _hash_samples(self, h) -> None:
        """The bytes of every sample's files (read in 1 MiB blocks), token ids or bytes."""
        for m in sorted(self.specs):
            for item in self.items[m]:
                if isinstance(item, np.ndarray):
                    h.update(item.tobytes())
                elif isinstance(item, (bytes, bytearray)):
                    h.update(item)
                else:
                    with open(item, "rb") as f:
                        for block in iter(lambda: f.read(2**20), b""):
                            h.update(block)

    def in_memory(self) -> MultimodalData:
        """Every sample decoded (for training, which revisits samples in random order)."""
        return MultimodalData(
            name=self.name, split=self.split, specs=self.specs, inputs=self.decode(0, len(self)), labels=self.labels,
            ids=self.ids, task=self.task, num_classes=self.num_classes, source=self.source, class_names=self.class_names,
            lengths=self.lengths,
        )


def _mapped(decoder: Callable[[object], np.ndarray], old: tuple[float, float], new: tuple[float, float]) -> Callable[[object], np.ndarray]:
    """A decoder whose float32 values are mapped from range `old` onto `new`, as `MultimodalData` maps them."""
    return lambda item: map_range(decoder(item), old, new).astype(np.float32)


def streamed_stats(data: StreamedData, kind: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of one modality over `data`, as `splits.train_stats` defines them
    (image per pixel, audio one scalar), merged batch by batch (Chan et al.'s pairwise update)."""
    count, mean, m2 = 0, None, None
    for lo in range(0, len(data), STATS_BATCH):
        x = data.select([name]).decode(lo, min(lo + STATS_BATCH, len(data)))[name].double()
        x = x.reshape(-1) if kind == "audio" else x
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    std = (m2 / count).sqrt()
    std = torch.where(std <= CONSTANT_STD_REL * torch.clamp(mean.abs(), min=1.0), torch.ones_like(std), std)
    return mean.float(), std.float()


# --------------------------------------------------------------------------- layouts -> entries


@dataclass
class _Entries:
    """The table of a media dataset before decoding: one row per sample."""

    labels: list
    splits: list[str] | None
    ids: list[int] | None
    columns: dict[str, list]  # modality -> paths (or literal text for `text`)
    kinds: dict[str, str]  # modality -> image / audio / text


def _class_folders(root: Path, options: ReadOptions) -> _Entries:
    where = str(root)
    top = sorted(confined(root, d, where, options) for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not top:
        raise InputError(f"{str(root)!r}: no class folders and no index.csv / index.jsonl")
    split_layout = all(d.name.lower() in SPLIT_ALIASES for d in top)
    groups = [(SPLIT_ALIASES[d.name.lower()], confined(root, c, where, options)) for d in top for c in sorted(x for x in d.iterdir() if x.is_dir())] if split_layout else [(None, d) for d in top]
    if split_layout and "train" not in {s for s, _ in groups}:
        raise InputError(f"{str(root)!r}: split folders {few(d.name for d in top)} without 'train'; the statistics and vocabulary come from train")
    labels, splits, columns = [], [], {}
    for split, folder in groups:
        samples: dict[str, dict[str, Path]] = {}
        for f in sorted(folder.iterdir()):
            kind = kind_of_suffix(f.suffix) if f.is_file() else None
            if kind is None:
                continue
            samples.setdefault(f.stem, {})[kind] = confined(root, f, where, options)
        kinds_here = sorted({k for s in samples.values() for k in s})
        for kind in kinds_here:
            lacking = [stem for stem, files in samples.items() if kind not in files]
            if lacking:
                raise InputError(f"{str(folder)!r}: {len(lacking)} samples have no {kind} file (every stem needs one of each kind): {few(lacking)}")
        for stem, files in samples.items():
            labels.append(folder.name)
            splits.append(split)
            for kind in files:
                columns.setdefault(kind, []).append(files[kind])
    if not labels:
        raise InputError(f"{str(root)!r}: the class folders hold no image (.png .jpg ...), .wav or .txt files")
    counts = {k: len(v) for k, v in columns.items()}
    if len(set(counts.values())) != 1:
        raise InputError(f"{str(root)!r}: some class folders lack a modality the others have (files per kind: {counts})")
    return _Entries(labels, splits if split_layout else None, None, columns, {k: k for k in columns})


def _index(path: Path, options: ReadOptions) -> _Entries:
    base = path.parent
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"index {str(path)!r} is not readable {path.suffix[1:].upper()} ({e})") from None
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"index {str(path)!r}: expected a header and one row (object) per sample with 'label'")
    keys = set(rows[0])
    for i, r in enumerate(rows):
        if set(r) != keys:
            raise InputError(f"index {str(path)!r}: row {i + 1} has columns {sorted(r)}, row 1 has {sorted(keys)}")
    if "label" not in keys:
        raise InputError(f"index {str(path)!r}: no 'label' column; columns: {', '.join(sorted(keys))}")
    modality_cols = [k for k in rows[0] if k not in ("id", "label", "split")]
    columns, kinds = {}, {}
    for m in modality_cols:
        values = [r[m] for r in rows]
        if m == "text":
            columns[m], kinds[m] = [str(v) for v in values], "text-literal"
            continue
        kind = kind_of_suffix(Path(str(values[0])).suffix)
        if kind is None:
            raise InputError(f"index {str(path)!r}: column {m!r} holds {values[0]!r}; expected paths to images, .wav or .txt files (or a 'text' column)")
        odd = [v for v in values if kind_of_suffix(Path(str(v)).suffix) != kind]
        if odd:
            raise InputError(f"index {str(path)!r}: column {m!r} mixes kinds ({few(odd)} are not {kind} files)")
        missing = [v for v in values if not (base / str(v)).is_file()]
        if missing:
            raise InputError(f"index {str(path)!r}: column {m!r} names {len(missing)} files that do not exist: {few(missing)}")
        columns[m], kinds[m] = [confined(base, base / str(v), f"index {str(path)!r}: column {m!r}", options) for v in values], kind
    if not columns:
        raise InputError(f"index {str(path)!r}: no modality columns besides id, label, split")
    ids = None
    if "id" in keys:
        try:
            ids = [int(r["id"]) for r in rows]
        except (TypeError, ValueError):
            raise InputError(f"index {str(path)!r}: 'id' must be integers (stable sample ids)") from None
        if len(set(ids)) != len(ids):
            dup = [i for i, c in Counter(ids).items() if c > 1]
            raise InputError(f"index {str(path)!r}: 'id' repeats {few(dup)}; expected one id per sample")
    splits = None
    if "split" in keys:
        bad = sorted({str(r["split"]) for r in rows} - set(SPLIT_ALIASES))
        if bad:
            raise InputError(f"index {str(path)!r}: split {bad[0]!r}; expected train, val/valid or test")
        splits = [SPLIT_ALIASES[str(r["split"])] for r in rows]
        if "train" not in splits:
            raise InputError(f"index {str(path)!r}: no 'train' rows; the statistics and vocabulary come from train")
    return _Entries([r["label"] for r in rows], splits, ids, columns, kinds)


def _labels(where: str, raw: list, classes: tuple[str, ...] | None, folders: bool) -> tuple[np.ndarray, str, int | None, list[str] | None]:
    """(labels, task, num_classes, class_names).

    With `classes` (--classes): integer labels are ids into it, other labels are names from it.
    Without: integers are class ids, finite floats regression targets; class folders are named
    classes in sorted order (the run records them, and evaluation checks them against the model's).
    Any other label in an index is refused: one typo would otherwise turn every label into a
    class name and renumber them all ("10" sorting before "2").
    """
    text = [str(v).strip() for v in raw]
    try:
        values = np.array([int(t) for t in text], dtype=np.int64)
    except ValueError:
        values = None
    if values is not None and len(values) and values.min() < 0:
        raise InputError(f"{where}: negative class id {values.min()}; expected ids 0..C-1 or class names")
    if classes is not None:
        if values is not None:
            if values.max(initial=0) >= len(classes):
                raise InputError(f"{where}: class id {values.max()} but --classes names {len(classes)} classes (ids 0..{len(classes) - 1})")
            return values, "classification", len(classes), list(classes)
        position = {n: i for i, n in enumerate(classes)}
        unknown = sorted({t for t in text if t not in position})
        if unknown:
            raise InputError(f"{where}: label(s) {few(unknown)} are not among --classes {few(classes, limit=6)}")
        return np.array([position[t] for t in text], dtype=np.int64), "classification", len(classes), list(classes)
    if values is not None:
        return values, "classification", int(values.max(initial=-1)) + 1, None
    try:
        floats = np.array([float(t) for t in text], dtype=np.float32)
        if np.isfinite(floats).all():
            return floats, "regression", None, None
    except ValueError:
        pass
    if not folders:
        row, bad = next((i, t) for i, t in enumerate(text) if not _is_number(t))
        raise InputError(
            f"{where}: label {bad!r} (row {row + 1}) is neither an integer class id nor a number; to use class names, "
            "name every class in the model's order with --classes NAME,NAME,..."
        )
    names = sorted(set(text))
    position = {n: i for i, n in enumerate(names)}
    return np.array([position[t] for t in text], dtype=np.int64), "classification", len(names), names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- read


def read(path: Path, options: ReadOptions) -> dict[str, StreamedData]:
    index = path if path.is_file() else next((path / n for n in INDEX_NAMES if (path / n).is_file()), None)
    if index is None and not path.is_dir():
        raise InputError(f"media dataset {str(path)!r} not found; expected a folder (one per class, or with index.csv) or an index file")
    where = str(path)
    entries = _index(index, options) if index is not None else _class_folders(path, options)
    if options.kinds:
        raise InputError(f"{where}: --kind does not apply to media folders (kinds come from the file types)")
    labels, task, num_classes, class_names = _labels(where, entries.labels, options.classes, folders=index is None)
    n = len(labels)
    ids = np.array(entries.ids if entries.ids is not None else range(n), dtype=np.int64)
    if entries.splits is not None:
        column = np.array(entries.splits)
        split_rows = {s: np.flatnonzero(column == s) for s in SPLITS}
    elif options.seed is not None:
        split_rows = stratified_split(labels, options.seed)
    else:
        split_rows = {WHOLE: np.arange(n)}  # no splits: one evaluation set, as a feature file without `split`
    stats_rows = split_rows["train"] if "train" in split_rows and len(split_rows["train"]) else np.arange(n)

    specs, items, decoders = {}, {}, {}
    for m, values in entries.columns.items():
        kind = entries.kinds[m]
        if kind == "image":
            mode, size = image_header(values[0])
            for v in values:
                _, other = image_header(v)
                if other != size:
                    raise InputError(f"{_name(v)} is {other[0]}x{other[1]}; {_name(values[0])} is {size[0]}x{size[1]} (resize them to one size)")
            mode = "L" if mode in ("1", "L", "I", "I;16", "F") else "RGB"
            specs[m] = ModalitySpec(m, "image", ((1 if mode == "L" else 3), size[1], size[0]), value_range=(0.0, 255.0), scaling=IMAGE_SCALING)
            decoders[m] = lambda v, mode=mode, size=size: decode_image(v, mode, size)
            items[m] = np.array([str(v) for v in values], dtype=object)
        elif kind == "audio":
            length = wav_header(values[0])
            for v in values:
                other = wav_header(v)
                if other != length:
                    raise InputError(f"{_name(v)} has {other} samples; {_name(values[0])} has {length} (trim or pad them to one length)")
            specs[m] = ModalitySpec(m, "audio", (length,), value_range=(-1.0, 1.0), scaling=WAV_SCALING)
            decoders[m] = lambda v, length=length: decode_wav(v, length)
            items[m] = np.array([str(v) for v in values], dtype=object)
        else:
            texts = values if kind == "text-literal" else [_read_text(p) for p in values]
            tokens, vocab_size = tokenize(texts, stats_rows, options.tokenizer, where)
            specs[m] = ModalitySpec(m, "tokens", (tokens.shape[1],), vocab_size=vocab_size, scaling=TEXT_SCALING)
            decoders[m] = np.asarray
            items[m] = np.empty(n, dtype=object)
            items[m][:] = list(tokens)

    whole = StreamedData(
        name=path.stem if path.is_file() else path.name, split="all", specs=specs, items=items, decoders=decoders,
        labels=torch.from_numpy(labels), ids=torch.from_numpy(ids), task=task, num_classes=num_classes,
        source=where, class_names=class_names,
    )
    stats_part = whole.subset(torch.from_numpy(stats_rows))
    for m, spec in specs.items():
        if spec.kind != "tokens":
            spec.mean, spec.std = streamed_stats(stats_part, spec.kind, m)
    return {s: replace(whole.subset(torch.from_numpy(rows)), split=s) for s, rows in split_rows.items()}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{str(path)!r} is not readable UTF-8 text ({e})") from None
