"""Statistics for claims about robustness: paired bootstrap, exact McNemar, tests across seeds,
Friedman with Nemenyi / Wilcoxon–Holm post-hoc tests and critical-difference data, Holm
correction and effect sizes. Pure numpy/scipy, seeded, no I/O.

Conventions: every result is a small frozen dataclass or NamedTuple of floats/arrays; ranks are
1 = best (Demšar 2006); p-values are two-sided.

Missing values (the one NaN rule, shared with `metrics`): NaN means "no value", never a number.
Statistics on samples of values (mean_ci, cliffs_delta, the paired tests, cohens_d) drop NaN
values first, a pair with NaN on either side as a whole pair, and compute on what is left
(NaN when too little is left); the rank tests on a score table (friedman, critical_difference)
refuse a table holding NaN, because dropping a row is a choice the caller must make and report.
A per-cell metric over a cell with a NaN model output is NaN (metrics.resampled_metric), so a
NaN never turns into a count. Degenerate inputs give NaN with the reason in the result's
`method` (paired_bootstrap) or in the docstring, never a confident-looking number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from .errors import InputError, one_of
from .metrics import METRICS, LeaveOneGroupOut, resampled_metric
from .results import task_of

_CHUNK_ELEMENTS = 4_000_000  # weight-matrix elements evaluated at once (bounds memory)
_SHARED_ELEMENTS = 16_000_000  # largest shared bootstrap weight matrix kept (128 MB of float64)
MIN_BOOTSTRAP_PAIRS = 3  # fewer shared samples give a NaN interval (see paired_bootstrap)


# ---------------------------------------------------------------------------------------------
# Paired bootstrap
# ---------------------------------------------------------------------------------------------


def _count_chunks(n: int, n_resamples: int, seed: int):
    """Bootstrap multiplicities (rows of length n summing to n), drawn in chunks from one stream.

    The rows do not depend on the chunking (numpy's Generator draws them sequentially), so
    `bootstrap_counts` and the chunked evaluation in `paired_bootstrap` see identical resamples.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, min(n_resamples, _CHUNK_ELEMENTS // max(n, 1)))
    done = 0
    while done < n_resamples:
        r = min(rows, n_resamples - done)
        idx = rng.integers(0, n, size=(r, n))
        flat = (np.arange(r)[:, None] * n + idx).ravel()
        yield np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.int32)
        done += r


def bootstrap_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) int32 matrix: how often each sample appears in each bootstrap resample.

    A resampled mean of per-sample values x is `counts @ x / n`; the same matrix applied to two
    models' records gives a paired bootstrap.
    """
    if n < 1 or n_resamples < 1:
        raise InputError(f"bootstrap needs n >= 1 samples and n_resamples >= 1, got n={n}, n_resamples={n_resamples}")
    return np.vstack(list(_count_chunks(n, n_resamples, seed)))


@lru_cache(maxsize=4)
def bootstrap_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """`bootstrap_counts` as a read-only float64 matrix, built once per (n, n_resamples, seed).

    Every cell and every paired test of a run over n samples uses the same resamples, so they share
    this one matrix: `resampled_metric` takes it without a conversion, and `metrics.row_sums`
    sums its rows once.
    """
    weights = bootstrap_counts(n, n_resamples, seed).astype(np.float64)
    weights.flags.writeable = False
    return weights


def _weight_chunks(n: int, n_resamples: int, seed: int):
    """The bootstrap weights in row chunks: the shared matrix when it is small enough to keep,
    else streamed from the same random stream (identical rows, bounded memory)."""
    if n * n_resamples <= _SHARED_ELEMENTS:
        yield bootstrap_weights(n, n_resamples, seed)
    else:
        yield from _count_chunks(n, n_resamples, seed)


@dataclass(frozen=True)
class BootstrapResult:
    """Difference metric(a) - metric(b), its confidence interval and a two-sided bootstrap p-value."""

    metric: str
    estimate: float
    low: float
    high: float
    p_value: float
    confidence: float
    method: str
    n: int
    n_resamples: int


def _task(record: dict[str, np.ndarray]) -> str:
    return str(task_of(record))


def _align(rec_a: dict[str, np.ndarray], rec_b: dict[str, np.ndarray]):
    """Both records sorted by sample id; they must cover the same ids."""
    for name, rec in (("a", rec_a), ("b", rec_b)):
        if "ids" not in rec:
            raise InputError(f"record {name} has no 'ids' array; paired statistics need sample ids")
    ia, ib = np.argsort(rec_a["ids"], kind="stable"), np.argsort(rec_b["ids"], kind="stable")
    if not np.array_equal(rec_a["ids"][ia], rec_b["ids"][ib]):
        raise InputError(
            f"paired comparison needs the same samples: records have {len(ia)} and {len(ib)} ids that differ"
        )
    keys_a = {k: v[ia] for k, v in rec_a.items()}
    keys_b = {k: v[ib] for k, v in rec_b.items()}
    return keys_a, keys_b


def _diff(rec_a, rec_b, metric, task, num_classes, weights) -> np.ndarray:
    return resampled_metric(rec_a, metric, task, num_classes, weights) - resampled_metric(
        rec_b, metric, task, num_classes, weights
    )


def _jackknife_acceleration(rec_a, rec_b, metric, task, num_classes, n: int) -> float:
    """BCa acceleration a = Σ U_i^3 / (6 (Σ U_i^2)^{3/2}), U_i = (n-1)(θ̄_(.) - θ_(i)) over leave-one-out pairs."""
    theta = _diff(rec_a, rec_b, metric, task, num_classes, LeaveOneGroupOut(n, n))
    u = (n - 1) * (theta.mean() - theta)
    den = (u**2).sum()
    if not np.isfinite(den) or den == 0:
        return 0.0
    return float((u**3).sum() / (6.0 * den**1.5))


def paired_bootstrap(
    rec_a: dict[str, np.ndarray],
    rec_b: dict[str, np.ndarray],
    metric: str = "accuracy",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
    num_classes: int | None = None,
) -> BootstrapResult:
    """Paired bootstrap of metric(a) - metric(b) over the samples both records share.

    Both models are resampled with the same multiplicities (pairs stay together), and the metric is
    evaluated for all resamples at once from a weight matrix (see metrics.resampled_metric), the
    one `bootstrap_weights` shares with every other test and cell over n samples.
    method : "percentile", or "bca" (bias-corrected and accelerated, Efron 1987: z0 from the share
        of resamples below the estimate, counting ties as half; acceleration from the jackknife
        over leave-one-pair-out samples), the same construction as scipy.stats.bootstrap.
    p_value : two-sided, from inverting the percentile interval:
        p = min(1, 2 min((1 + #{d* <= 0}) / (R + 1), (1 + #{d* >= 0}) / (R + 1))),
        never exactly 0 (Davison & Hinkley 1997, eq. 4.11). Identical models give p = 1.
    num_classes : only needed for metric="confidence".
    Result `method` says what was computed: the requested method; "percentile" when BCa was asked
    for but every resample lies on one side of the estimate (z0 infinite), so the percentile
    interval is given instead; "none" with NaN interval and p when fewer than `MIN_BOOTSTRAP_PAIRS`
    pairs are shared (1 or 2 pairs have at most 3 distinct resamples: an interval such as [1, 1]
    with p = 0.001 would claim a certainty the data cannot give), or when no resample is finite.
    """
    if method not in ("percentile", "bca"):
        raise one_of("bootstrap method", method, ("percentile", "bca"))
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 2:
        raise InputError(f"n_resamples must be >= 2, got {n_resamples}")
    task = _task(rec_a)
    if _task(rec_b) != task:
        raise InputError("paired comparison of a classification record with a regression record")
    if metric not in METRICS or METRICS[metric].task != task:
        raise one_of(f"{task} metric", metric, [m for m, s in METRICS.items() if s.task == task])
    rec_a, rec_b = _align(rec_a, rec_b)
    n = len(rec_a["ids"])
    if n == 0:
        raise InputError("paired bootstrap needs at least one sample")
    estimate = float(_diff(rec_a, rec_b, metric, task, num_classes, np.ones((1, n)))[0])
    nan = float("nan")
    if n < MIN_BOOTSTRAP_PAIRS:
        return BootstrapResult(metric, estimate, nan, nan, nan, confidence, "none", n, n_resamples)
    boot = np.concatenate(
        [_diff(rec_a, rec_b, metric, task, num_classes, w) for w in _weight_chunks(n, n_resamples, seed)]
    )
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        return BootstrapResult(metric, estimate, nan, nan, nan, confidence, "none", n, n_resamples)
    alpha = 1.0 - confidence
    probs = np.array([alpha / 2, 1 - alpha / 2])
    if method == "bca":
        below = ((boot < estimate).sum() + (boot <= estimate).sum()) / (2 * len(boot))
        z0 = special.ndtri(below)
        a = _jackknife_acceleration(rec_a, rec_b, metric, task, num_classes, n)
        z = special.ndtri(probs)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
        if not np.all(np.isfinite(probs)):  # all resamples on one side of the estimate
            probs = np.array([alpha / 2, 1 - alpha / 2])
            method = "percentile"
    low, high = np.quantile(boot, probs)
    r = len(boot)
    p = min(1.0, 2.0 * min((1 + (boot <= 0).sum()) / (r + 1), (1 + (boot >= 0).sum()) / (r + 1)))
    return BootstrapResult(metric, estimate, float(low), float(high), float(p), confidence, method, n, n_resamples)


# ---------------------------------------------------------------------------------------------
# Exact McNemar
# ---------------------------------------------------------------------------------------------


class McNemarResult(NamedTuple):
    """b = a right & b wrong, c = a wrong & b right; exact two-sided binomial p on b of b + c."""

    b: int
    c: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact McNemar test on paired correctness (same samples, same order).

    Under H0 the discordant pairs split as Binomial(b + c, 1/2); the two-sided p-value is
    min(1, 2 P(X <= min(b, c))), and 1 when there are no discordant pairs.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1:
        raise InputError(f"McNemar needs two 1-D correctness arrays of equal length, got {a.shape} and {b_.shape}")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    if b + c == 0:
        return McNemarResult(b, c, 1.0)
    p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), b + c, 0.5)))
    return McNemarResult(b, c, p)


# ---------------------------------------------------------------------------------------------
# Across training seeds (paired by seed or by condition)
# ---------------------------------------------------------------------------------------------


class MeanCI(NamedTuple):
    mean: float
    low: float
    high: float
    std: float
    n: int


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean with a t-based interval mean ± t_{(1+conf)/2, n-1} · s / √n (s with ddof=1).

    One value gives NaN bounds; NaNs in `values` are dropped.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, nan, 0)
    m = float(x.mean())
    if n == 1:
        return MeanCI(m, float("nan"), float("nan"), float("nan"), 1)
    s = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * s / np.sqrt(n)
    return MeanCI(m, m - half, m + half, s, n)


class TestResult(NamedTuple):
    statistic: float
    p_value: float
    n: int


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"paired test needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))  # the NaN rule: a pair with a missing side is dropped
    return a[keep], b[keep]


def paired_wilcoxon(a, b, zero_method: str = "zsplit") -> TestResult:
    """Wilcoxon signed-rank test of a - b (scipy.stats.wilcoxon, two-sided).

    zero_method "zsplit" splits the ranks of zero differences between the two sides, as Demšar
    (2006) recommends; statistic = min(R+, R-). All differences zero gives statistic 0, p = 1.
    """
    a, b = _paired(a, b)
    if len(a) == 0:
        return TestResult(float("nan"), float("nan"), 0)
    if np.all(a == b):
        return TestResult(0.0, 1.0, len(a))
    res = stats.wilcoxon(a, b, zero_method=zero_method)
    return TestResult(float(res.statistic), float(res.pvalue), len(a))


def paired_ttest(a, b) -> TestResult:
    """Paired t-test of a - b (scipy.stats.ttest_rel, two-sided).

    Constant differences (zero spread, e.g. a - b = [1, 1, 1]) and fewer than 2 pairs give
    statistic and p NaN: the t statistic is undefined there (scipy returns t = ±inf, p = 0 for
    a nonzero constant, which would read as certainty from three numbers).
    """
    a, b = _paired(a, b)
    d = a - b
    if len(d) < 2 or np.all(d == d[0]):
        return TestResult(float("nan"), float("nan"), len(a))
    res = stats.ttest_rel(a, b)
    return TestResult(float(res.statistic), float(res.pvalue), len(a))


# ---------------------------------------------------------------------------------------------
# Many models over many conditions / datasets (Demšar 2006)
# ---------------------------------------------------------------------------------------------


def _scores(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise InputError(f"scores must be a (datasets >= 2) x (models >= 2) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("scores contain NaN or infinite values; drop those conditions first")
    return x


def rank_scores(scores, higher_is_better: bool = True) -> np.ndarray:
    """Ranks within each row (dataset), 1 = best, ties get their average rank."""
    x = _scores(scores)
    return stats.rankdata(-x if higher_is_better else x, axis=1)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test on N datasets × k models (Demšar 2006, Sec. 3.2.2).

    chi2 = 12N / (k(k+1)) [Σ_j R_j² - k(k+1)²/4] (R_j average ranks), divided by the tie
    correction 1 - Σ(t³ - t) / (N(k³ - k)) when requested (as scipy.stats.friedmanchisquare does);
    Iman–Davenport F = (N-1) chi2 / (N(k-1) - chi2) with (k-1, (k-1)(N-1)) degrees of freedom.
    With tied scores the two differ (16.04 uncorrected against scipy's 19.45 on a 14 x 5 table
    with ties, tests/test_stats.py); `tie_corrected` records which one chi2 is, `formula` says it
    in words for a report.
    """

    chi2: float
    p_value: float
    f_stat: float
    f_p_value: float
    avg_ranks: np.ndarray
    n: int
    k: int
    tie_corrected: bool = False

    @property
    def formula(self) -> str:
        if self.tie_corrected:
            return "Friedman chi2 with tie correction (as scipy.stats.friedmanchisquare)"
        return "Friedman chi2 without tie correction (Demšar 2006, eq. for chi2_F)"


def friedman(scores, higher_is_better: bool = True, tie_correction: bool = False) -> FriedmanResult:
    """Friedman test; `scores` is (N datasets, k models). Default: Demšar's formula without tie correction."""
    ranks = rank_scores(scores, higher_is_better)
    n, k = ranks.shape
    r = ranks.mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4.0)
    if tie_correction:
        ties = 0.0
        for row in ranks:
            _, t = np.unique(row, return_counts=True)
            ties += np.sum(t**3 - t)
        corr = 1.0 - ties / (n * (k**3 - k))
        chi2 = chi2 / corr if corr > 0 else float("nan")
    p = float(stats.chi2.sf(chi2, k - 1))
    den = n * (k - 1) - chi2
    f = (n - 1) * chi2 / den if den > 0 else float("inf")
    pf = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0
    return FriedmanResult(float(chi2), p, float(f), pf, r, n, k, tie_correction)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi critical value q_α = studentized range quantile (1-α; k, ∞) / √2 (Demšar's Table 5a)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference CD = q_α √(k(k+1) / (6N)) of average ranks (Demšar 2006, Sec. 3.2.2)."""
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def nemenyi_pvalues(avg_ranks, n: int) -> np.ndarray:
    """(k, k) two-sided Nemenyi p-values of average-rank differences over n datasets.

    z = |R_i - R_j| / √(k(k+1)/(6N)); p_ij = studentized_range.sf(z √2, k, ∞), so p_ij < α
    exactly when |R_i - R_j| > CD.
    """
    r = np.asarray(avg_ranks, dtype=np.float64)
    k = len(r)
    z = np.abs(r[:, None] - r[None, :]) / np.sqrt(k * (k + 1) / (6.0 * n))
    p = stats.studentized_range.sf(z * np.sqrt(2), k, np.inf)
    np.fill_diagonal(p, 1.0)
    return np.minimum(p, 1.0)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, same shape as the input.

    Sorted ascending p_(1..m) over the m non-NaN values: p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where p~ <= α is Holm's step-down procedure at level α. NaNs stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    out = np.full_like(flat, np.nan)
    ok = np.flatnonzero(np.isfinite(flat))
    m = len(ok)
    if m:
        order = ok[np.argsort(flat[ok], kind="stable")]
        adj = np.minimum(1.0, (m - np.arange(m)) * flat[order])
        out[order] = np.maximum.accumulate(adj)
    return out.reshape(p.shape)


def wilcoxon_holm(scores, zero_method: str = "zsplit") -> tuple[np.ndarray, np.ndarray]:
    """All-pairs Wilcoxon signed-rank tests over datasets, Holm-corrected.

    Returns (p, p_holm), two (k, k) symmetric arrays with 1 on the diagonal; p_holm is corrected
    over the k(k-1)/2 pairs.
    """
    x = _scores(scores)
    k = x.shape[1]
    p = np.ones((k, k))
    pairs = list(combinations(range(k), 2))
    raw = np.array([paired_wilcoxon(x[:, i], x[:, j], zero_method).p_value for i, j in pairs])
    adj = holm(raw)
    ph = np.ones((k, k))
    for (i, j), pr, pa in zip(pairs, raw, adj):
        p[i, j] = p[j, i] = pr
        ph[i, j] = ph[j, i] = pa
    return p, ph


def cliques(avg_ranks, significant: np.ndarray) -> list[list[int]]:
    """Groups of models joined by a bar in a critical-difference diagram.

    Models sorted by average rank; a clique is a maximal run of consecutive models in which no pair
    differs significantly; runs of one model and runs inside another are dropped.
    """
    r = np.asarray(avg_ranks, dtype=np.float64)
    order = list(np.argsort(r, kind="stable"))
    k = len(order)
    runs = []
    for start in range(k):
        stop = start
        while stop + 1 < k and not any(significant[order[i], order[stop + 1]] for i in range(start, stop + 1)):
            stop += 1
        runs.append((start, stop))
    kept = []
    for s, e in runs:
        if e > s and not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in runs):
            if (s, e) not in kept:
                kept.append((s, e))
    return [[int(order[i]) for i in range(s, e + 1)] for s, e in kept]


@dataclass(frozen=True)
class CDResult:
    """What a critical-difference diagram draws: names, average ranks (1 = best), CD and cliques.

    test "nemenyi": pairs differ when |R_i - R_j| > cd; test "wilcoxon-holm": when the Holm-corrected
    Wilcoxon p < alpha (cd is still given for reference). cliques are lists of indices into names.
    """

    names: list[str]
    avg_ranks: np.ndarray
    cd: float
    alpha: float
    test: str
    pvalues: np.ndarray
    significant: np.ndarray
    cliques: list[list[int]]
    friedman: FriedmanResult

    @property
    def ranks(self) -> dict[str, float]:
        """Average rank per model name (what plots.critical_difference takes)."""
        return {n: float(r) for n, r in zip(self.names, self.avg_ranks)}

    @property
    def clique_names(self) -> list[list[str]]:
        return [[self.names[i] for i in c] for c in self.cliques]


def critical_difference(
    scores,
    names: list[str],
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    test: str = "nemenyi",
    tie_correction: bool = False,
) -> CDResult:
    """Friedman test plus post-hoc comparison of k models over N datasets/conditions (rows).

    tie_correction : passed to `friedman`; `result.friedman.formula` says which statistic it is.
    """
    if test not in ("nemenyi", "wilcoxon-holm"):
        raise one_of("post-hoc test", test, ("nemenyi", "wilcoxon-holm"))
    x = _scores(scores)
    if len(names) != x.shape[1]:
        raise InputError(f"{len(names)} names for {x.shape[1]} score columns")
    fr = friedman(x, higher_is_better, tie_correction)
    cd = nemenyi_cd(fr.k, fr.n, alpha)
    if test == "nemenyi":
        p = nemenyi_pvalues(fr.avg_ranks, fr.n)
        sig = np.abs(fr.avg_ranks[:, None] - fr.avg_ranks[None, :]) > cd
    else:
        _, p = wilcoxon_holm(x)
        sig = p < alpha
    np.fill_diagonal(sig, False)
    return CDResult(list(names), fr.avg_ranks, cd, alpha, test, p, sig, cliques(fr.avg_ranks, sig), fr)


# ---------------------------------------------------------------------------------------------
# Effect sizes
# ---------------------------------------------------------------------------------------------


def cliffs_delta(x, y) -> float:
    """Cliff's δ = (#{x_i > y_j} - #{x_i < y_j}) / (n_x n_y), in O((n+m) log m) by sorting y.

    NaN values are dropped first (the module's NaN rule); np.sort would otherwise put them last
    and count them as larger than every value. Nothing left on one side gives NaN.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(x) == 0 or len(y) == 0:
        raise InputError("Cliff's delta needs two non-empty samples")
    x, ys = x[~np.isnan(x)], np.sort(y[~np.isnan(y)])
    if len(x) == 0 or len(ys) == 0:
        return float("nan")
    below = np.searchsorted(ys, x, side="left")  # y_j < x_i
    above = len(ys) - np.searchsorted(ys, x, side="right")  # y_j > x_i
    return float((below.sum() - above.sum()) / (len(x) * len(ys)))


def cohens_d(a, b, *, paired: bool) -> float:
    """Cohen's d of a - b.

    paired=True: d_z = mean(a - b) / sd(a - b) (ddof=1), for the same seeds/conditions in a and b.
    paired=False: d = (mean a - mean b) / s_pooled, s_pooled² = ((n_a-1)s_a² + (n_b-1)s_b²) / (n_a+n_b-2).
    Zero spread gives ±inf (or NaN when the means are equal).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if paired:
        a, b = _paired(a, b)
        d = a - b
        num, den = d.mean(), d.std(ddof=1)
    else:
        na, nb = len(a), len(b)
        if na < 2 or nb < 2:
            raise InputError(f"pooled Cohen's d needs >= 2 values per group, got {na} and {nb}")
        num = a.mean() - b.mean()
        den = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))
