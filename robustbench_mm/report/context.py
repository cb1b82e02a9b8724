"""What a report section gets (`Context`) and how it is declared (`@section`).

A section is one function `build(ctx) -> Section | None` in one file, registered with

    @section("removal", order=50)
    def build(ctx: Context) -> Section | None: ...

`SECTIONS` is a `registry.Registry`, so a section can also come from outside the package: a
decorated function in the user's own module (imported before `write_report`), or an installed
package's entry point in the group `robustbench_mm.report_sections` whose name is the section's
and whose value names the decorated function (`pkg.module:build`; importing it registers it).
The report lays the sections out by `order` (ties: in the order they were registered); the
built-in ones leave gaps of 10 for others to fit between.

A section that does not apply returns None. Where a reader could expect it (a calibration section
in a report of several models), it says why through `ctx.omit(title, why)`; the report lists those
reasons in one place near its end instead of showing empty sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from matplotlib.figure import Figure as MplFigure

from .. import plots
from ..errors import InputError
from ..escape import safe_file_name
from ..registry import Registry, source_of
from .document import Figure, Section
from .estimates import Boot
from .load import Data

T = TypeVar("T")


class FigureSink:
    """Where sections put their figures: each is written at once to `folder` as PNG and SVG (and
    may then be freed), under a name no other figure of the report has."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: list[str] = []

    def add(self, name: str, figure: MplFigure, caption: str) -> Figure:
        name = safe_file_name(name)  # a plug-in section's name cannot leave figures/
        if name in self.names:
            raise InputError(f"report: two figures are named {name!r}; each needs its own file name")
        paths = plots.save_figure(figure, self.folder / name)
        self.names.append(name)
        return Figure(name, paths["png"], caption)


@dataclass
class Context:
    """The runs (`data`), the shared bootstrap (`boot`), the CE/mCE reference model and the figure
    sink, plus the reasons of sections left out and results several sections share."""

    data: Data
    boot: Boot
    reference: str
    figures: FigureSink
    gallery: str = "auto"  # the corruption gallery: "auto" (a few corruptions), "on" or "off"
    omitted: list[tuple[str, str]] = field(default_factory=list)
    _shared: dict = field(default_factory=dict)

    @property
    def several_models(self) -> bool:
        return len(self.data.models) > 1

    def figure(self, name: str, figure: MplFigure, caption: str) -> Figure:
        """A figure block, its files written (`FigureSink.add`)."""
        return self.figures.add(name, figure, caption)

    def omit(self, title: str, why: str) -> None:
        """Record why the section `title` is not in the report; returns None for `return ctx.omit(...)`."""
        self.omitted.append((title, why))

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per report: a table that more than one section reads (the summary reads
        the headline and calibration tables)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


@dataclass(frozen=True)
class SectionSpec:
    name: str  # the section's anchor in the page
    order: float
    build: Callable[[Context], Section | None]


def _check(name: str, spec: SectionSpec) -> None:
    if not isinstance(spec, SectionSpec) or not callable(spec.build):
        raise InputError(f"report section {name!r}: expected a function registered with @section, got {spec!r}")


SECTIONS: Registry[SectionSpec] = Registry("report section", check=_check)


def section(name: str, *, order: float) -> Callable[[Callable[[Context], Section | None]], Callable]:
    """Register `build(ctx) -> Section | None` as the report section `name`, laid out by `order`."""

    def register(build: Callable[[Context], Section | None]) -> Callable[[Context], Section | None]:
        SECTIONS.add(name, SectionSpec(name, float(order), build), source_of(build))
        return build

    return register


def ordered_sections() -> list[SectionSpec]:
    """Every registered section by `order`, ties in registration order."""
    return sorted((spec for _, spec in SECTIONS.items()), key=lambda s: s.order)
