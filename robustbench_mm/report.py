"""The robustness report: one or more run folders -> self-contained HTML, Markdown and CSV tables.

    reports/NAME/index.html    every figure embedded as a base64 PNG, inline CSS, no external asset
    reports/NAME/report.md     the same content; figures beside it in figures/ (PNG and SVG)
    reports/NAME/tables/*.csv  every table, unformatted

Numbers come from `metrics` (cell metrics and robustness summaries) and `stats` (bootstrap,
McNemar, Holm, Friedman/Nemenyi); this module only selects cells, pairs models and lays out.

Replicates. A replicate is one (run, protocol seed): several runs of the same models (e.g. one
per training seed) are several replicates. With one replicate, intervals are percentile
bootstrap intervals over the evaluation samples (`stats.bootstrap_counts`, the same resamples
for every cell of a model, so summaries over cells stay paired); with several, they are
two-stage (cluster) bootstrap intervals of the mean across replicates: each resample draws the
replicates with replacement and, within each, the samples' bootstrap resample. Every resample is
a mean of metric values, so the interval stays within the metric's range (a t interval across 3
replicates of an accuracy reached 1.022). mCE across replicates keeps a t interval (it is not
bounded above); the reference model's own mCE (1 by definition) has none.

Calibration pairs. A model with calibration is paired with the model without it that has the same
backbone: the manifest's model config gives the backbone (key `fusion`, else `backbone`) and
`calibration` (true/false). Only when a model has no such config does the name decide: `X+cal` or
`X-cal` pairs with `X`.

Every string that comes from a user (model names, paths, protocol and dataset descriptions,
titles) is passed through `html.escape` before it reaches the HTML, and through the same escape
in Markdown tables, so a name such as `<script>` shows as text everywhere.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plots
from .version import __version__
from .errors import InputError, one_of
from .metrics import METRICS, resampled_metric
from .summaries import corruption_errors, level_summary, mean_corruption_errors, modality_reliance, modality_shapley
from .results import Run, load_run
from .stats import bootstrap_counts, critical_difference, holm, mcnemar_exact, mean_ci, paired_bootstrap

N_RESAMPLES = 2000
ALPHA = 0.05
CONFIDENCE = 0.95


# ---------------------------------------------------------------------------------------------
# Loading: one table over all runs, a replicate column, per-sample records on demand
# ---------------------------------------------------------------------------------------------


@dataclass
class _Data:
    runs: dict[str, Run]
    cells: pd.DataFrame  # cells.csv rows of every run + `run`, `replicate` (metrics' `seed`)
    task: str
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


def _run_names(paths: list[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _load(runs) -> _Data:
    """Run folders (paths) or `Run`s (what `evaluate` returns), one or a list."""
    if isinstance(runs, (str, Path, Run)):
        runs = [runs]
    runs = [r if isinstance(r, Run) else load_run(Path(r)) for r in runs]
    if not runs:
        raise InputError("report needs at least one run folder")
    loaded = dict(zip(_run_names([r.path for r in runs]), runs))
    frames = []
    for name, run in loaded.items():
        if run.cells.empty:
            raise InputError(f"run {run.path}: cells.csv has no cells (did `rbmm eval` finish a cell?)")
        frames.append(run.cells.assign(run=name))
    cells = pd.concat(frames, ignore_index=True)
    cells["model"] = cells["model"].astype(str)
    cells["modalities"] = cells["modalities"].fillna("").astype(str)
    many = len(loaded) > 1
    cells["replicate"] = [f"{r}:{s}" if many else s for r, s in zip(cells["run"], cells["seed"])]
    first = next(iter(loaded.values()))
    rec = first.samples(first.cells["cell_id"].iloc[0])
    task = first.manifest.dataset.task
    num_classes = None
    if task == "classification":
        declared = first.manifest.dataset.num_classes
        num_classes = int(declared) if declared else int(max(rec["target"].max(), rec["pred"].max()) + 1)
    metric = "accuracy" if task == "classification" else "mae"
    if metric not in cells.columns:
        raise InputError(f"cells.csv of {first.path} has no {metric!r} column; expected the per-cell metrics")
    configs: dict[str, dict] = {}
    for run in loaded.values():
        for entry in run.manifest.models:
            configs.setdefault(entry.name, entry.config)
    models = list(dict.fromkeys(cells["model"]))
    return _Data(loaded, cells, task, num_classes, metric, models, configs)


def _metric_frame(data: _Data) -> pd.DataFrame:
    """cells with `seed` replaced by the replicate, the form `metrics` summaries group by."""
    return data.cells.assign(seed=data.cells["replicate"])


# ---------------------------------------------------------------------------------------------
# Intervals: bootstrap over samples (one replicate) or across replicates
# ---------------------------------------------------------------------------------------------


class _Boot:
    """Resampled metric values per cell, all cells sharing one set of bootstrap counts per n."""

    def __init__(self, data: _Data, n_resamples: int = N_RESAMPLES, seed: int = 0):
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


def _interval(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def _estimate(data: _Data, boot: _Boot, rows: pd.DataFrame) -> tuple[float, float, float]:
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
        return (estimate, *_interval(two_stage))
    draws = np.mean([boot.values(r) for _, r in rows.iterrows()], axis=0)
    return (float(rows[data.metric].mean()), *_interval(draws))


# ---------------------------------------------------------------------------------------------
# Document model: sections of text, tables and figures, rendered to HTML and Markdown
# ---------------------------------------------------------------------------------------------


@dataclass
class _Text:
    text: str
    pre: bool = False


@dataclass
class _Table:
    name: str  # CSV file stem
    frame: pd.DataFrame  # raw values, written to CSV
    shown: pd.DataFrame  # formatted strings, shown in HTML/Markdown
    caption: str = ""
    collapsed: bool = False


@dataclass
class _Figure:
    name: str
    figure: Figure
    caption: str


@dataclass
class _Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _fmt_ci(value, low, high) -> str:
    if not np.isfinite(value):
        return "–"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _shown(frame: pd.DataFrame, p_columns=(), digits: int = 3) -> pd.DataFrame:
    out = frame.copy().astype(object)
    for col in out.columns:
        if col in ("level", "rate", "seed", "worst_level", "replicate"):
            out[col] = [v if isinstance(v, str) else _fmt(v, 3).rstrip("0").rstrip(".") for v in frame[col]]
        elif col in p_columns:
            out[col] = [_fmt_p(v) for v in frame[col]]
        else:
            out[col] = [_fmt(v, digits) for v in frame[col]]
    return out


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def _setup(data: _Data) -> _Section:
    sec = _Section("Setup", "setup")
    rows = []
    for name, run in data.runs.items():
        m = run.manifest.to_json()
        protocol = m.get("protocol", {})
        dataset = m.get("dataset", {})
        versions = m.get("package") or m.get("versions") or {}
        if "package_version" in m:
            versions = {"robustbench_mm": m["package_version"], **versions}
        facts = {
            "run": name,
            "path": str(run.path),
            "complete": m["complete"],
            "protocol": f"{protocol.get('name', '?')} (hash {_short(protocol.get('hash', '?'))}, seed {protocol.get('seed', '?')})",
        }
        for key, value in dataset.items():
            if isinstance(value, list):
                value = "+".join(str(v) for v in value)
            if not isinstance(value, dict):
                facts[f"dataset {key}"] = _short(value) if key in ("sha256", "fingerprint", "hash") else value
        facts.update({
            "seeds": ", ".join(str(s) for s in m.get("seeds", [])),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "device": str(m.get("device_name") or m.get("device") or ""),
            "started": str(m.get("started", "")),
            "finished": str(m.get("finished", "")),
            "cells": int((data.cells["run"] == name).sum()),
        })
        rows.append(facts)
    runs = pd.DataFrame(rows)
    sec.blocks.append(_Text(
        f"{len(data.runs)} run(s), {len(data.models)} model(s), task {data.task}, headline metric {data.metric} "
        f"({METRICS[data.metric].description}). Intervals are {CONFIDENCE:.0%} "
        + (f"two-stage bootstrap intervals across replicates (runs × protocol seeds): each of {N_RESAMPLES} resamples "
           "draws the replicates with replacement and resamples the evaluation samples within each (seed 0), so "
           "an interval stays within the metric's range; mCE has a t interval across replicates." if data.replicated
           else f"percentile bootstrap intervals over the evaluation samples ({N_RESAMPLES} resamples, seed 0).")
    ))
    for name, run in data.runs.items():
        plugins = run.manifest.plugins
        if plugins:
            listed = plugins if isinstance(plugins, list) else [plugins]
            sec.blocks.append(_Text(f"Corruption plug-ins of {name}: " + "; ".join(
                json.dumps(p, default=str) if isinstance(p, dict) else str(p) for p in listed)))
    transposed = runs.set_index("run").T.reset_index(names="field").fillna("")
    sec.blocks.append(_Table("runs", runs, transposed.astype(str), "Runs (hashes: first 16 hex digits)"))
    model_rows = []
    for name, run in data.runs.items():
        for entry in run.manifest.to_json()["models"]:
            config = entry.get("config") or {}
            backbone, calibrated = _backbone(str(entry.get("name")), config)
            model_rows.append({
                "run": name,
                "model": str(entry.get("name")),
                "sha256": _short(entry.get("sha256", "")),
                "backbone": backbone,
                "calibration": calibrated,
                "source": str(entry.get("path") or entry.get("source") or ""),
                "config": json.dumps({k: v for k, v in config.items() if not isinstance(v, (dict, list))},
                                     sort_keys=True, default=str),
            })
    if model_rows:
        frame = pd.DataFrame(model_rows)
        frame = frame[[c for c in frame.columns if not frame[c].isin(["", "{}"]).all()]]
        sec.blocks.append(_Table("models", frame, _shown(frame), "Models (SHA-256 of the checkpoint, first 16 hex digits)"))
    return sec


def _short(value) -> str:
    """A hash shortened to 16 hex digits, enough to tell runs apart in a table."""
    return str(value)[:16]


def _backbone(name: str, config: dict) -> tuple[str, bool]:
    """(backbone, with calibration) from the model config, else from a '+cal'/'-cal' name suffix."""
    backbone = config.get("fusion", config.get("backbone"))
    if backbone is not None and "calibration" in config:
        return str(backbone), bool(config["calibration"])
    match = re.fullmatch(r"(.+)[+-]cal", name)
    return (match.group(1), True) if match else (name, False)


def calibration_pairs(models: list[str], configs: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(backbone, model without calibration, model with it) for every backbone that has both.

    From the manifest configs (keys fusion/backbone and calibration); name suffix '+cal'/'-cal'
    only for models without such a config. The first model of each kind per backbone is used.
    """
    without: dict[str, str] = {}
    with_: dict[str, str] = {}
    for model in models:
        backbone, calibrated = _backbone(model, configs.get(model, {}))
        (with_ if calibrated else without).setdefault(backbone, model)
    return [(b, without[b], with_[b]) for b in without if b in with_]


def _headline(data: _Data, boot: _Boot, reference: str) -> tuple[_Section, pd.DataFrame]:
    sec = _Section("Headline", "headline")
    df = data.cells
    ce_note = ""
    mce = pd.DataFrame(columns=["model", "mce", "relative_mce"])
    if (df["family"] == "corruption").any() and data.task == "classification":
        try:
            mce = mean_corruption_errors(corruption_errors(_metric_frame(data), reference, data.metric))
        except InputError as e:
            ce_note = f"mCE not computed: {e}"
    rows = []
    for model in data.models:
        cells = df[df["model"] == model]
        clean = _estimate(data, boot, cells[cells["family"] == "clean"])
        corrupted = _estimate(data, boot, cells[cells["family"] == "corruption"])
        row = {"model": model}
        row.update(clean=clean[0], clean_low=clean[1], clean_high=clean[2])
        row.update(corrupted=corrupted[0], corrupted_low=corrupted[1], corrupted_high=corrupted[2])
        m = mce[mce["model"] == model]
        if len(m):
            ci = mean_ci(m["mce"].to_numpy()) if len(m) > 1 and model != reference else None  # the reference's is 1
            row.update(mce=float(m["mce"].mean()), mce_low=ci.low if ci else np.nan, mce_high=ci.high if ci else np.nan,
                       relative_mce=float(m["relative_mce"].mean()))
        else:
            row.update(mce=np.nan, mce_low=np.nan, mce_high=np.nan, relative_mce=np.nan)
        removal = cells[(cells["family"] == "removal")]
        if len(removal):
            by_subset = removal.groupby(["name", "modalities", "rate"])[data.metric].mean()
            worst_key = by_subset.idxmin() if data.higher_is_better else by_subset.idxmax()
            worst_rows = removal[(removal["name"] == worst_key[0]) & (removal["modalities"] == worst_key[1])
                                 & (removal["rate"] == worst_key[2])]
            worst = _estimate(data, boot, worst_rows)
            row.update(worst_removal=worst[0], worst_removal_low=worst[1], worst_removal_high=worst[2],
                       worst_removed=f"{worst_key[1]} ({worst_key[0]}, rate {worst_key[2]:g})")
        else:
            row.update(worst_removal=np.nan, worst_removal_low=np.nan, worst_removal_high=np.nan, worst_removed="")
        rows.append(row)
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "model": table["model"],
        f"clean {data.metric}": [_fmt_ci(*r) for r in table[["clean", "clean_low", "clean_high"]].to_numpy()],
        f"mean corrupted {data.metric}": [_fmt_ci(*r) for r in table[["corrupted", "corrupted_low", "corrupted_high"]].to_numpy()],
        f"mCE (ref. {reference})": [_fmt_ci(*r) for r in table[["mce", "mce_low", "mce_high"]].to_numpy()],
        "relative mCE": [_fmt(v) for v in table["relative_mce"]],
        f"worst removal {data.metric}": [_fmt_ci(*r) for r in table[["worst_removal", "worst_removal_low", "worst_removal_high"]].to_numpy()],
        "worst removed subset": table["worst_removed"],
    })
    worst_word = "lowest" if data.higher_is_better else "highest"
    mce_text = (
        "mCE and relative mCE follow ImageNet-C against "
        f"the reference model {reference}: CE_c = Σ_s E_c,s / Σ_s E^ref_c,s and relative CE_c = "
        "Σ_s (E_c,s − E_clean) / Σ_s (E^ref_c,s − E^ref_clean), E = 1 − accuracy, averaged over corruptions c "
        "(each corruption × modality). mCE has an interval only across replicates, and none for the reference "
        "model (its mCE is 1 by definition). "
        if data.task == "classification"
        else f"mCE is a classification summary; for {data.metric} it is not computed. "
    )
    if data.task != "classification":
        shown = shown.drop(columns=[f"mCE (ref. {reference})", "relative mCE"])
    sec.blocks.append(_Text(
        "Clean and mean corrupted values with their intervals; " + mce_text
        + f"Worst removal: the removal cell (subset, fill, rate) with the {worst_word} {data.metric} "
        f"({'higher' if data.higher_is_better else 'lower'} is better)."
    ))
    if ce_note:
        sec.blocks.append(_Text(ce_note))
    if "nonfinite" in df and df["nonfinite"].fillna(0).sum() > 0:
        counts = df.groupby("model", sort=False)["nonfinite"].sum()
        sec.blocks.append(_Text(
            "NaN/Inf outputs, counted as wrong predictions (rbmm eval --nonfinite wrong): "
            + "; ".join(f"{m}: {int(c)} samples over {int((df[df['model'] == m]['nonfinite'] > 0).sum())} cells"
                        for m, c in counts.items() if c > 0)
            + ". The raw per-cell table has the count of each cell (column nonfinite)."
        ))
    sec.blocks.append(_Table("headline", table, shown, "Headline per model"))
    return sec, table


def _calibration(data: _Data, out_figs: list) -> _Section:
    sec = _Section("With vs without calibration", "calibration")
    pairs = calibration_pairs(data.models, data.configs)
    if not pairs:
        sec.blocks.append(_Text("Not computed: no backbone has both a model with and one without calibration "
                                "(manifest config keys fusion/backbone + calibration, or a '+cal'/'-cal' name suffix)."))
        return sec
    df = data.cells
    rows = []
    for backbone, without, with_ in pairs:
        a = df[df["model"] == with_].set_index(["replicate", "condition"])
        b = df[df["model"] == without].set_index(["replicate", "condition"])
        for key in a.index.intersection(b.index):
            ra, rb = a.loc[key], b.loc[key]
            rec_a, rec_b = data.record(ra), data.record(rb)
            res = paired_bootstrap(rec_a, rec_b, data.metric, n_resamples=N_RESAMPLES, seed=0,
                                   confidence=CONFIDENCE, num_classes=data.num_classes)
            if data.task == "classification":
                p = mcnemar_exact(rec_a["pred"] == rec_a["target"], rec_b["pred"] == rec_b["target"]).p_value
            else:
                p = res.p_value
            rows.append({
                "backbone": backbone, "without": without, "with": with_, "replicate": key[0],
                "condition": key[1], "family": ra["family"], "name": ra["name"], "modalities": ra["modalities"],
                "level": ra["level"], "rate": ra["rate"],
                "value_without": rb[data.metric], "value_with": ra[data.metric],
                "diff": res.estimate, "low": res.low, "high": res.high, "p": p,
            })
    table = pd.DataFrame(rows)
    if table.empty:
        sec.blocks.append(_Text("Not computed: the paired models share no cells."))
        return sec
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"] < ALPHA
    test = "exact McNemar" if data.task == "classification" else "paired bootstrap"
    sec.blocks.append(_Text(
        f"Difference with − without calibration of {data.metric} per cell, {CONFIDENCE:.0%} paired bootstrap "
        f"interval ({N_RESAMPLES} resamples), {test} p-value, Holm–Bonferroni adjusted over all "
        f"{len(table)} cells of this table; significant = adjusted p < {ALPHA:g}."
    ))
    corr = table[table["family"] == "corruption"]
    if len(corr):
        sign = 1.0 if data.higher_is_better else -1.0
        gains = (corr.groupby(["backbone", "name", "modalities", "level"], sort=False)
                 .agg(diff=("diff", "mean"), significant=("significant", "all")).reset_index())
        gains["diff"] *= sign
        fig = plots.gain_heatmap(gains, label=f"{data.metric} gain (with − without calibration)")
        out_figs.append(fig)
        sec.blocks.append(_Figure("calibration_gain", fig,
                                  "Calibration gain over corruption × level per backbone (mean over replicates); "
                                  "hatched cells are not significant after Holm correction"
                                  + (" in every replicate." if data.replicated else ".")))
    shown = table[["backbone", "replicate", "family", "name", "modalities", "level", "rate"]].copy()
    shown = _shown(shown)
    shown["without"] = [_fmt(v) for v in table["value_without"]]
    shown["with"] = [_fmt(v) for v in table["value_with"]]
    shown["difference [CI]"] = [_fmt_ci(*r) for r in table[["diff", "low", "high"]].to_numpy()]
    shown["p"] = [_fmt_p(v) for v in table["p"]]
    shown["p (Holm)"] = [_fmt_p(v) for v in table["p_holm"]]
    shown["significant"] = ["yes" if s else "no" for s in table["significant"]]
    if not data.replicated:
        shown = shown.drop(columns="replicate")
    sec.blocks.append(_Table("calibration", table, shown, "Calibration gain per cell", collapsed=len(table) > 30))
    return sec


# ---------------------------------------------------------------------------------------------
# Calibration gates: do they fall on corrupted and conflicting inputs?
# ---------------------------------------------------------------------------------------------

GATE_INPUTS = ("clean", "corrupted", "conflicting", "other conflicting")
_GATE_PREFIX = "gate_instance_"


def gate_samples(runs) -> pd.DataFrame:
    """One row per (cell, modality, affected sample) of the models that record calibration gates,
    paired with the same sample's gates in the clean cell of the same replicate and model.

    input: `clean` (the clean cell), `corrupted` / `conflicting` (a corruption / conflict cell
    touching this modality, only the samples it affected), `other conflicting` (a conflict cell
    touching another modality: does the partner's gate move?). Removal cells are left out (an
    absent modality's gate is NaN). Columns: run, replicate, model, modality, input, condition, id,
    gate_instance, gate_dim, clean_instance, clean_dim, correct. `runs`: what `write_report` takes.
    """
    data = runs if isinstance(runs, _Data) else _load(runs)
    frames = []
    wanted = {"clean": "clean", "corruption": "corrupted", "conflict": "conflicting"}
    for (replicate, model), cells in data.cells.groupby(["replicate", "model"], sort=False):
        clean_rows = cells[cells["family"] == "clean"]
        if clean_rows.empty:
            continue
        clean = data.record(clean_rows.iloc[0])
        modalities = [k[len(_GATE_PREFIX):] for k in clean if k.startswith(_GATE_PREFIX)]
        if not modalities or data.task != "classification":
            continue
        for _, row in cells[cells["family"].isin(list(wanted))].iterrows():
            rec = data.record(row)
            if not np.array_equal(rec["ids"], clean["ids"]):
                continue  # a cell over other samples cannot be paired with the clean cell
            touched = set(row["modalities"].split("+")) if row["modalities"] else set()
            keep = np.ones(len(rec["ids"]), bool) if row["family"] == "clean" else rec["affected"].astype(bool)
            for m in modalities:
                kind = wanted[row["family"]]
                if kind != "clean" and m not in touched:
                    if kind != "conflicting":
                        continue
                    kind = "other conflicting"
                frames.append(pd.DataFrame({
                    "run": row["run"], "replicate": replicate, "model": model, "modality": m, "input": kind,
                    "condition": row["condition"], "id": rec["ids"][keep],
                    "gate_instance": rec[f"gate_instance_{m}"][keep], "gate_dim": rec[f"gate_dim_{m}"][keep],
                    "clean_instance": clean[f"gate_instance_{m}"][keep], "clean_dim": clean[f"gate_dim_{m}"][keep],
                    "correct": rec["pred"][keep] == rec["target"][keep],
                }))
    columns = ["run", "replicate", "model", "modality", "input", "condition", "id", "gate_instance", "gate_dim",
               "clean_instance", "clean_dim", "correct"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def gate_summary(samples: pd.DataFrame, by: tuple[str, ...] = ("model", "modality", "input")) -> pd.DataFrame:
    """Per group: samples, accuracy, median gates, median paired change vs clean and the fraction of
    samples whose gate is lower than its clean gate (strictly; 0 on the clean cell itself)."""
    rows = []
    for key, g in samples.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(n=len(g), accuracy=float(g["correct"].mean()))
        for kind in ("instance", "dim"):
            gate, clean = g[f"gate_{kind}"].to_numpy(np.float64), g[f"clean_{kind}"].to_numpy(np.float64)
            row[f"median_{kind}"] = float(np.nanmedian(gate))
            row[f"median_change_{kind}"] = float(np.nanmedian(gate - clean))
            row[f"lower_{kind}"] = float(np.mean(gate < clean))
        rows.append(row)
    return pd.DataFrame(rows)


def _gate_figure(samples: pd.DataFrame, models: list[str]) -> Figure:
    """One panel per modality: instance-gate boxes per input kind, one box per model."""
    modalities = list(dict.fromkeys(samples["modality"]))
    models = [m for m in models if m in set(samples["model"])]
    inputs = [i for i in GATE_INPUTS if i in set(samples["input"])]
    colors = plots.model_colors(models)
    fig = Figure(figsize=(1.2 + 1.1 * len(inputs) * max(1, len(models)) ** 0.5 * len(modalities), 3.2),
                 dpi=plots.DPI, layout="constrained")
    axes = fig.subplots(1, len(modalities), squeeze=False, sharey=True)[0]
    width = 0.8 / max(1, len(models))
    for ax, modality in zip(axes, modalities):
        own = samples[samples["modality"] == modality]
        for j, model in enumerate(models):
            values = [own[(own["model"] == model) & (own["input"] == i)]["gate_instance"].dropna().to_numpy() for i in inputs]
            where = [k for k, v in enumerate(values) if len(v)]
            if not where:
                continue
            box = ax.boxplot([values[k] for k in where], positions=[k - 0.4 + width * (j + 0.5) for k in where],
                             widths=width * 0.9, patch_artist=True, showfliers=False)
            for patch in box["boxes"]:
                patch.set_facecolor(colors[model][0])
                patch.set_alpha(0.7)
            ax.plot([], [], color=colors[model][0], lw=6, alpha=0.7, label=model)
        ax.set_xticks(range(len(inputs)), inputs, rotation=20)
        ax.set_title(modality)
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    axes[0].set_ylabel("instance gate")
    axes[-1].legend(fontsize="small", frameon=False)
    return fig


def _gates(data: _Data, out_figs: list) -> _Section:
    sec = _Section("Calibration gates", "gates")
    samples = gate_samples(data)
    if samples.empty:
        sec.blocks.append(_Text("Not computed: no model in these runs recorded calibration gates (fields "
                                "gate_instance_<modality>, gate_dim_<modality>: our models with calibration do), "
                                "or the runs have no clean cell to pair them with."))
        return sec
    sec.blocks.append(_Text(
        "The pre-fusion calibration's gates as the models applied them, per sample and modality: the instance "
        "gate g (one scale per sample) and the mean of the dimension gate d over feature dimensions; both lie in "
        "(0, 2) and are 1 at initialisation. Corrupted / conflicting: the samples a corruption / conflict cell "
        "touching this modality affected (every level, corruption and rate pooled); other conflicting: a "
        "conflict on another modality. Change and 'lower': the same sample's gate minus its clean gate, and the "
        "fraction of samples where it is lower (about 0.5 if the gate ignored the perturbation)."))
    fig = _gate_figure(samples, data.models)
    out_figs.append(fig)
    sec.blocks.append(_Figure("gates", fig, "Instance gate per modality and input kind (boxes: quartiles, "
                                            "whiskers 1.5 IQR, all replicates pooled)."))
    summary = gate_summary(samples)
    shown = pd.DataFrame({
        "model": summary["model"], "modality": summary["modality"], "input": summary["input"],
        "n": summary["n"], data.metric: [_fmt(v) for v in summary["accuracy"]],
        "median g": [_fmt(v) for v in summary["median_instance"]],
        "median Δg": [_fmt(v) if i != "clean" else "–" for v, i in zip(summary["median_change_instance"], summary["input"])],
        "g lower": [_fmt(v, 2) if i != "clean" else "–" for v, i in zip(summary["lower_instance"], summary["input"])],
        "median mean d": [_fmt(v) for v in summary["median_dim"]],
        "median Δd": [_fmt(v) if i != "clean" else "–" for v, i in zip(summary["median_change_dim"], summary["input"])],
        "d lower": [_fmt(v, 2) if i != "clean" else "–" for v, i in zip(summary["lower_dim"], summary["input"])],
    })
    sec.blocks.append(_Table("gates", summary, shown, "Gates and accuracy on the same samples, per model, "
                                                      "modality and input kind (replicates pooled)"))
    return sec


def _curve_points(data: _Data, boot: _Boot) -> pd.DataFrame:
    """Metric per model × corruption × modality × level (level 0 = clean) with intervals."""
    df = data.cells
    corr = df[df["family"] == "corruption"]
    rows = []
    for (name, mods, rate), panel in corr.groupby(["name", "modalities", "rate"], sort=False):
        label = mods if rate == 1 else f"{mods} (rate {rate:g})"
        for model in data.models:
            own = panel[panel["model"] == model]
            if own.empty:
                continue
            clean = df[(df["model"] == model) & (df["family"] == "clean")]
            for level, cells in [(0.0, clean), *own.groupby("level")]:
                value, low, high = _estimate(data, boot, cells)
                rows.append(dict(model=model, name=name, modalities=label, level=float(level), value=value, low=low,
                                 high=high))
    return pd.DataFrame(rows)


def _curves(data: _Data, boot: _Boot, out_figs: list) -> _Section:
    sec = _Section("Per-corruption curves", "curves")
    if not (data.cells["family"] == "corruption").any():
        sec.blocks.append(_Text("Not computed: the runs have no corruption cells."))
        return sec
    points = _curve_points(data, boot)
    fig = plots.level_curves(points, ylabel=data.metric)
    out_figs.append(fig)
    bands = "two-stage bootstrap over replicates and samples" if data.replicated else "bootstrap over samples"
    sec.blocks.append(_Figure("curves", fig, f"{data.metric} vs severity level; level 0 is the clean cell; "
                                             f"bands: {CONFIDENCE:.0%} intervals ({bands})."))
    summary = level_summary(_metric_frame(data), data.metric)
    keys = ["model", "name", "modalities", "rate"]
    cols = ["clean", "mean", "worst", "worst_level", "auc", "relative_robustness"]
    summary = summary.groupby(keys, sort=False)[cols].mean().reset_index()
    sec.blocks.append(_Text(
        "Summary per curve (mean over replicates): mean and worst over levels > 0; auc = ∫ m(level) d level / "
        "(clean · max level) by the trapezoid rule on the true level spacing (1 = no loss); "
        "relative robustness = ∫ m d level / max level."
    ))
    sec.blocks.append(_Table("corruption_summary", summary, _shown(summary), "Per-corruption summary",
                             collapsed=len(summary) > 30))
    return sec


def _removal(data: _Data, boot: _Boot, out_figs: list) -> _Section:
    sec = _Section("Modality removal", "removal")
    df = data.cells
    removal = df[df["family"] == "removal"]
    if removal.empty:
        sec.blocks.append(_Text("Not computed: the runs have no modality-removal cells."))
        return sec
    rows = []
    for model in data.models:
        clean = df[(df["model"] == model) & (df["family"] == "clean")]
        value, low, high = _estimate(data, boot, clean)
        rows.append(dict(model=model, subset="none removed (clean)", value=value, low=low, high=high))
        own = removal[removal["model"] == model]
        groups = own.groupby(["name", "modalities", "rate"], sort=False)
        for (name, mods, rate), cells in sorted(groups, key=lambda g: (len(g[0][1].split("+")), g[0][1], g[0][0],
                                                                        g[0][2])):
            value, low, high = _estimate(data, boot, cells)
            label = f"{mods} removed ({name}" + (")" if rate == 1 else f", rate {rate:g})")
            rows.append(dict(model=model, subset=label, value=value, low=low, high=high))
    bars = pd.DataFrame(rows)
    fig = plots.removal_bars(bars, xlabel=data.metric)
    out_figs.append(fig)
    sec.blocks.append(_Figure("removal", fig, f"{data.metric} with each modality subset removed "
                                              f"(fill in parentheses), {CONFIDENCE:.0%} intervals."))
    shown = (bars.assign(ci=[_fmt_ci(*r) for r in bars[["value", "low", "high"]].to_numpy()])
             .pivot(index="subset", columns="model", values="ci").reindex(index=list(dict.fromkeys(bars["subset"])),
                                                                           columns=data.models)
             .fillna("–").reset_index())
    sec.blocks.append(_Table("removal", bars, shown, f"{data.metric} [{CONFIDENCE:.0%} CI] with the subset removed",
                             collapsed=len(shown) > 30))
    return sec


SHAPLEY_FORMULA = (
    "v(S) = metric with only the modalities in S present (v(all) = clean; v(S) = the removal cell whose removed\n"
    "       set is the complement of S; v(∅) = removal of every modality if evaluated, else chance 1/K)\n"
    "φ_i  = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))      (exact Shapley; Σ_i φ_i = v(N) − v(∅))\n"
    "confidence_i = mean over samples of 1 − H(p) / log K, with only modality i present\n"
    "reliance(S)  = v(N) − v(N ∖ S)    (drop when the subset S is removed)"
)


def _reliance(data: _Data) -> _Section:
    sec = _Section("Reliance and contribution", "reliance")
    frame = _metric_frame(data)
    if not ((frame["family"] == "removal") & (frame["rate"] == 1.0)).any():
        sec.blocks.append(_Text("Not computed: the runs have no modality-removal cells at rate 1."))
        return sec
    reliance = modality_reliance(frame, data.metric)
    keys = ["model", "fill", "removed"]
    reliance = reliance.groupby(keys, sort=False)[["clean", "value", "drop", "relative_drop"]].mean().reset_index()
    sec.blocks.append(_Text("Modality reliance (the dependency bias): drop of the metric when a subset is removed "
                            "from every sample, mean over replicates. Contribution: exact Shapley values over the "
                            "evaluated removal subsets, and a CAL-style confidence term beside them:"))
    sec.blocks.append(_Text(SHAPLEY_FORMULA, pre=True))
    shown = (reliance.assign(removed=[f"{r} ({f})" for r, f in zip(reliance["removed"], reliance["fill"])],
                             drop=[_fmt(v) for v in reliance["drop"]])
             .pivot(index="removed", columns="model", values="drop").reindex(columns=data.models).fillna("–")
             .reset_index())
    shown = shown.iloc[np.argsort([len(r.split("+")) for r in shown["removed"]], kind="stable")]
    sec.blocks.append(_Table("reliance", reliance, shown, f"Reliance: {data.metric} drop per removed subset (fill)", collapsed=len(shown) > 30))
    try:
        shap = modality_shapley(frame, data.metric, num_classes=data.num_classes)
    except InputError as e:
        sec.blocks.append(_Text(f"Shapley contributions not computed: {e}"))
        return sec
    cols = ["shapley", "value_alone", "confidence_alone", "empty_value"]
    shap = shap.groupby(["model", "fill", "modality"], sort=False)[cols].mean().reset_index()
    sec.blocks.append(_Table("contribution", shap, _shown(shap), "Contribution: Shapley value and confidence alone"))
    return sec


def _condition_label(row) -> str:
    """A short human label of a cell's condition."""
    rate = "" if row["rate"] == 1 else f", rate {row['rate']:g}"
    if row["family"] == "corruption":
        return f"{row['name']} on {row['modalities']} level {row['level']:g}{rate}"
    if row["family"] == "removal":
        return f"{row['modalities']} removed ({row['name']}{rate})"
    if row["family"] == "conflict":
        return f"conflict on {row['modalities']}{rate}"
    return str(row["name"])


def _reliability(data: _Data, out_figs: list) -> _Section:
    sec = _Section("Reliability", "reliability")
    if data.task != "classification":
        sec.blocks.append(_Text("Not computed: reliability diagrams need a classification task."))
        return sec
    df = data.cells
    first = df["replicate"].iloc[0]
    panels, eces = {}, {}
    for model in data.models:
        own = df[(df["model"] == model) & (df["replicate"] == df[df["model"] == model]["replicate"].iloc[0])]
        clean = own[own["family"] == "clean"]
        rest = own[own["family"] != "clean"]
        picks = []
        if len(clean):
            picks.append(("clean", clean.iloc[0]))
        if len(rest):
            worst = rest.loc[rest[data.metric].idxmin()]
            picks.append((f"worst: {_condition_label(worst)}", worst))
        for label, row in picks:
            rec = data.record(row)
            title = f"{model} · {label}"
            panels[title] = (rec["conf"], rec["pred"] == rec["target"])
            if "ece" in row and np.isfinite(row["ece"]):
                eces[title] = float(row["ece"])
    if not panels:
        sec.blocks.append(_Text("Not computed: no cells."))
        return sec
    fig = plots.reliability_diagram(panels, ece=eces, ncols=2)
    out_figs.append(fig)
    where = "" if not data.replicated else f" (replicate {first} of each model)"
    sec.blocks.append(_Figure("reliability", fig, "Reliability of the clean cell and the worst cell of each model"
                                                  f"{where}: accuracy per confidence bin (15 equal-width bins)."))
    return sec


def _ranking(data: _Data, out_figs: list) -> _Section:
    sec = _Section("Statistical ranking", "ranking")
    if len(data.models) < 3:
        sec.blocks.append(_Text(f"Omitted: a Friedman test with post-hoc comparisons needs at least 3 models; "
                                f"these runs have {len(data.models)}. Pairwise comparisons are in the calibration "
                                "section and in `rbmm compare`."))
        return sec
    df = data.cells[data.cells["family"] != "clean"]
    scores = df.pivot_table(index="condition", columns="model", values=data.metric, aggfunc="mean")
    scores = scores[data.models].dropna()
    if len(scores) < 2:
        sec.blocks.append(_Text("Omitted: fewer than 2 perturbed conditions are shared by every model."))
        return sec
    # accuracies of models on the same samples tie often: the tie-corrected statistic, said by name
    result = critical_difference(
        scores.to_numpy(), data.models, alpha=ALPHA, higher_is_better=data.higher_is_better, tie_correction=True
    )
    fr = result.friedman
    sec.blocks.append(_Text(
        f"Friedman test over the {fr.n} perturbed conditions shared by all {fr.k} models (ranks 1 = best, "
        f"replicates averaged per condition; {fr.formula}): χ²_F = {fr.chi2:.2f}, p = {_fmt_p(fr.p_value)}; Iman–Davenport "
        f"F = {fr.f_stat:.2f}, p = {_fmt_p(fr.f_p_value)}. Nemenyi critical difference at α = {ALPHA:g}: "
        f"CD = {result.cd:.3f}; models joined by a bar do not differ significantly. Conditions are not independent "
        "datasets (they share samples), so read the ranking as descriptive."
    ))
    ranks = dict(zip(data.models, result.avg_ranks))
    fig = plots.critical_difference(ranks, result.cd, [[data.models[i] for i in c] for c in result.cliques])
    out_figs.append(fig)
    sec.blocks.append(_Figure("critical_difference", fig, "Critical-difference diagram (Demšar 2006)."))
    table = pd.DataFrame({"model": data.models, "average rank": result.avg_ranks})
    pairs = pd.DataFrame(result.pvalues, index=data.models, columns=data.models).reset_index(names="model")
    sec.blocks.append(_Table("ranks", table, _shown(table), "Average ranks"))
    sec.blocks.append(_Table("nemenyi_p", pairs, _shown(pairs, p_columns=data.models), "Nemenyi p-values"))
    return sec


def _raw(data: _Data) -> _Section:
    sec = _Section("Raw per-cell table", "raw")
    metric_cols = [c for c in data.cells.columns if c in METRICS]
    cols = ["model", "run", "seed", "family", "name", "modalities", "level", "rate", "n", "nonfinite", *metric_cols]
    table = data.cells[[c for c in cols if c in data.cells.columns]]
    if len(data.runs) == 1:
        table = table.drop(columns="run")
    sec.blocks.append(_Table("cells", table, _shown(table, digits=4), f"All {len(table)} cells", collapsed=True))
    return sec


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1b1b1b;
background:#fff;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:1.7em;margin:0 0 4px}h2{font-size:1.3em;margin-top:2.2em;border-bottom:2px solid #0072B2;
padding-bottom:3px}
.meta{color:#555;font-size:.9em}
nav{background:#f3f6f9;border:1px solid #d8e1ea;border-radius:6px;padding:8px 14px;margin:16px 0;font-size:.95em}
nav a{margin-right:14px;color:#0b5a8c;text-decoration:none;white-space:nowrap}
.scroll{overflow-x:auto;margin:2px 0 16px}
table{border-collapse:collapse;font-size:.86em;font-variant-numeric:tabular-nums}
.cap{font-weight:600;margin:14px 0 2px;color:#333;font-size:.9em}
th,td{border:1px solid #d4d4d4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:12px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;margin-top:4px}
pre{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;padding:10px;overflow-x:auto;font-size:.85em}
details summary{cursor:pointer;color:#0b5a8c;margin:8px 0}
"""


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.shown.itertuples(index=False)
    )
    caption = f'<p class="cap">{html.escape(table.caption)} (tables/{html.escape(table.name)}.csv)</p>'
    inner = f'{caption}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if table.collapsed:
        return (f"<details><summary>{html.escape(table.caption)}: {len(table.shown)} rows (click to show)</summary>"
                f"{inner}</details>")
    return inner


def _md_cell(value) -> str:
    return html.escape(str(value)).replace("|", "\\|").replace("\n", " ")


def _md_table(table: _Table) -> str:
    cols = list(table.shown.columns)
    lines = [f"**{_md_cell(table.caption)}** (`tables/{table.name}.csv`)", "",
             "| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.shown.itertuples(index=False)]
    return "\n".join(lines)


def _render(sections: list[_Section], title: str, subtitle: str, out: Path) -> Path:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    nav = "\n".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    parts_html = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(subtitle)}</p>', f"<nav>{nav}</nav>"]
    parts_md = [f"# {_md_cell(title)}", "", _md_cell(subtitle), ""]
    for sec in sections:
        parts_html.append(f'<section id="{sec.anchor}"><h2>{html.escape(sec.title)}</h2>')
        parts_md += [f"## {_md_cell(sec.title)}", ""]
        for block in sec.blocks:
            if isinstance(block, _Text):
                if block.pre:
                    parts_html.append(f"<pre>{html.escape(block.text)}</pre>")
                    parts_md += ["```", block.text, "```", ""]
                else:
                    parts_html.append(f"<p>{html.escape(block.text)}</p>")
                    parts_md += [_md_cell(block.text), ""]
            elif isinstance(block, _Table):
                block.frame.to_csv(out / "tables" / f"{block.name}.csv", index=False)
                parts_html.append(_html_table(block))
                parts_md += [_md_table(block), ""]
            else:
                paths = plots.save_figure(block.figure, out / "figures" / block.name)
                data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
                parts_html.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption, quote=True)}">'
                    f"<figcaption>{html.escape(block.caption)} "
                    f"(figures/{html.escape(block.name)}.svg)</figcaption></figure>"
                )
                parts_md += [f"![{_md_cell(block.caption)}](figures/{block.name}.png)", "",
                             f"*{_md_cell(block.caption)}* ([SVG](figures/{block.name}.svg))", ""]
        parts_html.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        + "\n".join(parts_html)
        + "</main></body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / "report.md").write_text("\n".join(parts_md) + "\n", encoding="utf-8")
    return index


def write_report(runs, out, *, reference: str | None = None, title: str | None = None) -> Path:
    """Write index.html, report.md, figures/ and tables/ for one or more run folders into `out`.

    runs : run folder paths or `Run`s (what `evaluate` returns); several (e.g. one per training seed) are merged as replicates.
    reference : the CE/mCE reference model (default: the first model).
    Returns the path of index.html.
    """
    out = Path(out)
    data = _load(runs)
    if reference is None:
        reference = data.models[0]
    elif reference not in data.models:
        raise one_of("reference model", reference, data.models)
    boot = _Boot(data)
    figures: list[Figure] = []
    headline, _ = _headline(data, boot, reference)
    sections = [
        _setup(data),
        headline,
        _calibration(data, figures),
        _gates(data, figures),
        _curves(data, boot, figures),
        _removal(data, boot, figures),
        _reliance(data),
        _reliability(data, figures),
        _ranking(data, figures),
        _raw(data),
    ]
    title = title or "Robustness report: " + ", ".join(data.runs)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    subtitle = f"robustbench-mm {__version__}, generated {stamp} from {', '.join(str(r.path) for r in data.runs.values())}"
    return _render(sections, title, subtitle, out)


# ---------------------------------------------------------------------------------------------
# rbmm compare
# ---------------------------------------------------------------------------------------------


def _match_models(a: _Data, b: _Data) -> list[tuple[str, str]]:
    shared = [m for m in a.models if m in b.models]
    if shared:
        return [(m, m) for m in shared]
    if len(a.models) == 1 and len(b.models) == 1:
        return [(a.models[0], b.models[0])]
    raise InputError(
        f"runs share no model name (A: {', '.join(a.models)}; B: {', '.join(b.models)}) and do not hold one model each"
    )


def compare_runs(run_a, run_b, *, metric: str = "accuracy", alpha: float = ALPHA) -> pd.DataFrame:
    """Matched cells of two runs (same model name, or the single model of each; same condition and seed).

    diff = metric(B) − metric(A) with a 95% paired bootstrap interval; p from the exact McNemar test
    (classification; the bootstrap p for other metrics of regression), Holm-adjusted over all
    matched cells; significant = p_holm < alpha. Both runs must hold the same samples per cell.
    """
    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    a, b = _load([run_a]), _load([run_b])
    if metric not in METRICS or METRICS[metric].task != a.task:
        raise one_of(f"{a.task} metric", metric, [m for m, s in METRICS.items() if s.task == a.task])
    if a.task != b.task:
        raise InputError(f"run {run_a} is {a.task}, run {run_b} is {b.task}: nothing to compare")
    rows = []
    for model_a, model_b in _match_models(a, b):
        ca = a.cells[a.cells["model"] == model_a].set_index(["condition", "seed"])
        cb = b.cells[b.cells["model"] == model_b].set_index(["condition", "seed"])
        for key in ca.index.intersection(cb.index):
            ra, rb = ca.loc[key], cb.loc[key]
            rec_a, rec_b = a.record(ra), b.record(rb)
            res = paired_bootstrap(rec_b, rec_a, metric, n_resamples=N_RESAMPLES, seed=0, confidence=CONFIDENCE,
                                   num_classes=a.num_classes)
            if a.task == "classification" and metric == "accuracy":
                p = mcnemar_exact(rec_b["pred"] == rec_b["target"], rec_a["pred"] == rec_a["target"]).p_value
            else:
                p = res.p_value
            va = float(resampled_metric(rec_a, metric, a.task, a.num_classes, np.ones((1, len(rec_a["ids"]))))[0])
            rows.append({
                "model_a": model_a, "model_b": model_b, "condition": key[0], "seed": key[1],
                "family": ra["family"], "name": ra["name"], "modalities": ra["modalities"], "level": ra["level"],
                "a": va, "b": va + res.estimate, "diff": res.estimate, "low": res.low, "high": res.high, "p": p,
            })
    differences = run_differences(next(iter(a.runs.values())).manifest.to_json(), next(iter(b.runs.values())).manifest.to_json())
    if not rows:
        raise InputError(f"runs {run_a} and {run_b} share no (model, condition, seed) cell" + "".join(f"; {d}" for d in differences))
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df["p"].to_numpy())
    df["significant"] = df["p_holm"] < alpha
    df.attrs.update(metric=metric, alpha=alpha, run_a=str(run_a), run_b=str(run_b), differences=differences)
    return df


def run_differences(a: dict, b: dict) -> list[str]:
    """What makes two runs' cells mean different things: the protocol (name, hash) and the plug-ins
    that shaped it (name, source, SHA-256), one line each, A first; empty when they agree."""
    out = []
    pa, pb = a.get("protocol") or {}, b.get("protocol") or {}
    if (pa.get("name"), pa.get("hash")) != (pb.get("name"), pb.get("hash")):
        out.append(
            f"protocol differs: A {pa.get('name')!r} (hash {str(pa.get('hash'))[:12]}), "
            f"B {pb.get('name')!r} (hash {str(pb.get('hash'))[:12]}); only the conditions both hold are compared"
        )
    plugs_a = {p.get("name"): p for p in a.get("plugins") or [] if isinstance(p, dict)}
    plugs_b = {p.get("name"): p for p in b.get("plugins") or [] if isinstance(p, dict)}
    for name in sorted(set(plugs_a) | set(plugs_b), key=str):
        pa_, pb_ = plugs_a.get(name), plugs_b.get(name)
        if pa_ is None or pb_ is None:
            have = pa_ or pb_
            out.append(f"plug-in {name!r} ({have.get('source')}, sha256 {str(have.get('sha256'))[:12]}) shaped only run {'A' if pb_ is None else 'B'}")
        elif pa_.get("sha256") != pb_.get("sha256"):
            out.append(
                f"plug-in {name!r} differs: A {pa_.get('source')} (sha256 {str(pa_.get('sha256'))[:12]}), "
                f"B {pb_.get('source')} (sha256 {str(pb_.get('sha256'))[:12]})"
            )
    return out


def format_comparison(df: pd.DataFrame) -> str:
    """Terminal table of the cells whose difference is significant after Holm correction."""
    metric, alpha = df.attrs.get("metric", "metric"), df.attrs.get("alpha", ALPHA)
    sig = df[df["significant"]].sort_values("p_holm")
    head = "".join(f"note: {d}\n" for d in df.attrs.get("differences", [])) + (
        f"{len(sig)} of {len(df)} matched cells differ significantly in {metric} (B − A, Holm-adjusted p < {alpha:g})"
    )
    if sig.empty:
        return head
    labels = [f"{r.model_a}" + ("" if r.model_a == r.model_b else f" vs {r.model_b}") + f"  s{r.seed} {r.condition}"
              for r in sig.itertuples()]
    width = max(len("cell"), *(len(x) for x in labels))
    lines = [head, f"{'cell':<{width}}  {'A':>7}  {'B':>7}  {'B − A':>8}  {'95% CI':>19}  {'p (Holm)':>9}"]
    for label, r in zip(labels, sig.itertuples()):
        lines.append(f"{label:<{width}}  {r.a:7.4f}  {r.b:7.4f}  {r.diff:+8.4f}  [{r.low:+.4f}, {r.high:+.4f}]  "
                     f"{_fmt_p(r.p_holm):>9}")
    return "\n".join(lines)
