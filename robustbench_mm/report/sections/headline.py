"""The headline section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import InputError
from ...metrics import corruption_errors, mean_corruption_errors
from ...stats import mean_ci
from ..context import Context, section
from ..document import Section, Table, Text, fmt, fmt_ci
from ..estimates import estimate
from ..load import metric_frame


@section("headline", order=10)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    boot = ctx.boot
    reference = ctx.reference
    sec = Section("Headline", "headline")
    df = data.cells
    ce_note = ""
    mce = pd.DataFrame(columns=["model", "mce", "relative_mce"])
    if (df["family"] == "corruption").any() and data.task == "classification":
        try:
            mce = mean_corruption_errors(corruption_errors(metric_frame(data), reference, data.metric))
        except InputError as e:
            ce_note = f"mCE not computed: {e}"
    rows = []
    for model in data.models:
        cells = df[df["model"] == model]
        clean = estimate(data, boot, cells[cells["family"] == "clean"])
        corrupted = estimate(data, boot, cells[cells["family"] == "corruption"])
        row = {"model": model}
        row.update(clean=clean[0], clean_low=clean[1], clean_high=clean[2])
        row.update(corrupted=corrupted[0], corrupted_low=corrupted[1], corrupted_high=corrupted[2])
        m = mce[mce["model"] == model]
        if len(m):
            ci = mean_ci(m["mce"].to_numpy()) if len(m) > 1 and model != reference else None  # the reference's is 1
            row.update(mce=float(m["mce"].mean()), mce_low=ci.low if ci else np.nan, mce_high=ci.high if ci else np.nan,
                       relative_mce=float(m["relative_mce"].mean()))
        else:
            row.update(mce=np.nan, mce_low=np.nan, mce_high=np.nan, relative_mce=np.nan)
        removal = cells[(cells["family"] == "removal")]
        if len(removal):
            by_subset = removal.groupby(["name", "modalities", "rate"])[data.metric].mean()
            worst_key = by_subset.idxmin() if data.higher_is_better else by_subset.idxmax()
            worst_rows = removal[(removal["name"] == worst_key[0]) & (removal["modalities"] == worst_key[1])
                                 & (removal["rate"] == worst_key[2])]
            worst = estimate(data, boot, worst_rows)
            row.update(worst_removal=worst[0], worst_removal_low=worst[1], worst_removal_high=worst[2],
                       worst_removed=f"{worst_key[1]} ({worst_key[0]}, rate {worst_key[2]:g})")
        else:
            row.update(worst_removal=np.nan, worst_removal_low=np.nan, worst_removal_high=np.nan, worst_removed="")
        rows.append(row)
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "model": table["model"],
        f"clean {data.metric}": [fmt_ci(*r) for r in table[["clean", "clean_low", "clean_high"]].to_numpy()],
        f"mean corrupted {data.metric}": [fmt_ci(*r) for r in table[["corrupted", "corrupted_low", "corrupted_high"]].to_numpy()],
        f"mCE (ref. {reference})": [fmt_ci(*r) for r in table[["mce", "mce_low", "mce_high"]].to_numpy()],
        "relative mCE": [fmt(v) for v in table["relative_mce"]],
        f"worst removal {data.metric}": [fmt_ci(*r) for r in table[["worst_removal", "worst_removal_low", "worst_removal_high"]].to_numpy()],
        "worst removed subset": table["worst_removed"],
    })
    worst_word = "lowest" if data.higher_is_better else "highest"
    mce_text = (
        "mCE and relative mCE follow ImageNet-C against "
        f"the reference model {reference}: CE_c = Σ_s E_c,s / Σ_s E^ref_c,s and relative CE_c = "
        "Σ_s (E_c,s − E_clean) / Σ_s (E^ref_c,s − E^ref_clean), E = 1 − accuracy, averaged over corruptions c "
        "(each corruption × modality). mCE has an interval only across replicates, and none for the reference "
        "model (its mCE is 1 by definition). "
        if data.task == "classification"
        else f"mCE is a classification summary; for {data.metric} it is not computed. "
    )
    if data.task != "classification":
        shown = shown.drop(columns=[f"mCE (ref. {reference})", "relative mCE"])
    sec.blocks.append(Text(
        "Clean and mean corrupted values with their intervals; " + mce_text
        + f"Worst removal: the removal cell (subset, fill, rate) with the {worst_word} {data.metric} "
        f"({'higher' if data.higher_is_better else 'lower'} is better)."
    ))
    if ce_note:
        sec.blocks.append(Text(ce_note))
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

