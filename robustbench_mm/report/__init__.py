"""The robustness report: one or more run folders -> self-contained HTML, Markdown and CSV tables.

    reports/NAME/index.html    every figure embedded as a base64 PNG, inline CSS, no external asset
    reports/NAME/report.md     the same content; figures beside it in figures/ (PNG and SVG)
    reports/NAME/tables/*.csv  every table, unformatted

Numbers come from `metrics` (cell metrics and robustness summaries) and `stats` (bootstrap,
McNemar, Holm, Friedman/Nemenyi); this package only selects cells, pairs models and lays out:
`load` (the runs as one table), `estimates` (intervals, the paired test), `document` (sections of
text, tables and figures), `sections/` (one module per section), `render` (HTML and Markdown),
`compare` (`rbmm compare`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from matplotlib.figure import Figure as MplFigure

from ..errors import one_of
from ..version import __version__
from .compare import compare_runs, format_comparison, run_differences
from .estimates import Boot
from .load import load
from .render import render
from .sections.calibration import build as _calibration, calibration_pairs
from .sections.curves import build as _curves
from .sections.gates import build as _gates, gate_samples, gate_summary
from .sections.headline import build as _headline
from .sections.ranking import build as _ranking
from .sections.raw import build as _raw
from .sections.reliability import build as _reliability
from .sections.reliance import build as _reliance
from .sections.removal import build as _removal
from .sections.setup import build as _setup

__all__ = ["write_report", "compare_runs", "format_comparison", "run_differences", "calibration_pairs",
           "gate_samples", "gate_summary"]


def write_report(runs, out, *, reference: str | None = None, title: str | None = None) -> Path:
    """Write index.html, report.md, figures/ and tables/ for one or more run folders into `out`.

    runs : run folder paths or `Run`s (what `evaluate` returns); several (e.g. one per training seed) are merged as replicates.
    reference : the CE/mCE reference model (default: the first model).
    Returns the path of index.html.
    """
    out = Path(out)
    data = load(runs)
    if reference is None:
        reference = data.models[0]
    elif reference not in data.models:
        raise one_of("reference model", reference, data.models)
    boot = Boot(data)
    figures: list[MplFigure] = []
    headline, _ = _headline(data, boot, reference)
    sections = [
        _setup(data),
        headline,
        _calibration(data, figures),
        _gates(data, figures),
        _curves(data, boot, figures),
        _removal(data, boot, figures),
        _reliance(data),
        _reliability(data, figures),
        _ranking(data, figures),
        _raw(data),
    ]
    title = title or "Robustness report: " + ", ".join(data.runs)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    subtitle = f"robustbench-mm {__version__}, generated {stamp} from {', '.join(str(r.path) for r in data.runs.values())}"
    return render(sections, title, subtitle, out)

