"""Intervals of the report's numbers and the one paired test between two models' cells.

One replicate: percentile bootstrap intervals over the evaluation samples
(`stats.bootstrap_counts`, the same resamples for every cell of a model, so summaries over cells
stay paired). Several: two-stage (cluster) bootstrap intervals of the mean across replicates: each
resample draws the replicates with replacement and, within each, the samples' bootstrap resample.
Every resample is a mean of metric values, so the interval stays within the metric's range (a t
interval across 3 replicates of an accuracy reached 1.022).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import resampled_metric
from ..stats import bootstrap_counts
from .load import Data

N_RESAMPLES = 2000
ALPHA = 0.05
CONFIDENCE = 0.95

class Boot:
    """Resampled metric values per cell, all cells sharing one set of bootstrap counts per n."""

    def __init__(self, data: Data, n_resamples: int = N_RESAMPLES, seed: int = 0):
        self.data = data
        self.n_resamples = n_resamples
        self.seed = seed
        self._counts: dict[int, np.ndarray] = {}
        self._values: dict[tuple, np.ndarray] = {}

    def values(self, row) -> np.ndarray:
        key = (row["run"], row["cell_id"])
        if key not in self._values:
            rec = self.data.record(row)
            n = len(rec["target"])
            if n not in self._counts:
                self._counts[n] = bootstrap_counts(n, self.n_resamples, self.seed)
            self._values[key] = resampled_metric(rec, self.data.metric, self.data.task, self.data.num_classes,
                                                 self._counts[n])
        return self._values[key]


def interval(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def estimate(data: Data, boot: Boot, rows: pd.DataFrame) -> tuple[float, float, float]:
    """Mean of the metric over `rows` (cells of one model), with its interval.

    One replicate: the mean over the cells, bootstrap interval from resampling the samples jointly
    in every cell. Several: the mean over replicates of each replicate's mean over its cells, with a
    two-stage bootstrap interval (replicates drawn with replacement, samples resampled within).
    """
    if rows.empty:
        return float("nan"), float("nan"), float("nan")
    if rows["replicate"].nunique() > 1:
        groups = [g for _, g in rows.groupby("replicate", sort=False)]
        estimate = float(np.mean([g[data.metric].mean() for g in groups]))
        per_replicate = np.stack([np.mean([boot.values(r) for _, r in g.iterrows()], axis=0) for g in groups])  # (k, R)
        k, n_draws = per_replicate.shape
        picks = np.random.default_rng(boot.seed).integers(0, k, size=(n_draws, k))  # replicates per resample
        two_stage = per_replicate[picks, np.arange(n_draws)[:, None]].mean(axis=1)
        return (estimate, *interval(two_stage))
    draws = np.mean([boot.values(r) for _, r in rows.iterrows()], axis=0)
    return (float(rows[data.metric].mean()), *interval(draws))

