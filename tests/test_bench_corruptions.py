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


def test_the_references_get_c_contiguous_images():
    """imagecorruptions and the loops take (H, W, C) images as a caller holds them, C-contiguous:
    a strided view of the planar batch made them pay a transposing copy that ours does not."""
    script = ("import torch, numpy as np, bench_corruptions as b\n"
              "from robustbench_mm.datasets import ModalitySpec\n"
              "x = torch.rand(2, 3, 40, 48)\n"
              "for c in (3, 1):\n"
              "    unit, uint8 = b.reference_images(2 * x[:, :c], ModalitySpec('i', 'image', (c, 40, 48), value_range=(0.0, 2.0)))\n"
              "    assert unit.flags['C_CONTIGUOUS'] and unit.shape == (2, 40, 48, c), unit.shape\n"
              "    want = (x[:, :c].permute(0, 2, 3, 1).double() * 255).round().to(torch.uint8).numpy()\n"
              "    assert all(im.flags['C_CONTIGUOUS'] and np.array_equal(im, w.squeeze(-1) if c == 1 else w) for im, w in zip(uint8, want))\n"
              "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
