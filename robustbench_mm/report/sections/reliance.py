"""How much each model relies on each modality: the drop when a subset is removed, and exact Shapley
contributions over the evaluated removal subsets."""

from __future__ import annotations

import numpy as np

from ...domain import Family, cells
from ...errors import InputError
from ...metrics import modality_reliance, modality_shapley
from ..context import Context, section
from ..document import Section, Table, Text, fmt, formatted
from ..load import metric_frame


SHAPLEY_FORMULA = (
    "v(S) = metric with only the modalities in S present (v(all) = clean; v(S) = the removal cell whose removed\n"
    "       set is the complement of S; v(∅) = removal of every modality if evaluated, else chance 1/K)\n"
    "φ_i  = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))      (exact Shapley; Σ_i φ_i = v(N) − v(∅))\n"
    "confidence_i = mean over samples of 1 − H(p) / log K, with only modality i present\n"
    "reliance(S)  = v(N) − v(N ∖ S)    (drop when the subset S is removed)"
)


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
    sec.blocks.append(Text("Modality reliance (the dependency bias): drop of the metric when a subset is removed "
                            "from every sample, mean over replicates. Contribution: exact Shapley values over the "
                            "evaluated removal subsets, and a CAL-style confidence term beside them:"))
    sec.blocks.append(Text(SHAPLEY_FORMULA, pre=True))
    shown = (reliance.assign(removed=[f"{r} ({f})" for r, f in zip(reliance["removed"], reliance["fill"])],
                             drop=[fmt(v) for v in reliance["drop"]])
             .pivot(index="removed", columns="model", values="drop").reindex(columns=data.models).fillna("–")
             .reset_index())
    shown = shown.iloc[np.argsort([len(r.split("+")) for r in shown["removed"]], kind="stable")]
    sec.blocks.append(Table("reliance", reliance, shown, f"Reliance: {data.metric} drop per removed subset (fill)", collapsed=len(shown) > 30))
    try:
        shap = modality_shapley(frame, data.metric, num_classes=data.num_classes)
    except InputError as e:
        sec.blocks.append(Text(f"Shapley contributions not computed: {e}"))
        return sec
    cols = ["shapley", "value_alone", "confidence_alone", "empty_value"]
    shap = shap.groupby(["model", "fill", "modality"], sort=False)[cols].mean().reset_index()
    sec.blocks.append(Table("contribution", shap, formatted(shap), "Contribution: Shapley value and confidence alone"))
    return sec

