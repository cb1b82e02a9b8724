"""The sections these runs could not fill, and why, in one place near the end instead of as empty
sections. Built after every section of a lower order (`ctx.omit` collects the reasons)."""

from __future__ import annotations

from ..context import Context, section
from ..document import Section, Text


@section("omitted", order=95)
def build(ctx: Context) -> Section | None:
    if not ctx.omitted:
        return None
    return Section("Not in this report", "omitted", [Text(f"{title}: {why}.") for title, why in ctx.omitted])
