"""The answer first: which model is most robust and by how much (with intervals), and whether
calibration helped each backbone after Holm correction, in a few sentences above the tables.

Robustness is the mean over corrupted cells of the headline metric when the runs have corruption
cells, else the worst modality removal, else only the clean value is compared. The margin to the
next model is a paired interval (`estimates.difference`: the same resamples for both models).
"""

from __future__ import annotations

from ...domain import Family, clean_cells, cells
from ..context import Context, section
from ..document import Section, Text, fmt_ci
from ..estimates import ALPHA, CONFIDENCE, difference
from .calibration import calibration_table
from .headline import headline_table, worst_removal


def _criterion(ctx: Context) -> tuple[str, str]:
    """(headline column, its words) that ranks the models' robustness in these runs."""
    metric = ctx.data.metric
    if not cells(ctx.data.cells, Family.CORRUPTION).empty:
        return "corrupted", f"mean corrupted {metric}"
    if not cells(ctx.data.cells, Family.REMOVAL).empty:
        return "worst_removal", f"{metric} under its worst modality removal"
    return "clean", f"clean {metric}"


def _rows(ctx: Context, model: str, column: str):
    own = cells(ctx.data.cells, model=model)
    if column == "corrupted":
        return cells(own, Family.CORRUPTION)
    if column == "worst_removal":
        return worst_removal(ctx, model)
    return clean_cells(own)


def _value(row, column: str) -> str:
    return fmt_ci(row[column], row[f"{column}_low"], row[f"{column}_high"])


def _one_model(ctx: Context, row) -> str:
    metric = ctx.data.metric
    parts = [f"{row['model']}: clean {metric} {_value(row, 'clean')}"]
    if not cells(ctx.data.cells, Family.CORRUPTION).empty:
        parts.append(f"mean over corrupted cells {_value(row, 'corrupted')}")
    if row["worst_removed"]:
        parts.append(f"worst modality removal, {row['worst_removed']}: {_value(row, 'worst_removal')}")
    return "; ".join(parts) + f" ({CONFIDENCE:.0%} intervals; {'higher' if ctx.data.higher_is_better else 'lower'} is better)."


def _ranking(ctx: Context, table) -> str:
    data = ctx.data
    column, words = _criterion(ctx)
    order = table.sort_values(column, ascending=not data.higher_is_better, kind="stable")
    best, runner = order.iloc[0], order.iloc[1]
    diff, low, high = difference(data, ctx.boot, _rows(ctx, best["model"], column), _rows(ctx, runner["model"], column))
    lead = "Most robust" if column != "clean" else "Best (the runs have no perturbed cells)"
    text = (f"{lead}: {best['model']}, {words} {_value(best, column)} "
            f"({'higher' if data.higher_is_better else 'lower'} is better). Difference to the next model, "
            f"{runner['model']} ({_value(runner, column)}): {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
    if not (low > 0 or high < 0):
        text += ", an interval that includes 0: the two are not told apart"
    if len(order) > 2:
        last = order.iloc[-1]
        text += f". Least robust: {last['model']} ({_value(last, column)})"
    return text + f". {CONFIDENCE:.0%} intervals; the difference is paired (both models resampled alike)."


def _calibration(ctx: Context) -> list[str]:
    data = ctx.data
    table = ctx.shared("calibration", lambda: calibration_table(data))  # empty without a pair
    if table.empty:
        return []
    sign = 1.0 if data.higher_is_better else -1.0
    lines = []
    for backbone, own in table.groupby("backbone", sort=False):
        perturbed = own[own["family"] != Family.CLEAN]
        gain = perturbed["diff"] * sign
        helped = int((perturbed["significant"] & (gain > 0)).sum())
        hurt = int((perturbed["significant"] & (gain < 0)).sum())
        verdict = ("helped" if helped and not hurt else "hurt" if hurt and not helped
                   else "had mixed effects" if helped else "made no significant difference")
        lines.append(
            f"Calibration on {backbone} ({own['with'].iloc[0]} vs {own['without'].iloc[0]}) {verdict}: "
            f"{data.metric} better in {helped} and worse in {hurt} of {len(perturbed)} perturbed cells after Holm "
            f"correction (α = {ALPHA:g}, over all {len(table)} cells compared"
            + (f"; each cell one paired test over its {own['replicates'].max()} replicates pooled, as in the heatmap"
               if data.replicated else "")
            + f"), mean gain {gain.mean():+.3f}."
        )
    return lines


@section("summary", order=0)
def build(ctx: Context) -> Section | None:
    table = ctx.shared("headline", lambda: headline_table(ctx))
    first = _ranking(ctx, table) if ctx.several_models else _one_model(ctx, table.iloc[0])
    return Section("Summary", "summary", [Text(line) for line in [first, *_calibration(ctx)]])
