"""The metric with each modality subset removed (per fill and rate), with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ... import plots
from ...domain import Family, cells
from ..context import Context, section
from ..document import Section, Table, Text, fmt_ci
from ..estimates import CONFIDENCE, estimate


def _same_outputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two cells' records hold the same outputs sample by sample (classification: prediction
    and confidence; regression: the output)."""
    fields = ("pred", "conf") if "pred" in a else ("output",)
    return all(np.array_equal(a[f], b[f]) for f in fields)


def identical_fills(ctx: Context) -> dict[tuple[str, float], tuple[str, ...]]:
    """{(removed modalities, rate): fills} for each removal whose fills gave every model, in every
    replicate, the same predictions and confidences sample by sample: a model that reads the
    presence mask ignores the fill value, so zero and mean fill are one result, shown once."""
    def compute() -> dict[tuple[str, float], tuple[str, ...]]:
        data = ctx.data
        removal = cells(data.cells, Family.REMOVAL)
        merged = {}
        for (mods, rate), group in removal.groupby(["modalities", "rate"], sort=False):
            fills = tuple(dict.fromkeys(group["name"]))
            if len(fills) < 2:
                continue
            same = True
            for _, per_model in group.groupby(["model", "replicate"], sort=False):
                if len(per_model) != len(fills):
                    same = False
                    break
                records = [data.record(row) for _, row in per_model.iterrows()]
                same = all(_same_outputs(r, records[0]) for r in records[1:])
                if not same:
                    break
            if same:
                merged[(mods, float(rate))] = fills
        return merged
    return ctx.shared("identical_fills", compute)


def merged_fill_note(merged: dict[tuple[str, float], tuple[str, ...]]) -> str:
    fills = sorted({" and ".join(f) for f in merged.values()})
    return (f"{' / '.join(fills)} fill gave identical predictions for every model in {len(merged)} removal "
            "subset(s) (the models read the presence mask, not the filled values): those rows are shown once, "
            "labelled with both fills.")


@section("removal", order=50)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    boot = ctx.boot
    sec = Section("Modality removal", "removal")
    df = data.cells
    removal = cells(df, Family.REMOVAL)
    if removal.empty:
        return ctx.omit(sec.title, "the runs have no modality-removal cells")
    merged = identical_fills(ctx)
    rows = []
    for model in data.models:
        clean = cells(df, Family.CLEAN, model=model)
        value, low, high = estimate(data, boot, clean)
        rows.append(dict(model=model, subset="none removed (clean)", value=value, low=low, high=high))
        own = removal[removal["model"] == model]
        groups = own.groupby(["name", "modalities", "rate"], sort=False)
        for (name, mods, rate), subset in sorted(groups, key=lambda g: (len(g[0][1].split("+")), g[0][1], g[0][0],
                                                                        g[0][2])):
            fills = merged.get((mods, float(rate)))
            if fills is not None and name != fills[0]:
                continue  # the same result as the first fill, shown once
            value, low, high = estimate(data, boot, subset)
            name = " = ".join(fills) if fills is not None else name
            label = f"{mods} removed ({name}" + (")" if rate == 1 else f", rate {rate:g})")
            rows.append(dict(model=model, subset=label, value=value, low=low, high=high))
    bars = pd.DataFrame(rows)
    if merged:
        sec.blocks.append(Text(merged_fill_note(merged)))
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

