"""Reliability diagrams of each model's clean cell and its worst cell (classification only)."""

from __future__ import annotations

import numpy as np

from ... import plots
from ...domain import Family, Task, clean_cells, perturbed_cells
from ..context import Context, section
from ..document import Section


def _condition_label(row) -> str:
    """A short human label of a cell's condition."""
    rate = "" if row["rate"] == 1 else f", rate {row['rate']:g}"
    if row["family"] == Family.CORRUPTION:
        return f"{row['name']} on {row['modalities']} level {row['level']:g}{rate}"
    if row["family"] == Family.REMOVAL:
        return f"{row['modalities']} removed ({row['name']}{rate})"
    if row["family"] == Family.CONFLICT:
        return f"conflict on {row['modalities']}{rate}"
    return str(row["name"])


@section("reliability", order=70)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    if data.task != Task.CLASSIFICATION:
        return None  # reliability diagrams are of class probabilities
    sec = Section("Reliability", "reliability")
    df = data.cells
    first = df["replicate"].iloc[0]
    panels, eces, worst_cells = {}, {}, {}
    for model in data.models:
        own = df[(df["model"] == model) & (df["replicate"] == df[df["model"] == model]["replicate"].iloc[0])]
        clean = clean_cells(own)
        rest = perturbed_cells(own)
        if clean.empty:
            continue
        rec = data.record(clean.iloc[0])
        panels[model] = (rec["conf"], rec["pred"] == rec["target"])
        if "ece" in clean and np.isfinite(clean.iloc[0]["ece"]):
            eces[model] = float(clean.iloc[0]["ece"])
        if len(rest):
            worst = rest.loc[rest[data.metric].idxmin()]
            bad = data.record(worst)
            ece = f", ECE {worst['ece']:.3f}" if "ece" in worst and np.isfinite(worst["ece"]) else ""
            worst_cells[model] = (f"worst: {_condition_label(worst)}{ece}", bad["conf"], bad["pred"] == bad["target"])
    if not panels:
        return None
    fig = plots.reliability_diagram(panels, ece=eces, ncols=4, overlay=worst_cells)
    where = "" if not data.replicated else f" (replicate {first} of each model)"
    sec.blocks.append(ctx.figure("reliability", fig, "Reliability of each model's clean cell (bars, ECE in the title) "
                                                  f"and its worst cell (line){where}: accuracy per confidence bin "
                                                  "(15 equal-width bins)."))
    return sec
