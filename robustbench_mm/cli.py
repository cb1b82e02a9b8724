"""`rbmm`: the command line. Thin on purpose: it parses arguments and calls the library.

Bad input becomes one line on stderr and exit code 2; a failed gate exits 1. `--debug` shows the
traceback instead. Library imports happen inside each command so `rbmm --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import GateFailure, InputError
from .runtime import keep_freed_memory

TRUST_HELP = (
    "load full pickles, not only weights: a pickle can execute arbitrary code on this machine, "
    "so use this only for checkpoint files you created or fully trust"
)


TRUST_DATA_HELP = (
    "read pickled datasets (MultiBench .pkl): a pickle can execute arbitrary code on this machine, "
    "so use this only for data files you created or fully trust (default: refused)"
)
FORMAT_CHOICES = ("npz", "pt", "hdf5", "csd", "affect-pickle", "parquet", "npy-folder", "media")


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMAT_CHOICES, help="how to read the data path (default: detected from the path; rbmm list datasets describes each)")
    p.add_argument("--trust-data", action="store_true", help=TRUST_DATA_HELP)
    p.add_argument("--tokenizer", metavar="MODULE:FUNCTION", help="text -> list of token ids for media/Parquet text (default: a whitespace vocabulary of the train split)")


def _add_model_loading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="state-dict file for a `module:factory` model")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


def _add_data(p: argparse.ArgumentParser, flag: str = "--data", default: str | None = "mfeat") -> None:
    p.add_argument(flag, default=default, help="mfeat, mfeat-all, synthetic[:k=v,...], a .npz/.pt feature file, a data path (see --format), or module:factory (default: %(default)s)")
    p.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    p.add_argument("--modalities", nargs="+", help="use only these modalities")
    p.add_argument("--kind", action="append", default=[], metavar="NAME=KIND", help="override an inferred modality kind (repeatable)")
    _add_format(p)


def _load_data(args: argparse.Namespace, source: str, split: str):
    from .datasets import load_dataset, parse_kind_overrides

    return load_dataset(
        source, split, modalities=args.modalities, kinds=parse_kind_overrides(args.kind),
        fmt=args.format, trust=args.trust_data, tokenizer=args.tokenizer,
    )


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "corruptions":
        from .corruptions import list_corruptions

        for spec in list_corruptions():
            levels = ", ".join(f"{v:g}" for v in spec.severity)
            origin = "" if spec.source == "builtin" else f"  [plug-in: {spec.source}]"
            print(f"{spec.name:<22} {'/'.join(spec.kinds):<28} levels 1-5: {levels} ({spec.unit}){origin}")
            print(f"{'':<22} {spec.description}")
    elif args.what == "protocols":
        from .protocols import list_protocols, load_protocol

        for name in list_protocols():
            print(f"{name:<14} {load_protocol(name).description.splitlines()[0]}")
    elif args.what == "datasets":
        from .datasets import describe_sources

        for name, text in describe_sources().items():
            print(f"{name:<16} {text}")
    else:
        from .models import FUSIONS

        for name in FUSIONS:
            print(name)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .protocols import load_protocol

    protocol = load_protocol(args.name)
    data = _load_data(args, args.data, args.split)
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
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .datasets import load_splits, parse_kind_overrides
    from .models import train_and_save

    splits = load_splits(
        args.dataset, modalities=args.modalities, kinds=parse_kind_overrides(args.kind) or None, seed=args.split_seed,
        fmt=args.format, trust=args.trust_data, tokenizer=args.tokenizer,
    )
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
        device=args.device,
        progress=not args.quiet,
        split_seed=args.split_seed,
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

    models = [load_model(m, trust=args.trust_checkpoint, weights=args.weights) for m in args.models]
    data = _load_data(args, args.data, args.split)
    protocol = load_protocol(args.protocol)
    results = evaluate(
        models,
        data,
        protocol,
        out=Path(args.out),
        device=args.device,
        batch_size=args.batch_size,
        seeds=args.seeds,
        amp=args.amp,
        progress=False if args.quiet else None,
        overwrite=args.overwrite,
    )
    if results is not None:  # under torchrun only rank 0 holds the run
        print(results.summary())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    index = write_report(args.runs, Path(args.out), reference=args.reference, title=args.title)
    print(f"report written: {index}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run_a, args.run_b, metric=args.metric, alpha=args.alpha)))
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from .gate import write_baseline
    from .results import load_run

    print(f"baseline written: {write_baseline(load_run(args.run), args.out)}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from .gate import format_table, gate, load_baseline, write_benchmark_json, write_junit, write_summary
    from .results import load_run

    result = gate(
        load_run(args.run),
        load_baseline(args.baseline),
        args.tolerance,
        n_resamples=args.resamples,
        confidence=args.confidence,
    )
    if args.junit:
        write_junit(result, args.junit)
    if args.summary:
        write_summary(result, args.summary)
    if args.benchmark_json:
        write_benchmark_json(result, args.benchmark_json)
    print(format_table(result, only_regressions=not args.all))
    if not result.passed:
        raise GateFailure(f"{len(result.regressions)} robustness regressions beyond tolerance {args.tolerance:g}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        fast=args.fast, cache=Path(args.cache), out=Path(args.out), report=Path(args.report),
        progress=not args.quiet, overwrite=args.overwrite,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rbmm", description="Robustness benchmarking for multimodal fusion models.")
    parser.add_argument("--version", action="version", version=f"robustbench-mm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    parser.add_argument("--plugins", action="append", default=[], metavar="PATH", help="extra corruption plug-in file or folder (repeatable); ./corruptions/ is always searched")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list corruptions, protocols, datasets or fusion models")
    p.add_argument("what", choices=["corruptions", "protocols", "datasets", "models"])
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", help="show the grid a protocol expands to on a dataset")
    p.add_argument("thing", choices=["protocol"])
    p.add_argument("name", help="protocol name or TOML path")
    _add_data(p)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("train", help="train one fusion model and write its checkpoint")
    p.add_argument("--dataset", default="mfeat")
    p.add_argument("--modalities", nargs="+")
    p.add_argument("--kind", action="append", default=[], metavar="NAME=KIND", help="override an inferred modality kind (repeatable)")
    p.add_argument("--split-seed", type=int, default=0)
    _add_format(p)
    p.add_argument("--fusion", required=True, help="concat, transformer, conv, late or dynamic")
    p.add_argument("--calibration", action="store_true", help="insert the pre-fusion calibration module")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int, help="epochs without validation improvement before stopping")
    p.add_argument("--modality-dropout", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate models under a protocol; writes results/NAME")
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint, TorchScript file or module:factory")
    _add_data(p)
    _add_model_loading(p)
    p.add_argument("--protocol", default="quick")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", help="repeat the protocol's randomness under these seeds")
    p.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out and start over")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("report", help="write a self-contained HTML + Markdown robustness report")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--reference", help="reference model for CE/mCE (default: first model)")
    p.add_argument("--title")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="cells where two runs differ significantly (after Holm correction)")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--alpha", type=float, default=0.05)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("baseline", help="record a run as a CI baseline (compact JSON)")
    p.add_argument("run")
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("gate", help="fail (exit 1) when a run regresses beyond tolerance against a baseline")
    p.add_argument("run")
    p.add_argument("--baseline", required=True)
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--junit", help="write JUnit XML here (one test case per check)")
    p.add_argument("--summary", help="write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--benchmark-json", help="write github-action-benchmark customBiggerIsBetter JSON here")
    p.add_argument("--all", action="store_true", help="print every check, not only regressions")
    p.set_defaults(func=_cmd_gate)

    p = sub.add_parser("demo", help="train the default zoo on mfeat (cached), evaluate `standard`, write the report")
    p.add_argument("--fast", action="store_true", help="smaller version: one seed, the quick protocol")
    p.add_argument("--cache", default=".cache/rbmm-zoo", help="where trained checkpoints are kept (default: %(default)s)")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--report", default="reports/demo")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo runs instead of resuming them")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        if args.plugins or Path("corruptions").is_dir():
            from .corruptions import load_plugins

            load_plugins(args.plugins)
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
