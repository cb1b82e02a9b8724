"""One entry point for every dataset source: `load_dataset` (one split) and `load_splits` (all three).

Sources: a registered dataset by name (`DATASETS`: the embedded "mfeat", "mfeat-all", "avdigits",
"avdigits-all", "synthetic" of `builtin.py`, and any a plug-in registers with `@dataset`), with
options after a colon ("mfeat:seed=1", "synthetic:key=value,..."); a .npz/.pt feature file; a
path in one of the `readers` formats (`fmt` names it, else detected); "module:factory"; or, in
the Python API, a Hugging Face `datasets.Dataset` / `DatasetDict` object. The keyword `seed` is
the split seed (and the generator seed of synthetic) unless the source string sets one.
"""

from __future__ import annotations

from pathlib import Path

from ..domain import parse_task
from ..errors import InputError, one_of
from . import builtin  # noqa: F401  (registers the embedded datasets)
from .batch import MultimodalData
from .files import load_factory_splits, load_file_splits
from .readers import READERS, ReadOptions, detect_format, read_splits
from .readers.parquet import from_hf_dataset
from .registry import DATASETS
from .splits import SPLITS, WHOLE

FILE_SUFFIXES = (".npz", ".pt", ".pth")
FEATURE_FILE_FORMATS = ("npz", "pt")
FORMATS = FEATURE_FILE_FORMATS + tuple(READERS)
FEATURES = "PATH.npz / PATH.pt"
FACTORY = "module:factory"


def source_names() -> list[str]:
    """What `--data` accepts, by name: the registered datasets, feature files, factories and the
    readers' formats (listing them imports no dataset's code)."""
    return [*DATASETS.names(), FEATURES, FACTORY, *READERS]


def describe_sources() -> dict[str, str]:
    """`source_names()` and one line on each (for `rbmm list datasets`)."""
    return {
        **{name: spec.description for name, spec in DATASETS.items()},
        FEATURES: "your features: one array per modality + labels [+ split, ids]; kinds inferred, --kind NAME=KIND overrides",
        FACTORY: "a function (taking split= optionally) returning a torch Dataset of dict samples",
        **{name: f"(--format {name}) {r.description}" for name, r in READERS.items()},
    }


def parse_options(text: str, where: str) -> dict[str, str]:
    """"a=1,b=x" -> {"a": "1", "b": "x"} (empty text -> {})."""
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"dataset {where!r}: option {item!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def is_hf_dataset(source) -> bool:
    """Whether `source` is a `datasets.Dataset` or `DatasetDict` object (checked without importing `datasets`)."""
    return type(source).__module__.startswith("datasets.") and type(source).__name__ in ("Dataset", "DatasetDict")


def _label(source) -> str:
    """How errors name a source: its text, or the kind of object it is."""
    return source if isinstance(source, str) else f"Hugging Face {type(source).__name__}"


def is_builtin(source: str) -> bool:
    """Whether a source names a registered dataset (whose task is its own), not a file or factory."""
    return isinstance(source, str) and source.strip().partition(":")[0] in DATASETS


def _all_splits(
    source: str, *, modalities, kinds: dict[str, str] | None, seed: int, training: bool, task: str | None = None,
    fmt: str | None = None, trust: bool = False, tokenizer: str | None = None, keep_empty_text: bool = False,
    outside_paths: bool = False, classes: list[str] | None = None,
) -> tuple[dict[str, MultimodalData], bool]:
    """(splits, selected): `selected` is True when `modalities` was already applied.

    Evaluation of a feature file or factory without its own split gives {"all": everything}.
    """
    if task is not None:
        parse_task(task)
    if is_hf_dataset(source):
        options = ReadOptions(kinds=kinds, seed=seed if training else None, tokenizer=tokenizer)
        return _fixed_task(_label(source), from_hf_dataset(source, options, name=_label(source)), task), False
    if not isinstance(source, str) or not source.strip():
        raise one_of("dataset", source, source_names())
    source = source.strip()
    base, _, opts = source.partition(":")
    if classes is not None and (fmt or (None if base in DATASETS else detect_format(source))) != "media":
        raise InputError(f"--classes names the classes of media labels (class folders, index.csv/.jsonl); {source!r} is not a media dataset")
    if base in DATASETS:
        if kinds:
            raise InputError(f"dataset {base!r}: --kind overrides apply to feature files and factories only")
        splits = DATASETS[base].splits(parse_options(opts, source), modalities=modalities, seed=seed)
        return _fixed_task(base, splits, task), True
    if fmt not in (None, *FORMATS):
        raise one_of("--format", fmt, FORMATS)
    if fmt in READERS or (fmt is None and detect_format(source)):
        options = ReadOptions(kinds=kinds, seed=seed if training else None, trust=trust, tokenizer=tokenizer,
                              keep_empty_text=keep_empty_text, outside_paths=outside_paths,
                              classes=None if classes is None else tuple(classes))
        return _fixed_task(source, read_splits(source, fmt, options), task), False
    if fmt in FEATURE_FILE_FORMATS or Path(source).suffix.lower() in FILE_SUFFIXES or Path(source).exists():
        return load_file_splits(source, kinds, seed=seed if training else None, task=task), False
    if ":" in source:
        return load_factory_splits(source, kinds, seed=seed if training else None, task=task), False
    raise one_of("dataset", source, source_names())


def _fixed_task(name: str, splits: dict[str, MultimodalData], task: str | None) -> dict[str, MultimodalData]:
    own = next(iter(splits.values())).task
    if task is not None and task != own:
        raise InputError(f"dataset {name!r} is a {own} dataset; --task {task} applies to feature files and factories")
    return splits


def _select(data: MultimodalData, modalities, selected: bool) -> MultimodalData:
    return data if selected or not modalities else data.select(list(modalities))


def load_splits(
    source: str, *, modalities: list[str] | None = None, kinds: dict[str, str] | None = None, seed: int = 0,
    task: str | None = None,
    fmt: str | None = None, trust: bool = False, tokenizer: str | None = None, keep_empty_text: bool = False,
    outside_paths: bool = False, classes: list[str] | None = None,
) -> dict[str, MultimodalData]:
    """{"train", "val", "test"} of a source, train statistics on every split's specs (for training).

    A feature file or factory without its own split is split 60/20/20 per class with `seed`.
    task : "classification" | "regression" for a file or factory (None: from the labels' dtype).
    Streamed media are decoded into memory here: training revisits samples in random order.
    """
    splits, selected = _all_splits(
        source, modalities=modalities, kinds=kinds, seed=seed, training=True, task=task, fmt=fmt, trust=trust, tokenizer=tokenizer,
        keep_empty_text=keep_empty_text, outside_paths=outside_paths, classes=classes,
    )
    empty = [s for s in SPLITS if s not in splits or len(splits[s]) == 0]
    if empty:
        raise InputError(f"dataset {_label(source)!r}: its 'split' has no {empty[0]!r} samples; training needs train, val and test")
    chosen = {s: _select(splits[s], modalities, selected) for s in SPLITS}
    return {s: d.in_memory() if d.streamed else d for s, d in chosen.items()}


def load_dataset(
    source: str,
    split: str = "test",
    *,
    modalities: list[str] | None = None,
    kinds: dict[str, str] | None = None,
    seed: int = 0,
    task: str | None = None,
    fmt: str | None = None,
    trust: bool = False,
    tokenizer: str | None = None,
    keep_empty_text: bool = False,
    outside_paths: bool = False,
    classes: list[str] | None = None,
) -> MultimodalData:
    """One split of a source. A feature file or factory without its own split is one evaluation
    set: asking for "test" (the default) or "all" gives the whole of it, with split "all" (as the
    run's manifest then records). task : as in `load_splits`. fmt: a reader name (default: detected
    from the path); trust: allow pickles (they run code when loaded); tokenizer: "module:function" for text;
    keep_empty_text: keep the text-less segments of a MultiBench affect pickle (dropped by default, as MultiBench does);
    outside_paths: let a media index name files outside the dataset's folder (default: refused);
    classes: the class names, in the model's order, that media labels (folder names, index labels) name."""
    if split not in SPLITS + (WHOLE,):
        raise one_of("split", split, SPLITS + (WHOLE,))
    splits, selected = _all_splits(
        source, modalities=modalities, kinds=kinds, seed=seed, training=False, task=task, fmt=fmt, trust=trust, tokenizer=tokenizer,
        keep_empty_text=keep_empty_text, outside_paths=outside_paths, classes=classes,
    )
    if WHOLE in splits and split in ("test", WHOLE):
        split = WHOLE
    if split not in splits:
        raise InputError(
            f"dataset {_label(source)!r}: " + (
                "has no 'split' array, so all of it is the evaluation set; ask for split 'test' or 'all'"
                if WHOLE in splits else f"has no split {split!r} (it has {', '.join(splits)})"
            )
        )
    if len(splits[split]) == 0:
        raise InputError(f"dataset {_label(source)!r}: its 'split' has no {split!r} samples")
    return _select(splits[split], modalities, selected)
