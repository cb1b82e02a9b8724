"""`rbmm`: the command line. Thin on purpose: it parses arguments and calls the library.

Bad input becomes one line on stderr and exit code 2; a failed gate exits 1. `--debug` shows the
traceback instead. Library imports happen inside each command so `rbmm --help` stays fast.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from .version import __version__
from .errors import GateFailure, InputError, one_of
from .imports import working_directory_last
from .runtime import keep_freed_memory, thread_policy

TRUST_HELP = (
    "load full pickles, not only weights: a pickle can execute arbitrary code on this machine, "
    "so use this only for checkpoint files you created or fully trust (default: off)"
)
DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # what the engine and training place tensors on
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # model names become cell ids and file names


def _registry_text(field: str) -> str:
    """The valid choices a help text names: the declared built-ins (catalog) and any plug-in
    registered so far, read when help is shown, without importing torch or the kernels."""
    if field == "protocols":
        from .protocol_files import list_protocols

        return ", ".join(list_protocols())
    if field == "devices":
        return ", ".join(DEVICES)
    from . import catalog

    if field == "train_defaults":
        return ", ".join(f"{k} {v:g}" for k, v in catalog.TRAIN_DEFAULTS.items())
    return ", ".join(catalog.names(field))


class _HelpFormatter(argparse.HelpFormatter):
    """Fills {fusions}, {protocols}, {datasets}, {kinds}, {metrics}, {devices}, {data_formats},
    {export_formats}, {train_defaults}, {list_kinds} in help texts from the registries, only when
    help is printed (so other commands skip the imports)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        fields = set(re.findall(r"\{(\w+)\}", text))
        return text.format(**{f: _registry_text(f).replace("%", "%%") for f in fields}) if fields else text


def _parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def _add_plugins(p: argparse.ArgumentParser, dest: str = "plugins") -> None:
    p.add_argument(
        "--plugins", dest=dest, action="append", default=[], metavar="PATH",
        help="extra corruption plug-in file or folder (repeatable; default: none); ./corruptions/ is always searched",
    )



TASK_HELP = (
    "classification or regression, for a feature file or factory (default: inferred from the labels: "
    "integer -> classification, float -> regression; whole-number floats can be class ids)"
)


TRUST_DATA_HELP = (
    "read pickled datasets (MultiBench .pkl): a pickle can execute arbitrary code on this machine, "
    "so use this only for data files you created or fully trust (default: refused)"
)


def _class_list(text: str) -> list[str]:
    """--classes a,b,c -> ["a", "b", "c"]: distinct, non-empty names."""
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct, non-empty class names separated by commas")
    return names


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", metavar="FORMAT",
        help="how to read the data path, one of {data_formats} (default: detected from the path; `rbmm list datasets` describes each)",
    )
    p.add_argument("--trust-data", action="store_true", help=TRUST_DATA_HELP)
    p.add_argument(
        "--classes", metavar="NAME,NAME,...", type=_class_list,
        help="the class names of a media dataset in the model's order: labels that are names (index.csv, class "
        "folders) become their position here (default: integer labels are ids; class folders sorted by name)",
    )
    p.add_argument(
        "--allow-outside-paths", action="store_true",
        help="let a media index (or a symlink in a class folder) name files outside the dataset's folder (default: refused)",
    )
    p.add_argument(
        "--tokenizer", metavar="MODULE:FUNCTION",
        help="text -> list of token ids for media/Parquet text (default: a whitespace vocabulary of the train split)",
    )
    p.add_argument(
        "--keep-empty-text", action="store_true",
        help="MultiBench affect pickles: keep the segments without text that MultiBench's drop_entry removes; "
        "scores are then not comparable with MultiBench's (default: dropped, as MultiBench does)",
    )


def _add_model_loading(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", action="append", default=[], metavar="FILE",
        help="state-dict file of a `module:factory` model, repeatable: one per factory model, in MODEL order "
        "(or write MODEL as module:factory@FILE) (default: none)",
    )
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument(
        "--random-weights", action="store_true",
        help="evaluate a `module:factory` model without --weights, i.e. with its random initial weights (default: off; refused without it)",
    )


def _add_data(p: argparse.ArgumentParser, evaluating: bool = True) -> None:
    p.add_argument(
        "--data", default="mfeat", metavar="SOURCE",
        help="dataset: one of {datasets} (options as NAME:key=v,...; `rbmm list datasets` describes them; default: %(default)s)",
    )
    if evaluating:
        p.add_argument("--split", default="test", help="split to evaluate: train, val or test (default: %(default)s)")
    p.add_argument("--modalities", nargs="+", metavar="NAME", help="use only these modalities (default: all the dataset has)")
    p.add_argument(
        "--kind", action="append", default=[], metavar="NAME=KIND",
        help="override an inferred modality kind, KIND one of {kinds} (repeatable; default: inferred from shape and dtype)",
    )
    p.add_argument("--task", choices=["classification", "regression"], help=TASK_HELP)
    _add_format(p)


def _device(text: str, resolve_auto: bool = False) -> str:
    """Validate --device once, here at the edge: one of DEVICES, and present on this machine."""
    import torch

    name = text.strip()
    if name != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise InputError(f"unknown device {text!r}; expected one of: {', '.join(DEVICES)}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {text!r} requested but CUDA is not available on this machine; use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)")
    if name == "auto" and resolve_auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _probe_writable(folder: Path) -> bool:
    """Whether a file can be created in `folder` (a real attempt: mode bits do not bind root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _check_writable(path: Path, flag: str, folder: bool) -> None:
    """Refuse, before any work, an output that cannot be written: a file where a folder is needed
    (or the reverse), a path below a file, or a read-only place."""
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"{flag} {path}: is a file; expected a folder")
        if not folder and path.is_dir():
            raise InputError(f"{flag} {path}: is a directory; expected a file path")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, so nothing can be written below it")
    if not _probe_writable(existing):
        raise InputError(f"{flag} {path}: {existing} is not writable (read-only or permission denied)")


def _model_specs(models: list[str], names: list[str]) -> list[tuple[str | None, str]]:
    """(display name or None, path or module:factory) per model, from MODEL / NAME=MODEL and --name."""
    specs: list[tuple[str | None, str]] = []
    for text in models:
        name, sep, rest = text.partition("=")
        if sep and not Path(text).exists() and "/" not in name:
            specs.append((name, rest))
        else:
            specs.append((None, text))
    if names:
        if any(n is not None for n, _ in specs):
            raise InputError("give model names either with --name or as NAME=PATH, not both")
        if len(names) != len(models):
            raise InputError(f"--name given {len(names)} time(s) for {len(models)} model(s); expected one per model, in order")
        specs = [(n, m) for n, (_, m) in zip(names, specs)]
    for name, _ in specs:
        if name is not None and not _NAME.match(name):
            raise InputError(f"model name {name!r}: expected letters, digits and . _ + - (it names cells and files)")
    return specs


def _weights_per_model(models: list[str], weights: list[str]) -> list[str | None]:
    """The --weights file of each MODEL: the repeated --weights go, in order, to the
    `module:factory` models (files hold their own weights); `module:factory@FILE` names its own."""
    from .models.checkpoint import is_factory_spec, split_factory_weights

    if not weights:
        return [None] * len(models)
    factories = [i for i, m in enumerate(models) if is_factory_spec(m)]
    if any(split_factory_weights(models[i])[1] is not None for i in factories):
        raise InputError("give factory weights either as MODEL@WEIGHTS or with --weights, not both")
    if len(weights) != len(factories):
        raise InputError(
            f"--weights given {len(weights)} time(s) for {len(factories)} module:factory model(s); expected one per "
            "factory model, in MODEL order (or write each as module:factory@WEIGHTS)"
        )
    chosen: list[str | None] = [None] * len(models)
    for i, w in zip(factories, weights):
        chosen[i] = w
    return chosen


def _adapt_from_flags(args: argparse.Namespace, models: list):
    """--inputs/--output/--preprocess: the adapter of the one model evaluated (a card states its own)."""
    from .models.card import adapt

    if len(models) != 1:
        raise InputError(f"--inputs/--output/--preprocess adapt one model; {len(models)} given (write a model card for each)")
    if "card" in models[0].identity:
        raise InputError(f"--inputs/--output/--preprocess: model {models[0].name!r} comes from a model card; state them in the card")
    inputs = None
    if args.inputs is not None:
        parts = [p.strip() for p in args.inputs.split(",")]
        if all("=" in p for p in parts):
            inputs = dict((k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in parts))
        elif not any("=" in p for p in parts):
            inputs = parts
        else:
            raise InputError(f"--inputs {args.inputs!r}: expected NAME,NAME (positional) or NAME=KEYWORD,... (keywords), not a mix")
    output = None if args.output is None else int(args.output) if args.output.isdigit() else args.output
    preprocess = {}
    for item in args.preprocess:
        name, sep, function = (part.strip() for part in item.partition("="))
        if not sep or not name or not function:
            raise InputError(f"--preprocess {item!r}: expected NAME=MODULE:FUNCTION")
        preprocess[name] = function
    return adapt(models[0], inputs, output, preprocess or None, where="--inputs/--output/--preprocess")


def _add_pixel_units(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--value-range", action="append", metavar="[NAME=]LO,HI",
        help="the range a modality's values are given to the model in: LO,HI for every image modality, NAME=LO,HI "
        "for one (repeatable; --value-range=-1,1 with '=' when LO is negative). A modality with a known range "
        "(uint8 and decoded pixels 0,255; PCM audio -1,1) is rescaled onto it, e.g. 0,1 divides pixels by 255; "
        "one without (float images outside [0, 1]) gets it declared (default: pixels 0,255, audio -1,1, float "
        "images within [0, 1] 0,1; `rbmm show inputs` shows the rule); image corruptions clip to it and "
        "raw-pixel presets (qmf, qmf-salt, qmf-rgbd, udml, udml-salt) map through it",
    )
    p.add_argument(
        "--normalization", metavar="MEAN,STD",
        help="images were normalised as x = (raw / 255 - mean) / std: give mean,std (2 numbers) or the C means "
        "then the C stds (2C numbers, per channel), in units of the [0, 1] pixel scale; raw-pixel presets map "
        "through it instead of the value range (default: none)",
    )
    p.add_argument(
        "--vocab", metavar="VOCAB_TXT",
        help="the BERT-style vocab.txt of the token modalities (line n = id n): the qmf presets then blank whole "
        "words (a token and its ## pieces) to '_', as QMF does before tokenising (default: each id is a word, "
        "blanked to the unknown id 1)",
    )
    p.add_argument(
        "--spectrogram", choices=("natural-log",),
        help="state that the sequence modalities a spectrogram preset (udml, udml-salt) perturbs hold natural-log "
        "magnitudes log(|STFT| + 1e-7), the scale its audio noise is defined on (default: unstated: refused)",
    )


def _numbers(flag: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated numbers") from None
    return values


def _apply_value_ranges(args: argparse.Namespace, data):
    """--value-range onto the data: known ranges rescaled, missing ones declared (input contract)."""
    from .datasets.contract import parse_value_ranges, with_value_ranges

    ranges = parse_value_ranges(args.value_range)
    return with_value_ranges(data, ranges) if ranges else data


def _apply_normalization(args: argparse.Namespace, protocol):
    """--normalization onto the protocol (a new hash)."""
    if args.normalization is not None:
        values = _numbers("--normalization", args.normalization)
        if len(values) < 2 or len(values) % 2:
            raise InputError(f"--normalization {args.normalization!r}: expected MEAN,STD or C means then C stds (an even count)")
        half = len(values) // 2
        protocol = protocol.with_normalization(values[:half], values[half:])
    if args.spectrogram is not None:
        protocol = protocol.with_spectrogram(args.spectrogram)
    if args.vocab is not None:
        protocol = protocol.with_vocab(args.vocab)
    return protocol


def _note(text: str) -> None:
    print(f"rbmm: note: {text}", file=sys.stderr)


def _say_task(source: str, task: str | None, data) -> None:
    from .datasets.loader import is_builtin
    from .domain import Task

    if task is None and not is_builtin(source):
        how = "integer" if data.task == Task.CLASSIFICATION else "float"
        _note(f"dataset {source!r}: task {data.task}, inferred from its {how} labels (--task overrides)")


def _load_data(args: argparse.Namespace, source: str, split: str):
    import numpy as np

    from .datasets import load_dataset, parse_kind_overrides

    data = load_dataset(
        source, split, modalities=args.modalities, kinds=parse_kind_overrides(args.kind), task=args.task,
        fmt=args.format, trust=args.trust_data, tokenizer=args.tokenizer, keep_empty_text=args.keep_empty_text,
        outside_paths=args.allow_outside_paths, classes=args.classes,
    )
    _say_task(source, args.task, data)
    if data.split == "all":
        _note(f"dataset {source!r} has no 'split' array: all {len(data)} samples are evaluated (recorded as split 'all')")
    if args.classes:
        absent = [c for c, count in zip(args.classes, np.bincount(data.labels.numpy(), minlength=len(args.classes))) if not count]
        if absent:
            _note(f"dataset {source!r}: {len(absent)} of the {len(args.classes)} --classes have no samples in split "
                  f"{data.split!r}: {', '.join(map(repr, absent))} (the other labels keep their numbers)")
    _warn_kinds(data.specs)
    return _apply_value_ranges(args, data)


def _warn_kinds(specs) -> None:
    """One warning line per modality named like audio/image but read as another kind `--kind` could fix."""
    from .datasets.contract import kind_warnings

    for line in kind_warnings(specs):
        print(f"rbmm: warning: {line}", file=sys.stderr)


PROTOCOLS = "protocols"  # not a registry: shipped TOML files and those in ./protocols/


def _list_protocols() -> list[tuple[str, str, str]]:
    """(name, first description line, source) of each protocol, read from the files (no torch);
    an unreadable file is one warning."""
    from .protocol_files import list_protocols, summary

    rows = []
    for name in list_protocols():
        try:
            rows.append((name, *summary(name)))
        except InputError as e:
            print(f"rbmm: warning: {e}; skipped", file=sys.stderr)
    return rows


def _print_lines(lines: list[str], indent: str = "") -> None:
    for line in lines:
        print(f"{indent}{line}")


def _protocol_lines() -> list[str]:
    return [f"{name:<16} {text}  [{source}]" for name, text, source in _list_protocols()]


def _listing(what: str | None) -> tuple[dict[str, list[str]], list[str]]:
    """(each registry kind -> the lines `rbmm list` prints for it, the unregistered data sources'
    lines) for `rbmm list [WHAT]`. The declared built-ins when nothing else can be registered (no
    torch); else the registries, importing only the module that registers WHAT when it is one
    built-in kind, with lines made for WHAT alone when it is named."""
    from . import listing

    declared = listing.declared()
    if declared is not None:
        return declared["kinds"], declared["unregistered_datasets"]
    from .catalog import LIST_MODULES

    registries = listing.registries((LIST_MODULES[what],)) if what in LIST_MODULES else listing.registries()
    lines = {kind: listing.kind_lines(kind, reg) if what in (None, kind) else [] for kind, reg in registries.items()}
    sources = listing.unregistered_source_lines(registries["datasets"]) if what == "datasets" else []
    return lines, sources


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == PROTOCOLS:  # files, not a registry: nothing to import
        _print_lines(_protocol_lines())
        return 0
    lines, unregistered_sources = _listing(args.what)
    kinds = [*lines, PROTOCOLS]
    if args.what is not None and args.what not in kinds:
        raise one_of("thing to list", args.what, kinds)
    if args.what is not None:
        _print_lines(lines[args.what])
        if args.what == "datasets":  # the sources that are not registered names
            _print_lines(unregistered_sources)
        return 0
    for kind in kinds:
        print(f"{kind}:")
        _print_lines(_protocol_lines() if kind == PROTOCOLS else lines[kind], indent="  ")
    return 0


def _parse_levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--levels {text!r}: expected comma-separated levels from 0 to 5, e.g. 0,1,3,5") from None
    if not levels or any(not 0 <= v <= 5 for v in levels):
        raise InputError(f"--levels {text!r}: expected comma-separated levels from 0 to 5, e.g. 0,1,3,5")
    return levels


def _show_corruption(args: argparse.Namespace) -> int:
    from .plots import corruption_gallery, save_figure

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InputError(f"-o {out}: expected a .png file (an .svg is written beside it)")
    _check_writable(out, "-o", folder=False)
    levels = _parse_levels(args.levels)
    data = _load_data(args, args.data, args.split)
    fig = corruption_gallery(data, args.name, levels=levels, sample=args.sample, seed=args.seed)
    paths = save_figure(fig, out.with_suffix(""))
    print(f"written: {paths['png']} and {paths['svg']}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if args.thing == "inputs":
        return _show_inputs(args)
    if args.name is None:  # answered from the protocol files, before torch loads
        raise InputError(f"rbmm show {args.thing}: name the {args.thing}" + (
            ", one of " + ", ".join(n for n, _, _ in _list_protocols()) if args.thing == "protocol" else " (rbmm list corruptions)"))
    if args.thing == "corruption":
        return _show_corruption(args)
    from .protocols import load_protocol

    protocol = load_protocol(args.name)
    data = _load_data(args, args.data, args.split)
    protocol = _apply_normalization(args, protocol)
    conditions, notes = protocol.expand_with_notes(data.specs)
    seeds = len(protocol.seeds)
    print(f"protocol {protocol.name} (hash {protocol.hash[:12]}), seed {protocol.seed}, {seeds} evaluation seed(s)")
    print(protocol.description)
    print(
        f"on {data.name} ({', '.join(data.modalities)}): {len(conditions)} conditions x {seeds} seed(s) "
        f"= {len(conditions) * seeds} cells per model"
    )
    for condition in conditions:
        print(f"  {condition.group:<16} {condition.key}")
    for note in notes:
        print(f"  note: {note}")
    for line in protocol.units(data.specs):
        print(f"  units: {line}")
    return 0


def _show_inputs(args: argparse.Namespace) -> int:
    """The input contract of --data (and, with a MODEL, whether that model is given the presence mask)."""
    from .datasets.contract import input_contract

    presence = {}
    if args.name is not None:
        from .models.adapter import receives_present
        from .models import load_model

        (weights,) = _weights_per_model([args.name], args.weights)
        model = load_model(args.name, trust=args.trust_checkpoint, weights=weights, random_weights=args.random_weights)
        presence[model.name] = receives_present(model.module)
    data = _load_data(args, args.data, args.split)
    contract = input_contract(data, presence_mask=presence)
    print(f"inputs of {data.name} ({data.split}, {len(data)} samples) as a model receives them:")
    for line in contract.lines():
        print(f"  {line}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .datasets import load_splits, parse_kind_overrides
    from .models import backbone_spec, train_and_save

    backbone_spec(args.fusion)  # an unknown name fails here, listing the registered ones, before the data loads
    device = _device(args.device, resolve_auto=True)
    if args.calibration_cues and not args.calibration:
        raise InputError("--calibration-cues needs --calibration")
    _check_writable(Path(args.out), "--out", folder=False)
    splits = load_splits(
        args.data, modalities=args.modalities, kinds=parse_kind_overrides(args.kind) or None, seed=args.split_seed, task=args.task,
        fmt=args.format, trust=args.trust_data, tokenizer=args.tokenizer, keep_empty_text=args.keep_empty_text,
        outside_paths=args.allow_outside_paths, classes=args.classes,
    )
    _say_task(args.data, args.task, splits["train"])
    _warn_kinds(splits["train"].specs)
    metrics = train_and_save(
        fusion=args.fusion,
        calibration=args.calibration,
        splits=splits,
        seed=args.seed,
        out=Path(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        modality_dropout=args.modality_dropout,
        device=device,
        progress=not args.quiet,
        split_seed=args.split_seed,
        modality=args.modality,
        model_options={"calibration_cues": args.calibration_cues} if args.calibration_cues else None,
    )
    scores = "; ".join(
        f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items() if k != "n")
        for split in ("val", "test")
        if split in metrics
    )
    print(f"{args.out}: clean {scores} ({metrics['seconds']:.1f} s)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .engine import evaluate
    from .models import load_model
    from .protocols import load_protocol

    specs = _model_specs(args.models, args.name)
    weights = _weights_per_model([m for _, m in specs], args.weights)
    device = _device(args.device)
    models = [
        load_model(m, trust=args.trust_checkpoint, weights=w, random_weights=args.random_weights, name=n)
        for (n, m), w in zip(specs, weights)
    ]
    if args.inputs is not None or args.output is not None or args.preprocess:
        models[0] = _adapt_from_flags(args, models)
    for m in models:
        if m.kind == "factory" and m.weights is None:
            print(f"rbmm: WARNING: model {m.name!r} is evaluated with RANDOM initial weights (--random-weights); "
                  "its results say nothing about a trained model", file=sys.stderr)
    if args.limit is not None:
        _note(f"--limit {args.limit}: a smoke run of the first {args.limit} samples per cell; `rbmm gate` refuses it")
    data = _load_data(args, args.data, args.split)
    protocol = _apply_normalization(args, load_protocol(args.protocol))
    results = evaluate(
        models,
        data,
        protocol,
        out=Path(args.out),
        device=device,
        batch_size=args.batch_size,
        seeds=args.seeds,
        amp=args.amp,
        progress=False if args.quiet else None,
        overwrite=args.overwrite,
        nonfinite=args.nonfinite,
        keep_probabilities=args.keep_probabilities,
        limit=args.limit,
    )
    if results is not None:  # under torchrun only rank 0 holds the run
        print(results.summary())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    _check_writable(Path(args.out), "--out", folder=True)
    index = write_report(args.runs, Path(args.out), reference=args.reference, title=args.title, gallery=args.gallery)
    print(f"report written: {index}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run_a, args.run_b, metric=args.metric, alpha=args.alpha)))
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from .gate import write_baseline
    from .results import load_run

    _check_writable(Path(args.out), "--out", folder=False)
    print(f"baseline written: {write_baseline(load_run(args.run), args.out)}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from .gate import format_table, gate, load_baseline, write_benchmark_json, write_junit, write_junit_error, write_summary
    from .results import load_run

    for flag, path in (("--junit", args.junit), ("--summary", args.summary), ("--benchmark-json", args.benchmark_json)):
        if path:
            _check_writable(Path(path), flag, folder=False)
    started = time.perf_counter()
    try:
        result = gate(
            load_run(args.run),
            load_baseline(args.baseline),
            args.tolerance,
            match=_parse_match(args.match),
            n_resamples=args.resamples,
            confidence=args.confidence,
        )
    except InputError as e:  # CI still gets a test report saying why nothing was gated
        if args.junit:
            write_junit_error(e, args.junit, time.perf_counter() - started)
        raise
    if args.junit:
        write_junit(result, args.junit, time.perf_counter() - started)
    if args.summary:
        write_summary(result, args.summary)
    if args.benchmark_json:
        write_benchmark_json(result, args.benchmark_json)
    print(format_table(result, only_regressions=not args.all))
    if not result.passed:
        raise GateFailure(f"{len(result.regressions)} robustness regressions beyond tolerance {args.tolerance:g}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    _check_writable(Path(args.out), "-o", folder=True)
    for path in export_run(args.run, Path(args.out), args.format, other_protocol=args.other_protocol):
        print(f"written: {path}")
    return 0


def _parse_match(items: list[str]) -> dict[str, str]:
    """Repeatable --match CANDIDATE=BASELINE -> {candidate: baseline}."""
    pairs: dict[str, str] = {}
    for item in items:
        cand, sep, base = (part.strip() for part in item.partition("="))
        if not sep or not cand or not base:
            raise InputError(f"--match {item!r}: expected CANDIDATE=BASELINE (model names of the run and of the baseline)")
        if cand in pairs:
            raise InputError(f"--match names candidate {cand!r} twice")
        pairs[cand] = base
    return pairs


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _check_writable(Path(args.cache), "--cache", folder=True)
    _check_writable(Path(args.out), "--out", folder=True)
    _check_writable(Path(args.report), "--report", folder=True)
    run_demo(
        fast=args.fast, cache=Path(args.cache), out=Path(args.out), report=Path(args.report),
        progress=not args.quiet, overwrite=args.overwrite, dataset=args.data,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbmm", description="Robustness benchmarking for multimodal fusion models.", formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"robustbench-mm {__version__}", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors (default: off)")
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads for torch (default: torch's choice, one per core; idle threads sleep instead of "
        "spinning, OMP_WAIT_POLICY=PASSIVE, unless that variable is set: see docs/performance.md)",
    )
    _add_plugins(parser)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do; `rbmm COMMAND --help` describes its options"
    )

    p = _parser(sub, "list", "list what can be named: corruptions, metrics, backbones, datasets, protocols..., with each one's source")
    p.add_argument("what", nargs="?", metavar="KIND", help="what to list, one of {list_kinds} (default: all of them)")
    _add_plugins(p, "plugins_after")
    p.set_defaults(func=_cmd_list)

    p = _parser(sub, "show", "show the grid a protocol expands to on a dataset, the inputs a model receives from it, "
                "or draw a corruption's gallery")
    p.add_argument("thing", choices=["protocol", "inputs", "corruption"], help="what to show: %(choices)s")
    p.add_argument(
        "name", nargs="?",
        help="protocol: one of {protocols}, or a TOML file path; inputs: optionally a MODEL, to say whether it gets "
        "the presence mask; corruption: a name from `rbmm list corruptions`",
    )
    p.add_argument("--levels", default="0,1,2,3,4,5", help="corruption: the levels drawn, comma-separated, 0 = clean (default: %(default)s)")
    p.add_argument("--sample", type=int, default=0, help="corruption: the row of the dataset drawn (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="corruption: the protocol seed of the noise drawn (default: %(default)s)")
    p.add_argument("-o", "--out", default="gallery.png", metavar="FILE.png",
                   help="corruption: the PNG to write, an SVG beside it (default: %(default)s)")
    _add_data(p)
    _add_pixel_units(p)
    _add_model_loading(p)
    _add_plugins(p, "plugins_after")
    p.set_defaults(func=_cmd_show)

    p = _parser(sub, "train", "train one fusion model and write its checkpoint (and its metrics as OUT.json)")
    _add_data(p, evaluating=False)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 60/20/20 train/val/test split (default: %(default)s)")
    p.add_argument("--fusion", required=True, help="fusion model, one of {fusions} (required; `rbmm list models` describes them)")
    p.add_argument(
        "--modality", metavar="NAME",
        help="with --fusion unimodal (required there): the one modality the model uses; it still takes the "
        "dataset's other modalities and ignores them (default: none; choices: the dataset's modalities)",
    )
    p.add_argument("--calibration", action="store_true", help="insert the pre-fusion calibration module (default: off)")
    p.add_argument(
        "--calibration-cues", metavar="CUES",
        help="with --calibration: what its gates read, summary or evidence (per-modality class evidence; "
        "default: summary; docs/gate-study.md, \"Do the calibration gates see conflict?\")",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed: initial weights and batch order (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help="checkpoint file to write, e.g. models/concat.pt (required)")
    p.add_argument("--epochs", type=int, help="most training epochs (default: the recipe's; recipe: {train_defaults})")
    p.add_argument("--batch-size", type=int, help="training batch size in samples (default: the recipe's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the recipe's)")
    p.add_argument("--patience", type=int, help="epochs without validation improvement before stopping (default: the recipe's)")
    p.add_argument(
        "--modality-dropout", type=float, default=0.0, metavar="P",
        help="probability in [0, 1) of dropping each modality of a training sample (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="where to train: {devices} (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    p.set_defaults(func=_cmd_train)

    p = _parser(sub, "eval", "evaluate models under a protocol; writes the run folder --out")
    p.add_argument(
        "models", nargs="+", metavar="MODEL",
        help="checkpoint, TorchScript file, torch.export .pt2 file, model card .toml, or module:factory[@WEIGHTS], "
        "optionally NAME=MODEL to name it in cells, reports and baselines (default name: the file's stem, the card's "
        "name, or the module:factory text)",
    )
    p.add_argument(
        "--name", action="append", default=[], metavar="NAME",
        help="display name of each model, repeatable, in MODEL order (default: see MODEL)",
    )
    _add_data(p)
    _add_pixel_units(p)
    _add_model_loading(p)
    p.add_argument(
        "--inputs", metavar="NAMES",
        help="for one model that does not take a dict: the modalities it takes, as positional arguments in order "
        "(audio,visual) or as keywords (audio=a,visual=v) (default: the dict of all modalities; docs/models.md)",
    )
    p.add_argument(
        "--output", metavar="INDEX|KEY",
        help="for one model: which of its outputs is the logits, a tuple index (2) or a dict key (logits) "
        "(default: the output itself, a dict's 'logits')",
    )
    p.add_argument(
        "--preprocess", action="append", default=[], metavar="NAME=MODULE:FUNCTION",
        help="for one model: a function applied to modality NAME's batch on the device after the perturbation, "
        "e.g. audio=mymodels:log_spectrogram (repeatable; default: none)",
    )
    p.add_argument(
        "--limit", type=int, metavar="N",
        help="a smoke run: evaluate only the first N samples in every cell; the manifest says so and "
        "`rbmm gate` and `rbmm baseline` refuse the run (default: all samples)",
    )
    p.add_argument("--protocol", default="quick", help="protocol: one of {protocols}, or a TOML file path (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="run folder to write or resume, e.g. results/mine (required)")
    p.add_argument("--device", default="auto", help="where to evaluate (auto: cuda when present, else cpu): {devices} (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size in samples (default: %(default)s)")
    p.add_argument(
        "--seeds", type=int, nargs="+", metavar="SEED",
        help="repeat the protocol's randomness under these seed offsets (default: the protocol's `seeds`)",
    )
    p.add_argument("--amp", action="store_true", help="autocast: bf16 on CPU, fp16 on CUDA (default: off, float32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: shown when stderr is a terminal)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out and start over (default: resume it)")
    p.add_argument(
        "--nonfinite", choices=["error", "wrong"], default="error",
        help="what a model's NaN/Inf output means: error (stop, naming model, cell and samples; exit 2) or wrong "
        "(count those samples as wrong and record their number per cell; classification only) (default: %(default)s)",
    )
    p.add_argument(
        "--keep-probabilities", action="store_true",
        help="also store each sample's full probability vector (classification), so calibration and "
        "later metrics can be recomputed without the models (default: off)",
    )
    _add_plugins(p, "plugins_after")
    p.set_defaults(func=_cmd_eval)

    p = _parser(sub, "report", "write a self-contained HTML + Markdown robustness report")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the --out of `rbmm eval`); several are merged, e.g. one per training seed")
    p.add_argument("-o", "--out", required=True, metavar="FOLDER", help="report folder: index.html, report.md, figures/, tables/ (required)")
    p.add_argument("--reference", metavar="MODEL", help="reference model for CE/mCE (default: the first model)")
    p.add_argument("--title", help="report title (default: one naming the runs' dataset and protocol)")
    p.add_argument(
        "--gallery", default="auto", choices=["auto", "on", "off"],
        help="corruption gallery section (one sample per level per corruption): auto draws it for up to 4 "
        "corruptions (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_report)

    p = _parser(sub, "compare", "cells where two runs differ significantly (after Holm correction)")
    p.add_argument("run_a", metavar="RUN_A", help="first run folder")
    p.add_argument("run_b", metavar="RUN_B", help="second run folder (same protocol and dataset)")
    p.add_argument("--metric", default="accuracy", help="metric compared per cell, one of {metrics} (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise significance level after Holm correction (default: %(default)s)")
    p.set_defaults(func=_cmd_compare)

    p = _parser(sub, "baseline", "record a run as a CI baseline (compact JSON)")
    p.add_argument("run", metavar="RUN", help="a complete run folder (the --out of `rbmm eval`)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="baseline JSON to write, e.g. results/baselines/model-quick.json (required)")
    p.set_defaults(func=_cmd_baseline)

    p = _parser(sub, "gate", "fail (exit 1) when a run regresses beyond tolerance against a baseline")
    p.add_argument("run", metavar="RUN", help="the candidate's complete run folder, same protocol and dataset as the baseline")
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON written by `rbmm baseline` (required)")
    p.add_argument(
        "--tolerance", type=float, default=0.01,
        help="largest accepted drop, in units of the score (accuracy, or MAE for regression), in [0, 1) (default: %(default)s)",
    )
    p.add_argument(
        "--confidence", type=float, default=0.95,
        help="level of the paired bootstrap interval of each drop, a fraction in (0, 1) (default: %(default)s)",
    )
    p.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples (default: %(default)s)")
    p.add_argument(
        "--match", action="append", default=[], metavar="CANDIDATE=BASELINE",
        help="pair a run model with a baseline model (repeatable; default: one model each side is compared "
        "directly, several are paired by name)",
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML here, one test case per check (default: not written)")
    p.add_argument("--summary", metavar="FILE", help="write a Markdown summary here, e.g. $GITHUB_STEP_SUMMARY (default: not written)")
    p.add_argument(
        "--benchmark-json", metavar="FILE",
        help="write github-action-benchmark customBiggerIsBetter JSON here (default: not written)",
    )
    p.add_argument("--all", action="store_true", help="print every check, not only regressions (default: off)")
    p.set_defaults(func=_cmd_gate)

    p = _parser(sub, "export", "write a run in RobustBench's or lm-evaluation-harness's result format")
    p.add_argument("run", metavar="RUN", help="run folder (the --out of `rbmm eval`)")
    p.add_argument(
        "--format", required=True,
        help="one of {export_formats} (required): robustbench writes per-model JSON + unaggregated_results.csv, "
        "lm-eval writes <model>/results_<date>.json",
    )
    p.add_argument(
        "--other-protocol", action="store_true",
        help="robustbench only: export a run whose protocol is not ImageNet-C, labelled so in each JSON "
        "(default: refused, since RobustBench's corruptions_acc means ImageNet-C's grid)",
    )
    p.add_argument("-o", "--out", default="export", metavar="FOLDER", help="folder to write into (default: %(default)s)")
    p.set_defaults(func=_cmd_export)

    p = _parser(sub, "demo", "train the zoo (every fusion ± calibration, the methods, unimodal references; cached), evaluate `standard`, write the report")
    p.add_argument(
        "--data", default="mfeat", metavar="SOURCE",
        help="dataset to train and evaluate on: one of {datasets} (options as NAME:key=v,...; default: %(default)s)",
    )
    p.add_argument("--fast", action="store_true", help="smaller version: one training seed, the quick protocol (default: off)")
    p.add_argument("--cache", default=".cache/rbmm-zoo", metavar="FOLDER", help="where trained checkpoints are kept and reused (default: %(default)s)")
    p.add_argument("--out", default="results/demo", metavar="FOLDER", help="run folders, one per training seed (default: %(default)s)")
    p.add_argument("--report", default="reports/demo", metavar="FOLDER", help="report folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo runs instead of resuming them (default: off)")
    _add_plugins(p, "plugins_after")
    p.set_defaults(func=_cmd_demo)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line. argparse fills an optional positional before the options, so
    `rbmm show inputs --data D MODEL` leaves MODEL over; it is taken as the name it stands for."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "show" and args.name is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.name = extra[0]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    keep_freed_memory()
    # the working directory importable, after the installed packages: a `module:factory` there and
    # the classes a trusted pickle names import without PYTHONPATH=., and a ./h5py.py shadows
    # nothing (`python -m` put it first)
    working_directory_last()
    try:
        thread_policy(args.threads)
        plugins = args.plugins + getattr(args, "plugins_after", [])
        lists_protocols = args.command == "list" and args.what == PROTOCOLS  # plug-ins add no protocol
        if plugins or (Path("corruptions").is_dir() and not lists_protocols):
            from .corruptions import load_plugins
            from .corruptions.plugins import rejected_plugins

            load_plugins(plugins)
            for why in rejected_plugins().values():  # the others are loaded; a protocol naming it fails
                print(f"rbmm: warning: {why}; skipped", file=sys.stderr)
        return args.func(args)
    except (InputError, GateFailure) as e:
        if args.debug:
            raise
        print(f"rbmm: {'error' if isinstance(e, InputError) else 'gate failed'}: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("rbmm: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr)
        return 130
