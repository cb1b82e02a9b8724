"""What `rbmm` imports before it has work to do: help texts and the protocol list name their
choices from light declarations (robustbench_mm.catalog, protocol_files), so they load none of
the heavy libraries. Bounded by the set of imported modules (`python -X importtime`), not by a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_mm import catalog
from robustbench_mm.cli import _registries, build_parser
from robustbench_mm.datasets import KINDS
from robustbench_mm.datasets.loader import FORMATS, source_names
from robustbench_mm.export import FORMATS as EXPORT_FORMATS
from robustbench_mm.metrics import METRICS
from robustbench_mm.models import BACKBONES
from robustbench_mm.models.training import TRAIN_DEFAULTS
from robustbench_mm.registry import BUILTIN

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "scipy", "matplotlib")
COMMANDS = sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)


def _imported(args: list[str], cwd: Path) -> set[str]:
    """Top-level names of every module `python -X importtime -m robustbench_mm ARGS` imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "robustbench_mm", *args],
                          capture_output=True, text=True, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


@pytest.mark.parametrize("args", [["--help"], ["list", "protocols"]] + [[c, "--help"] for c in COMMANDS],
                         ids=lambda a: " ".join(a))
def test_help_and_the_protocol_list_load_no_heavy_library(args):
    """From the repository root too, whose corruptions/ folder holds plug-ins (they import torch)."""
    loaded = _imported(args, ROOT)
    assert "robustbench_mm" in loaded
    assert not loaded & set(HEAVY), f"rbmm {' '.join(args)} imported {sorted(loaded & set(HEAVY))}"


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
    registries = _registries()  # less registries a test made (they hold no built-in entry)
    builtin_kinds = [kind for kind, reg in registries.items() if any(reg.source(n) == BUILTIN for n in reg.names())]
    assert list(catalog.DECLARED["list_kinds"][1]) == [*builtin_kinds, "protocols"]
    assert catalog.TRAIN_DEFAULTS == TRAIN_DEFAULTS
