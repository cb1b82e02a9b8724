"""Per-cell metrics from per-sample records: the `@metric` registry and the built-in metrics.

A metric is one decorated function

    @metric("name", task=Task.CLASSIFICATION, higher_is_better=True, description="...")
    def name(record, w, num_classes) -> np.ndarray

record : the cell's per-sample arrays (`results.RECORD_FIELDS[task]`): classification `target`,
    `pred`, `conf` (max probability), `p_true`, `sq_prob` (sum_k p_k^2), `entropy` (nats);
    regression `target`, `output`.
w : (R, n) float64 sample weights, one row per evaluation of the metric: a row of ones for the
    cell's value, resampling multiplicities for the paired bootstrap (`stats.paired_bootstrap`),
    leave-a-group-out masks for the jackknife. Returns shape (R,). A metric uses `w` through
    `w @ x` (x of shape (n,) or (n, k)) and `w.sum(axis=1)` (or `weighted_mean`): for the jackknife
    `w` is a `LeaveOneGroupOut`, which computes both from group totals instead of a dense matrix;
    a metric that needs anything else takes `np.asarray(w)`, the dense matrix.
num_classes : the dataset's class count (classification), None for regression.

One function serves the cell value, the bootstrap and the jackknife, so an interval is always an
interval of exactly the number the table reports. Its direction (`higher_is_better`) is what the
summaries, the report, the export and rank tests read. Robustness summaries over the cells table
live in `summaries.py`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .domain import Task, parse_task
from .errors import InputError, one_of
from .registry import Registry, source_of
from .results import RECORD_FIELDS

MetricFn = Callable[[dict[str, np.ndarray], np.ndarray, "int | None"], np.ndarray]

ECE_BINS = 15
P_MIN = 1e-12  # p_true is clipped here before the log: NLL of one sample is at most -log(1e-12) = 27.6


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its compute function, the task it applies to and which way is better."""

    name: str
    compute: MetricFn
    higher_is_better: bool
    task: Task
    description: str

    @property
    def direction(self) -> str:
        """'higher' or 'lower': which values are better."""
        return "higher" if self.higher_is_better else "lower"


METRICS: Registry[MetricSpec] = Registry("metric")


def metric(name: str, *, task: Task | str, higher_is_better: bool, description: str) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(record, w, num_classes) -> (R,)` as metric `name` of `task` (see the module docstring)."""
    task = parse_task(str(task), f"metric {name!r}: task")

    def register(fn: MetricFn) -> MetricFn:
        if getattr(METRICS.registered(name), "compute", None) is fn:
            return fn
        METRICS.add(name, MetricSpec(name, fn, bool(higher_is_better), task, description), source_of(fn))
        return fn

    return register


def weighted_mean(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(R,) weighted means of per-sample `values` (n,) under each row of `w` (R, n)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.asarray(values, dtype=np.float64)) / row_sums(w)


# Row sums of read-only weight matrices (the bootstrap weights `stats.bootstrap_weights` shares
# across every cell of a run), by identity. A weak reference: the entry neither keeps a matrix alive
# nor outlives it (its callback removes it before the id can be reused).
_ROW_SUMS: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def row_sums(w) -> np.ndarray:
    """`w.sum(axis=1)`, computed once per read-only weight matrix: the shared bootstrap weights are
    summed once per run, not once per cell and metric. Writeable matrices are summed every time,
    since they may change between calls."""
    if not isinstance(w, np.ndarray) or w.flags.writeable or (w.base is not None and w.base.flags.writeable):
        return w.sum(axis=1)
    key = id(w)
    kept = _ROW_SUMS.get(key)
    if kept is not None and kept[0]() is w:
        return kept[1]
    sums = w.sum(axis=1)
    sums.flags.writeable = False
    _ROW_SUMS[key] = (weakref.ref(w, lambda _, key=key: _ROW_SUMS.pop(key, None)), sums)
    return sums


class LeaveOneGroupOut:
    """The jackknife's (G, n) weights without the matrix: row g is 1 for every sample outside group
    g, where sample i belongs to group i mod G (G = n: leave-one-out).

    `w @ x` is the column totals of x minus its G group sums and `w.sum(axis=1)` is n minus the
    group sizes: O(n) work instead of O(G n). The values equal the dense product's up to float
    rounding in the last bits (tests/test_metrics.py bounds the standard errors' difference).
    Any other use sees the dense matrix through `np.asarray(w)`.
    """

    def __init__(self, n: int, groups: int):
        if not 1 <= groups <= n:
            raise InputError(f"leave-one-group-out weights need 1 <= groups <= n, got groups={groups}, n={n}")
        self.n, self.groups = n, groups
        self.shape = (groups, n)
        self.ndim = 2

    def _group_sums(self, x: np.ndarray) -> np.ndarray:
        """(G, ...) sums of x's rows over each group: pad to whole rounds of G samples, add the rounds."""
        rounds = -(-self.n // self.groups)
        padded = np.zeros((rounds * self.groups,) + x.shape[1:], dtype=x.dtype)
        padded[: self.n] = x
        return padded.reshape((rounds, self.groups) + x.shape[1:]).sum(axis=0)

    def __matmul__(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim not in (1, 2) or x.shape[0] != self.n:
            return np.asarray(self) @ x  # numpy's own shape error
        x = x.astype(np.result_type(x.dtype, np.float64), copy=False)
        return x.sum(axis=0) - self._group_sums(x)

    def sum(self, axis=None) -> np.ndarray:
        if axis in (1, -1):
            return self.n - self._group_sums(np.ones(self.n))
        return np.asarray(self).sum(axis=axis)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        member = np.arange(self.n) % self.groups
        dense = (member[None, :] != np.arange(self.groups)[:, None]).astype(dtype or np.float64)
        return dense


# what metrics need of a record (results.RECORD_FIELDS): the predictions, not which samples they are
_REQUIRED = {task: tuple(f for f in fields if f not in ("ids", "affected")) for task, fields in RECORD_FIELDS.items()}


def task_metrics(task: str) -> list[str]:
    """Names of the metrics of a task, in registration order (the column order of cells.csv)."""
    task = parse_task(task)
    return [name for name, spec in METRICS.items() if spec.task == task]


def _check_record(record: dict[str, np.ndarray], task: str) -> int:
    task = parse_task(task)
    missing = [k for k in _REQUIRED[task] if k not in record]
    if missing:
        raise InputError(f"{task} record lacks arrays {missing}; it has {sorted(record)}")
    n = len(record["target"])
    if n == 0:
        raise InputError("record has no samples; a cell needs at least one")
    bad = [k for k in _REQUIRED[task] if len(record[k]) != n]
    if bad:
        raise InputError(f"record arrays {bad} differ in length from 'target' ({n})")
    return n


def metric_of(name: str, task: str) -> MetricSpec:
    """The registered metric `name` of `task`; a miss lists that task's metrics."""
    task = parse_task(task)
    if name not in METRICS or METRICS[name].task != task:
        raise one_of(f"{task} metric", name, task_metrics(task))
    return METRICS[name]


def resampled_metric(
    record: dict[str, np.ndarray],
    metric: str,
    task: str,
    num_classes: int | None,
    weights: np.ndarray,
) -> np.ndarray:
    """The metric under each row of sample weights.

    weights : array (R, n) of non-negative sample weights (bootstrap multiplicities, a single row
        of ones), or a `LeaveOneGroupOut` (the jackknife). Returns an array of shape (R,).
        A float64 array is used as it is (no copy), so weights shared across cells
        (`stats.bootstrap_weights`) are converted once.
    """
    _check_record(record, task)
    spec = metric_of(metric, task)
    if not isinstance(weights, LeaveOneGroupOut):
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return spec.compute(record, weights, num_classes)


def cell_metrics(record: dict[str, np.ndarray], task: str, num_classes: int | None) -> dict[str, float]:
    """All metrics of one cell (see `METRICS` for their definitions), as plain floats.

    classification needs num_classes (>= 2) for the normalised-entropy confidence; regression
    ignores it.
    """
    n = _check_record(record, task)
    if task == Task.CLASSIFICATION and (num_classes is None or num_classes < 2):
        raise InputError(f"num_classes must be an integer >= 2 for classification metrics, got {num_classes!r}")
    ones = np.ones((1, n))
    return {name: float(resampled_metric(record, name, task, num_classes, ones)[0]) for name in task_metrics(task)}


SE_SUFFIX = "_se"
JACKKNIFE_GROUPS = 1000


def cell_standard_errors(record: dict[str, np.ndarray], task: str, num_classes: int | None) -> dict[str, float]:
    """`<metric>_se` for every metric of one cell: the jackknife standard error of the cell's value.

    Delete-a-group jackknife through `resampled_metric` (the same code as the cell value, so the SE
    is the SE of the number in the table), its weights a `LeaveOneGroupOut` (group sums): samples go to G = min(n, 1000) groups by position
    (i mod G), theta_g is the metric without group g, and SE^2 = (G - 1) / G * sum_g (theta_g - mean)^2.
    With n <= 1000 this is the delete-one jackknife, which for a mean of per-sample values
    (accuracy, NLL, Brier, confidence, MAE) is exactly s / sqrt(n) with the n - 1 sample variance:
    for accuracy sqrt(p (1 - p) / (n - 1)), the binomial SE. ECE, macro-F1, Pearson and sign
    accuracy get the same jackknife without a closed form. NaN for a single sample.
    """
    n = _check_record(record, task)
    groups = min(n, JACKKNIFE_GROUPS)
    if groups < 2:
        return {name + SE_SUFFIX: float("nan") for name in task_metrics(task)}
    weights = LeaveOneGroupOut(n, groups)
    out = {}
    for name in task_metrics(task):
        theta = resampled_metric(record, name, task, num_classes, weights)
        with np.errstate(invalid="ignore"):
            out[name + SE_SUFFIX] = float(np.sqrt((groups - 1) / groups * np.sum((theta - theta.mean()) ** 2)))
    return out


# ---------------------------------------------------------------------------------------------
# The built-in metrics, in the column order of cells.csv
# ---------------------------------------------------------------------------------------------


def _correct(record: dict[str, np.ndarray]) -> np.ndarray:
    return (np.asarray(record["pred"]) == np.asarray(record["target"])).astype(np.float64)


@metric("accuracy", task=Task.CLASSIFICATION, higher_is_better=True,
        description="fraction of samples whose predicted class is the target")
def accuracy(record, w, num_classes):
    return weighted_mean(w, _correct(record))


@metric("macro_f1", task=Task.CLASSIFICATION, higher_is_better=True,
        description="unweighted mean over classes of F1 = 2TP/(2TP+FP+FN), over classes present in target or prediction")
def macro_f1(record, w, num_classes):
    """From the weighted confusion counts: one matrix product against a one-hot design."""
    target, pred = np.asarray(record["target"]), np.asarray(record["pred"])
    k = int(max(target.max(), pred.max(), (num_classes or 0) - 1)) + 1
    onehot_t = np.zeros((len(target), k))
    onehot_t[np.arange(len(target)), target] = 1.0
    onehot_p = np.zeros((len(pred), k))
    predicted_class = pred >= 0  # -1: no prediction (a NaN/Inf output counted as wrong)
    onehot_p[np.flatnonzero(predicted_class), pred[predicted_class]] = 1.0
    support = w @ onehot_t  # TP + FN per class
    predicted = w @ onehot_p  # TP + FP per class
    tp = w @ (onehot_t * _correct(record)[:, None])
    denom = support + predicted
    present = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2.0 * tp / np.where(present, denom, 1.0), 0.0)
        return f1.sum(axis=1) / present.sum(axis=1)


@metric("nll", task=Task.CLASSIFICATION, higher_is_better=False,
        description="mean -log p(target), p clipped at 1e-12 (nats)")
def nll(record, w, num_classes):
    return weighted_mean(w, -np.log(np.clip(np.asarray(record["p_true"], dtype=np.float64), P_MIN, 1.0)))


@metric("ece", task=Task.CLASSIFICATION, higher_is_better=False,
        description="expected calibration error: sum_b n_b/n |acc_b - conf_b| over 15 equal-width confidence bins (lo, hi]")
def ece(record, w, num_classes):
    conf = np.asarray(record["conf"], dtype=np.float64)
    bins = np.clip(np.ceil(conf * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    onehot = np.zeros((len(conf), ECE_BINS))
    onehot[np.arange(len(conf)), bins] = 1.0
    gap = w @ (onehot * (_correct(record) - conf)[:, None])  # (R, bins): sum_b w (acc - conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(gap).sum(axis=1) / w.sum(axis=1)


@metric("brier", task=Task.CLASSIFICATION, higher_is_better=False,
        description="multi-class Brier score: mean sum_k (p_k - y_k)^2 = 1 - 2 p_true + sum_k p_k^2")
def brier(record, w, num_classes):
    p_true = np.asarray(record["p_true"], dtype=np.float64)
    return weighted_mean(w, 1.0 - 2.0 * p_true + np.asarray(record["sq_prob"], dtype=np.float64))


@metric("confidence", task=Task.CLASSIFICATION, higher_is_better=True,
        description="mean 1 - H(p)/log K (normalised-entropy confidence; 1 = one-hot, 0 = uniform)")
def confidence(record, w, num_classes):
    if num_classes is None or num_classes < 2:
        raise InputError(f"num_classes must be an integer >= 2 for the 'confidence' metric, got {num_classes!r}")
    entropy = np.asarray(record["entropy"], dtype=np.float64)
    return weighted_mean(w, 1.0 - entropy / np.log(num_classes))


def _regression(record: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(output, target) as float64."""
    return np.asarray(record["output"], dtype=np.float64), np.asarray(record["target"]).astype(np.float64)


@metric("mae", task=Task.REGRESSION, higher_is_better=False, description="mean absolute error |output - target|")
def mae(record, w, num_classes):
    out, y = _regression(record)
    return weighted_mean(w, np.abs(out - y))


@metric("pearson", task=Task.REGRESSION, higher_is_better=True,
        description="Pearson correlation of output and target (NaN if either is constant)")
def pearson(record, w, num_classes):
    """From weighted moments of the centred data; a constant output or target gives NaN."""
    out, y = _regression(record)
    xc, yc = out - out.mean(), y - y.mean()
    mx, my = weighted_mean(w, xc), weighted_mean(w, yc)
    cov = weighted_mean(w, xc * yc) - mx * my
    vx = weighted_mean(w, xc * xc) - mx * mx
    vy = weighted_mean(w, yc * yc) - my * my
    degenerate = (vx <= 1e-12 * weighted_mean(w, xc * xc)) | (vy <= 1e-12 * weighted_mean(w, yc * yc)) | (vx <= 0) | (vy <= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.where(degenerate, 1.0, vx * vy))
    return np.where(degenerate, np.nan, np.clip(r, -1.0, 1.0))


@metric("sign_accuracy", task=Task.REGRESSION, higher_is_better=True,
        description="binary accuracy of the sign over samples with target != 0: (output > 0) == (target > 0)")
def sign_accuracy(record, w, num_classes):
    out, y = _regression(record)
    nonzero = (y != 0).astype(np.float64)
    # NaN rule (see stats): a NaN output is no value, not a negative sign; it makes the metric
    # NaN, as it does MAE and Pearson.
    hits = np.where(np.isnan(out), np.nan, nonzero * ((out > 0) == (y > 0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ hits) / (w @ nonzero)
