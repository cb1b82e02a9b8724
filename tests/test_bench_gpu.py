"""benchmarks/bench_gpu.py waits for a lent GPU; its CPU smoke run keeps every part of it working
(kernels against imagecorruptions and x.clone(), evaluate() against bare forwards) until then.
Not a timed test: only that it runs and prints both parts."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--smoke",
                           "--repeat", "1"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## kernels:" in proc.stdout and "gaussian_noise" in proc.stdout
    assert "harness overhead" in proc.stdout
