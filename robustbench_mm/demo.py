"""`rbmm demo`: the first-run experience, end to end on the embedded default.

Train (or reuse from the cache) the default zoo on mfeat — the three fusion backbones, each with
and without pre-fusion calibration, over several training seeds — evaluate every model under a
protocol (one run per training seed, so the report can show spread across seeds), write the
report, and print a headline table. Everything goes through the public library functions a user
would call; the demo adds no logic of its own beyond choosing them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .datasets import load_dataset, load_splits
from .engine import evaluate
from .errors import InputError
from .models import load_model, train_and_save
from .report import write_report
from .results import load_runs

BACKBONES = ("concat", "transformer", "conv")


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the full version, or `--fast` (one seed, the quick protocol)."""

    seeds: tuple[int, ...]
    protocol: str

    @classmethod
    def choose(cls, fast: bool) -> "DemoPlan":
        return cls(seeds=(0,), protocol="quick") if fast else cls(seeds=(0, 1, 2), protocol="standard")


def model_name(fusion: str, calibration: bool) -> str:
    return f"{fusion}+cal" if calibration else fusion


def train_zoo(plan: DemoPlan, cache: Path, dataset: str = "mfeat", progress: bool = True) -> dict[int, list[Path]]:
    """Checkpoints per training seed, training only those missing from `cache`."""
    splits = None
    wanted = [(s, f, c) for s in plan.seeds for f in BACKBONES for c in (False, True)]
    bar = tqdm(wanted, desc="demo: models", unit="model", disable=not progress)
    zoo: dict[int, list[Path]] = {s: [] for s in plan.seeds}
    for seed, fusion, calibration in bar:
        path = cache / dataset / f"seed-{seed}" / f"{model_name(fusion, calibration)}.pt"
        if not path.exists():
            bar.set_postfix_str(f"training {path.stem} (seed {seed})")
            splits = splits or load_splits(dataset)
            path.parent.mkdir(parents=True, exist_ok=True)
            train_and_save(fusion=fusion, calibration=calibration, splits=splits, seed=seed, out=path, progress=False)
        zoo[seed].append(path)
    return zoo


def headline(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean over training seeds of clean, corrupted, removal and conflict accuracy per model."""
    per_seed = cells.groupby(["model", "run", "family"])["accuracy"].mean().unstack("family")
    table = per_seed.groupby("model").agg(["mean", "std"])
    columns = [c for c in ("clean", "corruption", "removal", "conflict") if c in per_seed.columns]
    out = pd.DataFrame(index=table.index)
    for family in columns:
        mean, std = table[(family, "mean")], table[(family, "std")].fillna(0.0)
        out[family] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std)]
    order = [model_name(f, c) for f in BACKBONES for c in (False, True)]
    return out.reindex([m for m in order if m in out.index])


def run_demo(fast: bool, cache: Path, out: Path, report: Path, progress: bool = True, overwrite: bool = False) -> Path:
    """Train (cached), evaluate (resuming earlier runs unless `overwrite`) and report; returns the report's index.html."""
    plan = DemoPlan.choose(fast)
    start = time.perf_counter()
    zoo = train_zoo(plan, cache, progress=progress)
    data = load_dataset("mfeat", "test")
    runs = []
    for seed, paths in zoo.items():
        models = [load_model(p) for p in paths]
        run_dir = out / f"seed-{seed}"
        evaluate(models, data, plan.protocol, out=run_dir, progress=progress, overwrite=overwrite)
        runs.append(run_dir)
    try:
        index = write_report(runs, report, title=f"robustbench-mm demo: mfeat, {plan.protocol} protocol")
    except (InputError, OSError) as e:  # the runs are on disk: say where, and how to report them
        reason = e if isinstance(e, InputError) else f"cannot write {report}: {e.strerror or e}"
        raise InputError(
            f"{reason}; the evaluated runs are kept in {', '.join(map(str, runs))}: write their report elsewhere "
            f"with `rbmm report {' '.join(map(str, runs))} -o FOLDER`"
        ) from None
    table = headline(load_runs(runs).cells)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nAccuracy on mfeat test (mean ± std over {len(plan.seeds)} training seed(s)), protocol {plan.protocol}:")
    print(table.to_string())
    print(f"\nresults: {out}/   report: {index}   ({minutes:.1f} min)")
    return index
