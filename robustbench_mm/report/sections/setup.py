"""The setup section."""

from __future__ import annotations

import json

import pandas as pd

from ...metrics import METRICS
from ..context import Context, section
from ..document import Section, Table, Text, formatted
from ..estimates import CONFIDENCE, N_RESAMPLES
from .calibration import backbone_of


@section("setup", order=0)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    sec = Section("Setup", "setup")
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
    sec.blocks.append(Text(
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
            sec.blocks.append(Text(f"Corruption plug-ins of {name}: " + "; ".join(
                json.dumps(p, default=str) if isinstance(p, dict) else str(p) for p in listed)))
    transposed = runs.set_index("run").T.reset_index(names="field").fillna("")
    sec.blocks.append(Table("runs", runs, transposed.astype(str), "Runs (hashes: first 16 hex digits)"))
    model_rows = []
    for name, run in data.runs.items():
        for entry in run.manifest.to_json()["models"]:
            config = entry.get("config") or {}
            backbone, calibrated = backbone_of(str(entry.get("name")), config)
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
        sec.blocks.append(Table("models", frame, formatted(frame), "Models (SHA-256 of the checkpoint, first 16 hex digits)"))
    return sec


def _short(value) -> str:
    """A hash shortened to 16 hex digits, enough to tell runs apart in a table."""
    return str(value)[:16]
