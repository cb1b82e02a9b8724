"""The report's view of its runs: one table over all runs with a replicate column, per-sample records
on demand. Built on `results.load_runs` (the only reader of manifest.json and cells.csv).

A replicate is one (run, protocol seed): several runs of the same models (e.g. one per training
seed) are several replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..domain import Task
from ..errors import InputError
from ..metrics import METRICS, task_metrics
from ..results import Run, load_runs


@dataclass
class Data:
    """The runs of one report: their cells as one table, the task, its headline metric (the
    protocol's first of the task), the models in order of first appearance and each model's config."""

    runs: dict[str, Run]
    cells: pd.DataFrame  # cells.csv rows of every run + `run`, `replicate` (metrics' `seed`)
    task: Task
    num_classes: int | None
    metric: str
    models: list[str]
    configs: dict[str, dict] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    def record(self, row) -> dict[str, np.ndarray]:
        """Per-sample records of one cell, sorted by sample id (pairing across cells and models)."""
        key = (row["run"], row["cell_id"])
        if key not in self._cache:
            rec = self.runs[row["run"]].samples(row["cell_id"])
            order = np.argsort(rec["ids"], kind="stable")
            self._cache[key] = {k: v[order] for k, v in rec.items()}
        return self._cache[key]

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    @property
    def replicated(self) -> bool:
        return self.cells.groupby("model")["replicate"].nunique().max() > 1


def load(runs) -> Data:
    """Run folders (paths) or `Run`s (what `evaluate` returns), one or a list.

    A `Run` is read again from its folder, so every run is loaded (and named: folder name, or the
    path when two folders share a name) by `results.load_runs` alone.
    """
    if isinstance(runs, (str, Path, Run)):
        runs = [runs]
    paths = [r.path if isinstance(r, Run) else Path(r) for r in runs]
    paths = [p if p.name else p.resolve() for p in paths]  # `.` is named after the folder it is
    if not paths:
        raise InputError("report needs at least one run folder")
    loaded = load_runs(paths)
    for run in loaded.runs.values():
        if run.cells.empty:
            raise InputError(f"run {run.path}: cells.csv has no cells (did `rbmm eval` finish a cell?)")
    cells = loaded.cells.reset_index(drop=True)
    cells["model"] = cells["model"].astype(str)
    cells["modalities"] = cells["modalities"].fillna("").astype(str)
    many = len(loaded.runs) > 1
    cells["replicate"] = [f"{r}:{s}" if many else s for r, s in zip(cells["run"], cells["seed"])]
    first = next(iter(loaded.runs.values()))
    task = first.manifest.dataset.task
    num_classes = None
    if task == Task.CLASSIFICATION:
        declared = first.manifest.dataset.num_classes
        if declared:
            num_classes = int(declared)
        else:
            rec = first.samples(first.cells["cell_id"].iloc[0])
            num_classes = int(max(rec["target"].max(), rec["pred"].max()) + 1)
    # the headline metric: the protocol's first of this task (what it says a report leads with), else the task's first
    declared = [m for m in first.manifest.protocol.metrics if m in METRICS and METRICS[m].task == task]
    metric = declared[0] if declared else task_metrics(task)[0]
    if metric not in cells.columns:
        raise InputError(f"cells.csv of {first.path} has no {metric!r} column; expected the per-cell metrics")
    configs: dict[str, dict] = {}
    for run in loaded.runs.values():
        for entry in run.manifest.models:
            configs.setdefault(entry.name, entry.config)
    models = list(dict.fromkeys(cells["model"]))
    return Data(loaded.runs, cells, task, num_classes, metric, models, configs)


def metric_frame(data: Data) -> pd.DataFrame:
    """cells with `seed` replaced by the replicate, the form `metrics` summaries group by."""
    return data.cells.assign(seed=data.cells["replicate"])

