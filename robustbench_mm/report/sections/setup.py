"""How the numbers were made, at the end of the report: the method of the intervals, the runs
(protocol, dataset, seeds, versions, hashes) and the models as one compact table of their
checkpoints' hashes and only the config fields that differ between them."""

from __future__ import annotations

import json

import pandas as pd

from ...metrics import METRICS
from ..context import Context, section
from ..document import Section, Table, Text, formatted
from ..estimates import CONFIDENCE, N_RESAMPLES
from ..load import Data
from .headline import shows_mce


def _short(value) -> str:
    """A hash shortened to 16 hex digits, enough to tell runs apart in a table."""
    return str(value)[:16]


def _config_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _runs_table(data: Data) -> pd.DataFrame:
    rows = []
    for name, run in data.runs.items():
        m = run.manifest
        rows.append({
            "run": name,
            "path": str(run.path),
            "complete": m.complete,
            "protocol": f"{m.protocol.name} (hash {_short(m.protocol.hash)}, seed {m.protocol.seed})",
            "dataset": f"{m.dataset.name} ({m.dataset.split}, {m.dataset.n} samples)",
            "dataset source": m.dataset.source,
            "dataset fingerprint": _short(m.dataset.fingerprint),
            "modalities": ", ".join(f"{k} ({v.get('kind', '?')})" if isinstance(v, dict) else str(k)
                                    for k, v in m.dataset.modalities.items()),
            "seeds": ", ".join(str(s) for s in m.seeds),
            "rng": m.rng,
            "versions": ", ".join(f"{k} {v}" for k, v in m.package.items()),
            "device": str(m.device_name or m.device or ""),
            "started": m.started,
            "finished": str(m.finished or ""),
            "cells": int((data.cells["run"] == name).sum()),
        })
    return pd.DataFrame(rows)


def models_table(data: Data) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per run × model: model, run (several runs only), sha256 and every config field whose
    value is not the same for all rows; the fields that are, field -> value)."""
    rows = []
    for name, run in data.runs.items():
        for entry in run.manifest.models:
            rows.append({"run": name, "model": entry.name, "sha256": _short(entry.sha256),
                         **{f"config {k}": _config_value(v) for k, v in entry.config.items()}})
    frame = pd.DataFrame(rows).fillna("")
    config = [c for c in frame.columns if c.startswith("config ")]
    shared = {c[len("config "):]: frame[c].iloc[0] for c in config if frame[c].nunique() == 1}
    keep = ["model", "sha256"] + [c for c in config if c[len("config "):] not in shared]
    if len(data.runs) > 1:
        keep.insert(1, "run")
    table = frame[keep].rename(columns={c: c[len("config "):] for c in config})
    return table, shared


def plugins_table(data: Data) -> pd.DataFrame:
    """One row per plug-in (name, source, sha256 and any further recorded field), with the runs it
    shaped: a table, where the manifest's JSON inline was unreadable."""
    rows: dict[tuple, dict] = {}
    for name, run in data.runs.items():
        for plugin in run.manifest.plugins or ():
            facts = {k: _config_value(v) for k, v in plugin.items()} if isinstance(plugin, dict) else {"name": str(plugin)}
            if "sha256" in facts:
                facts["sha256"] = _short(facts["sha256"])
            key = tuple(sorted(facts.items()))
            rows.setdefault(key, {**facts, "runs": []})["runs"].append(name)
    return pd.DataFrame([{**row, "runs": ", ".join(row["runs"])} for row in rows.values()])


@section("setup", order=100)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    sec = Section("Setup", "setup")
    sec.blocks.append(Text(
        f"{len(data.runs)} run(s), {len(data.models)} model(s), task {data.task}, headline metric {data.metric} "
        f"({METRICS[data.metric].description}). Intervals are {CONFIDENCE:.0%} "
        + (f"two-stage bootstrap intervals across replicates (runs × protocol seeds): each of {N_RESAMPLES} resamples "
           "draws the replicates with replacement and resamples the evaluation samples within each (seed 0), so "
           "an interval stays within the metric's range"
           + ("; mCE has a t interval across replicates." if shows_mce(ctx) else ".") if data.replicated
           else f"percentile bootstrap intervals over the evaluation samples ({N_RESAMPLES} resamples, seed 0).")
    ))
    plugins = plugins_table(data)
    if not plugins.empty:
        sec.blocks.append(Table("plugins", plugins, formatted(plugins),
                                "Plug-ins that shaped the runs: where each came from and its SHA-256 (first 16 hex digits)"))
    models, shared = models_table(data)
    if shared:
        what = "every model" if len(models) > 1 else models["model"].iloc[0]
        sec.blocks.append(Text(f"Config of {what}: " + ", ".join(f"{k} = {v}" for k, v in shared.items()) + "."))
    caption = "Models: SHA-256 of the weights (first 16 hex digits)" + (
        " and the config fields that differ between them" if len(models.columns) > 2 + (len(data.runs) > 1) else "")
    sec.blocks.append(Table("models", models, formatted(models), caption))
    runs = _runs_table(data)
    transposed = runs.set_index("run").T.reset_index(names="field").fillna("")
    sec.blocks.append(Table("runs", runs, transposed.astype(str), "Runs (hashes: first 16 hex digits)"))
    return sec
