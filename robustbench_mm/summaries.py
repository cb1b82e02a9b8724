"""Robustness summaries over a tidy cells table (columns as in cells.csv): curves over severity
levels or missing rates, ImageNet-C corruption errors, relative and effective robustness,
modality reliance and exact Shapley contributions.

Each summary reads one metric column and that metric's direction (`metrics.METRICS[name]`), so a
registered metric is summarised the same way as a built-in one. No I/O here: summaries take and
return pandas DataFrames.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd

from .errors import InputError, one_of
from .metrics import METRICS
from .domain import Family, clean_cells, perturbed_cells
from .domain import cells as select_cells  # "cells" is the table these functions take

_CELL_COLUMNS = ("model", "seed", "family", "name", "modalities", "level", "rate")


def _prepare(cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    missing = [c for c in (*_CELL_COLUMNS, metric) if c not in cells.columns]
    if missing:
        raise InputError(f"cells table lacks columns {missing}")
    if metric not in METRICS:
        raise one_of("metric", metric, METRICS)
    df = cells.copy()
    df["modalities"] = df["modalities"].fillna("").astype(str).map(_canonical)
    df["model"] = df["model"].astype(str)
    df["level"] = df["level"].astype(float)
    df["rate"] = df["rate"].astype(float)
    return df


def _canonical(mods: str) -> str:
    """'b+a' and 'a+b' name the same subset: sort the parts."""
    return "+".join(sorted(m for m in mods.split("+") if m))


def _clean_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """Clean metric per (model, seed); exactly one clean cell each."""
    clean = clean_cells(df)
    dup = clean[clean.duplicated(["model", "seed"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        raise InputError(f"cells table has several clean cells for model {first['model']!r} seed {first['seed']}")
    return clean.set_index(["model", "seed"])[metric]


def _need_clean(clean: pd.Series, model: str, seed) -> float:
    try:
        return float(clean.loc[(model, seed)])
    except KeyError:
        raise InputError(f"cells table has no clean cell for model {model!r} seed {seed}") from None


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under y(x) by the trapezoid rule (np.trapz was renamed across numpy versions)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _worse(metric: str) -> float:
    """+1 if a larger value is worse, -1 if a smaller value is worse."""
    return -1.0 if METRICS[metric].higher_is_better else 1.0


def _reference_curve(df: pd.DataFrame, model: str, metric: str, x: str, keys: list[str]) -> pd.DataFrame:
    """The reference model's metric per (keys..., x), averaged over its seeds, and its clean value."""
    if model not in set(df["model"]):
        raise one_of("reference model", model, sorted(set(df["model"])))
    ref = df[df["model"] == model]
    return ref.groupby([*keys, x], dropna=False)[metric].mean()


def level_summary(
    cells: pd.DataFrame,
    metric: str = "accuracy",
    *,
    family: str = "corruption",
    x: str = "level",
    baseline: str | None = None,
) -> pd.DataFrame:
    """Per model × seed × curve: mean and worst over the x grid, and areas under the curve.

    A curve is one (name, modalities, and the other of level/rate) of `family`, read along
    `x` ("level" for corruption severities, "rate" for missing rates). The clean cell of the same
    model and seed is the point at x = 0 unless the curve measured x = 0 itself.

    Columns: model, seed, name, modalities, level|rate (the fixed one), clean, mean (over x > 0),
    worst (over x > 0, by the metric's direction), worst_x, n_points, span (max x),
    auc = ∫_0^span m(x) dx / (clean · span) by the trapezoid rule on the true x spacing,
    relative_robustness = ∫_0^span m(x) dx / span (MultiBench's "relative robustness": the area
    under the accuracy–imperfection curve, here divided by the span so that it does not depend on
    the grid, and computed from the run's own numbers instead of min-max scaling against a table),
    and with `baseline`: effective_robustness = (1/span) ∫ [(m(x) - m(0)) - (b(x) - b(0))] dx,
    where b is the baseline model's curve averaged over its seeds (MultiBench's definition,
    f - (lf + f_0 - lf_0), integrated with the true spacing rather than summed over levels).
    """
    if x not in ("level", "rate"):
        raise one_of("x", x, ("level", "rate"))
    fixed = "rate" if x == "level" else "level"
    df = _prepare(cells, metric)
    clean = _clean_values(df, metric)
    curves = df[df["family"] == family]
    keys = ["name", "modalities", fixed]
    base_curve = base_clean = None
    if baseline is not None:
        base_curve = _reference_curve(df, baseline, metric, x, keys)
        base_clean = select_cells(df, Family.CLEAN, model=baseline)[metric].mean()
    rows = []
    for (model, seed, *key), g in curves.groupby(["model", "seed", *keys], sort=True, dropna=False):
        dup = g[x][g[x].duplicated()]
        if len(dup):
            raise InputError(
                f"model {model!r} seed {seed} {family} {key[0]!r} on {key[1]!r}: several cells at {x}={dup.iloc[0]:g}"
            )
        c0 = _need_clean(clean, model, seed)
        g = g.sort_values(x)
        xs, ys = g[x].to_numpy(float), g[metric].to_numpy(float)
        if xs[0] != 0.0:
            xs, ys = np.r_[0.0, xs], np.r_[c0, ys]
        corrupted = xs > 0
        span = xs[-1]
        worst_i = int(np.argmax(_worse(metric) * ys[corrupted])) if corrupted.any() else None
        area = float(_trapezoid(ys, xs)) if span > 0 else np.nan
        row = {
            "model": model,
            "seed": seed,
            "name": key[0],
            "modalities": key[1],
            fixed: key[2],
            "metric": metric,
            "clean": c0,
            "mean": float(ys[corrupted].mean()) if corrupted.any() else np.nan,
            "worst": float(ys[corrupted][worst_i]) if worst_i is not None else np.nan,
            f"worst_{x}": float(xs[corrupted][worst_i]) if worst_i is not None else np.nan,
            "n_points": int(corrupted.sum()),
            "span": span,
            "auc": area / (c0 * span) if span > 0 and c0 != 0 else np.nan,
            "relative_robustness": area / span if span > 0 else np.nan,
        }
        if base_curve is not None:
            try:
                b = base_curve.loc[tuple(key)]
            except KeyError:
                raise InputError(f"baseline {baseline!r} lacks the {family} curve {key[0]!r} on {key[1]!r}") from None
            bx = b.index.to_numpy(float)
            if not np.array_equal(np.sort(bx[bx > 0]), xs[corrupted]):
                raise InputError(f"baseline {baseline!r}: {family} {key[0]!r} on {key[1]!r} uses other {x} values")
            bys = np.r_[b0 := float(b.get(0.0, base_clean)), b.loc[xs[corrupted]].to_numpy(float)]
            gap = (ys - ys[0]) - (bys - b0)
            row["effective_robustness"] = float(_trapezoid(gap, xs)) / span if span > 0 else np.nan
        rows.append(row)
    columns = ["model", "seed", "name", "modalities", fixed, "metric", "clean", "mean", "worst", f"worst_{x}",
               "n_points", "span", "auc", "relative_robustness"]
    return pd.DataFrame(rows, columns=columns + (["effective_robustness"] if baseline is not None else []))


def _error(values, metric: str):
    """The error a corruption error is built from: 1 - m for bounded higher-is-better metrics, m otherwise."""
    return 1.0 - values if METRICS[metric].higher_is_better else values


def corruption_errors(cells: pd.DataFrame, reference: str, metric: str = "accuracy") -> pd.DataFrame:
    """ImageNet-C corruption errors of every model against a reference model.

    For each corruption c = (name, modalities, rate), with E = 1 - accuracy (or the metric itself
    when lower is better) and s running over the levels > 0 the model and the reference share:
        CE_c          = Σ_s E_{c,s} / Σ_s E^ref_{c,s}
        relative CE_c = Σ_s (E_{c,s} - E_clean) / Σ_s (E^ref_{c,s} - E^ref_clean)
    The reference's errors are averaged over its seeds (one fixed yardstick for every seed of every
    model). A zero reference denominator (or a non-positive one for relative CE, where the
    reference does not degrade and the ratio has no meaning) gives NaN and says so in `note`.
    Columns: model, seed, name, modalities, rate, ce, relative_ce, note.
    """
    df = _prepare(cells, metric)
    clean = _clean_values(df, metric)
    keys = ["name", "modalities", "rate"]
    ref_curve = _reference_curve(df, reference, metric, "level", keys)
    ref_clean = select_cells(df, Family.CLEAN, model=reference)[metric].mean()
    rows = []
    corr = select_cells(df, Family.CORRUPTION)
    corr = corr[corr["level"] > 0]
    for (model, seed, *key), g in corr.groupby(["model", "seed", *keys], sort=True, dropna=False):
        try:
            ref = ref_curve.loc[tuple(key)]
        except KeyError:
            raise InputError(f"reference {reference!r} lacks corruption {key[0]!r} on {key[1]!r} at rate {key[2]:g}") from None
        ref = ref[ref.index > 0]
        levels = np.sort(g["level"].to_numpy(float))
        if not np.array_equal(levels, np.sort(ref.index.to_numpy(float))):
            raise InputError(
                f"model {model!r} and reference {reference!r} evaluate {key[0]!r} on {key[1]!r} at other levels"
            )
        e = _error(g.set_index("level")[metric].loc[levels].to_numpy(float), metric)
        e_ref = _error(ref.loc[levels].to_numpy(float), metric)
        e_clean = _error(_need_clean(clean, model, seed), metric)
        e_ref_clean = _error(ref_clean, metric)
        notes = []
        den = e_ref.sum()
        if den == 0:
            ce = np.nan
            notes.append("reference error is zero at every level: CE undefined")
        else:
            ce = e.sum() / den
        rel_den = (e_ref - e_ref_clean).sum()
        if rel_den <= 0:
            rel = np.nan
            notes.append("reference does not degrade (sum of E_ref - E_ref_clean <= 0): relative CE undefined")
        else:
            rel = (e - e_clean).sum() / rel_den
        rows.append(
            {
                "model": model,
                "seed": seed,
                "name": key[0],
                "modalities": key[1],
                "rate": key[2],
                "ce": float(ce),
                "relative_ce": float(rel),
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows, columns=["model", "seed", "name", "modalities", "rate", "ce", "relative_ce", "note"])


def mean_corruption_errors(ce: pd.DataFrame) -> pd.DataFrame:
    """mCE and relative mCE per model × seed: the mean of CE_c over corruptions c.

    Corruptions whose CE is undefined (NaN) are left out of the mean and counted in `n_undefined`.
    Columns: model, seed, mce, relative_mce, n_corruptions, n_undefined.
    """
    rows = []
    for (model, seed), g in ce.groupby(["model", "seed"], sort=True):
        rows.append(
            {
                "model": model,
                "seed": seed,
                "mce": float(g["ce"].mean()) if g["ce"].notna().any() else np.nan,
                "relative_mce": float(g["relative_ce"].mean()) if g["relative_ce"].notna().any() else np.nan,
                "n_corruptions": len(g),
                "n_undefined": int(g["ce"].isna().sum()),
            }
        )
    return pd.DataFrame(rows, columns=["model", "seed", "mce", "relative_mce", "n_corruptions", "n_undefined"])


def relative_cells(cells: pd.DataFrame, metric: str = "accuracy", baseline: str | None = None) -> pd.DataFrame:
    """Per perturbed cell: its clean value, drop and relative accuracy; with a baseline, effective robustness.

    relative = A_{c,s} / A_clean (RA; NaN if A_clean = 0); drop = degradation from clean, positive
    when worse (clean - m for higher-is-better metrics, m - clean otherwise); with `baseline`:
    effective_robustness = (A_{c,s} - A_clean) - (B_{c,s} - B_clean), B the baseline model
    averaged over its seeds (the single-baseline form of effective robustness).
    Returns the non-clean rows of `cells` with columns clean, drop, relative(, effective_robustness).
    """
    df = _prepare(cells, metric)
    clean = _clean_values(df, metric)
    out = perturbed_cells(df).copy()
    out["clean"] = [_need_clean(clean, m, s) for m, s in zip(out["model"], out["seed"])]
    out["drop"] = -_worse(metric) * (out["clean"] - out[metric])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["relative"] = np.where(out["clean"] != 0, out[metric] / out["clean"], np.nan)
    if baseline is not None:
        keys = ["family", "name", "modalities", "level", "rate"]
        if baseline not in set(df["model"]):
            raise one_of("baseline model", baseline, sorted(set(df["model"])))
        base = df[df["model"] == baseline]
        b_clean = clean_cells(base)[metric].mean()
        b = perturbed_cells(base).groupby(keys, dropna=False)[metric].mean().rename("_b").reset_index()
        out = out.merge(b, on=keys, how="left")
        out["effective_robustness"] = (out[metric] - out["clean"]) - (out["_b"] - b_clean)
        out = out.drop(columns="_b")
    return out.reset_index(drop=True)


def modality_reliance(cells: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Metric drop when each modality subset is removed from every sample (family 'removal', rate 1).

    drop = clean - m (higher-is-better metrics) or m - clean (lower-is-better), so a positive drop
    means the model relies on the removed subset; relative_drop = drop / |clean|.
    Columns: model, seed, fill (the removal's `name`), removed, clean, value, drop, relative_drop.
    """
    df = _prepare(cells, metric)
    clean = _clean_values(df, metric)
    rem = select_cells(df, Family.REMOVAL, rate=1.0)
    rows = []
    for _, r in rem.sort_values(["model", "seed", "name", "modalities"]).iterrows():
        c0 = _need_clean(clean, r["model"], r["seed"])
        drop = -_worse(metric) * (c0 - r[metric])
        rows.append(
            {
                "model": r["model"],
                "seed": r["seed"],
                "fill": r["name"],
                "removed": r["modalities"],
                "clean": c0,
                "value": float(r[metric]),
                "drop": float(drop),
                "relative_drop": float(drop / abs(c0)) if c0 != 0 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["model", "seed", "fill", "removed", "clean", "value", "drop", "relative_drop"])


def shapley_values(values: dict[frozenset, float], players: list[str]) -> dict[str, float]:
    """Exact Shapley values of a game v over all subsets of `players`.

    φ_i = Σ_{S ⊆ N \\ {i}} |S|! (n - |S| - 1)! / n! · (v(S ∪ {i}) - v(S)). `values` must hold
    v for every subset (frozensets of player names, including the empty and the full set).
    """
    n = len(players)
    out = {}
    for i in players:
        others = [p for p in players if p != i]
        phi = 0.0
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for s in combinations(others, size):
                s = frozenset(s)
                phi += weight * (values[s | {i}] - values[s])
        out[i] = phi
    return out


def modality_shapley(
    cells: pd.DataFrame,
    metric: str = "accuracy",
    *,
    modalities: list[str] | None = None,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """Exact Shapley contribution of each modality, with a CAL-style confidence term.

    The game: v(S) = the metric with only the modalities in S present, i.e. v(N) = clean, and
    v(S) = the removal cell (rate 1, per fill) whose removed set is N \\ S. v(∅) is the removal
    of every modality if the run evaluated it, else chance accuracy 1/num_classes for accuracy
    (NaN otherwise, which makes every φ NaN). The Shapley values sum to v(N) - v(∅).
    confidence_alone = the 'confidence' column (mean 1 - H(p)/log K) of the keep-one cell where
    only that modality is present: the confidence term of CAL's contribution, reported beside
    φ rather than multiplied into it. value_alone = v({i}).
    `modalities` defaults to the union of all removed sets. Every proper non-empty subset must
    be evaluated; otherwise an InputError lists the missing removed subsets.
    Columns: model, seed, fill, modality, shapley, value_alone, confidence_alone, empty_value.
    """
    df = _prepare(cells, metric)
    clean = _clean_values(df, metric)
    rem = select_cells(df, Family.REMOVAL, rate=1.0)
    if modalities is None:
        modalities = sorted({m for mods in rem["modalities"] for m in mods.split("+") if m})
    players = sorted(modalities)
    full = frozenset(players)
    if len(players) < 2:
        raise InputError(f"Shapley contributions need removal cells over >= 2 modalities, found {players}")
    has_conf = "confidence" in df.columns
    rows = []
    for (model, seed, fill), g in rem.groupby(["model", "seed", "name"], sort=True):
        kept = {full - frozenset(r["modalities"].split("+")): r for _, r in g.iterrows()}
        values = {s: float(r[metric]) for s, r in kept.items()}
        values[full] = _need_clean(clean, model, seed)
        if frozenset() not in values:
            chance = metric == "accuracy" and num_classes is not None and num_classes >= 2
            values[frozenset()] = 1.0 / num_classes if chance else np.nan
        wanted = [frozenset(c) for size in range(1, len(players)) for c in combinations(players, size)]
        missing = [s for s in wanted if s not in values]
        if missing:
            names = ", ".join("{" + "+".join(sorted(full - s)) + "}" for s in missing)
            raise InputError(
                f"model {model!r} seed {seed} fill {fill!r}: Shapley needs every removal subset; missing removed sets {names}"
            )
        phi = shapley_values(values, players)
        for m in players:
            alone = kept.get(frozenset([m]))
            rows.append(
                {
                    "model": model,
                    "seed": seed,
                    "fill": fill,
                    "modality": m,
                    "shapley": phi[m],
                    "value_alone": values[frozenset([m])],
                    "confidence_alone": float(alone["confidence"]) if has_conf and alone is not None else np.nan,
                    "empty_value": values[frozenset()],
                }
            )
    return pd.DataFrame(
        rows,
        columns=["model", "seed", "fill", "modality", "shapley", "value_alone", "confidence_alone", "empty_value"],
    )
