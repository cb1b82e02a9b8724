"""The metric with each modality subset removed (per fill and rate), with intervals."""

from __future__ import annotations

import pandas as pd

from ... import plots
from ...domain import Family, cells
from ..context import Context, section
from ..document import Section, Table, fmt_ci
from ..estimates import CONFIDENCE, estimate


@section("removal", order=50)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    boot = ctx.boot
    sec = Section("Modality removal", "removal")
    df = data.cells
    removal = cells(df, Family.REMOVAL)
    if removal.empty:
        return ctx.omit(sec.title, "the runs have no modality-removal cells")
    rows = []
    for model in data.models:
        clean = cells(df, Family.CLEAN, model=model)
        value, low, high = estimate(data, boot, clean)
        rows.append(dict(model=model, subset="none removed (clean)", value=value, low=low, high=high))
        own = removal[removal["model"] == model]
        groups = own.groupby(["name", "modalities", "rate"], sort=False)
        for (name, mods, rate), subset in sorted(groups, key=lambda g: (len(g[0][1].split("+")), g[0][1], g[0][0],
                                                                        g[0][2])):
            value, low, high = estimate(data, boot, subset)
            label = f"{mods} removed ({name}" + (")" if rate == 1 else f", rate {rate:g})")
            rows.append(dict(model=model, subset=label, value=value, low=low, high=high))
    bars = pd.DataFrame(rows)
    fig = plots.removal_bars(bars, xlabel=data.metric)
    sec.blocks.append(ctx.figure("removal", fig, f"{data.metric} with each modality subset removed "
                                              f"(fill in parentheses), {CONFIDENCE:.0%} intervals."))
    shown = (bars.assign(ci=[fmt_ci(*r) for r in bars[["value", "low", "high"]].to_numpy()])
             .pivot(index="subset", columns="model", values="ci").reindex(index=list(dict.fromkeys(bars["subset"])),
                                                                           columns=data.models)
             .fillna("–").reset_index())
    sec.blocks.append(Table("removal", bars, shown, f"{data.metric} [{CONFIDENCE:.0%} CI] with the subset removed",
                             collapsed=len(shown) > 30))
    return sec

