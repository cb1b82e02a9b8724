"""Result files are a contract: refactors must not change a byte of what a run writes.

Three runs cover the record shapes we write: the committed mfeat checkpoint under `quick` (the CI
gate's run), a calibrated synthetic model under `conflict` with probabilities kept (gate fields,
donor conditions, the probability matrix), and a regression model under `quick`. Their `cells.csv`
(less the wall-clock `seconds` column), every `samples/` file, the RNG version, the protocol hash
and the dataset fingerprint are compared with `data/fingerprint/fingerprint.json`, written before
the issue-12 refactor by `python tests/test_fingerprint.py --write`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from pathlib import Path

import pytest

from robustbench_mm.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "fingerprint"
STORED = DATA / "fingerprint.json"

RUNS = {
    "mfeat-quick": [str(ROOT / "results" / "baselines" / "mfeat-concat.pt"), "--data", "mfeat", "--protocol", "quick"],
    "synthetic-calibrated-conflict": [
        str(DATA / "syn-cal.pt"), "--data", "synthetic:samples=300", "--protocol", "conflict", "--keep-probabilities",
    ],
    "regression-quick": [str(DATA / "reg.pt"), "--data", str(DATA / "reg.npz"), "--protocol", "quick"],
}

# wall-clock fields: the only parts of a run that differ between two identical runs
TIMING_COLUMNS = ("seconds",)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cells_without_timing(path: Path) -> bytes:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[row[i] for i in keep] for row in rows])
    return out.getvalue().encode()


def fingerprint(run: Path) -> dict:
    """What must stay identical in a run folder."""
    manifest = json.loads((run / "manifest.json").read_text())
    return {
        "cells.csv": _sha(_cells_without_timing(run / "cells.csv")),
        "samples": {p.name: _sha(p.read_bytes()) for p in sorted((run / "samples").iterdir())},
        "rng": manifest["rng"],
        "protocol_hash": manifest["protocol"]["hash"],
        "dataset_fingerprint": manifest["dataset"]["fingerprint"],
    }


def _run(name: str, out: Path) -> Path:
    run = out / name
    assert main(["eval", *RUNS[name], "--out", str(run), "--quiet"]) == 0
    return run


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_files_match_the_fingerprint_made_before_the_refactor(name, tmp_path):
    stored = json.loads(STORED.read_text())[name]
    got = fingerprint(_run(name, tmp_path))
    assert sorted(got["samples"]) == sorted(stored["samples"]), "a run writes other sample files than before"
    changed = [f for f, h in got["samples"].items() if stored["samples"][f] != h]
    assert not changed, f"sample files changed: {changed[:5]}"
    assert got == stored


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = {name: fingerprint(_run(name, Path(tmp))) for name in sorted(RUNS)}
    STORED.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {STORED}")
