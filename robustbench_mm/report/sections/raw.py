"""Every cell of every run, collapsed: the numbers the other sections summarise."""

from __future__ import annotations

from ...metrics import METRICS
from ..context import Context, section
from ..document import Section, Table, formatted


@section("raw", order=90)
def build(ctx: Context) -> Section | None:
    data = ctx.data
    sec = Section("Raw per-cell table", "raw")
    metric_cols = [c for c in data.cells.columns if c in METRICS]
    cols = ["model", "run", "seed", "family", "name", "modalities", "level", "rate", "n", "nonfinite", *metric_cols]
    table = data.cells[[c for c in cols if c in data.cells.columns]]
    if len(data.runs) == 1:
        table = table.drop(columns="run")
    sec.blocks.append(Table("cells", table, formatted(table, digits=4), f"All {len(table)} cells", collapsed=True))
    return sec

