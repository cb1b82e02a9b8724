"""With vs without calibration, cell by cell, for every backbone evaluated both ways.

Calibration pairs. A model with calibration is paired with the model without it that has the same
backbone: the manifest's model config gives the backbone (key `fusion`, else `backbone`) and
`calibration` (true/false). Only when a model has no such config does the name decide: `X+cal` or
`X-cal` pairs with `X`. Each shared cell is compared by `estimates.paired_test`, the test `rbmm
compare` uses, and Holm-corrected over all cells of the table.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ... import plots
from ...domain import Family
from ...metrics import resampled_metric
from ...stats import holm
from ..context import Context, section
from ..document import Section, Table, Text, fmt, fmt_ci, fmt_p, formatted
from ..estimates import ALPHA, CONFIDENCE, N_RESAMPLES, paired_test, paired_test_name
from ..load import Data


def backbone_of(name: str, config: dict) -> tuple[str, bool]:
    """(backbone, with calibration) from the model config, else from a '+cal'/'-cal' name suffix."""
    backbone = config.get("fusion", config.get("backbone"))
    if backbone is not None and "calibration" in config:
        return str(backbone), bool(config["calibration"])
    match = re.fullmatch(r"(.+)[+-]cal", name)
    return (match.group(1), True) if match else (name, False)


def calibration_pairs(models: list[str], configs: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(backbone, model without calibration, model with it) for every backbone that has both.

    From the manifest configs (keys fusion/backbone and calibration); name suffix '+cal'/'-cal'
    only for models without such a config. The first model of each kind per backbone is used.
    """
    without: dict[str, str] = {}
    with_: dict[str, str] = {}
    for model in models:
        backbone, calibrated = backbone_of(model, configs.get(model, {}))
        (with_ if calibrated else without).setdefault(backbone, model)
    return [(b, without[b], with_[b]) for b in without if b in with_]


def _pooled(data: Data, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-sample records of one model's cells in several replicates, one after the other."""
    records = [data.record(row) for _, row in rows.iterrows()]
    shared = set.intersection(*(set(r) for r in records))
    return {k: np.concatenate([r[k] for r in records]) for k in records[0] if k in shared}


def calibration_table(data: Data) -> pd.DataFrame:
    """One row per condition shared by a backbone's models without and with calibration: one paired
    test per condition (`estimates.paired_test`) over the samples of every replicate both models
    have, pooled (replicate after replicate, each sample paired with itself), Holm-adjusted over all
    rows. The heatmap, this table and the summary read these rows, so they agree by construction.

    value_without : the metric over the pooled samples; value_with = value_without + diff.
    """
    rows = []
    for backbone, without, with_ in calibration_pairs(data.models, data.configs):
        a = data.cells[data.cells["model"] == with_].set_index(["replicate", "condition"])
        b = data.cells[data.cells["model"] == without].set_index(["replicate", "condition"])
        shared = a.index.intersection(b.index)
        for condition in dict.fromkeys(shared.get_level_values("condition")):
            keys = [k for k in shared if k[1] == condition]
            ra, rb = a.loc[keys].reset_index(), b.loc[keys].reset_index()
            rec_with, rec_without = _pooled(data, ra), _pooled(data, rb)
            res = paired_test(rec_with, rec_without, data.metric, data.num_classes)
            base = float(resampled_metric(rec_without, data.metric, data.task, data.num_classes,
                                          np.ones((1, len(rec_without["ids"]))))[0])
            first = ra.iloc[0]
            rows.append({
                "backbone": backbone, "without": without, "with": with_, "replicates": len(keys),
                "condition": condition, "family": first["family"], "name": first["name"],
                "modalities": first["modalities"], "level": first["level"], "rate": first["rate"],
                "value_without": base, "value_with": base + res.diff,
                "diff": res.diff, "low": res.low, "high": res.high, "p": res.p,
            })
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm(table["p"].to_numpy())
        table["significant"] = table["p_holm"] < ALPHA
    return table


@section("calibration", order=20)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    if not ctx.several_models:
        return None
    sec = Section("With vs without calibration", "calibration")
    if not calibration_pairs(data.models, data.configs):
        return ctx.omit(sec.title, "no backbone has both a model with and one without calibration (manifest config "
                                   "keys fusion/backbone + calibration, or a '+cal'/'-cal' name suffix)")
    table = ctx.shared("calibration", lambda: calibration_table(data))
    if table.empty:
        return ctx.omit(sec.title, "the paired models share no cells")
    sec.blocks.append(Text(
        f"Difference with − without calibration of {data.metric} per cell, {CONFIDENCE:.0%} paired bootstrap "
        f"interval ({N_RESAMPLES} resamples), {paired_test_name(data.metric)} p-value, Holm–Bonferroni adjusted "
        f"over all {len(table)} cells of this table; significant = adjusted p < {ALPHA:g}."
        + (" One test per cell: the samples of every replicate (run × seed) are pooled, each paired with "
           "itself in the other model, so the heatmap, this table and the summary count the same cells."
           if data.replicated else "")
    ))
    corr = table[table["family"] == Family.CORRUPTION]
    if len(corr):
        sign = 1.0 if data.higher_is_better else -1.0
        gains = corr[["backbone", "name", "modalities", "level", "diff", "significant"]].copy()
        gains["diff"] *= sign
        fig = plots.gain_heatmap(gains, label=f"{data.metric} gain (with − without calibration)")
        sec.blocks.append(ctx.figure("calibration_gain", fig,
                                  "Calibration gain over corruption × level per backbone"
                                  + (" (replicates pooled)" if data.replicated else "")
                                  + "; hatched cells are not significant after Holm correction."))
    shown = table[["backbone", "replicates", "family", "name", "modalities", "level", "rate"]].copy()
    shown = formatted(shown)
    shown["without"] = [fmt(v) for v in table["value_without"]]
    shown["with"] = [fmt(v) for v in table["value_with"]]
    shown["difference [CI]"] = [fmt_ci(*r) for r in table[["diff", "low", "high"]].to_numpy()]
    shown["p"] = [fmt_p(v) for v in table["p"]]
    shown["p (Holm)"] = [fmt_p(v) for v in table["p_holm"]]
    shown["significant"] = ["yes" if s else "no" for s in table["significant"]]
    if not data.replicated:
        shown = shown.drop(columns="replicates")
    sec.blocks.append(Table("calibration", table, shown, "Calibration gain per cell", collapsed=len(table) > 30))
    return sec

