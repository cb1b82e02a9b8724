"""Figures of a robustness run: each function takes a small tidy table and returns a Figure.

The functions draw; they compute no statistics. Intervals, gains and p-values arrive as columns
computed by `metrics`/`stats` (the report builds those tables), so a figure never disagrees with
the table printed beside it. Colours come from the Okabe-Ito palette (safe for the common forms
of colour blindness) and every model keeps one colour, marker and line style across all figures:
eight colours times eight markers (shifted by one per round of colours) and four line styles keep
up to 64 models apart, where cycling colour and marker together repeated a pair at the ninth.
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
import torch
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .atomic import atomic_write
from .errors import InputError

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
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
    """(colour, marker) per model, in the given order: no two of the first 64 models share both."""
    n = len(OKABE_ITO)
    return {m: (OKABE_ITO[i % n], MARKERS[(i + i // n) % len(MARKERS)]) for i, m in enumerate(models)}


def model_linestyles(models: Sequence[str]) -> dict[str, str]:
    """Line style per model: solid for the first eight, then one style per further round of colours."""
    return {m: LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)] for i, m in enumerate(models)}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what}: table lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")


_LEGEND_ROW = 0.24  # inches a row of a figure-level legend takes


def _grid(n: int, ncols: int, width: float, height: float, legend_rows: int = 0) -> tuple[Figure, np.ndarray]:
    """n panels of width x height inches, plus room for a legend of `legend_rows` rows below them
    (without it the legend's height is taken from the panels: 14 models left a 1-inch panel)."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = new_figure(figsize=(width * ncols, height * nrows + _LEGEND_ROW * legend_rows), dpi=DPI, layout="constrained")
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
    dashes = model_linestyles(models)
    panels = list(dict.fromkeys(zip(points["name"], points["modalities"])))
    banded = {"low", "high"} <= set(points.columns)
    with rc_context(_STYLE):
        fig, axes = _grid(len(panels), ncols, 3.1, 2.5, legend_rows=-(-len(models) // 4))
        for ax, (name, mods) in zip(axes, panels):
            panel = points[(points["name"] == name) & (points["modalities"] == mods)]
            for model in models:
                line = panel[panel["model"] == model].sort_values("level")
                if line.empty:
                    continue
                color, marker = style[model]
                ax.plot(line["level"], line["value"], color=color, marker=marker, ls=dashes[model], ms=4, lw=1.6,
                        label=model)
                if banded and line[["low", "high"]].notna().all().all():
                    ax.fill_between(line["level"], line["low"], line["high"], color=color, alpha=0.18, lw=0)
            ax.set_title(f"{name} on {mods}")
            ax.set_xlabel("severity level")
            ax.set_xticks(sorted(panel["level"].unique()))
        for ax in axes[:: min(ncols, len(panels))]:
            ax.set_ylabel(ylabel)
        handles = [
            Line2D([], [], color=style[m][0], marker=style[m][1], ls=dashes[m], lw=1.6, label=m) for m in models
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


MAX_SUBSETS_PER_PANEL = 8  # removal rows per panel: more go to a further panel beside it


def removal_bars(removal: pd.DataFrame, *, xlabel: str = "accuracy") -> Figure:
    """Metric with each modality subset removed: one row per subset, a dot per model (its colour
    and marker) with its interval as a whisker.

    Dots, not bars: a row holds many models in a bounded height (14 models as grouped bars made a
    3,599 px tall chart). More than MAX_SUBSETS_PER_PANEL subsets are split into panels side by
    side with a shared metric axis.

    removal : columns `model`, `subset` (a label such as "fou+fac removed"), `value`, and
        optionally `low`/`high` (drawn as whiskers).
    """
    _require(removal, ["model", "subset", "value"], "removal_bars")
    if removal.empty:
        raise InputError("removal_bars: no removal cells to draw")
    models = list(dict.fromkeys(removal["model"]))
    subsets = list(dict.fromkeys(removal["subset"]))
    style = model_colors(models)
    npanels = int(np.ceil(len(subsets) / MAX_SUBSETS_PER_PANEL))
    per_panel = int(np.ceil(len(subsets) / npanels))
    row_height = max(0.32, 0.055 * len(models))  # inches per subset: each model's dot on its own line
    whiskers = {"low", "high"} <= set(removal.columns)
    with rc_context(_STYLE):
        fig = new_figure(figsize=(7.5 * npanels, 1.3 + row_height * per_panel), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, npanels, squeeze=False, sharex=True)[0]
        offsets = (np.arange(len(models)) - (len(models) - 1) / 2) * (0.8 / max(len(models), 1))
        for p, ax in enumerate(axes):
            shown = subsets[p * per_panel:(p + 1) * per_panel]
            for k, model in enumerate(models):
                part = removal[removal["model"] == model].set_index("subset").reindex(shown)
                y = np.arange(len(shown)) + offsets[k]
                err = None
                if whiskers:
                    err = np.vstack([part["value"] - part["low"], part["high"] - part["value"]]).clip(min=0)
                color, marker = style[model]
                ax.errorbar(part["value"], y, xerr=err, fmt=marker, color=color, ms=4.5, elinewidth=1, capsize=0,
                            label=model)
            ax.set_yticks(range(len(shown)), shown)
            ax.set_ylim(len(shown) - 0.5, -0.5)
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
            for boundary in np.arange(len(shown) - 1) + 0.5:
                ax.axhline(boundary, color="#dddddd", lw=0.6)
        axes[0].set_xlim(0, max(1.0, float(np.nanmax(removal.get("high", removal["value"])))))
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(len(models), 4 * npanels),
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
    overlay: Mapping[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
) -> Figure:
    """Accuracy vs confidence in equal-width bins, one panel per named cell (e.g. a model's clean cell).

    panels : title -> (conf, correct), per-sample max probability and 0/1 correctness.
    ece : optional title -> expected calibration error, printed in the panel (from `metrics`).
    overlay : optional title -> (label, conf, correct): a second cell drawn in that panel as a line
        of its bins' accuracy at their mean confidence (a model's worst cell over its clean one),
        so one panel per model keeps the figure's height bounded.
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
            if overlay is not None and title in overlay:
                label, other_conf, other_correct = overlay[title]
                other_conf = np.asarray(other_conf, dtype=np.float64)
                other = np.clip(np.digitize(other_conf, edges[1:-1], right=True), 0, n_bins - 1)
                n_other = np.bincount(other, minlength=n_bins)
                hit = n_other > 0
                acc_other = np.bincount(other, weights=np.asarray(other_correct, dtype=np.float64), minlength=n_bins)
                conf_other = np.bincount(other, weights=other_conf, minlength=n_bins)
                ax.plot(conf_other[hit] / n_other[hit], acc_other[hit] / n_other[hit], color=OKABE_ITO[1], marker="o",
                        ms=3, lw=1.4)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence")
            text = f"{title}\nn = {len(conf)}"
            if ece is not None and title in ece:
                text += f", ECE = {ece[title]:.3f}"
            if overlay is not None and title in overlay:  # in the title: inside the axes it covered the bars
                text += f"\n{overlay[title][0]}"
            ax.set_title(text, fontsize=9)
        for ax in axes[:: min(ncols, len(panels))]:
            ax.set_ylabel("accuracy")
        handles, labels = axes[0].get_legend_handles_labels()
        if overlay:
            handles.append(Line2D([], [], color=OKABE_ITO[1], marker="o", ms=3, lw=1.4))
            labels.append("worst cell: accuracy per bin at its mean confidence")
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
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



GALLERY_LEVELS = (0, 1, 2, 3, 4, 5)
_GALLERY_TOKENS = 48  # token ids shown per panel
_GALLERY_TOKENS_PER_LINE = 8


def _token_lines(n: int) -> int:
    """Lines of text a panel of n token ids takes (an ellipsis line when some are left out)."""
    shown = min(n, _GALLERY_TOKENS)
    return -(-shown // _GALLERY_TOKENS_PER_LINE) + (n > _GALLERY_TOKENS)


def _gallery_image(ax, x: torch.Tensor, spec, clean: torch.Tensor) -> None:
    """An image (C, H, W) at its value range (or the clean image's), grey for one channel."""
    low, high = spec.value_range if spec.value_range is not None else (float(clean.min()), float(clean.max()))
    u = ((x.float() - low) / max(high - low, 1e-12)).clamp(0, 1)
    if u.shape[0] == 3:
        ax.imshow(u.permute(1, 2, 0).numpy(), interpolation="nearest")
    else:
        ax.imshow(u[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _gallery_tokens(ax, x: torch.Tensor) -> None:
    """Token ids as text, eight per line: 0 (padding) as '·', 1 (unknown) as '?'."""
    ids = [int(i) for i in x[:_GALLERY_TOKENS]]
    words = ["·" if i == 0 else "?" if i == 1 else str(i) for i in ids]
    lines = [" ".join(words[k:k + _GALLERY_TOKENS_PER_LINE]) for k in range(0, len(words), _GALLERY_TOKENS_PER_LINE)]
    ax.text(0.02, 0.98, "\n".join(lines) + ("\n…" if len(x) > _GALLERY_TOKENS else ""), va="top", ha="left",
            family="monospace", fontsize=8.5, transform=ax.transAxes)
    ax.axis("off")


def _spectrogram_db(x: torch.Tensor) -> np.ndarray:
    """|STFT|² in dB (Hann window, n_fft up to 256, hop n_fft/4), frequency on the first axis."""
    n_fft = int(min(256, max(16, 2 ** int(np.log2(max(len(x) // 8, 16))))))
    window = torch.hann_window(n_fft, dtype=torch.float64)
    power = torch.stft(x.double(), n_fft, hop_length=n_fft // 4, window=window, return_complex=True).abs() ** 2
    return (10 * torch.log10(power + 1e-12)).numpy()


def corruption_gallery(data, corruption: str, *, levels: Sequence[float] = GALLERY_LEVELS, sample: int = 0,
                       seed: int = 0) -> Figure:
    """One sample under `corruption` at each level, for every modality of `data` it applies to.

    data : a loaded dataset (`robustbench_mm.load_dataset(...)`); sample : the row to draw.
    Columns are levels (0 = the clean sample); rows are modalities: an image as a picture, audio
    as its waveform and a spectrogram (two rows), tokens as their ids, a vector as its values, a
    sequence as a time × channel map. The noise is the evaluation's own common random numbers for
    (seed, condition, sample id), so the picture shows what a model saw at that seed.
    """
    from .corruptions import Condition, apply_condition, get_corruption

    spec = get_corruption(corruption)
    if not 0 <= sample < len(data):
        raise InputError(f"--sample {sample} out of range; the dataset has {len(data)} samples (0 to {len(data) - 1})")
    bad = [lv for lv in levels if not 0 <= float(lv) <= 5]
    if bad or not levels:
        raise InputError(f"--levels {', '.join(map(str, levels))}: expected levels from 0 to 5")
    modalities = [m for m, s in data.specs.items() if spec.supports(s) is None]
    if not modalities:
        kinds = ", ".join(f"{m} ({s.kind})" for m, s in data.specs.items())
        raise InputError(f"corruption {corruption!r} applies to none of the modalities of {data.name} ({kinds}); "
                         f"it supports: {', '.join(spec.kinds)}")
    batch = next(data.subset(torch.tensor([sample])).batches(1))
    rows = [(m, "spectrogram" if part else "main") for m in modalities
            for part in ((0, 1) if data.specs[m].kind == "audio" else (0,))]
    # a row as tall as its content: an image square, a plot a little flatter, tokens their lines of text
    heights = [1.0 if data.specs[m].kind == "image" else 0.1 + 0.08 * _token_lines(len(batch.inputs[m][0]))
               if data.specs[m].kind == "tokens" else 0.75 for m, _ in rows]
    with rc_context(_STYLE):
        fig = new_figure(figsize=(0.6 + 1.9 * len(levels), 0.7 + 1.9 * sum(heights)), dpi=DPI, layout="constrained")
        axes = fig.subplots(len(rows), len(levels), squeeze=False, gridspec_kw={"height_ratios": heights})
        for j, level in enumerate(levels):
            shown = {}
            for m in modalities:
                if float(level) == 0.0:
                    shown[m] = batch.inputs[m][0]
                else:
                    condition = Condition("corruption", corruption, (m,), level=float(level))
                    shown[m] = apply_condition(batch, condition, data.specs, seed).inputs[m][0]
            for i, (m, part) in enumerate(rows):
                ax, x, mspec, clean = axes[i, j], shown[m].detach().cpu(), data.specs[m], batch.inputs[m][0].cpu()
                if mspec.kind == "image":
                    _gallery_image(ax, x, mspec, clean)
                elif mspec.kind == "tokens":
                    _gallery_tokens(ax, x)
                elif mspec.kind == "audio" and part == "spectrogram":
                    ax.imshow(_spectrogram_db(x), origin="lower", aspect="auto", cmap="magma")
                    ax.set_xticks([])
                    ax.grid(False)
                elif mspec.kind == "sequence":
                    span = float(clean.float().abs().max()) or 1.0  # one colour scale for every level
                    ax.imshow(x.float().T.numpy(), aspect="auto", cmap="vlag", interpolation="nearest",
                              vmin=-1.5 * span, vmax=1.5 * span)
                    ax.grid(False)
                else:  # audio waveform, vector values
                    ax.plot(x.float().numpy(), lw=0.6, color=OKABE_ITO[0])
                    span = float(clean.float().abs().max()) or 1.0
                    ax.set_ylim(-1.6 * span if float(clean.min()) < 0 else 0, 1.6 * span)
                if j == 0:
                    ax.set_ylabel(f"{m} ({mspec.kind})" + ("\nspectrogram" if part == "spectrogram" else ""))
                if part == "main" and float(level) != 0.0:  # the kernel's parameter for this modality's kind,
                    # under the panel (inside it, it hid the data of waveforms and vectors; above, the level)
                    ax.set_xlabel(f"p = {spec.param(float(level), mspec.kind):g}", fontsize=8, color="0.3")
            axes[0, j].set_title("clean (level 0)" if float(level) == 0.0 else f"level {level:g}", fontsize=9)
        fig.suptitle(f"{corruption} on {data.name}, sample id {int(batch.ids[0])}, seed {seed} "
                     f"(p: the parameter in the corruption's unit, `rbmm list corruptions`)", fontsize=9)
    return fig
