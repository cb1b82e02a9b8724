"""What the corruptions of the runs look like: one evaluated sample per level, per corruption
(`plots.corruption_gallery`), drawn from the run's own dataset with its first protocol seed.

On for a few corruptions (GALLERY_AUTO_MAX), off beyond, where one figure per corruption would
bury the results: `--gallery on` draws them all, `rbmm show corruption NAME --data ...` one. The
dataset is loaded again from the manifest's source and must have the run's fingerprint; otherwise
the section says why it is left out.
"""

from __future__ import annotations

from ... import plots
from ...domain import Family, cells
from ...errors import InputError
from ..context import Context, section
from ..document import Section, Text

GALLERY_AUTO_MAX = 4  # corruptions drawn without --gallery on
MAX_LEVELS = 6


def _corruption_levels(ctx: Context) -> dict[str, list[float]]:
    """Corruption name -> the levels the runs evaluated it at (joint conditions excluded)."""
    from ...corruptions import list_corruptions

    known = {spec.name for spec in list_corruptions()}
    corrupted = cells(ctx.data.cells, Family.CORRUPTION)
    out: dict[str, list[float]] = {}
    for name, group in corrupted.groupby("name", sort=False):
        if name in known:
            out[name] = sorted({float(v) for v in group["level"] if 0 < float(v) <= 5})
    return out


@section("gallery", order=45)
def build(ctx: Context) -> Section | None:
    title = "Corruption gallery"
    levels = _corruption_levels(ctx)
    if not levels:
        return None
    if ctx.gallery == "off":
        return ctx.omit(title, "turned off (--gallery off)")
    if ctx.gallery == "auto" and len(levels) > GALLERY_AUTO_MAX:
        return ctx.omit(title, f"the runs hold {len(levels)} corruptions, more than {GALLERY_AUTO_MAX} drawn by default "
                               "(--gallery on draws them all; `rbmm show corruption NAME --data ...` draws one)")
    run = next(iter(ctx.data.runs.values()))
    info = run.manifest.dataset
    try:
        from ...datasets import load_dataset

        data = load_dataset(info.source, info.split)
    except (InputError, OSError) as e:
        return ctx.omit(title, f"the dataset {info.source!r} could not be loaded again: {e}")
    if data.fingerprint() != info.fingerprint:
        return ctx.omit(title, f"the dataset at {info.source!r} is not the one the run evaluated (other fingerprint)")
    seed = run.manifest.protocol.seed
    sec = Section(title, "gallery", [Text(
        f"One sample of {info.name} ({info.split}, row 0) under each corruption at the levels the runs evaluated, "
        f"level 0 the clean sample; the noise is the evaluation's own (protocol seed {seed}).")])
    for name, evaluated in levels.items():
        shown = [0.0] + evaluated[-(MAX_LEVELS - 1):]
        fig = plots.corruption_gallery(data, name, levels=shown, sample=0, seed=seed)
        sec.blocks.append(ctx.figure(f"gallery_{name}", fig, f"{name}: one sample per level."))
    return sec
