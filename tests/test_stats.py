"""Statistics checked against scipy, Demšar (2006)'s worked example, or brute force."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from robustbench_mm import stats as rs
from robustbench_mm.errors import InputError

# Demšar (2006), Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 UCI data sets (rows:
# adult, breast cancer, breast cancer wisconsin, cmc, ionosphere, iris, liver disorders, lung
# cancer, lymphography, mushroom, primary tumor, rheum, voting, wine).
DEMSAR = np.array(
    [
        [0.763, 0.768, 0.771, 0.798],
        [0.599, 0.591, 0.590, 0.569],
        [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657],
        [0.882, 0.888, 0.886, 0.898],
        [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685],
        [0.583, 0.583, 0.563, 0.625],
        [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000],
        [0.940, 0.962, 0.965, 0.962],
        [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.975, 0.975],
        [0.957, 0.978, 0.946, 0.970],
    ]
)
# The printed table rounds voting's C4.5+cf and C4.5+m+cf to the same 0.975, but the paper's
# average ranks (2.893, 1.964) rank C4.5+cf ahead there, i.e. its unrounded AUC was higher.
DEMSAR_RANKED = DEMSAR.copy()
DEMSAR_RANKED[12, 2] = 0.9751


def test_friedman_reproduces_demsars_worked_example():
    fr = rs.friedman(DEMSAR_RANKED)
    np.testing.assert_allclose(fr.avg_ranks, [3.143, 2.000, 2.893, 1.964], atol=5e-4)
    assert fr.chi2 == pytest.approx(9.28, abs=0.005)
    assert fr.f_stat == pytest.approx(3.69, abs=0.005)
    assert fr.f_stat > stats.f.ppf(0.95, 3, 39)  # Demšar: F(3, 39) critical value 2.85, rejected
    # the table as printed: ties at 0.975 share ranks 2.5
    np.testing.assert_allclose(rs.friedman(DEMSAR).avg_ranks, [44 / 14, 28 / 14, 41 / 14, 27 / 14])


def test_friedman_with_tie_correction_equals_scipy():
    for table in (DEMSAR, DEMSAR_RANKED):
        want = stats.friedmanchisquare(*table.T)
        got = rs.friedman(table, tie_correction=True)
        assert got.chi2 == pytest.approx(want.statistic) and got.p_value == pytest.approx(want.pvalue)
    x = np.random.default_rng(0).normal(size=(9, 5))  # no ties: both forms agree
    assert rs.friedman(x).chi2 == pytest.approx(stats.friedmanchisquare(*x.T).statistic)
    # lower-is-better ranks the same table in reverse
    assert rs.friedman(-x, higher_is_better=False).chi2 == pytest.approx(rs.friedman(x).chi2)


@pytest.mark.parametrize(
    "k, alpha, q",
    [(2, 0.05, 1.960), (3, 0.05, 2.343), (4, 0.05, 2.569), (10, 0.05, 3.164), (2, 0.10, 1.645), (4, 0.10, 2.291)],
)
def test_nemenyi_critical_values_match_demsars_table_5(k, alpha, q):
    assert rs.nemenyi_q(k, alpha) == pytest.approx(q, abs=1e-3)  # the table truncates to 3 decimals


def test_critical_difference_of_the_worked_example():
    assert rs.nemenyi_cd(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)
    names = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
    at05 = rs.critical_difference(DEMSAR_RANKED, names, alpha=0.05)
    assert not at05.significant.any()  # Demšar: 3.143 - 1.964 = 1.18 < 1.25
    assert at05.clique_names == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]
    at10 = rs.critical_difference(DEMSAR_RANKED, names, alpha=0.10)
    # Demšar: at alpha = 0.10 (CD = 1.12) C4.5 is worse than C4.5+m and C4.5+m+cf, nothing else
    pairs = {tuple(sorted((names[i], names[j]))) for i, j in zip(*np.nonzero(np.triu(at10.significant)))}
    assert pairs == {("C4.5", "C4.5+m"), ("C4.5", "C4.5+m+cf")}
    assert at10.clique_names == [["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]
    # Nemenyi p-values agree with the CD rule
    diff = np.abs(at10.avg_ranks[:, None] - at10.avg_ranks[None, :])
    np.testing.assert_array_equal(at10.pvalues < 0.10, diff > at10.cd)


def test_wilcoxon_reproduces_demsars_c45_versus_c45m():
    # Demšar Sec. 3.1.3: R+ = 93, R- = 12 (the zero difference on mushroom split), T = 12
    res = rs.paired_wilcoxon(DEMSAR[:, 1], DEMSAR[:, 0])
    assert res.statistic == 12.0 and res.n == 14
    assert res.p_value < 0.05
    assert rs.paired_wilcoxon(DEMSAR[:, 0], DEMSAR[:, 0]) == (0.0, 1.0, 14)


def test_wilcoxon_holm_corrects_the_pairwise_scipy_p_values():
    p, ph = rs.wilcoxon_holm(DEMSAR_RANKED)
    raw = stats.wilcoxon(DEMSAR_RANKED[:, 0], DEMSAR_RANKED[:, 3], zero_method="zsplit").pvalue
    assert p[0, 3] == pytest.approx(raw) and p[3, 0] == p[0, 3]
    upper = np.triu_indices(4, 1)
    np.testing.assert_allclose(ph[upper], _holm_brute(p[upper]))


def _holm_brute(p: np.ndarray) -> np.ndarray:
    """Adjusted p = the smallest alpha at which Holm's step-down procedure rejects each hypothesis."""
    alphas = np.unique(np.r_[np.linspace(0, 1, 2001), np.minimum(1, np.outer(p, np.arange(1, len(p) + 1)).ravel())])
    out = np.ones(len(p))
    for a in alphas[::-1]:
        order = np.argsort(p)
        for step, i in enumerate(order):
            if p[i] * (len(p) - step) > a:
                break
            out[i] = min(out[i], a)
    return out


def test_holm_equals_the_step_down_procedure_and_ignores_nans():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(rs.holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.uniform(0, 0.2, 7)
        np.testing.assert_allclose(rs.holm(q), _holm_brute(q), atol=1e-12)
    with_nan = rs.holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])
    adj = rs.holm(rng.uniform(size=20))
    assert np.all(np.diff(adj[np.argsort(rng.uniform(size=20) * 0 + adj)]) >= 0)


def test_cliffs_delta_equals_brute_force_with_ties():
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 6, 40), rng.integers(1, 7, 55)
    brute = np.mean([np.sign(a - b) for a in x for b in y])
    assert rs.cliffs_delta(x, y) == pytest.approx(brute)
    assert rs.cliffs_delta([1, 2], [3, 4]) == -1.0


def test_cohens_d_relates_to_scipy_t_statistics():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 1, 12), rng.normal(0, 1.5, 12)
    assert rs.cohens_d(a, b, paired=True) == pytest.approx(stats.ttest_rel(a, b).statistic / np.sqrt(12))
    c = rng.normal(0, 2, 20)
    t = stats.ttest_ind(a, c).statistic
    assert rs.cohens_d(a, c, paired=False) == pytest.approx(t * np.sqrt(1 / 12 + 1 / 20))


def test_mcnemar_exact_equals_scipy_binomtest():
    rng = np.random.default_rng(4)
    for p_a, p_b in ((0.7, 0.7), (0.8, 0.6), (0.55, 0.6)):
        ca, cb = rng.uniform(size=200) < p_a, rng.uniform(size=200) < p_b
        res = rs.mcnemar_exact(ca, cb)
        assert (res.b, res.c) == (int(np.sum(ca & ~cb)), int(np.sum(~ca & cb)))
        assert res.p_value == pytest.approx(stats.binomtest(res.b, res.b + res.c, 0.5).pvalue)
    assert rs.mcnemar_exact(np.ones(5, bool), np.ones(5, bool)) == (0, 0, 1.0)


def test_mean_ci_and_paired_ttest_match_scipy():
    x = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    res = rs.mean_ci(x)
    ci = stats.ttest_1samp(x, 0).confidence_interval(0.95)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high))
    assert res.mean == pytest.approx(x.mean()) and res.n == 5
    assert np.isnan(rs.mean_ci([0.8]).low)
    y = x - np.array([0.02, 0.01, 0.03, 0.0, 0.02])
    assert rs.paired_ttest(x, y).p_value == pytest.approx(stats.ttest_rel(x, y).pvalue)


# --- paired bootstrap ------------------------------------------------------------------------


def _pair(n: int, seed: int):
    """Two classifiers' records on the same samples, the second a little worse, ids shuffled in b."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 4, n)
    recs = []
    for skill in (1.6, 1.2):
        logits = rng.normal(size=(n, 4))
        logits[np.arange(n), target] += skill
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        recs.append(
            {
                "ids": np.arange(n, dtype=np.int64),
                "target": target,
                "pred": p.argmax(1),
                "conf": p.max(1),
                "p_true": p[np.arange(n), target],
                "sq_prob": (p**2).sum(1),
                "entropy": -(p * np.log(p)).sum(1),
            }
        )
    return recs


def test_bootstrap_counts_are_multiplicities_independent_of_chunking(monkeypatch):
    counts = rs.bootstrap_counts(50, 30, seed=7)
    assert counts.shape == (30, 50) and np.all(counts.sum(1) == 50)
    np.testing.assert_array_equal(counts, rs.bootstrap_counts(50, 30, seed=7))
    monkeypatch.setattr(rs, "_CHUNK_ELEMENTS", 120)  # two rows per chunk
    np.testing.assert_array_equal(counts, rs.bootstrap_counts(50, 30, seed=7))
    assert not np.array_equal(counts, rs.bootstrap_counts(50, 30, seed=8))


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_accuracy_difference_interval_agrees_with_scipy_paired_bootstrap(method):
    a, b = _pair(400, seed=0)
    ours = rs.paired_bootstrap(a, b, "accuracy", n_resamples=4000, seed=1, method=method)
    ca, cb = (a["pred"] == a["target"]).astype(float), (b["pred"] == b["target"]).astype(float)
    ref = stats.bootstrap(
        (ca, cb), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
        n_resamples=4000, method="BCa" if method == "bca" else "percentile", random_state=2,
    ).confidence_interval
    assert ours.estimate == pytest.approx(ca.mean() - cb.mean())
    assert ours.low == pytest.approx(ref.low, abs=0.008) and ours.high == pytest.approx(ref.high, abs=0.008)


def test_bca_of_a_skewed_nll_difference_agrees_with_scipy():
    a, b = _pair(60, seed=3)
    nll_a = np.minimum(np.random.default_rng(9).lognormal(0.0, 1.5, 60), 25.0)  # heavy tail, no clipping at 1e-12
    a["p_true"] = np.exp(-nll_a)
    na, nb = -np.log(a["p_true"]), -np.log(b["p_true"])
    ref = stats.bootstrap(
        (na, nb), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
        n_resamples=8000, method="BCa", random_state=0,
    ).confidence_interval
    bca = rs.paired_bootstrap(a, b, "nll", n_resamples=8000, seed=0, method="bca")
    pct = rs.paired_bootstrap(a, b, "nll", n_resamples=8000, seed=0, method="percentile")
    width = ref.high - ref.low
    assert bca.low == pytest.approx(ref.low, abs=0.05 * width)
    assert bca.high == pytest.approx(ref.high, abs=0.05 * width)
    assert pct.high < bca.high - 0.06 * width  # the correction matters here, so the check can fail


@pytest.mark.parametrize("metric", ["macro_f1", "ece"])
def test_non_decomposable_metrics_agree_with_scipy_on_resampled_indices(metric):
    from robustbench_mm.metrics import cell_metrics

    a, b = _pair(200, seed=5)

    def stat(idx):  # the metric on the explicitly resampled records
        sub_a = {k: v[idx] for k, v in a.items()}
        sub_b = {k: v[idx] for k, v in b.items()}
        return cell_metrics(sub_a, "classification", 4)[metric] - cell_metrics(sub_b, "classification", 4)[metric]

    ref = stats.bootstrap(
        (np.arange(200),), stat, vectorized=False, n_resamples=600, method="percentile", random_state=0
    ).confidence_interval
    ours = rs.paired_bootstrap(a, b, metric, n_resamples=2000, seed=0)
    width = ref.high - ref.low
    assert ours.low == pytest.approx(ref.low, abs=0.1 * width) and ours.high == pytest.approx(ref.high, abs=0.1 * width)


def test_bootstrap_pairs_samples_by_id_and_reports_sensible_p_values():
    a, b = _pair(300, seed=6)
    perm = np.random.default_rng(0).permutation(300)
    shuffled = {k: v[perm] for k, v in b.items()}
    r1 = rs.paired_bootstrap(a, b, "brier", n_resamples=500, seed=4)
    r2 = rs.paired_bootstrap(a, shuffled, "brier", n_resamples=500, seed=4)
    assert (r1.low, r1.high, r1.estimate) == pytest.approx((r2.low, r2.high, r2.estimate))
    same = rs.paired_bootstrap(a, a, "accuracy", n_resamples=500, seed=0)
    assert same.p_value == 1.0 and same.low == same.high == 0.0
    far = rs.paired_bootstrap(a, b, "nll", n_resamples=500, seed=0)
    assert far.high < 0 and far.p_value == pytest.approx(2 / 501)
    with pytest.raises(InputError, match="same samples"):
        rs.paired_bootstrap(a, {k: v[:-1] for k, v in b.items()}, "accuracy")


# ---------------------------------------------------------------------------------------------
# Degenerate inputs and the NaN rule (issue 13, statistics edge cases)
# ---------------------------------------------------------------------------------------------


def _constant_record(p_true: float, n: int) -> dict[str, np.ndarray]:
    """A classifier record whose every sample has the same probability on the true class."""
    p = np.full(n, p_true, dtype=np.float32)
    zeros = np.zeros(n, dtype=np.int64)
    return {"ids": np.arange(n, dtype=np.int64), "target": zeros, "pred": zeros, "conf": p, "p_true": p,
            "sq_prob": np.ones(n, np.float32), "entropy": np.zeros(n, np.float32)}


@pytest.mark.parametrize("n", [1, 2])
def test_bootstrap_of_one_or_two_pairs_is_nan_not_a_certain_interval(n):
    a, b = _pair(n, seed=3)
    a["pred"], b["pred"] = a["target"].copy(), (a["target"] + 1) % 4  # a right, b wrong on every pair
    for method in ("percentile", "bca"):
        r = rs.paired_bootstrap(a, b, "accuracy", n_resamples=500, seed=0, method=method)
        assert r.estimate == 1.0 and r.n == n and r.method == "none"
        assert np.isnan(r.low) and np.isnan(r.high) and np.isnan(r.p_value)
    # McNemar on the same pairs: n discordant pairs, p = min(1, 2 / 2**n) (1.0 and 0.5)
    assert rs.mcnemar_exact(np.ones(n, bool), np.zeros(n, bool)).p_value == min(1.0, 2.0 / 2**n)
    three = rs.paired_bootstrap(*_pair(3, seed=3), "accuracy", n_resamples=200, seed=0)
    assert three.method == "percentile" and np.isfinite(three.low)


def test_bca_that_falls_back_to_percentile_says_percentile():
    # Constant per-sample NLLs: every resample equals the estimate up to the last bit of the
    # float sums; at n = 9 here they all land on one side, z0 is infinite and BCa is undefined.
    a, b = _constant_record(0.3, 9), _constant_record(0.2, 9)
    r = rs.paired_bootstrap(a, b, "nll", n_resamples=200, seed=0, method="bca")
    pct = rs.paired_bootstrap(a, b, "nll", n_resamples=200, seed=0, method="percentile")
    assert r.method == "percentile"
    assert (r.low, r.high) == (pct.low, pct.high)
    regular = rs.paired_bootstrap(*_pair(200, seed=1), "nll", n_resamples=300, seed=0, method="bca")
    assert regular.method == "bca"


def test_cliffs_delta_drops_nan_values():
    assert rs.cliffs_delta([1, np.nan, 3], [2, 2]) == 0.0  # = cliffs_delta([1, 3], [2, 2])
    assert rs.cliffs_delta([1, 3], [2, np.nan, 2]) == 0.0
    assert rs.cliffs_delta([4, np.nan], [1, 2]) == 1.0
    assert np.isnan(rs.cliffs_delta([np.nan], [1.0]))


def test_paired_tests_drop_pairs_with_a_nan_side():
    a = np.array([0.7, 0.8, np.nan, 0.75, 0.9, 0.6])
    b = np.array([0.6, 0.7, 0.5, 0.7, np.nan, 0.61])
    keep = ~(np.isnan(a) | np.isnan(b))
    t = rs.paired_ttest(a, b)
    assert t.n == 4 and t.p_value == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    w = rs.paired_wilcoxon(a, b)
    assert w.n == 4 and w.p_value == pytest.approx(stats.wilcoxon(a[keep], b[keep], zero_method="zsplit").pvalue)


def test_ttest_of_constant_differences_is_nan_as_documented():
    for a, b in (([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]), ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), ([1.0], [0.0])):
        r = rs.paired_ttest(a, b)
        assert np.isnan(r.statistic) and np.isnan(r.p_value)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isinf(stats.ttest_rel([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]).statistic)  # what scipy alone says


def test_friedman_says_which_statistic_it_computed_with_ties():
    rng = np.random.default_rng(5)
    table = rng.integers(0, 3, size=(14, 5)).astype(float)  # many ties within rows
    ranks = stats.rankdata(-table, axis=1)
    n, k = ranks.shape
    plain = 12 * n / (k * (k + 1)) * (np.sum(ranks.mean(0) ** 2) - k * (k + 1) ** 2 / 4)
    uncorrected = rs.friedman(table)
    corrected = rs.friedman(table, tie_correction=True)
    assert uncorrected.chi2 == pytest.approx(plain) and not uncorrected.tie_corrected
    assert corrected.chi2 == pytest.approx(stats.friedmanchisquare(*table.T).statistic) and corrected.tie_corrected
    assert corrected.chi2 > uncorrected.chi2 * 1.05  # the ties matter here, so the check can fail
    assert "without tie correction" in uncorrected.formula and "with tie correction" in corrected.formula
    names = [f"m{i}" for i in range(k)]
    assert rs.critical_difference(table, names, tie_correction=True).friedman.chi2 == pytest.approx(corrected.chi2)


def test_sign_accuracy_does_not_count_a_nan_output_as_negative():
    from robustbench_mm.metrics import resampled_metric

    target = np.array([-1.0, -2.0, 3.0, 0.5])
    finite = {"ids": np.arange(4), "target": target, "output": np.array([-0.1, -1.0, 2.0, 0.1])}
    assert resampled_metric(finite, "sign_accuracy", "regression", None, np.ones(4))[0] == 1.0
    # a NaN output on a negative-target sample: before, (NaN > 0) is False and it scored a hit
    with_nan = dict(finite, output=np.array([np.nan, -1.0, 2.0, 0.1]))
    for metric in ("sign_accuracy", "mae"):
        assert np.isnan(resampled_metric(with_nan, metric, "regression", None, np.ones(4))[0])
