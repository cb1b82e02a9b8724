"""`rbmm demo`: the first-run experience, end to end on an embedded dataset (default mfeat).

Train (or reuse from the cache) the zoo — the entries of `ZOO`, over several training seeds —
evaluate every model under a protocol (one run per training seed, so the report can show spread
across seeds), write the report, and print a headline table. Everything goes through the public
library functions a user would call; the demo adds no logic of its own beyond choosing them.
`tools/seed_study.py` trains the same zoo into the same cache, so the two share checkpoints.
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
EACH = "each"  # a unimodal ZOO row stands for one model per modality of the data

# The zoo, one row per model before training seeds: (fusion, calibration, modality).
# Every backbone with and without pre-fusion calibration, the late baselines, the methods of the
# Methods page (docs/methods.md), and the unimodal reference of every modality.
ZOO: tuple[tuple[str, bool, str | None], ...] = (
    ("concat", False, None),
    ("concat", True, None),
    ("transformer", False, None),
    ("transformer", True, None),
    ("conv", False, None),
    ("conv", True, None),
    ("late", False, None),
    ("uncertainty-late", False, None),
    ("udml", False, None),
    ("qmf", False, None),
    ("cal", False, None),
    ("unimodal", False, EACH),
)


def model_name(fusion: str, calibration: bool, modality: str | None = None) -> str:
    """The checkpoint stem, which is the model's name in runs and reports: `conv+cal`, `unimodal-audio`."""
    return fusion + ("+cal" if calibration else "") + (f"-{modality}" if modality else "")


@dataclass(frozen=True)
class ZooEntry:
    """One checkpoint of the zoo: a fusion (± calibration; unimodal: its modality) trained with one seed."""

    fusion: str
    calibration: bool
    seed: int
    modality: str | None = None

    @property
    def name(self) -> str:
        return model_name(self.fusion, self.calibration, self.modality)

    def path(self, cache: Path, dataset: str) -> Path:
        return cache / dataset_folder(dataset) / f"seed-{self.seed}" / f"{self.name}.pt"


def dataset_folder(dataset: str) -> str:
    """A folder name for a dataset source: `avdigits:split=speaker` -> `avdigits_split-speaker`."""
    return dataset.replace(":", "_").replace("=", "-").replace(",", "_").replace("/", "_")


def zoo_entries(
    seeds: tuple[int, ...], modalities: list[str], rows=ZOO, fusions: tuple[str, ...] | None = None
) -> list[ZooEntry]:
    """The zoo's checkpoints for `seeds`, seed-major; `fusions` keeps only those rows; EACH expands to `modalities`."""
    entries = []
    for seed in seeds:
        for fusion, calibration, modality in rows:
            if fusions is not None and fusion not in fusions:
                continue
            for m in modalities if modality == EACH else [modality]:
                entries.append(ZooEntry(fusion, calibration, seed, m))
    return entries


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the full version, or `--fast` (one seed, the quick protocol)."""

    seeds: tuple[int, ...]
    protocol: str

    @classmethod
    def choose(cls, fast: bool) -> "DemoPlan":
        return cls(seeds=(0,), protocol="quick") if fast else cls(seeds=(0, 1, 2), protocol="standard")


def train_zoo(
    entries: list[ZooEntry], cache: Path, dataset: str = "mfeat", progress: bool = True
) -> dict[int, list[Path]]:
    """Checkpoints per training seed, training only those missing from `cache`."""
    splits = None
    bar = tqdm(entries, desc="demo: models", unit="model", disable=not progress)
    zoo: dict[int, list[Path]] = {}
    for entry in bar:
        path = entry.path(cache, dataset)
        if not path.exists():
            bar.set_postfix_str(f"training {entry.name} (seed {entry.seed})")
            splits = splits or load_splits(dataset)
            path.parent.mkdir(parents=True, exist_ok=True)
            train_and_save(
                fusion=entry.fusion, calibration=entry.calibration, modality=entry.modality,
                splits=splits, seed=entry.seed, out=path, progress=False,
            )  # fmt: skip
        zoo.setdefault(entry.seed, []).append(path)
    return zoo


def headline(cells: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Mean over training seeds of clean, corrupted, removal and conflict accuracy per model."""
    per_seed = cells.groupby(["model", "run", "family"])["accuracy"].mean().unstack("family")
    table = per_seed.groupby("model").agg(["mean", "std"])
    columns = [c for c in ("clean", "corruption", "removal", "conflict") if c in per_seed.columns]
    out = pd.DataFrame(index=table.index)
    for family in columns:
        mean, std = table[(family, "mean")], table[(family, "std")].fillna(0.0)
        out[family] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std)]
    if order is None:
        return out
    return out.reindex([m for m in order if m in out.index] + [m for m in out.index if m not in order])


def run_demo(
    fast: bool, cache: Path, out: Path, report: Path, progress: bool = True, overwrite: bool = False,
    dataset: str = "mfeat",
) -> Path:  # fmt: skip
    """Train (cached), evaluate (resuming earlier runs unless `overwrite`) and report; returns the report's index.html."""
    plan = DemoPlan.choose(fast)
    start = time.perf_counter()
    data = load_dataset(dataset, "test")
    entries = zoo_entries(plan.seeds, list(data.modalities))
    zoo = train_zoo(entries, cache, dataset=dataset, progress=progress)
    runs = []
    for seed, paths in zoo.items():
        models = [load_model(p) for p in paths]
        run_dir = out / f"seed-{seed}"
        evaluate(models, data, plan.protocol, out=run_dir, progress=progress, overwrite=overwrite)
        runs.append(run_dir)
    try:
        index = write_report(runs, report, title=f"robustbench-mm demo: {dataset}, {plan.protocol} protocol")
    except (InputError, OSError) as e:  # the runs are on disk: say where, and how to report them
        reason = e if isinstance(e, InputError) else f"cannot write {report}: {e.strerror or e}"
        raise InputError(
            f"{reason}; the evaluated runs are kept in {', '.join(map(str, runs))}: write their report elsewhere "
            f"with `rbmm report {' '.join(map(str, runs))} -o FOLDER`"
        ) from None
    table = headline(load_runs(runs).cells, order=list(dict.fromkeys(e.name for e in entries)))
    minutes = (time.perf_counter() - start) / 60
    print(f"\nAccuracy on {dataset} test (mean ± std over {len(plan.seeds)} training seed(s)), protocol {plan.protocol}:")
    print(table.to_string())
    print(f"\nresults: {out}/   report: {index}   ({minutes:.1f} min)")
    return index
