"""A run in the result formats the field already reads: RobustBench's and lm-evaluation-harness's.

robustbench : per model `<model>.json` in RobustBench's corruption-leaderboard layout, the fields of
    its `ModelInfo` (github:RobustBench/robustbench, robustbench/utils.py, ModelInfo and
    update_json: accuracies as strings of percentages rounded to 2 decimals, `corruptions_acc` the
    mean over every (corruption, severity) cell as in eval.py `corruptions_evaluation`), plus
    `unaggregated_results.csv`, its wide model x (corruption, severity) table of accuracies as
    fractions (model_info/<dataset>/corruptions/unaggregated_results.csv: two header rows,
    model names as the index). Cells of an ImageNet-C suite (`imagenet-c/fog`) are written under
    ImageNet-C's names, and each model's footnote names the suite's table (and the frost source);
    the catalog's kernels keep their own names, as they do not run ImageNet-C's parameters.
    Only a run of an ImageNet-C protocol (`imagenet-c`, `tiny-imagenet-c`) is exported by default:
    RobustBench's `corruptions_acc` means ImageNet-C's 15 corruptions at 5 severities, and another
    grid averaged into it would read as that number. `other_protocol=True` exports any run and
    labels it as not ImageNet-C in the `footnote` the leaderboard prints
    (`reported` stays RobustBench's: a paper's reported accuracy, a number).
lm-eval : `<model>/results_<date>.json` per model in lm-evaluation-harness's results layout
    (github:EleutherAI/lm-evaluation-harness, lm_eval/evaluator_utils.py EvalAcc._to_eval_results
    and lm_eval/evaluator.py simple_evaluate): `results` per task with `<metric>,none` and
    `<metric>_stderr,none`, `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`,
    `config`, `git_hash`, `date`. One task per cell (condition, and seed when there are several).
    `date` is a float UNIX time and the file is named `results_<ISO time with ':' as '-'>.json`, as
    lm-eval's EvaluationTracker.save_results_aggregated writes them (lm_eval/loggers/
    evaluation_tracker.py) and lm_eval/utils.py get_results_filenames / get_file_datetime read
    them back: a file not named `results_*.json` is skipped by its readers.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write
from .corruptions.imagenet_c import SUITES
from .domain import Family, clean_cells
from .domain import cells as select_cells
from .errors import InputError, one_of
from .escape import csv_text, safe_file_name
from .metrics import METRICS, SE_SUFFIX
from .results import Run

FORMATS = ("robustbench", "lm-eval")

# robustbench/data.py CORRUPTIONS: the column order of its unaggregated_results.csv
ROBUSTBENCH_ORDER = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness",
                     "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression",
                     "elastic_transform")
IMAGENET_C_PROTOCOLS = ("imagenet-c", "tiny-imagenet-c")  # the grids RobustBench's corruption leaderboards hold


def _imagenet_c_name(name: str) -> str:
    """`imagenet-c/fog` -> `fog`; any other cell name as it is."""
    suite, sep, base = name.partition("/")
    return base if sep and suite in SUITES else name


def suite_note(run: Run) -> str:
    """Which ImageNet-C table(s) the run's cells used, from the manifest's units lines ('' if none)."""
    used = sorted({n.partition("/")[0] for n in run.cells["name"] if n.partition("/")[0] in SUITES})
    if not used:
        return ""
    lines = [line for line in run.manifest.protocol.units if line.partition(":")[0] in used]
    return "; ".join(lines) if lines else f"ImageNet-C parameters: {', '.join(used)}"


def is_imagenet_c(protocol_name: str) -> bool:
    """Whether a run's protocol is one of ImageNet-C's grids (a variant such as `imagenet-c:x` counts)."""
    return protocol_name.split(":")[0] in IMAGENET_C_PROTOCOLS


def export_run(run: Run | str | Path, out: str | Path, fmt: str, *, other_protocol: bool = False) -> list[Path]:
    """Write `run` in format `fmt` (one of FORMATS) under the folder `out`; returns the files written.
    File names come from model names through `safe_file_name`, so every file lands inside `out`.

    other_protocol : robustbench only; export a run whose protocol is not ImageNet-C's, labelled
        as such in every model's JSON, instead of refusing it.
    """
    run = run if isinstance(run, Run) else Run(run)
    if fmt not in FORMATS:
        raise one_of("export format", fmt, FORMATS)
    if run.cells.empty:
        raise InputError(f"run {run.path} has no cells to export")
    protocol = run.manifest.protocol.name
    if fmt == "robustbench" and not is_imagenet_c(protocol) and not other_protocol:
        raise InputError(
            f"run {run.path}: protocol {protocol!r} is not ImageNet-C ({', '.join(IMAGENET_C_PROTOCOLS)}); RobustBench's "
            "corruptions_acc means ImageNet-C's grid. Evaluate with --protocol imagenet-c, or pass --other-protocol "
            "to export it labelled as another protocol"
        )
    models = list(dict.fromkeys(str(m) for m in run.cells["model"]))
    files = [safe_file_name(m) for m in models]
    if len(set(files)) != len(files):
        twice = next(f for f in files if files.count(f) > 1)
        raise InputError(f"run {run.path}: models {', '.join(repr(m) for m, f in zip(models, files) if f == twice)} "
                         f"would share the file name {twice!r}; rename one")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror or e}; choose a writable --out") from None
    return _robustbench(run, out, labelled=not is_imagenet_c(protocol)) if fmt == "robustbench" else _lm_eval(run, out)


def _pct(value: float) -> str:
    return str(round(float(value) * 100, 2))


def corruption_table(run: Run) -> pd.DataFrame:
    """Accuracy per model x (corruption, severity), fractions, ImageNet-C names, mean over seeds.

    Only cells of the corruption family with every sample corrupted (rate 1) and an integer
    severity 1-5 count, as on RobustBench. When a run corrupts several modalities in turn, the
    corruption label becomes `name:modality`, one column group per modality.
    """
    cells = run.cells
    if "accuracy" not in cells:
        raise InputError(f"run {run.path}: the robustbench format needs accuracy; this run's task has none")
    picked = select_cells(cells, Family.CORRUPTION, rate=1.0)
    picked = picked[picked["level"].isin([1, 2, 3, 4, 5])]
    if picked.empty:
        raise InputError(f"run {run.path}: no corruption cells at severities 1-5 with rate 1 (try --protocol imagenet-c)")
    picked = picked.assign(corruption=picked["name"].map(_imagenet_c_name))
    if picked["modalities"].nunique() > 1:
        picked = picked.assign(corruption=picked["corruption"] + ":" + picked["modalities"])
    table = picked.pivot_table(index="model", columns=["corruption", "level"], values="accuracy", aggfunc="mean", sort=False)
    order = {name: i for i, name in enumerate(ROBUSTBENCH_ORDER)}
    seen = list(dict.fromkeys(c for c, _ in table.columns))
    first = sorted(seen, key=lambda c: (order.get(c.split(":")[0], len(order)), seen.index(c)))
    columns = [(c, lv) for c in first for lv in sorted({lv for cc, lv in table.columns if cc == c})]
    table = table[columns]
    table.columns = pd.MultiIndex.from_tuples([(c, int(lv)) for c, lv in columns])
    table.index.name = None
    models = list(dict.fromkeys(cells["model"]))
    return table.loc[[m for m in models if m in table.index]]


def _robustbench(run: Run, out: Path, labelled: bool) -> list[Path]:
    """labelled : the protocol is not ImageNet-C; every JSON's `footnote` says so first."""
    table = corruption_table(run)
    protocol = run.manifest.protocol.name
    footnote = f"robustbench-mm run {run.path.name}, protocol {protocol}"
    if labelled:
        footnote = (f"NOT ImageNet-C: protocol {protocol!r}; corruptions_acc is the mean over its own "
                    f"{table.shape[1]} (corruption, severity) cells. " + footnote)
    cells = run.cells
    dataset = run.manifest.dataset.name
    note = suite_note(run)
    written = []
    for model in table.index:
        clean = clean_cells(select_cells(cells, model=model))["accuracy"]
        if clean.empty:
            raise InputError(f"run {run.path}: model {model!r} has no clean cell; the robustbench format needs clean_acc")
        listed = run.manifest.model(model)
        facts = listed.config if listed is not None else {}
        info = {  # robustbench/utils.py ModelInfo, in its field order
            "link": None,
            "name": model,
            "authors": None,
            "additional_data": None,
            "number_forward_passes": 1,
            "dataset": dataset,
            "venue": None,
            "architecture": facts.get("fusion") or facts.get("kind"),
            "eps": None,
            "clean_acc": _pct(clean.mean()),
            "reported": None,
            "corruptions_acc": _pct(np.nanmean(table.loc[model].to_numpy(dtype=float))),
            "corruptions_acc_3d": None,
            "corruptions_mce": None,  # RobustBench normalises by AlexNet's errors, which a run does not hold
            "corruptions_mce_3d": None,
            "autoattack_acc": None,
            "footnote": footnote + (f"; {note}" if note else ""),
        }
        path = out / f"{safe_file_name(model)}.json"
        atomic_write(path, (json.dumps(info, indent=2) + "\n").encode())
        written.append(path)
    path = out / "unaggregated_results.csv"
    atomic_write(path, csv_text(table, index=True).encode())
    return written + [path]


def _task_name(row: pd.Series, several_seeds: bool) -> str:
    return f"{row['condition']}#seed={row['seed']}" if several_seeds else str(row["condition"])


def _unix_time(iso: str, run: Run) -> float:
    """The manifest's start time (ISO 8601, UTC) as lm-eval's `date`: seconds since the epoch."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise InputError(f"run {run.path}: manifest field 'started' is {iso!r}; expected an ISO 8601 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _lm_eval(run: Run, out: Path) -> list[Path]:
    cells, manifest = run.cells, run.manifest
    metrics = [c for c in cells.columns if c in METRICS]
    several_seeds = cells["seed"].nunique() > 1
    protocol = manifest.protocol
    package = manifest.package
    started = _unix_time(manifest.started, run)
    file_name = f"results_{datetime.fromtimestamp(started, timezone.utc).replace(tzinfo=None).isoformat().replace(':', '-')}.json"
    written = []
    for model, group in cells.groupby("model", sort=False):
        results, configs, versions, n_shot, better, n_samples = {}, {}, {}, {}, {}, {}
        for _, row in group.iterrows():
            task = _task_name(row, several_seeds)
            entry = {"alias": task}
            for m in metrics:
                se = row.get(m + SE_SUFFIX, np.nan)
                entry[f"{m},none"] = None if pd.isna(row[m]) else float(row[m])
                entry[f"{m}_stderr,none"] = "N/A" if pd.isna(se) else float(se)  # lm-eval writes "N/A" without one
            results[task] = entry
            configs[task] = {
                "task": task, "family": row["family"], "corruption": row["name"], "modalities": row["modalities"],
                "level": float(row["level"]), "param": None if pd.isna(row["param"]) else float(row["param"]),
                "rate": float(row["rate"]), "seed": int(row["seed"]), "group": row["group"],
                "protocol": protocol.name, "protocol_seed": protocol.seed,
            }
            versions[task] = f"{protocol.name}@{protocol.hash[:12]}"
            n_shot[task] = 0
            better[task] = {m: METRICS[m].higher_is_better for m in metrics}
            n_samples[task] = {"original": manifest.dataset.n, "effective": int(row["n"])}
        facts = manifest.model(model)
        document = {
            "results": results,
            "group_subtasks": {},
            "configs": configs,
            "versions": versions,
            "n-shot": n_shot,
            "higher_is_better": better,
            "n-samples": n_samples,
            "config": {
                "model": model,
                "model_args": {"sha256": facts.sha256, **facts.config} if facts is not None else {},
                "batch_size": manifest.batch_size,
                "device": manifest.device,
                "random_seed": protocol.seed,
                "dataset": manifest.dataset.name,
                "split": manifest.dataset.split,
                "rng": manifest.rng,
            },
            "git_hash": package.get("git"),
            "date": started,
            "robustbench_mm_version": package.get("robustbench_mm"),
            "torch_version": package.get("torch"),
            "numpy_version": package.get("numpy"),
            "python_version": package.get("python"),
        }
        path = out / safe_file_name(model) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(document, indent=2) + "\n").encode())
        written.append(path)
    return written
