"""Intervals of the report's numbers and the one paired test between two models' cells.

One replicate: percentile bootstrap intervals over the evaluation samples
(`stats.bootstrap_weights`, the same resamples for every cell of a model, so summaries over cells
stay paired). Several: two-stage (cluster) bootstrap intervals of the mean across replicates: each
resample draws the replicates with replacement and, within each, the samples' bootstrap resample.
Every resample is a mean of metric values, so the interval stays within the metric's range (a t
interval across 3 replicates of an accuracy reached 1.022).

`paired_test` is the one test of a difference between two models' cells (see its docstring for
which p-value it gives and why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import resampled_metric
from ..stats import bootstrap_weights, mcnemar_exact, paired_bootstrap
from .load import Data

N_RESAMPLES = 2000
ALPHA = 0.05
CONFIDENCE = 0.95


class Boot:
    """Resampled metric values per cell, all cells sharing one bootstrap weight matrix per n."""

    def __init__(self, data: Data, n_resamples: int = N_RESAMPLES, seed: int = 0):
        self.data = data
        self.n_resamples = n_resamples
        self.seed = seed
        self._values: dict[tuple, np.ndarray] = {}

    def values(self, row) -> np.ndarray:
        key = (row["run"], row["cell_id"])
        if key not in self._values:
            rec = self.data.record(row)
            weights = bootstrap_weights(len(rec["target"]), self.n_resamples, self.seed)
            self._values[key] = resampled_metric(rec, self.data.metric, self.data.task, self.data.num_classes, weights)
        return self._values[key]


def interval(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def draws(data: Data, boot: Boot, rows: pd.DataFrame) -> tuple[float, np.ndarray]:
    """Mean of the metric over `rows` (cells of one model) and its resampled values (R,).

    One replicate: the mean over the cells; each resample resamples the samples jointly in every
    cell. Several: the mean over replicates of each replicate's mean over its cells; each resample
    draws the replicates with replacement and resamples the samples within (two-stage). The
    resamples depend only on the number of samples and of replicates, so the draws of two models
    over the same samples are paired, resample by resample (`difference`).
    """
    if rows.empty:
        return float("nan"), np.full(boot.n_resamples, np.nan)
    replicate = rows["replicate"].to_numpy()
    if len(set(replicate)) > 1:
        # the replicates' rows in order of appearance (groupby(sort=False)'s groups, without a frame each)
        groups = [np.flatnonzero(replicate == r) for r in dict.fromkeys(replicate)]
        metric, cells = rows[data.metric], _cells(rows)
        value = float(np.mean([metric.iloc[g].mean() for g in groups]))
        per_replicate = np.stack([np.mean([boot.values(cells[i]) for i in g], axis=0) for g in groups])  # (k, R)
        k, n_draws = per_replicate.shape
        picks = np.random.default_rng(boot.seed).integers(0, k, size=(n_draws, k))  # replicates per resample
        return value, per_replicate[picks, np.arange(n_draws)[:, None]].mean(axis=1)
    return float(rows[data.metric].mean()), np.mean([boot.values(r) for r in _cells(rows)], axis=0)


def _cells(rows: pd.DataFrame) -> list[dict]:
    """(run, cell_id) of each row, what `Boot.values` reads: `iterrows` would build a Series per
    row from every column (a third of the report's time with Arrow-backed text columns)."""
    return [{"run": run, "cell_id": cell} for run, cell in zip(rows["run"], rows["cell_id"])]


def estimate(data: Data, boot: Boot, rows: pd.DataFrame) -> tuple[float, float, float]:
    """(value, low, high): `draws`' value and the percentile interval of its resamples."""
    value, resampled = draws(data, boot, rows)
    return (value, *interval(resampled))


def difference(data: Data, boot: Boot, rows_x: pd.DataFrame, rows_y: pd.DataFrame) -> tuple[float, float, float]:
    """(diff, low, high) of the estimate over `rows_x` minus that over `rows_y` (two models' cells
    over the same samples and replicates), its interval from the paired resamples."""
    x, draws_x = draws(data, boot, rows_x)
    y, draws_y = draws(data, boot, rows_y)
    return (x - y, *interval(draws_x - draws_y))


# ---------------------------------------------------------------------------------------------
# The paired test between two models' cells (the calibration section and `rbmm compare`)
# ---------------------------------------------------------------------------------------------

MCNEMAR_METRICS = ("accuracy",)


@dataclass(frozen=True)
class PairedDifference:
    """metric(x) − metric(y) over the same samples: its paired bootstrap interval and a p-value
    from `test` ("exact McNemar" or "paired bootstrap")."""

    diff: float
    low: float
    high: float
    p: float
    test: str


def paired_test_name(metric: str) -> str:
    """The test whose p-value `paired_test` gives for `metric`."""
    return "exact McNemar" if metric in MCNEMAR_METRICS else "paired bootstrap"


def paired_test(rec_x: dict[str, np.ndarray], rec_y: dict[str, np.ndarray], metric: str,
                num_classes: int | None) -> PairedDifference:
    """The one paired comparison of two cells over the same samples, used by every part of the report.

    Interval: `stats.paired_bootstrap` (percentile, N_RESAMPLES resamples, seed 0, CONFIDENCE).
    p: the exact McNemar test for accuracy, the paired bootstrap's p for every other metric.
    McNemar's null hypothesis is that the discordant pairs (x right and y wrong, or the reverse)
    split evenly, which is the hypothesis of equal accuracy and only that: it is exact, and finer
    than a bootstrap p (whose resolution is 1/(R + 1)) when few samples differ. Macro-F1, NLL, ECE,
    Brier and confidence can differ while the accuracies agree, and the reverse, so for them a
    McNemar p would test another hypothesis than the interval printed beside it; their p is the
    bootstrap's, the test of that interval.
    """
    res = paired_bootstrap(rec_x, rec_y, metric, n_resamples=N_RESAMPLES, seed=0, confidence=CONFIDENCE,
                           num_classes=num_classes)
    test = paired_test_name(metric)
    if test == "exact McNemar":
        p = mcnemar_exact(rec_x["pred"] == rec_x["target"], rec_y["pred"] == rec_y["target"]).p_value
    else:
        p = res.p_value
    return PairedDifference(res.estimate, res.low, res.high, float(p), test)
