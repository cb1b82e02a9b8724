"""The document model: sections of text, tables and figures, and the formatting of their numbers.

Sections build these; `render` turns them into HTML and Markdown. A table keeps its raw values
(written to CSV) beside the formatted strings shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Text:
    text: str
    pre: bool = False


@dataclass
class Table:
    name: str  # CSV file stem
    frame: pd.DataFrame  # raw values, written to CSV
    shown: pd.DataFrame  # formatted strings, shown in HTML/Markdown
    caption: str = ""
    collapsed: bool = False


@dataclass
class Figure:
    name: str  # file stem in figures/ (PNG and SVG)
    png: Path  # the PNG written (`context.FigureSink`), embedded in the HTML
    caption: str


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_p(p) -> str:
    """A p-value in a table cell under a `p` heading: "0.012", "< 0.001"."""
    if p is None or not np.isfinite(p):
        return "–"
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"


def p_text(p, name: str = "p") -> str:
    """A p-value in a sentence: "p = 0.012", "p < 0.001" (never "p = < 0.001")."""
    shown = fmt_p(p)
    return f"{name} {shown}" if shown.startswith("<") else f"{name} = {shown}"


def fmt_ci(value, low, high) -> str:
    if not np.isfinite(value):
        return "–"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def formatted(frame: pd.DataFrame, p_columns=(), digits: int = 3) -> pd.DataFrame:
    out = frame.copy().astype(object)
    for col in out.columns:
        if col in ("level", "rate", "seed", "worst_level", "replicate"):
            out[col] = [v if isinstance(v, str) else fmt(v, 3).rstrip("0").rstrip(".") for v in frame[col]]
        elif col in p_columns:
            out[col] = [fmt_p(v) for v in frame[col]]
        else:
            out[col] = [fmt(v, digits) for v in frame[col]]
    return out

