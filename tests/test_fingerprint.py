"""Result files are a contract: refactors must not change a byte of what a run writes.

Three runs cover the record shapes we write: the committed mfeat checkpoint under `quick` (the CI
gate's run), a calibrated synthetic model under `conflict` with probabilities kept (gate fields,
donor conditions, the probability matrix), and a regression model under `quick`. Their `cells.csv`
(less the wall-clock `seconds` column), every `samples/` file's arrays, the RNG version, the
protocol hash and the dataset fingerprint are compared with `data/fingerprint/`, written by the
code of commit 334561f (before the issue-12 refactor) with `python tests/test_fingerprint.py --write`,
and rewritten once on purpose for issue 22: `p_true`, `sq_prob` and `entropy` became float64
(Brier, NLL and confidence in float64 end to end). Against the old code run on the same machine
(x86_64/AVX512) only those three arrays and the cells.csv columns nll, brier, confidence and their
`_se` changed (by at most 1.8e-8); every other array and column stayed byte-identical.

Two tiers, because model outputs are exact only on one kind of CPU: torch picks its float kernels
by the CPU's vector extensions (AVX2, AVX-512, ...), and a different kernel rounds the last bits
differently. On the machine kind recorded in `fingerprint.json` every array and `cells.csv` must
hash the same (byte identity); on any other, the stored reference run is compared instead:
integers, booleans, ids and every text field exactly, floats to 1e-5 relative.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mm.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "fingerprint"
STORED = DATA / "fingerprint.json"
REFERENCE = DATA / "reference"  # the stored runs: <name>/cells.csv (less seconds) and <name>/samples/

RUNS = {
    "mfeat-quick": [str(ROOT / "results" / "baselines" / "mfeat-concat.pt"), "--data", "mfeat", "--protocol", "quick"],
    "synthetic-calibrated-conflict": [
        str(DATA / "syn-cal.pt"), "--data", "synthetic:samples=300", "--protocol", "conflict", "--keep-probabilities",
    ],
    "regression-quick": [str(DATA / "reg.pt"), "--data", str(DATA / "reg.npz"), "--protocol", "quick"],
}

# wall-clock fields: the only parts of a run that differ between two identical runs
TIMING_COLUMNS = ("seconds",)
RTOL, ATOL = 1e-5, 1e-6


def machine_kind() -> str:
    """What decides the last bits of a model's outputs: architecture and torch's CPU kernels."""
    return f"{platform.machine()}/{torch.backends.cpu.get_cpu_capability()}/torch {torch.__version__}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cells_without_timing(path: Path) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[row[i] for i in keep] for row in rows])
    return out.getvalue()


def _npz_content_sha(path: Path) -> str:
    """SHA-256 over each array's name and .npy bytes (header + data), in stored order.

    Not the file's bytes: those hold deflate output, which may differ between zlib builds for the
    same arrays.
    """
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            h.update(name.encode() + b"\0" + z.read(name))
    return h.hexdigest()


def fingerprint(run: Path) -> dict:
    """What must stay identical in a run folder."""
    manifest = json.loads((run / "manifest.json").read_text())
    return {
        "cells.csv": _sha(_cells_without_timing(run / "cells.csv").encode()),
        "samples": {p.name: _npz_content_sha(p) for p in sorted((run / "samples").iterdir())},
        "rng": manifest["rng"],
        "protocol_hash": manifest["protocol"]["hash"],
        "dataset_fingerprint": manifest["dataset"]["fingerprint"],
    }


def _run(name: str, out: Path) -> Path:
    run = out / name
    assert main(["eval", *RUNS[name], "--out", str(run), "--quiet"]) == 0
    return run


def _same_values(got: str, want: str, where: str) -> None:
    """Two cell tables or two arrays' text cells: numbers to RTOL, everything else exactly."""
    a, b = list(csv.reader(io.StringIO(got))), list(csv.reader(io.StringIO(want)))
    assert a[0] == b[0] and len(a) == len(b), f"{where}: other columns or rows than the reference"
    for row_a, row_b in zip(a[1:], b[1:]):
        for column, x, y in zip(a[0], row_a, row_b):
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                assert x == y, f"{where}: {column} is {x!r}, reference {y!r}"
                continue
            assert np.isclose(fx, fy, rtol=RTOL, atol=ATOL, equal_nan=True), f"{where}: {column} is {x}, reference {y}"


def _same_arrays(got: Path, want: Path) -> None:
    with np.load(got) as a, np.load(want) as b:
        assert sorted(a.files) == sorted(b.files), f"{got.name}: other fields than the reference"
        for key in a.files:
            x, y = a[key], b[key]
            assert x.dtype == y.dtype and x.shape == y.shape, f"{got.name}: {key} is {x.dtype}{x.shape}, reference {y.dtype}{y.shape}"
            if x.dtype.kind == "f":
                assert np.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True), f"{got.name}: {key} differs beyond {RTOL}"
            else:
                assert np.array_equal(x, y), f"{got.name}: {key} differs"


@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_files_match_the_fingerprint_made_before_the_refactor(name, tmp_path):
    stored = json.loads(STORED.read_text())
    want = stored["runs"][name]
    run = _run(name, tmp_path)
    got = fingerprint(run)
    assert sorted(got["samples"]) == sorted(want["samples"]), "a run writes other sample files than before"
    for key in ("rng", "protocol_hash", "dataset_fingerprint"):
        assert got[key] == want[key], f"{key} changed"
    if stored["machine"] == machine_kind():  # byte identity
        changed = [f for f, h in got["samples"].items() if want["samples"][f] != h]
        assert not changed, f"sample files changed: {changed[:5]}"
        assert got["cells.csv"] == want["cells.csv"], "cells.csv changed"
    else:  # the same values, as far as another CPU's kernels round the same
        reference = REFERENCE / name
        _same_values(_cells_without_timing(run / "cells.csv"), (reference / "cells.csv").read_text(), "cells.csv")
        for f in sorted(got["samples"]):
            _same_arrays(run / "samples" / f, reference / "samples" / f)


def test_the_reference_run_is_the_fingerprinted_one():
    """The tolerance tier compares against the very files whose hashes the exact tier checks."""
    stored = json.loads(STORED.read_text())
    for name, want in stored["runs"].items():
        reference = REFERENCE / name
        assert _sha((reference / "cells.csv").read_bytes()) == want["cells.csv"]
        assert {p.name: _npz_content_sha(p) for p in sorted((reference / "samples").iterdir())} == want["samples"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    table = {}
    shutil.rmtree(REFERENCE, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(RUNS):
            run = _run(name, Path(tmp))
            table[name] = fingerprint(run)
            (REFERENCE / name).mkdir(parents=True)
            (REFERENCE / name / "cells.csv").write_text(_cells_without_timing(run / "cells.csv"))
            shutil.copytree(run / "samples", REFERENCE / name / "samples")
    STORED.write_text(json.dumps({"machine": machine_kind(), "runs": table}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {STORED} and {REFERENCE}")
