"""What `rbmm list` prints, and its built-in part served from a file so that listing loads no torch.

The registries stay the source of truth: every line is made from them by `kind_lines`. Filling
them means importing the kernels, metrics and models (torch code, over a second of CPU), so the
lines of the built-in entries are also kept in `catalog_listing.json`, written from the registries
by `tools/build_listing.py`; tests/test_listing.py rebuilds it in-process and fails when it is
stale. The file answers only while nothing but the built-ins can be registered (`declared()`): no
plug-in loaded in this process (no registry made yet) and no installed entry point in a
`robustbench_mm.*` group. Otherwise the registries are imported and listed as before.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

from .registry import BUILTIN, ENTRY_POINT_PREFIX, all_registries

LISTING_FILE = Path(__file__).with_name("catalog_listing.json")
# the modules whose import creates the registries `rbmm list` shows (others appear once imported)
REGISTRY_MODULES = ("corruptions", "metrics", "models", "datasets", "report")
LIST_ORDER = ("corruptions", "metrics", "backbones", "datasets")  # then any other registry (protocols are not one)


def plural(kind: str) -> str:
    """'metric' -> 'metrics', 'condition family' -> 'condition_families' (a command-line word)."""
    word = kind.replace(" ", "_")
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def registries(modules: tuple[str, ...] = REGISTRY_MODULES) -> dict[str, object]:
    """Plural kind ("metrics") -> its registry, once `modules` (default: every registry module) are
    imported; registries made by other modules imported so far (plug-ins) come too."""
    for module in modules:
        importlib.import_module(f"{__package__}.{module}")
    found = {plural(kind): reg for kind, reg in all_registries().items()}
    ordered = [kind for kind in LIST_ORDER if kind in found] + [kind for kind in found if kind not in LIST_ORDER]
    return {kind: found[kind] for kind in ordered}


def _entry_line(kind: str, obj) -> str:
    """One line on a registry entry: what it is, in the words its kind needs."""
    if kind == "metrics":
        return f"{obj.task}, {obj.direction} is better: {obj.description}"
    if kind == "backbones":
        calibration = "" if obj.calibration else "; no --calibration"
        return f"{obj.description} ({'/'.join(obj.tasks)}{calibration})"
    if kind == "report_sections":
        doc = (obj.build.__doc__ or sys.modules[obj.build.__module__].__doc__ or "").strip()
        return f"order {obj.order:g}" + (f": {doc.splitlines()[0]}" if doc else "")
    if kind == "datasets" and obj.options:
        return f"{obj.description} (options: {', '.join(obj.options)})"
    description = str(getattr(obj, "description", "") or "")
    return description.splitlines()[0] if description else ""


def kind_lines(kind: str, registry, builtin_only: bool = False) -> list[str]:
    """The lines `rbmm list KIND` prints for a registry's entries (unindented), in listing order;
    `builtin_only` leaves out plug-ins and entry points (the declarations file holds built-ins)."""
    if kind == "corruptions":
        from .corruptions import list_corruptions

        lines = []
        for spec in list_corruptions():
            if builtin_only and spec.source != BUILTIN:
                continue
            levels = ", ".join(f"{v:g}" for v in spec.severity)
            lines.append(f"{spec.name:<22} {'/'.join(spec.kinds):<28} levels 1-5: {levels} ({spec.unit})  [{spec.source}]")
            lines.append(f"{'':<22} {spec.description}" + ("" if spec.catalog else " (by name only: not in 'all' or 'kind:K')"))
        return lines
    return [f"{name:<18} {_entry_line(kind, obj)}  [{registry.source(name)}]" for name, obj in registry.items()
            if not builtin_only or registry.source(name) == BUILTIN]


def unregistered_source_lines(datasets_registry) -> list[str]:
    """The data sources that are not registered names (a file, a factory, the readers), which
    `rbmm list datasets` prints after the registered ones."""
    from .datasets import describe_sources

    return [f"{name:<18} {text}" for name, text in describe_sources().items() if name not in datasets_registry]


def build_declared() -> dict:
    """The declarations file's content, from the registries (every registry module imported):
    each kind holding a built-in entry, in listing order, with its built-in entries' lines."""
    everything = registries()
    kinds = {}
    for kind, registry in everything.items():
        lines = kind_lines(kind, registry, builtin_only=True)
        if lines:  # a registry only a test or a plug-in made holds no built-in
            kinds[kind] = lines
    return {
        "generated_by": "tools/build_listing.py from the registries; do not edit",
        "kinds": kinds,
        "unregistered_datasets": unregistered_source_lines(everything["datasets"]),
    }


def declared() -> dict | None:
    """The declared listing, or None when the registries could hold more than the built-ins: a
    plug-in was loaded (a registry exists) or an installed package declares an entry point."""
    if all_registries():
        return None
    if any(group.startswith(ENTRY_POINT_PREFIX) for group in importlib.metadata.entry_points().groups):
        return None
    return json.loads(LISTING_FILE.read_text(encoding="utf-8"))
