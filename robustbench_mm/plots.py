"""Figures of a robustness run: each function takes a small tidy table and returns a Figure.

The functions draw; they compute no statistics. Intervals, gains and p-values arrive as columns
computed by `metrics`/`stats` (the report builds those tables), so a figure never disagrees with
the table printed beside it. Colours come from the Okabe-Ito palette (safe for the common forms
of colour blindness) and every model keeps one colour and one marker across all figures.
`save_figure` writes PNG and SVG.

No backend is chosen at import (a notebook importing the report keeps its own): every figure is a
`matplotlib.figure.Figure` made by `new_figure` with its own Agg canvas, which needs no pyplot
backend, so drawing works the same under any `MPLBACKEND` and without a display.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .atomic import atomic_write
from .errors import InputError

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 110

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "svg.hashsalt": "robustbench-mm",
}


def new_figure(**kwargs) -> Figure:
    """A Figure (`matplotlib.figure.Figure` arguments) drawn by the Agg canvas, whatever the backend."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def model_colors(models: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per model, in the given order; cycles past eight models."""
    return {m: (OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(models)}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what}: table lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = new_figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=False, sharey=True)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    return fig, axes.flat[:n]


def level_curves(points: pd.DataFrame, *, ylabel: str = "accuracy", ncols: int = 4) -> Figure:
    """Metric vs severity level: one panel per corruption x modality, one line per model.

    points : one row per model x corruption x modalities x level with columns `model`, `name`,
        `modalities`, `level`, `value`, and optionally `low`/`high` (interval drawn as a band).
        Level 0 rows (the clean cell, repeated per panel) anchor each curve.
    """
    _require(points, ["model", "name", "modalities", "level", "value"], "level_curves")
    if points.empty:
        raise InputError("level_curves: no points to draw")
    models = list(dict.fromkeys(points["model"]))
    style = model_colors(models)
    panels = list(dict.fromkeys(zip(points["name"], points["modalities"])))
    banded = {"low", "high"} <= set(points.columns)
    with rc_context(_STYLE):
        fig, axes = _grid(len(panels), ncols, 3.1, 2.5)
        for ax, (name, mods) in zip(axes, panels):
            panel = points[(points["name"] == name) & (points["modalities"] == mods)]
            for model in models:
                line = panel[panel["model"] == model].sort_values("level")
                if line.empty:
                    continue
                color, marker = style[model]
                ax.plot(line["level"], line["value"], color=color, marker=marker, ms=4, lw=1.6, label=model)
                if banded and line[["low", "high"]].notna().all().all():
                    ax.fill_between(line["level"], line["low"], line["high"], color=color, alpha=0.18, lw=0)
            ax.set_title(f"{name} on {mods}")
            ax.set_xlabel("severity level")
            ax.set_xticks(sorted(panel["level"].unique()))
        for ax in axes[:: min(ncols, len(panels))]:
            ax.set_ylabel(ylabel)
        handles = [
            Line2D([], [], color=style[m][0], marker=style[m][1], lw=1.6, label=m) for m in models
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 4), frameon=False)
    return fig


def gain_heatmap(gains: pd.DataFrame, *, label: str = "accuracy gain (with − without calibration)") -> Figure:
    """Calibration gain per corruption x level, one panel per backbone; hatched = not significant.

    gains : columns `backbone`, `name`, `modalities`, `level`, `diff`, `significant` (bool, after
        the caller's multiple-testing correction). The colour scale is symmetric around zero.
    """
    _require(gains, ["backbone", "name", "modalities", "level", "diff", "significant"], "gain_heatmap")
    if gains.empty:
        raise InputError("gain_heatmap: no gains to draw")
    backbones = list(dict.fromkeys(gains["backbone"]))
    rows = list(dict.fromkeys(f"{n} on {m}" for n, m in zip(gains["name"], gains["modalities"])))
    levels = sorted(gains["level"].unique())
    bound = float(np.nanmax(np.abs(gains["diff"]))) or 1e-3
    cmap = sns.color_palette("vlag", as_cmap=True)
    with rc_context({**_STYLE, "axes.grid": False}):
        fig = new_figure(
            figsize=(1.6 + 0.75 * len(levels) * len(backbones) + 1.2, 1.0 + 0.42 * len(rows)),
            dpi=DPI,
            layout="constrained",
        )
        axes = fig.subplots(1, len(backbones), squeeze=False, sharey=True)[0]
        for ax, backbone in zip(axes, backbones):
            part = gains[gains["backbone"] == backbone].assign(
                row=lambda d: [f"{n} on {m}" for n, m in zip(d["name"], d["modalities"])]
            )
            grid = np.full((len(rows), len(levels)), np.nan)
            sig = np.zeros_like(grid, dtype=bool)
            for r in part.itertuples():
                i, j = rows.index(r.row), levels.index(r.level)
                grid[i, j], sig[i, j] = r.diff, bool(r.significant)
            image = ax.imshow(grid, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto")
            for i in range(len(rows)):
                for j in range(len(levels)):
                    if np.isnan(grid[i, j]):
                        continue
                    if not sig[i, j]:
                        ax.add_patch(
                            Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", ec="#aaaaaa", lw=0)
                        )
                    strong = abs(grid[i, j]) > 0.6 * bound
                    ax.text(
                        j, i, f"{grid[i, j]:+.3f}", ha="center", va="center", fontsize=8,
                        color="white" if strong else ("black" if sig[i, j] else "#555555"),
                        fontweight="bold" if sig[i, j] else "normal",
                    )
            ax.set_xticks(range(len(levels)), [f"{lv:g}" for lv in levels])
            ax.set_yticks(range(len(rows)), rows)
            ax.set_xlabel("severity level")
            ax.set_title(backbone)
        fig.colorbar(image, ax=list(axes), label=label, orientation="horizontal", shrink=0.5, aspect=40)
        fig.suptitle("hatched, grey text: not significant after Holm correction", fontsize=9)
    return fig


def removal_bars(removal: pd.DataFrame, *, xlabel: str = "accuracy") -> Figure:
    """Metric with each modality subset removed: grouped horizontal bars, one colour per model.

    removal : columns `model`, `subset` (a label such as "fou+fac removed"), `value`, and
        optionally `low`/`high` (drawn as error bars).
    """
    _require(removal, ["model", "subset", "value"], "removal_bars")
    if removal.empty:
        raise InputError("removal_bars: no removal cells to draw")
    models = list(dict.fromkeys(removal["model"]))
    subsets = list(dict.fromkeys(removal["subset"]))
    style = model_colors(models)
    height = 0.8 / len(models)
    with rc_context(_STYLE):
        fig = new_figure(figsize=(7.5, 1.0 + 0.16 * len(subsets) * len(models) + 0.2 * len(subsets)), dpi=DPI,
                     layout="constrained")
        ax = fig.subplots()
        for k, model in enumerate(models):
            part = removal[removal["model"] == model].set_index("subset").reindex(subsets)
            y = np.arange(len(subsets)) - 0.4 + height * (k + 0.5)
            err = None
            if {"low", "high"} <= set(part.columns):
                err = np.vstack([part["value"] - part["low"], part["high"] - part["value"]]).clip(min=0)
            ax.barh(y, part["value"], height=height * 0.92, color=style[model][0], label=model,
                    xerr=err, error_kw={"ecolor": "#222222", "elinewidth": 1, "capsize": 2})
        ax.set_yticks(range(len(subsets)), subsets)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_xlim(0, max(1.0, float(np.nanmax(removal.get("high", removal["value"])))))
        ax.grid(axis="y", visible=False)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(models), 4),
                   frameon=False)
    return fig


def critical_difference(
    ranks: Mapping[str, float],
    cd: float,
    cliques: Sequence[Sequence[str]] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Demšar's critical-difference diagram: average ranks on an axis, lower rank = better.

    ranks : average rank per model (1 = best). cd : the Nemenyi critical difference.
    cliques : groups of models not significantly different (thick bars). When omitted, the
        maximal runs of models whose average ranks lie within `cd` of each other, as in Demšar 2006.
    """
    if len(ranks) < 2:
        raise InputError(f"critical_difference: needs at least 2 models, got {len(ranks)}")
    order = sorted(ranks, key=ranks.get)
    k = len(order)
    if cliques is None:
        cliques = _cd_cliques([ranks[m] for m in order], cd, order)
    cliques = [list(c) for c in cliques if len(c) > 1]
    left = order[: (k + 1) // 2]
    right = order[(k + 1) // 2 :]
    lo, hi = 1, max(k, int(np.ceil(max(ranks.values()))))
    rows = max(len(left), len(right))
    left_labels = [f"{m} ({ranks[m]:.2f})" for m in left]
    right_labels = [f"({ranks[m]:.2f}) {m}" for m in right]
    axis_in = 4.5
    # the labels' own widths set the margins (a fixed 20% clipped "transformer+cal"), plus the
    # 0.1-rank gap between a line's end and its label, plus a little air
    gap_in = 0.1 * axis_in / (max(k, int(np.ceil(max(ranks.values())))) - 1 + 0.1) + 0.15
    with rc_context({**_STYLE, "axes.grid": False}):
        left_in = max(1.0, _text_width_inches(left_labels, 9) + gap_in)
        right_in = max(1.0, _text_width_inches(right_labels, 9) + gap_in)
        width = left_in + axis_in + right_in
        fig = new_figure(figsize=(width, 1.1 + 0.3 * (rows + len(cliques))), dpi=DPI)
        ax = fig.add_axes([left_in / width, 0.02, axis_in / width, 0.96])
        ax.set_axis_off()
        top = 0.0
        y_of = lambda i: -0.45 - 0.3 * len(cliques) - 0.4 * i  # noqa: E731
        ax.set_xlim(lo - 0.05, hi + 0.05)
        ax.set_ylim(y_of(rows - 1) - 0.25, 1.0)
        ax.hlines(top, lo, hi, color="black", lw=1.2)
        for r in range(lo, hi + 1):
            ax.vlines(r, top, top + 0.12, color="black", lw=1)
            ax.text(r, top + 0.18, str(r), ha="center", va="bottom", fontsize=9)
        # CD bar at the top-left
        ax.hlines(0.72, lo, lo + cd, color="black", lw=1.5)
        ax.vlines([lo, lo + cd], 0.66, 0.78, color="black", lw=1.5)
        ax.text(lo + cd / 2, 0.8, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
        style = model_colors(list(ranks))  # the caller's model order: same colours as the other figures
        for i, model in enumerate(left):
            y = y_of(i)
            ax.plot([ranks[model], ranks[model], lo - 0.05], [top, y, y], color=style[model][0], lw=1.3,
                    clip_on=False)
            ax.text(lo - 0.1, y, left_labels[i], ha="right", va="center", fontsize=9)
        for i, model in enumerate(right):
            y = y_of(i)
            ax.plot([ranks[model], ranks[model], hi + 0.05], [top, y, y], color=style[model][0], lw=1.3,
                    clip_on=False)
            ax.text(hi + 0.1, y, right_labels[i], ha="left", va="center", fontsize=9)
        for j, clique in enumerate(cliques):
            values = [ranks[m] for m in clique]
            y = -0.25 - 0.3 * j
            ax.hlines(y, min(values) - 0.03, max(values) + 0.03, color="black", lw=4)
        if title:
            fig.suptitle(title, fontsize=10)
    return fig


def _text_width_inches(texts: Sequence[str], fontsize: float) -> float:
    """The widest of `texts` as rendered (inches), so a figure can leave room for its labels."""
    probe = new_figure(dpi=DPI)
    renderer = probe.canvas.get_renderer()
    return max((probe.text(0, 0, t, fontsize=fontsize).get_window_extent(renderer).width for t in texts), default=0.0) / DPI


def _cd_cliques(sorted_ranks: list[float], cd: float, names: list[str]) -> list[list[str]]:
    """Maximal runs of consecutive (by rank) models spanning less than `cd` (Demšar's bars)."""
    runs = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and sorted_ranks[j + 1] - sorted_ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return [names[a : b + 1] for a, b in runs]


def reliability_diagram(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_bins: int = 15,
    ece: Mapping[str, float] | None = None,
    ncols: int = 4,
) -> Figure:
    """Accuracy vs confidence in equal-width bins, one panel per named cell (e.g. clean, worst).

    panels : title -> (conf, correct), per-sample max probability and 0/1 correctness.
    ece : optional title -> expected calibration error, printed in the panel (from `metrics`).
    Bars show each bin's accuracy; the hatched gap up (or down) to the bin's mean confidence is
    its miscalibration. The title gives the number of samples.
    """
    if not panels:
        raise InputError("reliability_diagram: no cells to draw")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    with rc_context(_STYLE):
        fig, axes = _grid(len(panels), ncols, 4.0, 3.3)
        for ax, (title, (conf, correct)) in zip(axes, panels.items()):
            conf = np.asarray(conf, dtype=np.float64)
            correct = np.asarray(correct, dtype=np.float64)
            which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
            count = np.bincount(which, minlength=n_bins)
            acc = np.bincount(which, weights=correct, minlength=n_bins) / np.maximum(count, 1)
            mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / np.maximum(count, 1)
            filled = count > 0
            ax.bar(centers[filled], acc[filled], width=1 / n_bins, color=OKABE_ITO[0], ec="white", lw=0.5,
                   label="accuracy")
            ax.bar(centers[filled], (mean_conf - acc)[filled], bottom=acc[filled], width=1 / n_bins, fill=False,
                   hatch="///", ec=OKABE_ITO[3], lw=0.8, label="gap to mean confidence")
            ax.plot([0, 1], [0, 1], ls="--", color="black", lw=1)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence")
            text = f"{title}\nn = {len(conf)}"
            if ece is not None and title in ece:
                text += f", ECE = {ece[title]:.3f}"
            ax.set_title(text)
        for ax in axes[:: min(ncols, len(panels))]:
            ax.set_ylabel("accuracy")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, frameon=False)
    return fig


def save_figure(fig: Figure, stem: str | Path) -> dict[str, Path]:
    """Write `stem.png` and `stem.svg` (creating folders; each whole or not at all); returns {"png": path, "svg": path}."""
    stem = Path(stem)
    paths = {"png": stem.with_suffix(".png"), "svg": stem.with_suffix(".svg")}
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    atomic_write(paths["png"], png.getvalue())
    engine = fig.get_layout_engine()
    fig.set_layout_engine("none")  # keep the layout the PNG computed: the SVG matches it, at half the cost
    # the SVG settings act when the file is written, not when the figure is drawn: the fixed salt
    # makes the clip-path ids, and so the file, the same on every run
    with rc_context({k: v for k, v in _STYLE.items() if k.startswith("svg.")}):
        svg = io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None})
    atomic_write(paths["svg"], svg.getvalue())
    fig.set_layout_engine(engine)
    return paths

