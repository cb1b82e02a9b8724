"""Rendering the document: self-contained HTML (figures as base64 PNG, inline CSS) and Markdown
(figures beside it in figures/, PNG and SVG, written by the sections' `FigureSink`), every table
also as CSV in tables/.

HTML comes from the Jinja2 templates in templates/, with autoescape on: every value reaching the
page is escaped unless a template says otherwise (only the `unbroken` filter returns markup, and it
escapes the value first), so no caller has to remember `html.escape`. Markdown escapes the same way, per cell (`md_cell`), and a `|` cannot break a table.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from ..atomic import atomic_write
from ..errors import InputError
from ..escape import csv_text, md_cell, safe_file_name
from .document import Figure, Section, Table, Text

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# an interval "[0.965, 0.993]" (short brackets only) or a bound "< 0.001": text that must not wrap inside itself
_UNBROKEN = re.compile(r"\[[^\[\]]{1,40}\]|< ?\d[\d.e+-]*")


def _unbroken(value: str) -> Markup:
    """A table cell, escaped, whose intervals and p-value bounds are kept on one
    line: a narrow column wraps between a value and its interval ("0.980" over "[0.965, 0.993]"),
    never inside one."""
    parts, last = [], 0
    for match in _UNBROKEN.finditer(value):
        parts += [escape(value[last:match.start()]), Markup('<span class="nw">'), escape(match.group()), Markup("</span>")]
        last = match.end()
    parts.append(escape(value[last:]))
    return Markup("").join(parts)


_TEMPLATES.filters["unbroken"] = _unbroken


def _write_tables(sections: list[Section], out: Path) -> None:
    """Every table's raw values as tables/<name>.csv; two tables of one name would overwrite each other."""
    names: set[str] = set()
    for table in (b for s in sections for b in s.blocks if isinstance(b, Table)):
        if safe_file_name(table.name) in names:
            raise InputError(f"report: two tables are named {table.name!r}; each needs its own file name")
        names.add(safe_file_name(table.name))
        atomic_write(out / "tables" / f"{safe_file_name(table.name)}.csv", csv_text(table.frame).encode())


def _view(block: Text | Table | Figure) -> dict:
    """A block as the plain values the templates read."""
    if isinstance(block, Text):
        return {"kind": "text", "text": block.text, "pre": block.pre}
    if isinstance(block, Table):
        return {"kind": "table", "name": safe_file_name(block.name), "caption": block.caption, "collapsed": block.collapsed,
                "columns": [str(c) for c in block.shown.columns],
                "rows": [[str(v) for v in row] for row in block.shown.itertuples(index=False)]}
    png = base64.b64encode(block.png.read_bytes()).decode("ascii")
    return {"kind": "figure", "name": block.name, "caption": block.caption, "png": png}


def html_page(sections: list[Section], title: str, subtitle: str) -> str:
    views = [{"title": s.title, "anchor": s.anchor, "blocks": [_view(b) for b in s.blocks]} for s in sections]
    return _TEMPLATES.get_template("report.html.j2").render(title=title, subtitle=subtitle, sections=views) + "\n"


def md_table(table: Table) -> str:
    cols = list(table.shown.columns)
    lines = [f"**{md_cell(table.caption)}** (`tables/{safe_file_name(table.name)}.csv`)", "",
             "| " + " | ".join(md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in table.shown.itertuples(index=False)]
    return "\n".join(lines)


def markdown(sections: list[Section], title: str, subtitle: str) -> str:
    parts = [f"# {md_cell(title)}", "", md_cell(subtitle), ""]
    for sec in sections:
        parts += [f"## {md_cell(sec.title)}", ""]
        for block in sec.blocks:
            if isinstance(block, Text):
                parts += ["```", block.text, "```", ""] if block.pre else [md_cell(block.text), ""]
            elif isinstance(block, Table):
                parts += [md_table(block), ""]
            else:
                parts += [f"![{md_cell(block.caption)}](figures/{block.name}.png)", "",
                          f"*{md_cell(block.caption)}* ([SVG](figures/{block.name}.svg))", ""]
    return "\n".join(parts) + "\n"


def render(sections: list[Section], title: str, subtitle: str, out: Path) -> Path:
    """Write index.html, report.md and tables/ into `out` (the figures are in figures/ already);
    returns the path of index.html."""
    _write_tables(sections, out)
    index = out / "index.html"
    atomic_write(index, html_page(sections, title, subtitle).encode("utf-8"))
    atomic_write(out / "report.md", markdown(sections, title, subtitle).encode("utf-8"))
    return index
