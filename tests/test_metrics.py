"""Per-cell metrics and robustness summaries, each checked against a brute-force or hand computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustbench_mm.errors import InputError
from robustbench_mm.metrics import METRICS, cell_metrics, resampled_metric, task_metrics
from robustbench_mm.summaries import (
    corruption_errors,
    level_summary,
    mean_corruption_errors,
    modality_reliance,
    modality_shapley,
    relative_cells,
)

K = 5


def _probs_record(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A classification record derived from an explicit probability matrix (kept for brute force)."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K)) * 2.0
    logits[np.arange(n), target] += rng.normal(1.0, 1.5, n)  # informative but imperfect
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    rec = {
        "ids": np.arange(n, dtype=np.int64) * 7 + 3,
        "target": target.astype(np.int64),
        "pred": p.argmax(1).astype(np.int64),
        "conf": p.max(1).astype(np.float32),
        "p_true": p[np.arange(n), target].astype(np.float32),
        "sq_prob": (p**2).sum(1).astype(np.float32),
        "entropy": (-(p * np.log(p)).sum(1)).astype(np.float32),
        "affected": np.ones(n, bool),
    }
    return rec, p


def _brute_classification(target: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Textbook definitions, sample by sample / class by class / bin by bin."""
    n = len(target)
    pred = p.argmax(1)
    f1s = []
    for k in range(K):
        tp = sum(1 for t, q in zip(target, pred) if t == k and q == k)
        fp = sum(1 for t, q in zip(target, pred) if t != k and q == k)
        fn = sum(1 for t, q in zip(target, pred) if t == k and q != k)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    ece = 0.0
    conf = p.max(1).astype(np.float32).astype(np.float64)
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        in_bin = [(c > lo or (b == 0 and c == 0)) and c <= hi for c in conf]
        idx = [i for i in range(n) if in_bin[i]]
        if idx:
            acc = np.mean([pred[i] == target[i] for i in idx])
            ece += len(idx) / n * abs(acc - np.mean(conf[idx]))
    onehot = np.eye(K)[target]
    return {
        "accuracy": float(np.mean(pred == target)),
        "macro_f1": float(np.mean(f1s)),
        "nll": float(np.mean([-math.log(p[i, target[i]]) for i in range(n)])),
        "ece": ece,
        "brier": float(np.mean(((p - onehot) ** 2).sum(1))),
        "confidence": float(np.mean([1 + (p[i] * np.log(p[i])).sum() / math.log(K) for i in range(n)])),
    }


def test_classification_metrics_match_brute_force_definitions():
    rec, p = _probs_record(500, seed=1)
    got = cell_metrics(rec, "classification", K)
    want = _brute_classification(rec["target"], p)
    assert set(got) == set(want) == set(task_metrics("classification"))
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=2e-6), name
    assert 0.2 < got["accuracy"] < 0.95  # the fixture is neither trivial nor hopeless


def test_ece_of_a_hand_example():
    # bins of width 1/15: 0.95 and 1.0 share the last bin, 0.5 sits in bin 7 (7/15, 8/15]
    rec = {
        "target": np.array([0, 0, 1, 1]),
        "pred": np.array([0, 1, 1, 0]),
        "conf": np.array([0.95, 1.0, 0.5, 0.5]),
        "p_true": np.array([0.95, 0.0, 0.5, 0.5]),
        "sq_prob": np.ones(4),
        "entropy": np.zeros(4),
    }
    # last bin: acc 1/2, conf 0.975 -> 2/4 * 0.475; bin 7: acc 1/2, conf 0.5 -> 0
    assert cell_metrics(rec, "classification", 2)["ece"] == pytest.approx(0.2375)
    # p_true = 0 is clipped, not infinite
    assert cell_metrics(rec, "classification", 2)["nll"] == pytest.approx(
        (-math.log(0.95) - math.log(1e-12) - 2 * math.log(0.5)) / 4
    )


def test_regression_metrics_against_scipy_and_by_hand():
    rng = np.random.default_rng(3)
    y = np.round(rng.normal(size=300), 1)  # rounding makes some targets exactly 0
    y[:5] = 0.0
    out = y + rng.normal(scale=0.7, size=300)
    got = cell_metrics({"target": y, "output": out}, "regression", None)
    assert got["mae"] == pytest.approx(np.mean(np.abs(out - y)))
    assert got["pearson"] == pytest.approx(stats.pearsonr(out, y)[0], abs=1e-10)
    nz = [i for i in range(300) if y[i] != 0]
    assert got["sign_accuracy"] == pytest.approx(np.mean([(out[i] > 0) == (y[i] > 0) for i in nz]))
    tiny = cell_metrics(
        {"target": np.array([-1.0, 0.0, 2.0, 3.0]), "output": np.array([0.5, -1.0, 1.0, -0.1])}, "regression", None
    )
    assert tiny["sign_accuracy"] == pytest.approx(1 / 3)  # the zero target is excluded
    flat = cell_metrics({"target": np.array([1.0, 2.0, 3.0]), "output": np.full(3, 2.0)}, "regression", None)
    assert math.isnan(flat["pearson"])


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "nll", "ece", "brier", "confidence"])
def test_weighted_evaluation_equals_the_metric_on_the_materialised_resample(metric):
    rec, p = _probs_record(120, seed=5)
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, 120, 120), minlength=120) for _ in range(4)])
    got = resampled_metric(rec, metric, "classification", K, counts)
    for r in range(4):
        idx = np.repeat(np.arange(120), counts[r])
        assert got[r] == pytest.approx(_brute_classification(rec["target"][idx], p[idx])[metric], abs=2e-6)


def test_weighted_pearson_equals_pearson_of_the_resample():
    rng = np.random.default_rng(2)
    y = rng.normal(size=80)
    rec = {"target": y, "output": 2 * y + rng.normal(size=80)}
    counts = np.bincount(rng.integers(0, 80, 80), minlength=80)[None]
    idx = np.repeat(np.arange(80), counts[0])
    got = resampled_metric(rec, "pearson", "regression", None, counts)[0]
    assert got == pytest.approx(stats.pearsonr(rec["output"][idx], y[idx])[0], abs=1e-10)


def test_bad_records_raise_input_errors():
    rec, _ = _probs_record(10, seed=0)
    del rec["sq_prob"]
    with pytest.raises(InputError, match="sq_prob"):
        cell_metrics(rec, "classification", K)
    with pytest.raises(InputError, match="task"):
        cell_metrics(rec, "ranking", K)
    rec, _ = _probs_record(10, seed=0)
    with pytest.raises(InputError, match="num_classes"):
        cell_metrics(rec, "classification", None)


def test_metric_table_states_directions():
    assert METRICS["accuracy"].higher_is_better and not METRICS["ece"].higher_is_better
    assert not METRICS["mae"].higher_is_better and METRICS["pearson"].task == "regression"


# --- summaries over a hand-built cells table -------------------------------------------------


def _row(model, family, name, mods, level, acc, seed=0, rate=1.0, **extra):
    return dict(model=model, seed=seed, family=family, name=name, modalities=mods, level=level, param=np.nan,
                rate=rate, group="g", n=100, accuracy=acc, **extra)


def _cells() -> pd.DataFrame:
    rows = [
        _row("A", "clean", "clean", "", 0, 0.9),
        _row("A", "corruption", "noise", "img", 1, 0.8),
        _row("A", "corruption", "noise", "img", 3, 0.5),  # uneven spacing: levels 1 and 3
        _row("B", "clean", "clean", "", 0, 0.8),
        _row("B", "corruption", "noise", "img", 1, 0.75),
        _row("B", "corruption", "noise", "img", 3, 0.6),
    ]
    return pd.DataFrame(rows)


def test_level_summary_uses_true_spacing_and_the_clean_point():
    s = level_summary(_cells(), baseline="B").set_index("model")
    area = (0.9 + 0.8) / 2 * 1 + (0.8 + 0.5) / 2 * 2  # trapezoid over x = 0, 1, 3
    assert s.loc["A", "auc"] == pytest.approx(area / (0.9 * 3))
    assert s.loc["A", "relative_robustness"] == pytest.approx(area / 3)
    assert s.loc["A", "mean"] == pytest.approx(0.65)
    assert (s.loc["A", "worst"], s.loc["A", "worst_level"]) == (0.5, 3.0)
    # effective robustness: mean over the curve of (A(x) - A(0)) - (B(x) - B(0))
    gap = np.array([0.0, (0.8 - 0.9) - (0.75 - 0.8), (0.5 - 0.9) - (0.6 - 0.8)])
    want = ((gap[0] + gap[1]) / 2 * 1 + (gap[1] + gap[2]) / 2 * 2) / 3
    assert s.loc["A", "effective_robustness"] == pytest.approx(want)
    assert s.loc["B", "effective_robustness"] == pytest.approx(0.0)


def test_missing_rate_curves_read_along_the_rate():
    cells = pd.DataFrame(
        [
            _row("A", "clean", "clean", "", 0, 0.9),
            _row("A", "removal", "mean", "img", 0, 0.8, rate=0.5),
            _row("A", "removal", "mean", "img", 0, 0.6, rate=1.0),
        ]
    )
    s = level_summary(cells, family="removal", x="rate").iloc[0]
    assert s["auc"] == pytest.approx(((0.9 + 0.8) / 2 * 0.5 + (0.8 + 0.6) / 2 * 0.5) / 0.9)
    assert (s["worst"], s["worst_rate"], s["level"]) == (0.6, 1.0, 0.0)


def test_worst_level_follows_the_metric_direction_after_a_csv_round_trip():
    import io

    cells = _cells()
    cells["ece"] = [0.02, 0.10, 0.07, 0.03, 0.05, 0.04]
    buf = io.StringIO()
    cells.to_csv(buf, index=False)
    back = pd.read_csv(io.StringIO(buf.getvalue()))  # the clean cell's empty modalities come back as NaN
    s = level_summary(back, "ece").set_index("model")
    assert (s.loc["A", "worst"], s.loc["A", "worst_level"]) == (0.10, 1.0)  # lower is better: worst = max
    assert s.loc["A", "modalities"] == "img"


def test_level_summary_rejects_a_missing_clean_cell():
    cells = _cells()
    with pytest.raises(InputError, match="no clean cell"):
        level_summary(cells[~((cells.model == "A") & (cells.family == "clean"))])


def test_corruption_errors_follow_the_imagenet_c_definitions():
    ce = corruption_errors(_cells(), reference="B").set_index("model")
    assert ce.loc["A", "ce"] == pytest.approx((0.2 + 0.5) / (0.25 + 0.4))
    assert ce.loc["A", "relative_ce"] == pytest.approx(((0.2 - 0.1) + (0.5 - 0.1)) / ((0.25 - 0.2) + (0.4 - 0.2)))
    assert ce.loc["B", "ce"] == pytest.approx(1.0) and ce.loc["B", "relative_ce"] == pytest.approx(1.0)
    m = mean_corruption_errors(ce.reset_index()).set_index("model")
    assert m.loc["A", "mce"] == pytest.approx(ce.loc["A", "ce"])


def test_zero_reference_denominators_give_nan_with_a_note():
    cells = pd.DataFrame(
        [
            _row("A", "clean", "clean", "", 0, 0.9),
            _row("A", "corruption", "blur", "img", 1, 0.8),
            _row("R", "clean", "clean", "", 0, 1.0),
            _row("R", "corruption", "blur", "img", 1, 1.0),
        ]
    )
    ce = corruption_errors(cells, reference="R").set_index("model")
    assert math.isnan(ce.loc["A", "ce"]) and math.isnan(ce.loc["A", "relative_ce"])
    assert "zero" in ce.loc["A", "note"] and "does not degrade" in ce.loc["A", "note"]
    with pytest.raises(InputError, match="reference model"):
        corruption_errors(cells, reference="nobody")


def test_relative_cells_give_ra_and_single_baseline_effective_robustness():
    r = relative_cells(_cells(), baseline="B")
    a3 = r[(r.model == "A") & (r.level == 3)].iloc[0]
    assert a3["relative"] == pytest.approx(0.5 / 0.9)
    assert a3["drop"] == pytest.approx(0.4)
    assert a3["effective_robustness"] == pytest.approx((0.5 - 0.9) - (0.6 - 0.8))


def _removal_cells(v: dict[frozenset, float], conf: dict[str, float]) -> pd.DataFrame:
    """Clean cell = v(all); a removal cell (fill 'zero') for every other kept subset S (removed = N - S)."""
    mods = ["audio", "image", "text"]
    full = frozenset(mods)
    rows = [_row("M", "clean", "clean", "", 0, v[full], confidence=0.9)]
    for s, value in v.items():
        if s == full:
            continue
        removed = "+".join(sorted(full - s, reverse=True))  # deliberately non-canonical order
        kept_one = next(iter(s)) if len(s) == 1 else None
        rows.append(_row("M", "removal", "zero", removed, 0, value, confidence=conf.get(kept_one, 0.1)))
    return pd.DataFrame(rows)


def _game() -> dict[frozenset, float]:
    mods = ["audio", "image", "text"]
    rng = np.random.default_rng(4)
    return {frozenset(s): float(rng.uniform(0.1, 0.9)) for r in range(4) for s in itertools.combinations(mods, r)}


def test_shapley_matches_the_average_marginal_contribution_over_orderings():
    v = _game()
    cells = _removal_cells(v, {"audio": 0.3, "image": 0.6, "text": 0.7})
    got = modality_shapley(cells).set_index("modality")
    mods = ["audio", "image", "text"]
    for m in mods:
        contributions = []
        for order in itertools.permutations(mods):
            before = frozenset(order[: order.index(m)])
            contributions.append(v[before | {m}] - v[before])
        assert got.loc[m, "shapley"] == pytest.approx(np.mean(contributions))
        assert got.loc[m, "value_alone"] == pytest.approx(v[frozenset([m])])
    assert got["shapley"].sum() == pytest.approx(v[frozenset(mods)] - v[frozenset()])
    assert got.loc["image", "confidence_alone"] == pytest.approx(0.6)


def test_shapley_uses_chance_when_the_empty_set_was_not_evaluated():
    v = _game()
    v.pop(frozenset())
    got = modality_shapley(_removal_cells(v, {}), num_classes=4)
    assert got["shapley"].sum() == pytest.approx(v[frozenset(["audio", "image", "text"])] - 0.25)
    assert modality_shapley(_removal_cells(v, {}))["shapley"].isna().all()


def test_shapley_names_missing_subsets():
    v = _game()
    v.pop(frozenset(["audio"]))  # the cell that removes image+text
    with pytest.raises(InputError, match=r"\{image\+text\}"):
        modality_shapley(_removal_cells(v, {}))


def test_modality_reliance_is_the_drop_from_clean():
    v = _game()
    rel = modality_reliance(_removal_cells(v, {})).set_index("removed")
    full = v[frozenset(["audio", "image", "text"])]
    assert rel.loc["audio+image", "drop"] == pytest.approx(full - v[frozenset(["text"])])
    assert rel.loc["audio+image", "relative_drop"] == pytest.approx((full - v[frozenset(["text"])]) / full)
