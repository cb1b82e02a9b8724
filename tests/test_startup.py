"""What `rbmm` imports before it has work to do: help texts and the protocol list name their
choices from light declarations (robustbench_mm.catalog, protocol_files), and `rbmm list [KIND]`
without plug-ins prints the built-ins from robustbench_mm/catalog_listing.json, so they load none
of the heavy libraries. With plug-ins present (the repository root's corruptions/), `rbmm list
KIND` imports the one module that registers KIND, which loads torch but not pandas, scipy,
matplotlib or numba (report sections aside: their module is the report's). Bounded by the set of imported
modules (`python -X importtime`), not by a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_mm import catalog
from robustbench_mm.cli import build_parser
from robustbench_mm.datasets import KINDS
from robustbench_mm.datasets.loader import FORMATS, source_names
from robustbench_mm.export import FORMATS as EXPORT_FORMATS
from robustbench_mm.listing import plural, registries
from robustbench_mm.metrics import METRICS
from robustbench_mm.models import BACKBONES
from robustbench_mm.models.training import TRAIN_DEFAULTS
from robustbench_mm.registry import BUILTIN

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "scipy", "matplotlib", "numba")
COMMANDS = sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)


def _imported(args: list[str], cwd: Path, code: int = 0) -> set[str]:
    """Top-level names of every module `python -X importtime -m robustbench_mm ARGS` imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "robustbench_mm", *args],
                          capture_output=True, text=True, cwd=cwd, env=env)
    assert proc.returncode == code, proc.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


@pytest.mark.parametrize("args", [["--help"], ["list", "protocols"]] + [[c, "--help"] for c in COMMANDS],
                         ids=lambda a: " ".join(a))
def test_help_and_the_protocol_list_load_no_heavy_library(args):
    """From the repository root too, whose corruptions/ folder holds plug-ins (they import torch)."""
    loaded = _imported(args, ROOT)
    assert "robustbench_mm" in loaded
    assert not loaded & set(HEAVY), f"rbmm {' '.join(args)} imported {sorted(loaded & set(HEAVY))}"


@pytest.mark.parametrize("args", [["list"]] + [["list", kind] for kind in catalog.DECLARED["list_kinds"][1]],
                         ids=lambda a: " ".join(a))
def test_listing_without_plug_ins_loads_no_heavy_library(args, tmp_path):
    """From an empty folder: no ./corruptions/ plug-ins, so the built-ins come from the declarations file."""
    loaded = _imported(args, tmp_path)
    assert "robustbench_mm" in loaded
    assert not loaded & set(HEAVY), f"rbmm {' '.join(args)} imported {sorted(loaded & set(HEAVY))}"


@pytest.mark.parametrize("thing", ["protocol", "corruption"])
def test_show_without_a_name_lists_the_choices_without_a_heavy_library(thing, tmp_path):
    """The error names the protocols (or where the corruptions are listed) from the files alone."""
    assert not _imported(["show", thing], tmp_path, code=2) & set(HEAVY)


@pytest.mark.parametrize("kind", [k for k in catalog.LIST_MODULES if k != "report_sections"])
def test_listing_one_kind_with_plug_ins_loads_torch_alone_of_the_heavy_libraries(kind):
    """From the repository root, whose corruptions/ plug-ins must still be listed."""
    loaded = _imported(["list", kind], ROOT)
    assert not loaded & {"pandas", "scipy", "matplotlib", "numba"}, f"rbmm list {kind} imported {sorted(loaded & set(HEAVY))}"


_NAMES_AFTER = """
import importlib, json, sys
from robustbench_mm.registry import all_registries
for module in sys.argv[1:]:
    importlib.import_module("robustbench_mm." + module)
print(json.dumps({kind: reg.names() for kind, reg in all_registries().items()}))
"""


def _names_after_importing(modules: list[str]) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", _NAMES_AFTER, *modules], capture_output=True, text=True,
                          cwd=ROOT / "tests", env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return {plural(kind): names for kind, names in json.loads(proc.stdout).items()}


def test_each_kinds_module_registers_all_of_its_entries():
    """catalog.LIST_MODULES must name a module whose import alone registers every entry of the kind
    (one registered elsewhere would be missing from `rbmm list KIND`)."""
    everything = _names_after_importing(list(dict.fromkeys(catalog.LIST_MODULES.values())))
    assert set(catalog.LIST_MODULES) == set(everything)
    for kind, module in catalog.LIST_MODULES.items():
        assert _names_after_importing([module])[kind] == everything[kind], kind


def _builtin_names(registry) -> list[str]:
    return [name for name in registry.names() if registry.source(name) == BUILTIN]


def test_the_declared_names_are_the_registries_built_ins():
    """catalog.DECLARED must follow the registries: a built-in missing here would vanish from help."""
    assert list(catalog.DECLARED["fusions"][1]) == _builtin_names(BACKBONES)
    assert list(catalog.DECLARED["metrics"][1]) == _builtin_names(METRICS)
    assert list(catalog.DECLARED["datasets"][1]) == [n for n in source_names() if n in catalog.DECLARED["datasets"][1]]
    assert set(catalog.DECLARED["datasets"][1]) >= {n for n in source_names()}
    assert catalog.DECLARED["kinds"][1] == KINDS
    assert catalog.DECLARED["data_formats"][1] == FORMATS
    assert catalog.DECLARED["export_formats"][1] == EXPORT_FORMATS
    found = registries()  # less registries a test made (they hold no built-in entry)
    builtin_kinds = [kind for kind, reg in found.items() if any(reg.source(n) == BUILTIN for n in reg.names())]
    assert list(catalog.DECLARED["list_kinds"][1]) == [*builtin_kinds, "protocols"]
    assert catalog.TRAIN_DEFAULTS == TRAIN_DEFAULTS
