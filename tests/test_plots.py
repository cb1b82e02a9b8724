"""Plots draw what their table says: one panel per group, one line/bar per model, PNG and SVG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from robustbench_mm import plots
from robustbench_mm.errors import InputError

MODELS = ["concat", "concat+cal", "late"]
PANELS = [("gaussian", "pix"), ("gaussian", "fou"), ("dropout", "fac")]


def _curve_points(with_bands: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in MODELS:
        for name, mods in PANELS:
            for level in range(6):
                value = 0.95 - 0.1 * level + rng.normal(0, 0.01)
                rows.append(dict(model=model, name=name, modalities=mods, level=level, value=value,
                                 low=value - 0.02, high=value + 0.02))
    frame = pd.DataFrame(rows)
    return frame if with_bands else frame.drop(columns=["low", "high"])


def test_level_curves_one_panel_per_corruption_and_modality_one_line_per_model():
    fig = plots.level_curves(_curve_points())
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(PANELS)
    for ax in fig.axes:
        assert len(ax.lines) == len(MODELS)
        assert len(ax.collections) == len(MODELS)  # one band per model
        assert [line.get_label() for line in ax.lines] == MODELS
        assert list(ax.lines[0].get_xdata()) == list(range(6))
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == sorted(f"{n} on {m}" for n, m in PANELS)


def test_level_curves_without_intervals_draws_no_bands_and_keeps_model_colours():
    fig = plots.level_curves(_curve_points(with_bands=False))
    colours = plots.model_colors(MODELS)
    for ax in fig.axes:
        assert len(ax.collections) == 0
        assert [to_hex(line.get_color()) for line in ax.lines] == [colours[m][0].lower() for m in MODELS]


def test_level_curves_names_a_missing_column():
    with pytest.raises(InputError, match="level"):
        plots.level_curves(_curve_points().drop(columns=["level"]))


def test_gain_heatmap_hatches_exactly_the_non_significant_cells():
    rows = []
    for backbone in ["concat", "late"]:
        for name, mods in PANELS:
            for level in range(1, 6):
                rows.append(dict(backbone=backbone, name=name, modalities=mods, level=level,
                                 diff=0.01 * level, significant=level >= 3))
    fig = plots.gain_heatmap(pd.DataFrame(rows))
    panels = [ax for ax in fig.axes if ax.get_title() in ("concat", "late")]
    assert len(panels) == 2  # plus one colour-bar axes
    for ax in panels:
        hatched = [p for p in ax.patches if p.get_hatch()]
        assert len(hatched) == len(PANELS) * 2  # levels 1 and 2 in each row
        assert len(ax.texts) == len(PANELS) * 5


def test_removal_chart_one_dot_per_model_and_subset_with_whiskers():
    subsets = ["none removed", "pix removed", "fou removed", "pix+fou removed"]
    rows = [dict(model=m, subset=s, value=0.9 - 0.1 * i, low=0.85 - 0.1 * i, high=0.95 - 0.1 * i)
            for m in MODELS for i, s in enumerate(subsets)]
    fig = plots.removal_bars(pd.DataFrame(rows))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == subsets
    dots = [c.lines[0] for c in ax.containers]  # one errorbar container per model
    assert len(dots) == len(MODELS)
    for line in dots:
        assert list(np.round(np.asarray(line.get_xdata(), dtype=float), 6)) == [round(0.9 - 0.1 * i, 6) for i in range(len(subsets))]


def test_removal_chart_height_stays_bounded_for_many_models_and_subsets():
    """14 models x 13 subsets made a 3,599 px tall bar chart; now further subsets go beside."""
    models = [f"model-{i}" for i in range(14)]
    subsets = [f"subset {j}" for j in range(13)]
    rows = [dict(model=m, subset=s, value=0.5) for m in models for s in subsets]
    fig = plots.removal_bars(pd.DataFrame(rows))
    width, height = fig.get_size_inches() * fig.dpi
    assert len(fig.axes) == 2 and height < 1000 and width / height > 1


def test_fourteen_models_have_distinct_colour_marker_pairs_and_styles():
    models = [f"m{i}" for i in range(64)]
    pairs = plots.model_colors(models)
    assert len(set(pairs.values())) == 64
    styles = plots.model_linestyles(models)
    assert styles["m0"] == "-" and styles["m8"] != styles["m0"]


def test_cd_cliques_join_models_within_the_critical_difference():
    ranks = {"a": 1.2, "b": 1.9, "c": 2.6, "d": 4.3}
    # a-b-c span 1.4 < 1.5, c-d span 1.7 > 1.5: one bar over a, b, c; d stands alone
    assert plots._cd_cliques(sorted(ranks.values()), 1.5, sorted(ranks, key=ranks.get)) == [["a", "b", "c"]]
    fig = plots.critical_difference(ranks, 1.5)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.texts]
    assert "CD = 1.50" in labels
    assert any(t.startswith("a (1.20)") for t in labels) and any(t.endswith("d") for t in labels)


def test_reliability_diagram_bins_match_an_independent_count():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.1, 1.0, 500)
    correct = rng.uniform(size=500) < conf
    fig = plots.reliability_diagram({"clean": (conf, correct), "worst": (conf * 0.5, correct)},
                                    ece={"clean": 0.01})
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert "ECE = 0.010" in ax.get_title()
    # first bar container = per-bin accuracy; check the top bin against a direct computation
    in_top = conf > 14 / 15
    top_bar = max(ax.containers[0].patches, key=lambda p: p.get_x())
    assert top_bar.get_height() == pytest.approx(correct[in_top].mean())


def test_save_figure_writes_png_and_svg(tmp_path):
    paths = plots.save_figure(plots.level_curves(_curve_points()), tmp_path / "figs" / "curves")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths["svg"].read_bytes()[:2000]


def test_cd_diagram_labels_lie_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["transformer+cal", "transformer", "concat+cal", "concat", "conv+cal", "a-very-long-model-name+cal"]
    ranks = {n: 1.0 + 0.9 * i for i, n in enumerate(names)}
    fig = plots.critical_difference(ranks, 1.2)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    width = fig.bbox.width
    for t in fig.axes[0].texts:
        box = t.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width, f"{t.get_text()!r} clipped: [{box.x0:.0f}, {box.x1:.0f}] of {width:.0f} px"


def test_importing_the_report_and_plots_keeps_the_users_matplotlib_backend(tmp_path):
    """A notebook's backend is its own: no import of ours may call matplotlib.use; figures still draw."""
    import os
    import subprocess
    import sys

    code = (
        "import matplotlib, robustbench_mm.report, robustbench_mm.plots as p, pandas as pd\n"
        "rows = [dict(model='m', subset='none', value=0.9)]\n"
        f"paths = p.save_figure(p.removal_bars(pd.DataFrame(rows)), {str(tmp_path / 'bars')!r})\n"
        "assert paths['png'].read_bytes()[:4] == b'\\x89PNG'\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"


def test_save_figure_writes_the_same_svg_bytes_every_time(tmp_path):
    first = plots.save_figure(plots.level_curves(_curve_points()), tmp_path / "a")["svg"].read_bytes()
    again = plots.save_figure(plots.level_curves(_curve_points()), tmp_path / "b")["svg"].read_bytes()
    assert first == again


def test_corruption_gallery_draws_the_evaluation_inputs_of_one_sample():
    """Each image panel shows exactly the input the engine evaluates at that level (the same common
    random numbers), level 0 the clean sample; a vector row draws its values."""
    import torch

    from robustbench_mm.corruptions import Condition, apply_condition
    from robustbench_mm.datasets import load_dataset

    data = load_dataset("mfeat", "test")
    fig = plots.corruption_gallery(data, "gaussian_noise", levels=(0, 2, 5), sample=3, seed=1)
    grid = [ax for ax in fig.axes]
    assert len(grid) == 3 * 3  # pix, fou, fac x three levels
    batch = next(data.subset(torch.tensor([3])).batches(1))
    low, high = data.specs["pix"].value_range
    for j, level in enumerate((0, 2, 5)):
        want = batch.inputs["pix"][0] if level == 0 else apply_condition(
            batch, Condition("corruption", "gaussian_noise", ("pix",), level=float(level)), data.specs, 1).inputs["pix"][0]
        shown = grid[j].images[0].get_array()
        assert np.allclose(shown, ((want[0] - low) / (high - low)).clamp(0, 1).numpy())
    assert grid[0].get_title() == "clean (level 0)" and grid[2].get_title() == "level 5"


def test_corruption_gallery_audio_gets_waveform_and_spectrogram_and_tokens_text():
    from robustbench_mm.datasets import load_dataset

    data = load_dataset("synthetic:samples=20", "test")
    audio = plots.corruption_gallery(data, "white_noise", levels=(0, 5))
    assert [ax.get_ylabel() for ax in audio.axes[::2]] == ["audio (audio)", "audio (audio)\nspectrogram"]
    assert audio.axes[0].lines and audio.axes[2].images  # waveform, then spectrogram
    tokens = plots.corruption_gallery(data, "blank", levels=(0, 5))
    clean_text, blanked = (ax.texts[0].get_text() for ax in tokens.axes[:2])
    assert blanked.count("?") > clean_text.count("?")  # level 5 blanks 70% of the tokens to the unknown id
    with pytest.raises(InputError, match="applies to none of the modalities"):
        plots.corruption_gallery(data, "pixelate")


def test_show_corruption_writes_png_and_svg_and_refuses_bad_levels(tmp_path, capsys):
    from robustbench_mm.cli import main

    out = tmp_path / "gallery.png"
    assert main(["show", "corruption", "pixelate", "--data", "mfeat", "--levels", "0,1,5", "-o", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".svg").is_file()
    assert main(["show", "corruption", "pixelate", "--data", "mfeat", "--levels", "0,7", "-o", str(out)]) == 2
    assert "--levels '0,7': expected comma-separated levels from 0 to 5" in capsys.readouterr().err
