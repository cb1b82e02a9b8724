"""The robustness report: one or more run folders -> self-contained HTML, Markdown and CSV tables.

    reports/NAME/index.html    every figure embedded as a base64 PNG, inline CSS, no external asset
    reports/NAME/report.md     the same content; figures beside it in figures/ (PNG and SVG)
    reports/NAME/tables/*.csv  every table, unformatted

Numbers come from `metrics` (cell metrics and robustness summaries) and `stats` (bootstrap,
McNemar, Holm, Friedman/Nemenyi); this package only selects cells, pairs models and lays out:
`load` (the runs as one table), `estimates` (intervals, the paired test), `document` (sections of
text, tables and figures), `sections/` (one module per section), `render` (HTML and Markdown),
`compare` (`rbmm compare`).

The report reads answer first: a summary, the headline table, the sections (each one registered
with `@section`, a user's too, see `context`), what was left out and why, and the setup last.
Every string from a user (model names, paths, protocol and dataset descriptions, titles) is
escaped by the templates' autoescape in HTML and by `render.md_cell` in Markdown, so a name such
as `<script>` shows as text everywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..errors import one_of
from ..version import __version__
from .compare import compare_runs, format_comparison, run_differences
from .context import SECTIONS, Context, FigureSink, ordered_sections, section
from .document import Figure, Section, Table, Text
from .estimates import Boot
from .load import load
from .render import render
from .sections.calibration import calibration_pairs  # importing .sections registers the built-in ones
from .sections.gates import gate_samples, gate_summary

__all__ = ["write_report", "compare_runs", "format_comparison", "run_differences", "calibration_pairs",
           "gate_samples", "gate_summary", "section", "SECTIONS", "Context", "Section", "Text", "Table", "Figure"]


GALLERY_CHOICES = ("auto", "on", "off")


def write_report(runs, out, *, reference: str | None = None, title: str | None = None, gallery: str = "auto") -> Path:
    """Write index.html, report.md, figures/ and tables/ for one or more run folders into `out`.

    runs : run folder paths or `Run`s (what `evaluate` returns); several (e.g. one per training seed) are merged as replicates.
    reference : the CE/mCE reference model (default: the first model).
    gallery : the corruption gallery section: "auto" (drawn for up to a few corruptions), "on", "off".
    The sections are every registered one (`SECTIONS`, built-in and the user's), by order.
    Returns the path of index.html.
    """
    out = Path(out)
    data = load(runs)
    if reference is None:
        reference = data.models[0]
    elif reference not in data.models:
        raise one_of("reference model", reference, data.models)
    if gallery not in GALLERY_CHOICES:
        raise one_of("--gallery", gallery, GALLERY_CHOICES)
    ctx = Context(data, Boot(data), reference, FigureSink(out / "figures"), gallery=gallery)
    built = [spec.build(ctx) for spec in ordered_sections()]
    title = title or "Robustness report: " + ", ".join(data.runs)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    subtitle = f"robustbench-mm {__version__}, generated {stamp} from {', '.join(str(r.path) for r in data.runs.values())}"
    return render([s for s in built if s is not None], title, subtitle, out)
