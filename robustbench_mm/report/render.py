"""Rendering the document: self-contained HTML (figures as base64 PNG, inline CSS) and Markdown
(figures beside it in figures/, PNG and SVG), every table also as CSV in tables/."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .. import plots
from .document import Section, Table, Text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1b1b1b;
background:#fff;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:1.7em;margin:0 0 4px}h2{font-size:1.3em;margin-top:2.2em;border-bottom:2px solid #0072B2;
padding-bottom:3px}
.meta{color:#555;font-size:.9em}
nav{background:#f3f6f9;border:1px solid #d8e1ea;border-radius:6px;padding:8px 14px;margin:16px 0;font-size:.95em}
nav a{margin-right:14px;color:#0b5a8c;text-decoration:none;white-space:nowrap}
.scroll{overflow-x:auto;margin:2px 0 16px}
table{border-collapse:collapse;font-size:.86em;font-variant-numeric:tabular-nums}
.cap{font-weight:600;margin:14px 0 2px;color:#333;font-size:.9em}
th,td{border:1px solid #d4d4d4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:12px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;margin-top:4px}
pre{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;padding:10px;overflow-x:auto;font-size:.85em}
details summary{cursor:pointer;color:#0b5a8c;margin:8px 0}
"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.shown.itertuples(index=False)
    )
    caption = f'<p class="cap">{html.escape(table.caption)} (tables/{html.escape(table.name)}.csv)</p>'
    inner = f'{caption}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if table.collapsed:
        return (f"<details><summary>{html.escape(table.caption)}: {len(table.shown)} rows (click to show)</summary>"
                f"{inner}</details>")
    return inner


def _md_cell(value) -> str:
    return html.escape(str(value)).replace("|", "\\|").replace("\n", " ")


def md_table(table: Table) -> str:
    cols = list(table.shown.columns)
    lines = [f"**{_md_cell(table.caption)}** (`tables/{table.name}.csv`)", "",
             "| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.shown.itertuples(index=False)]
    return "\n".join(lines)


def render(sections: list[Section], title: str, subtitle: str, out: Path) -> Path:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    nav = "\n".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    parts_html = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(subtitle)}</p>', f"<nav>{nav}</nav>"]
    parts_md = [f"# {_md_cell(title)}", "", _md_cell(subtitle), ""]
    for sec in sections:
        parts_html.append(f'<section id="{sec.anchor}"><h2>{html.escape(sec.title)}</h2>')
        parts_md += [f"## {_md_cell(sec.title)}", ""]
        for block in sec.blocks:
            if isinstance(block, Text):
                if block.pre:
                    parts_html.append(f"<pre>{html.escape(block.text)}</pre>")
                    parts_md += ["```", block.text, "```", ""]
                else:
                    parts_html.append(f"<p>{html.escape(block.text)}</p>")
                    parts_md += [_md_cell(block.text), ""]
            elif isinstance(block, Table):
                block.frame.to_csv(out / "tables" / f"{block.name}.csv", index=False)
                parts_html.append(html_table(block))
                parts_md += [md_table(block), ""]
            else:
                paths = plots.save_figure(block.figure, out / "figures" / block.name)
                data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
                parts_html.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption, quote=True)}">'
                    f"<figcaption>{html.escape(block.caption)} "
                    f"(figures/{html.escape(block.name)}.svg)</figcaption></figure>"
                )
                parts_md += [f"![{_md_cell(block.caption)}](figures/{block.name}.png)", "",
                             f"*{_md_cell(block.caption)}* ([SVG](figures/{block.name}.svg))", ""]
        parts_html.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        + "\n".join(parts_html)
        + "</main></body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / "report.md").write_text("\n".join(parts_md) + "\n", encoding="utf-8")
    return index

