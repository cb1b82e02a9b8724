"""benchmarks/bench_corruptions.py's summary lines name only the references it timed: the ImageNet-C
suite has no per-sample loop, so its sections must not print a loop mean over nothing ("nanx over 0").
Not a timed test: two images per size, one round."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_suite_summary_names_only_the_references_timed(tmp_path):
    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("imagecorruptions is not installed (the test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_corruptions.py"), "--n", "2", "--n224", "2",
                           "--repeat", "1", "--corruptions", "jpeg_compression", "contrast"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    means = [line for line in proc.stdout.splitlines() if line.startswith("geometric mean ratio:")]
    assert len(means) == 2, proc.stdout
    for line in means:
        assert "nan" not in line and "vs loop" not in line, line
        assert line.startswith("geometric mean ratio: vs imagecorruptions") and "over 2 corruptions" in line, line
