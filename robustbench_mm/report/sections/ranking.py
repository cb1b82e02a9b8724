"""Friedman test over the perturbed conditions with Nemenyi post-hoc comparisons and the
critical-difference diagram: a ranking of three or more models."""

from __future__ import annotations

import pandas as pd

from ... import plots
from ...domain import perturbed_cells
from ...stats import critical_difference
from ..context import Context, section
from ..document import Section, Table, Text, formatted, p_text
from ..estimates import ALPHA


@section("ranking", order=80)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    if not ctx.several_models:
        return None
    sec = Section("Statistical ranking", "ranking")
    if len(data.models) < 3:
        return ctx.omit(sec.title, f"a Friedman test with post-hoc comparisons needs at least 3 models; these runs "
                                   f"have {len(data.models)}. Two models are compared pairwise by `rbmm compare` "
                                   "(and, with and without calibration, in the calibration section)")
    scores = perturbed_cells(data.cells).pivot_table(index="condition", columns="model", values=data.metric,
                                                     aggfunc="mean")
    scores = scores.reindex(columns=data.models).dropna()
    if len(scores) < 2:
        return ctx.omit(sec.title, "fewer than 2 perturbed conditions are shared by every model")
    # accuracies of models on the same samples tie often: the tie-corrected statistic, said by name
    result = critical_difference(
        scores.to_numpy(), data.models, alpha=ALPHA, higher_is_better=data.higher_is_better, tie_correction=True
    )
    fr = result.friedman
    sec.blocks.append(Text(
        f"Friedman test over the {fr.n} perturbed conditions shared by all {fr.k} models (ranks 1 = best, "
        f"replicates averaged per condition; {fr.formula}): χ²_F = {fr.chi2:.2f}, {p_text(fr.p_value)}; Iman–Davenport "
        f"F = {fr.f_stat:.2f}, {p_text(fr.f_p_value)}. Nemenyi critical difference at α = {ALPHA:g}: "
        f"CD = {result.cd:.3f}; models joined by a bar do not differ significantly. Conditions are not independent "
        "datasets (they share samples), so read the ranking as descriptive."
    ))
    ranks = dict(zip(data.models, result.avg_ranks))
    fig = plots.critical_difference(ranks, result.cd, [[data.models[i] for i in c] for c in result.cliques])
    sec.blocks.append(ctx.figure("critical_difference", fig, "Critical-difference diagram (Demšar 2006)."))
    table = pd.DataFrame({"model": data.models, "average rank": result.avg_ranks})
    pairs = pd.DataFrame(result.pvalues, index=data.models, columns=data.models).reset_index(names="model")
    sec.blocks.append(Table("ranks", table, formatted(table), "Average ranks"))
    sec.blocks.append(Table("nemenyi_p", pairs, formatted(pairs, p_columns=data.models), "Nemenyi p-values"))
    return sec

