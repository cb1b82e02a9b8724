"""How much each model relies on each modality: the drop when a subset is removed, and exact Shapley
contributions over the evaluated removal subsets."""

from __future__ import annotations

import numpy as np

from ...domain import Family, Task, cells
from ...errors import InputError
from ...summaries import modality_reliance, modality_shapley
from ..context import Context, section
from ..document import Section, Table, Text, fmt, formatted
from ..load import metric_frame
from .removal import identical_fills, merged_fill_note


def shapley_formula(task: Task) -> str:
    """The definitions the tables use; chance level and confidence only where they exist (classification)."""
    empty = "removal of every modality if evaluated, else chance 1/K" if task == Task.CLASSIFICATION else (
        "removal of every modality, if evaluated")
    lines = [
        "v(S) = metric with only the modalities in S present (v(all) = clean; v(S) = the removal cell whose removed",
        f"       set is the complement of S; v(∅) = {empty})",
        "φ_i  = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))      (exact Shapley; Σ_i φ_i = v(N) − v(∅))",
    ]
    if task == Task.CLASSIFICATION:
        lines.append("confidence_i = mean over samples of 1 − H(p) / log K, with only modality i present")
    lines.append("reliance(S)  = v(N) − v(N ∖ S)    (drop when the subset S is removed)")
    return "\n".join(lines)


@section("reliance", order=60)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    sec = Section("Reliance and contribution", "reliance")
    frame = metric_frame(data)
    if cells(frame, Family.REMOVAL, rate=1.0).empty:
        return ctx.omit(sec.title, "the runs have no modality-removal cells at rate 1")
    reliance = modality_reliance(frame, data.metric)
    keys = ["model", "fill", "removed"]
    reliance = reliance.groupby(keys, sort=False)[["clean", "value", "drop", "relative_drop"]].mean().reset_index()
    merged = identical_fills(ctx)
    if merged:  # one row for fills that gave identical results (see the removal section)
        # keyed by the set of removed modalities: the reliance table writes them in its own order
        first = {frozenset(mods.split("+")): fills for (mods, rate), fills in merged.items() if rate == 1.0}
        fills_of = [first.get(frozenset(r.split("+"))) for r in reliance["removed"]]
        keep = [fills is None or f == fills[0] for fills, f in zip(fills_of, reliance["fill"])]
        reliance = reliance[keep].assign(fill=[" = ".join(fills) if fills is not None else f
                                               for fills, f, k in zip(fills_of, reliance["fill"], keep) if k])
    confidence = ", and a CAL-style confidence term beside them" if data.task == Task.CLASSIFICATION else ""
    sec.blocks.append(Text("Modality reliance (the dependency bias): drop of the metric when a subset is removed "
                           "from every sample, mean over replicates. Contribution: exact Shapley values over the "
                           f"evaluated removal subsets{confidence}:"))
    sec.blocks.append(Text(shapley_formula(data.task), pre=True))
    shown = (reliance.assign(removed=[f"{r} ({f})" for r, f in zip(reliance["removed"], reliance["fill"])],
                             drop=[fmt(v) for v in reliance["drop"]])
             .pivot(index="removed", columns="model", values="drop").reindex(columns=data.models).fillna("–")
             .reset_index())
    shown = shown.iloc[np.argsort([len(r.split("+")) for r in shown["removed"]], kind="stable")]
    if merged:
        sec.blocks.append(Text(merged_fill_note(merged)))
    sec.blocks.append(Table("reliance", reliance, shown, f"Reliance: {data.metric} drop per removed subset (fill)", collapsed=len(shown) > 30))
    try:
        shap = modality_shapley(frame, data.metric, num_classes=data.num_classes)
    except InputError as e:
        sec.blocks.append(Text(f"Shapley contributions not computed: {e}"))
        return sec
    if shap["shapley"].isna().all():
        chance = "" if data.task == Task.CLASSIFICATION else f" ({data.metric} has no chance level)"
        sec.blocks.append(Text("Shapley contributions not computed: they need v(∅), the metric with every modality "
                               f"removed, which these runs did not evaluate{chance}."))
        return sec
    cols = ["shapley", "value_alone", "confidence_alone", "empty_value"]
    if data.task != Task.CLASSIFICATION:
        cols.remove("confidence_alone")
    shap = shap.groupby(["model", "fill", "modality"], sort=False)[cols].mean().reset_index()
    same = {fills for (mods, rate), fills in merged.items() if rate == 1.0}
    subsets = set(cells(frame, Family.REMOVAL, rate=1.0)["modalities"])
    if len(same) == 1 and len([k for k in merged if k[1] == 1.0]) == len(subsets):
        # every subset's fills agree, so their Shapley values do too: one row per model and modality
        fills = same.pop()
        shap = shap[shap["fill"] == fills[0]].assign(fill=" = ".join(fills))
    caption = "Contribution: Shapley value" + (" and confidence alone" if data.task == Task.CLASSIFICATION else "")
    sec.blocks.append(Table("contribution", shap, formatted(shap), caption, collapsed=len(shap) > 30))
    return sec

