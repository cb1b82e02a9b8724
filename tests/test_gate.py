"""The CI gate, dogfooded: the committed checkpoint re-evaluated with `quick` must pass against the
committed baseline; a copy with one modality's encoder damaged must fail; unusable input exits 2."""

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mm.cli import main
from robustbench_mm.gate import Check, gate, load_baseline, make_baseline
from robustbench_mm.models import load_model, save_checkpoint
from robustbench_mm.results import load_run
from robustbench_mm.stats import paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"
BASELINE = ROOT / "results" / "baselines" / "mfeat-concat-quick.json"


def _eval(model: Path, out: Path, protocol: str = "quick") -> Path:
    assert main(["eval", str(model), "--protocol", protocol, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory) -> Path:
    return _eval(CHECKPOINT, tmp_path_factory.mktemp("fresh") / "run")


@pytest.fixture(scope="module")
def degraded_run(tmp_path_factory) -> Path:
    """The same model with its `fac` encoder weights perturbed, saved under the same name."""
    loaded = load_model(CHECKPOINT)
    generator = torch.Generator().manual_seed(0)
    prefix = f"encoders.{loaded.module.modalities.index('fac')}."
    with torch.no_grad():
        for name, p in loaded.module.named_parameters():
            if name.startswith(prefix):
                p.add_(torch.randn(p.shape, generator=generator) * p.std() * 3.0)
    folder = tmp_path_factory.mktemp("degraded")
    path = save_checkpoint(loaded.module, folder / CHECKPOINT.name, loaded.config)
    return _eval(path, folder / "run")


def test_committed_checkpoint_passes_against_committed_baseline(fresh_run, tmp_path, capsys):
    junit = tmp_path / "gate.xml"
    code = main(["gate", str(fresh_run), "--baseline", str(BASELINE), "--tolerance", "0.01", "--junit", str(junit)])
    assert code == 0, capsys.readouterr().out
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(suite.findall("testcase")) > 20


def test_degraded_model_fails_the_gate_with_named_cells(degraded_run, tmp_path, capsys):
    junit, summary, bench = tmp_path / "gate.xml", tmp_path / "summary.md", tmp_path / "bench.json"
    code = main([
        "gate", str(degraded_run), "--baseline", str(BASELINE), "--tolerance", "0.01",
        "--junit", str(junit), "--summary", str(summary), "--benchmark-json", str(bench),
    ])
    out = capsys.readouterr()
    assert code == 1
    assert "gate failed" in out.err and "REGRESSED" in out.out
    failures = ET.parse(junit).getroot().findall("testcase/failure")
    assert failures, "JUnit XML must list the regressed checks"
    assert "robustness regression" in summary.read_text()
    entries = json.loads(bench.read_text())
    assert all(set(e) >= {"name", "unit", "value"} for e in entries)


def test_regressions_are_the_checks_whose_whole_interval_exceeds_tolerance(degraded_run):
    result = gate(load_run(degraded_run), load_baseline(BASELINE), 0.01, n_resamples=500)
    for c in result.checks:
        assert c.regressed == (c.drop > 0.01 and c.drop_low > 0.01)
    names = {c.name for c in result.regressions}
    assert any("fac" in n for n in names), names
    # cells that do not involve fac's encoder output (fac removed) are unaffected by the damage
    for c in result.checks:
        if "removal" in c.name and "|fac|" in c.name:
            assert c.drop == 0.0


def test_cell_interval_matches_the_paired_bootstrap_of_stats(degraded_run):
    """The gate's joint bootstrap, restricted to one cell, is the plain paired bootstrap of stats."""
    run, baseline = load_run(degraded_run), load_baseline(BASELINE)
    result = gate(run, baseline, 0.01, n_resamples=1000, seed=3)
    check = next(c for c in result.checks if c.name.startswith("seed=0 corruption|gaussian_noise|fac|l=5"))
    packed = next(c["scores"] for c in baseline["cells"] if c["cell"] == check.name)
    n = len(baseline["ids"])
    base_correct = np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8))[:n]
    row = run.cells[run.cells["condition"] == check.name.split(" ", 1)[1]].iloc[0]
    current = run.samples(row["cell_id"])
    order = np.argsort(current["ids"])
    cur_rec = {k: v[order] for k, v in current.items()}
    # the baseline as a record with the baseline's correctness: right where it was right, else off by one
    target = cur_rec["target"]
    base_rec = dict(cur_rec, pred=np.where(base_correct.astype(bool), target, (target + 1) % 10))
    boot = paired_bootstrap(base_rec, cur_rec, "accuracy", n_resamples=1000, seed=3, num_classes=10)
    assert check.drop == pytest.approx(boot.estimate)
    assert check.drop_low == pytest.approx(boot.low, abs=5e-3)
    assert check.drop_high == pytest.approx(boot.high, abs=5e-3)


def test_noise_alone_never_regresses():
    c = Check("m", "cell", baseline=0.90, current=0.88, drop=0.02, drop_low=-0.01, drop_high=0.05, tolerance=0.01)
    assert not c.regressed
    assert Check("m", "cell", 0.90, 0.85, 0.05, 0.02, 0.08, 0.01).regressed


def test_other_protocol_or_broken_baseline_exits_2(fresh_run, tmp_path, capsys):
    other = _eval(CHECKPOINT, tmp_path / "conflict", protocol="conflict")
    assert main(["gate", str(other), "--baseline", str(BASELINE)]) == 2
    assert "protocol" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something else"}))
    assert main(["gate", str(fresh_run), "--baseline", str(bad)]) == 2
    assert "schema" in capsys.readouterr().err
    assert main(["gate", str(fresh_run), "--baseline", str(tmp_path / "missing.json")]) == 2
    capsys.readouterr()
    other_rng = tmp_path / "other-rng.json"  # corruptions drawn by another generator version: not comparable
    other_rng.write_text(json.dumps(dict(json.loads(BASELINE.read_text()), rng="lowbias32/1")))
    assert main(["gate", str(fresh_run), "--baseline", str(other_rng)]) == 2
    assert "random-number generator" in capsys.readouterr().err


def test_baseline_round_trip_is_compact_and_exact(fresh_run):
    run = load_run(fresh_run)
    baseline = make_baseline(run)
    assert len(json.dumps(baseline)) < 50_000
    result = gate(run, baseline, 0.0, n_resamples=200)
    assert all(c.drop == 0.0 and c.drop_low == 0.0 for c in result.checks)
