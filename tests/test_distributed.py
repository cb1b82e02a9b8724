"""Two processes under torchrun (gloo, CPU) give the same run as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from robustbench_mm.engine import evaluate
from robustbench_mm.protocols import parse_protocol
from robustbench_mm.results import load_run

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import PROTOCOL, cells_without_seconds, run_files, tiny_data, tiny_models  # noqa: E402

WORKER = """
import sys, torch
sys.path[:0] = [{tests!r}, {root!r}]
torch.set_num_threads(1)
from test_engine import PROTOCOL, tiny_data, tiny_models
from robustbench_mm.engine import evaluate
from robustbench_mm.protocols import parse_protocol
data = tiny_data()
evaluate(tiny_models(data), data, parse_protocol(PROTOCOL), out={out!r}, device="cpu", batch_size=8, progress=False)
"""


def test_two_ranks_match_one_process(tmp_path):
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(root / "tests"), root=str(root), out=str(tmp_path / "dist")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tiny_data()
    evaluate(tiny_models(data), data, parse_protocol(PROTOCOL), out=tmp_path / "one", device="cpu", batch_size=8, progress=False)
    assert load_run(tmp_path / "dist").manifest.world_size == 2
    assert run_files(tmp_path / "dist") == run_files(tmp_path / "one")
    assert cells_without_seconds(tmp_path / "dist").equals(cells_without_seconds(tmp_path / "one"))
