"""The pre-fusion calibration's gates as the models applied them: do they fall on corrupted and
conflicting inputs? Paired per sample with the same sample's gates in the clean cell.
`gate_samples` and `gate_summary` are public (tools/gate_study.py reads them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from ... import plots
from ...domain import Family, Task
from ..context import Context, section
from ..document import Section, Table, Text, fmt
from ..load import Data, load
from .calibration import backbone_of


GATE_INPUTS = ("clean", "corrupted", "conflicting", "other conflicting")
_GATE_PREFIX = "gate_instance_"


def gate_samples(runs) -> pd.DataFrame:
    """One row per (cell, modality, affected sample) of the models that record calibration gates,
    paired with the same sample's gates in the clean cell of the same replicate and model.

    input: `clean` (the clean cell), `corrupted` / `conflicting` (a corruption / conflict cell
    touching this modality, only the samples it affected), `other conflicting` (a conflict cell
    touching another modality: does the partner's gate move?). Removal cells are left out (an
    absent modality's gate is NaN). Columns: run, replicate, model, modality, input, condition, id,
    gate_instance, gate_dim, clean_instance, clean_dim, correct. `runs`: what `write_report` takes.
    """
    data = runs if isinstance(runs, Data) else load(runs)
    frames = []
    wanted = {Family.CLEAN: "clean", Family.CORRUPTION: "corrupted", Family.CONFLICT: "conflicting"}
    for (replicate, model), cells in data.cells.groupby(["replicate", "model"], sort=False):
        clean_rows = cells[cells["family"] == Family.CLEAN]
        if clean_rows.empty:
            continue
        clean = data.record(clean_rows.iloc[0])
        modalities = [k[len(_GATE_PREFIX):] for k in clean if k.startswith(_GATE_PREFIX)]
        if not modalities or data.task != Task.CLASSIFICATION:
            continue
        for _, row in cells[cells["family"].isin(list(wanted))].iterrows():
            rec = data.record(row)
            if not np.array_equal(rec["ids"], clean["ids"]):
                continue  # a cell over other samples cannot be paired with the clean cell
            touched = set(row["modalities"].split("+")) if row["modalities"] else set()
            keep = np.ones(len(rec["ids"]), bool) if row["family"] == Family.CLEAN else rec["affected"].astype(bool)
            for m in modalities:
                kind = wanted[row["family"]]
                if kind != Family.CLEAN and m not in touched:
                    if kind != "conflicting":
                        continue
                    kind = "other conflicting"
                frames.append(pd.DataFrame({
                    "run": row["run"], "replicate": replicate, "model": model, "modality": m, "input": kind,
                    "condition": row["condition"], "id": rec["ids"][keep],
                    "gate_instance": rec[f"gate_instance_{m}"][keep], "gate_dim": rec[f"gate_dim_{m}"][keep],
                    "clean_instance": clean[f"gate_instance_{m}"][keep], "clean_dim": clean[f"gate_dim_{m}"][keep],
                    "correct": rec["pred"][keep] == rec["target"][keep],
                }))
    columns = ["run", "replicate", "model", "modality", "input", "condition", "id", "gate_instance", "gate_dim",
               "clean_instance", "clean_dim", "correct"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def gate_summary(samples: pd.DataFrame, by: tuple[str, ...] = ("model", "modality", "input")) -> pd.DataFrame:
    """Per group: samples, accuracy, median gates, median paired change vs clean and the fraction of
    samples whose gate is lower than its clean gate (strictly; 0 on the clean cell itself)."""
    rows = []
    for key, g in samples.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(n=len(g), accuracy=float(g["correct"].mean()))
        for kind in ("instance", "dim"):
            gate, clean = g[f"gate_{kind}"].to_numpy(np.float64), g[f"clean_{kind}"].to_numpy(np.float64)
            row[f"median_{kind}"] = float(np.nanmedian(gate))
            row[f"median_change_{kind}"] = float(np.nanmedian(gate - clean))
            row[f"lower_{kind}"] = float(np.mean(gate < clean))
        rows.append(row)
    return pd.DataFrame(rows)


def _gate_figure(samples: pd.DataFrame, models: list[str]) -> MplFigure:
    """One panel per modality: instance-gate boxes per input kind, one box per model."""
    modalities = list(samples["modality"].unique())  # unique(), not a set per model: one row per sample
    present_models, present_inputs = set(samples["model"].unique()), set(samples["input"].unique())
    models = [m for m in models if m in present_models]
    inputs = [i for i in GATE_INPUTS if i in present_inputs]
    colors = plots.model_colors(models)
    fig = plots.new_figure(figsize=(1.2 + 1.1 * len(inputs) * max(1, len(models)) ** 0.5 * len(modalities), 3.2),
                 dpi=plots.DPI, layout="constrained")
    axes = fig.subplots(1, len(modalities), squeeze=False, sharey=True)[0]
    width = 0.8 / max(1, len(models))
    for ax, modality in zip(axes, modalities):
        own = samples[samples["modality"] == modality]
        for j, model in enumerate(models):
            values = [own[(own["model"] == model) & (own["input"] == i)]["gate_instance"].dropna().to_numpy() for i in inputs]
            where = [k for k, v in enumerate(values) if len(v)]
            if not where:
                continue
            box = ax.boxplot([values[k] for k in where], positions=[k - 0.4 + width * (j + 0.5) for k in where],
                             widths=width * 0.9, patch_artist=True, showfliers=False)
            for patch in box["boxes"]:
                patch.set_facecolor(colors[model][0])
                patch.set_alpha(0.7)
            ax.plot([], [], color=colors[model][0], lw=6, alpha=0.7, label=model)
        ax.set_xticks(range(len(inputs)), inputs, rotation=20)
        ax.set_title(modality)
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    axes[0].set_ylabel("instance gate")
    axes[-1].legend(fontsize="small", frameon=False)
    return fig


@section("gates", order=30)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    if data.task != Task.CLASSIFICATION:
        return None  # gates are read beside accuracy
    sec = Section("Calibration gates", "gates")
    samples = gate_samples(data)
    if samples.empty:
        if not any(backbone_of(m, data.configs.get(m, {}))[1] for m in data.models):
            return None  # no model has calibration: no gates to expect
        return ctx.omit(sec.title, "no model in these runs recorded calibration gates (fields "
                                   "gate_instance_<modality>, gate_dim_<modality>: our models with calibration do), "
                                   "or the runs have no clean cell to pair them with")
    sec.blocks.append(Text(
        "The pre-fusion calibration's gates as the models applied them, per sample and modality: the instance "
        "gate g (one scale per sample) and the mean of the dimension gate d over feature dimensions; both lie in "
        "(0, 2) and are 1 at initialisation. Corrupted / conflicting: the samples a corruption / conflict cell "
        "touching this modality affected (every level, corruption and rate pooled); other conflicting: a "
        "conflict on another modality. Change and 'lower': the same sample's gate minus its clean gate, and the "
        "fraction of samples where it is lower (about 0.5 if the gate ignored the perturbation)."))
    fig = _gate_figure(samples, data.models)
    sec.blocks.append(ctx.figure("gates", fig, "Instance gate per modality and input kind (boxes: quartiles, "
                                            "whiskers 1.5 IQR, all replicates pooled)."))
    summary = gate_summary(samples)
    shown = pd.DataFrame({
        "model": summary["model"], "modality": summary["modality"], "input": summary["input"],
        "n": summary["n"], data.metric: [fmt(v) for v in summary["accuracy"]],
        "median g": [fmt(v) for v in summary["median_instance"]],
        "median Δg": [fmt(v) if i != "clean" else "–" for v, i in zip(summary["median_change_instance"], summary["input"])],
        "g lower": [fmt(v, 2) if i != "clean" else "–" for v, i in zip(summary["lower_instance"], summary["input"])],
        "median mean d": [fmt(v) for v in summary["median_dim"]],
        "median Δd": [fmt(v) if i != "clean" else "–" for v, i in zip(summary["median_change_dim"], summary["input"])],
        "d lower": [fmt(v, 2) if i != "clean" else "–" for v, i in zip(summary["lower_dim"], summary["input"])],
    })
    sec.blocks.append(Table("gates", summary, shown, "Gates and accuracy on the same samples, per model, "
                                                      "modality and input kind (replicates pooled)"))
    return sec

