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
    panels, eces = {}, {}
    for model in data.models:
        own = df[(df["model"] == model) & (df["replicate"] == df[df["model"] == model]["replicate"].iloc[0])]
        clean = clean_cells(own)
        rest = perturbed_cells(own)
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
        return None
    fig = plots.reliability_diagram(panels, ece=eces, ncols=2)
    where = "" if not data.replicated else f" (replicate {first} of each model)"
    sec.blocks.append(ctx.figure("reliability", fig, "Reliability of the clean cell and the worst cell of each model"
                                                  f"{where}: accuracy per confidence bin (15 equal-width bins)."))
    return sec

