"""`rbmm list` serves the built-in entries from robustbench_mm/catalog_listing.json without importing
torch; the file must be what the registries give (tools/build_listing.py writes it), the output
must be byte for byte what the registries print, and any plug-in must still be listed (then the
registries are imported as before)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_mm.listing import LISTING_FILE, build_declared

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["corruptions", "metrics", "backbones", "datasets", "condition_families", "report_sections", "protocols"]


def _rbmm(args: list[str], cwd: Path, pythonpath: str = str(ROOT)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "robustbench_mm", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_the_declarations_file_is_what_the_registries_give():
    """A built-in entry added or changed without `python tools/build_listing.py` fails here."""
    spec = importlib.util.spec_from_file_location("build_listing", ROOT / "tools" / "build_listing.py")
    build_listing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_listing)
    assert LISTING_FILE.read_text(encoding="utf-8") == build_listing.render(build_declared()), (
        "robustbench_mm/catalog_listing.json is stale: run python tools/build_listing.py")


def test_the_declared_listing_is_byte_identical_to_the_registries(tmp_path):
    """`rbmm list` and `rbmm list datasets` from an empty folder (the file) against the same with an
    empty plug-in folder, which imports every registry and lists from them."""
    (tmp_path / "no-plugins").mkdir()
    for args in (["list"], ["list", "datasets"]):
        declared = _rbmm(args, tmp_path)
        from_registries = _rbmm([*args, "--plugins", "no-plugins"], tmp_path)
        assert declared.returncode == from_registries.returncode == 0, declared.stderr + from_registries.stderr
        assert declared.stdout == from_registries.stdout and declared.stderr == from_registries.stderr == ""


@pytest.mark.parametrize("kind", KINDS)
def test_one_kind_is_its_section_of_the_whole_listing(kind, tmp_path):
    whole = _rbmm(["list"], tmp_path).stdout.splitlines()
    start = whole.index(f"{kind}:") + 1
    end = next((i for i in range(start, len(whole)) if not whole[i].startswith("  ")), len(whole))
    listed = _rbmm(["list", kind], tmp_path).stdout.splitlines()
    section = [line[2:] for line in whole[start:end]]
    assert listed[: len(section)] == section
    assert len(listed) == len(section) or kind == "datasets"  # datasets adds the unregistered sources


def test_an_unknown_kind_names_the_kinds(tmp_path):
    proc = _rbmm(["list", "models"], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("rbmm: error: unknown thing to list 'models'; expected one of: backbones, "
                           "condition_families, corruptions, datasets, metrics, protocols, report_sections\n")


def test_an_entry_point_plug_in_is_listed_from_the_registries(tmp_path):
    """An installed package's entry point is not in the file: its presence sends `rbmm list` to the registries."""
    site = tmp_path / "site"
    info = site / "rbmm_listed_data-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbmm-listed-data\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[robustbench_mm.datasets]\nlisted-blobs = rbmm_listed_data:load\n")
    (site / "rbmm_listed_data.py").write_text(
        "from robustbench_mm.datasets import dataset\n\n\n"
        '@dataset("listed-blobs", description="a data set from an installed package")\n'
        "def load(options, *, modalities, seed):\n    raise RuntimeError('only listed in this test')\n"
    )
    proc = _rbmm(["list", "datasets"], tmp_path, pythonpath=f"{ROOT}{os.pathsep}{site}")
    assert proc.returncode == 0, proc.stderr
    assert "listed-blobs       a data set from an installed package  [entry point listed-blobs (rbmm-listed-data)]" in proc.stdout
    assert proc.stdout.startswith(_rbmm(["list", "datasets"], tmp_path).stdout.splitlines()[0])
