"""The `rbmm` command: bad input is one line on stderr and exit code 2, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_mm.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("rbmm: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["eval", "no/such/model.pt", "--out", "OUT"], "no/such/model.pt"),
        (["eval", str(CHECKPOINT), "--data", "nope", "--out", "OUT"], "nope"),
        (["eval", str(CHECKPOINT), "--protocol", "nope", "--out", "OUT"], "protocol"),
        (["eval", str(CHECKPOINT), "--data", "synthetic", "--out", "OUT"], "modalit"),
        (["train", "--fusion", "bogus", "--out", "OUT/x.pt"], "bogus"),
        (["show", "protocol", "nope"], "nope"),
        (["report", "no/such/run", "-o", "OUT/r"], "no/such/run"),
        (["baseline", "no/such/run", "-o", "OUT/b.json"], "no/such/run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    assert expected in _one_line_error(capsys)


def test_corrupt_checkpoint_and_nan_features(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(CHECKPOINT.read_bytes()[:1000])
    assert main(["eval", str(truncated), "--out", str(tmp_path / "o1")]) == 2
    assert "truncated.pt" in _one_line_error(capsys)

    features = tmp_path / "features.npz"
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    x[3, 2] = np.nan
    np.savez(features, a=x, labels=np.arange(20) % 2)
    assert main(["eval", str(CHECKPOINT), "--data", str(features), "--out", str(tmp_path / "o2")]) == 2
    assert "nan" in _one_line_error(capsys).lower()


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robustbench_mm", "--debug", "eval", "missing.pt", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "InputError" in proc.stderr


def test_list_and_show(capsys):
    assert main(["list", "corruptions"]) == 0
    listed = capsys.readouterr().out
    assert "gaussian_noise" in listed and "blank" in listed
    assert main(["list", "protocols"]) == 0
    assert {"quick", "standard", "qmf", "udml"} <= {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert main(["show", "protocol", "quick"]) == 0
    assert "cells per model" in capsys.readouterr().out


def test_plugin_from_the_working_directory_appears_in_list(tmp_path, capsys, monkeypatch):
    (tmp_path / "corruptions").mkdir()
    (tmp_path / "corruptions" / "dim_light.py").write_text(
        "from robustbench_mm.corruptions import corruption\n"
        "@corruption('dim_light_cli_test', kinds=('image',), severity=(0.1, 0.2, 0.3, 0.4, 0.5),\n"
        "            unit='fraction of range', description='underexposure')\n"
        "def dim_light(x, param, rng, spec):\n"
        "    low, high = spec.value_range\n"
        "    return (x - param * (high - low)).clamp(low, high)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["list", "corruptions"]) == 0
    assert "dim_light_cli_test" in capsys.readouterr().out


def test_eval_under_torchrun_matches_one_process(tmp_path):
    """The README's multi-process command: 2 CPU ranks (gloo) give the single-process cells."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RBMM_DIST_BACKEND": "gloo"}
    common = ["eval", str(CHECKPOINT), "--protocol", "quick", "--quiet", "--device", "cpu"]
    dist = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "robustbench_mm",
         *common, "--out", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert dist.returncode == 0, dist.stderr[-2000:]
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    dist_cells = pd.read_csv(tmp_path / "dist" / "cells.csv").drop(columns="seconds")
    single_cells = pd.read_csv(tmp_path / "single" / "cells.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(dist_cells, single_cells)
    files = sorted(p.name for p in (tmp_path / "single" / "samples").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "dist" / "samples").iterdir()) and len(files) == len(single_cells)
    for name in files:
        assert (tmp_path / "dist" / "samples" / name).read_bytes() == (tmp_path / "single" / "samples" / name).read_bytes()
