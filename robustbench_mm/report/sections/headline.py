"""The headline table: per model, clean and mean corrupted metric, mCE (classification, several
models) and the worst modality removal, each with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...domain import MEAN_CORRUPTED_CELLS, Family, Task, cells, clean_cells, corrupted_cells
from ...errors import InputError
from ...summaries import corruption_errors, mean_corruption_errors
from ...stats import mean_ci
from ..context import Context, section
from ..document import Section, Table, Text, fmt, fmt_ci
from ..estimates import estimate
from ..load import metric_frame


def shows_mce(ctx: Context) -> bool:
    """mCE is a classification summary against a reference model: shown only with a second model."""
    return ctx.data.task == Task.CLASSIFICATION and ctx.several_models


def worst_removal(ctx: Context, model: str) -> pd.DataFrame:
    """The removal cells (every replicate) of the subset, fill and rate where `model` does worst."""
    data = ctx.data
    removal = cells(data.cells, Family.REMOVAL, model=model)
    if removal.empty:
        return removal
    by_subset = removal.groupby(["name", "modalities", "rate"])[data.metric].mean()
    name, mods, rate = by_subset.idxmin() if data.higher_is_better else by_subset.idxmax()
    return cells(removal, name=name, modalities=mods, rate=rate)


def headline_table(ctx: Context) -> pd.DataFrame:
    """One row per model: clean, corrupted, mce, relative_mce, worst_removal (each with _low/_high
    where it has an interval) and worst_removed; `attrs["ce_note"]` says why mCE is missing."""
    data, boot = ctx.data, ctx.boot
    mce = pd.DataFrame(columns=["model", "mce", "relative_mce"])
    note = ""
    if shows_mce(ctx) and not cells(data.cells, Family.CORRUPTION).empty:
        try:
            mce = mean_corruption_errors(corruption_errors(metric_frame(data), ctx.reference, data.metric))
        except InputError as e:
            note = f"mCE not computed: {e}"
    rows = []
    for model in data.models:
        own = cells(data.cells, model=model)
        row: dict = {"model": model}
        for key, rows_of in (("clean", clean_cells(own)), ("corrupted", corrupted_cells(own))):
            row[key], row[f"{key}_low"], row[f"{key}_high"] = estimate(data, boot, rows_of)
        m = mce[mce["model"] == model]
        if len(m):
            ci = mean_ci(m["mce"].to_numpy()) if len(m) > 1 and model != ctx.reference else None  # the reference's is 1
            row.update(mce=float(m["mce"].mean()), mce_low=ci.low if ci else np.nan, mce_high=ci.high if ci else np.nan,
                       relative_mce=float(m["relative_mce"].mean()))
        else:
            row.update(mce=np.nan, mce_low=np.nan, mce_high=np.nan, relative_mce=np.nan)
        worst = worst_removal(ctx, model)
        row["worst_removal"], row["worst_removal_low"], row["worst_removal_high"] = estimate(data, boot, worst)
        first = worst.iloc[0] if len(worst) else None
        row["worst_removed"] = "" if first is None else f"{first['modalities']} ({first['name']}, rate {first['rate']:g})"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["ce_note"] = note
    return table


@section("headline", order=10)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    table = ctx.shared("headline", lambda: headline_table(ctx))
    sec = Section("Headline", "headline")
    mce_column = f"mCE (ref. {ctx.reference})"
    shown = pd.DataFrame({
        "model": table["model"],
        f"clean {data.metric}": [fmt_ci(*r) for r in table[["clean", "clean_low", "clean_high"]].to_numpy()],
        f"mean corrupted {data.metric}": [fmt_ci(*r) for r in table[["corrupted", "corrupted_low", "corrupted_high"]].to_numpy()],
        mce_column: [fmt_ci(*r) for r in table[["mce", "mce_low", "mce_high"]].to_numpy()],
        "relative mCE": [fmt(v) for v in table["relative_mce"]],
        f"worst removal {data.metric}": [fmt_ci(*r) for r in table[["worst_removal", "worst_removal_low", "worst_removal_high"]].to_numpy()],
        "worst removed subset": table["worst_removed"],
    })
    if not shows_mce(ctx):
        shown = shown.drop(columns=[mce_column, "relative mCE"])
    perturbed = {f: not cells(data.cells, f).empty for f in (Family.CORRUPTION, Family.REMOVAL)}
    if not perturbed[Family.CORRUPTION]:
        shown = shown.drop(columns=[f"mean corrupted {data.metric}"] + ([mce_column, "relative mCE"] if shows_mce(ctx) else []))
    if not perturbed[Family.REMOVAL]:
        shown = shown.drop(columns=[f"worst removal {data.metric}", "worst removed subset"])
    text = ["Clean and mean corrupted values with their intervals"
            + (f"; mean corrupted averages {MEAN_CORRUPTED_CELLS} (the same cells as the mean rbmm eval prints "
               "and the gate's)." if perturbed[Family.CORRUPTION] else ".")]
    if shows_mce(ctx) and perturbed[Family.CORRUPTION]:
        text.append(
            f"mCE and relative mCE follow ImageNet-C against the reference model {ctx.reference}: CE_c = Σ_s E_c,s / "
            "Σ_s E^ref_c,s and relative CE_c = Σ_s (E_c,s − E_clean) / Σ_s (E^ref_c,s − E^ref_clean), E = 1 − accuracy, "
            "averaged over corruptions c (each corruption × modality). mCE has an interval only across replicates, "
            "and none for the reference model (its mCE is 1 by definition)."
        )
    if perturbed[Family.REMOVAL]:
        text.append(f"Worst removal: the removal cell (subset, fill, rate) with the "
                    f"{'lowest' if data.higher_is_better else 'highest'} {data.metric} "
                    f"({'higher' if data.higher_is_better else 'lower'} is better).")
    sec.blocks.append(Text(" ".join(text)))
    if table.attrs["ce_note"]:
        sec.blocks.append(Text(table.attrs["ce_note"]))
    df = data.cells
    if "nonfinite" in df and df["nonfinite"].fillna(0).sum() > 0:
        counts = df.groupby("model", sort=False)["nonfinite"].sum()
        sec.blocks.append(Text(
            "NaN/Inf outputs, counted as wrong predictions (rbmm eval --nonfinite wrong): "
            + "; ".join(f"{m}: {int(c)} samples over {int((df[df['model'] == m]['nonfinite'] > 0).sum())} cells"
                        for m, c in counts.items() if c > 0)
            + ". The raw per-cell table has the count of each cell (column nonfinite)."
        ))
    sec.blocks.append(Table("headline", table, shown, "Headline per model"))
    return sec
