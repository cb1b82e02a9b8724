"""Metric against severity level per corruption × modality, one line per model with its interval
band, and the per-curve summaries of `metrics.level_summary` (mean, worst, AUC)."""

from __future__ import annotations

import pandas as pd

from ... import plots
from ...domain import Family, cells
from ...summaries import level_summary
from ..context import Context, section
from ..document import Section, Table, Text, formatted
from ..estimates import CONFIDENCE, Boot, estimate
from ..load import Data, metric_frame


def _curve_points(data: Data, boot: Boot) -> pd.DataFrame:
    """Metric per model × corruption × modality × level (level 0 = clean) with intervals."""
    df = data.cells
    corr = cells(df, Family.CORRUPTION)
    rows = []
    for (name, mods, rate), panel in corr.groupby(["name", "modalities", "rate"], sort=False):
        label = mods if rate == 1 else f"{mods} (rate {rate:g})"
        for model in data.models:
            own = panel[panel["model"] == model]
            if own.empty:
                continue
            clean = cells(df, Family.CLEAN, model=model)
            for level, at_level in [(0.0, clean), *own.groupby("level")]:
                value, low, high = estimate(data, boot, at_level)
                rows.append(dict(model=model, name=name, modalities=label, level=float(level), value=value, low=low,
                                 high=high))
    return pd.DataFrame(rows)


@section("curves", order=40)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    boot = ctx.boot
    sec = Section("Per-corruption curves", "curves")
    if cells(data.cells, Family.CORRUPTION).empty:
        return ctx.omit(sec.title, "the runs have no corruption cells")
    points = _curve_points(data, boot)
    fig = plots.level_curves(points, ylabel=data.metric)
    bands = "two-stage bootstrap over replicates and samples" if data.replicated else "bootstrap over samples"
    sec.blocks.append(ctx.figure("curves", fig, f"{data.metric} vs severity level; level 0 is the clean cell; "
                                             f"bands: {CONFIDENCE:.0%} intervals ({bands})."))
    summary = level_summary(metric_frame(data), data.metric)
    keys = ["model", "name", "modalities", "rate"]
    cols = ["clean", "mean", "worst", "worst_level", "auc", "relative_robustness"]
    summary = summary.groupby(keys, sort=False)[cols].mean().reset_index()
    sec.blocks.append(Text(
        "Summary per curve (mean over replicates): mean and worst over levels > 0; auc = ∫ m(level) d level / "
        "(clean · max level) by the trapezoid rule on the true level spacing (1 = no loss); "
        "relative robustness = ∫ m d level / max level."
    ))
    sec.blocks.append(Table("corruption_summary", summary, formatted(summary), "Per-corruption summary",
                             collapsed=len(summary) > 30))
    return sec

