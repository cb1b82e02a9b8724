"""The gate's github-action-benchmark files: the action reads one direction per file and alerts on
the ratio prev/current (customBiggerIsBetter) or current/prev (customSmallerIsBetter), so every
value must be positive and lie in the file of its direction: scores in one, mCE in the other."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from robustbench_mm.cli import main
from robustbench_mm.domain import Family
from robustbench_mm.gate import MCE, Check, GateResult, gate, make_baseline, smaller_is_better_path, write_benchmark_json
from robustbench_mm.results import load_run

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"


def _alerts(tool: str, prev: float, current: float, threshold: float = 1.02) -> bool:
    """github-action-benchmark's findAlerts rule (src/write/findAlerts.ts)."""
    ratio = prev / current if tool == "customBiggerIsBetter" else current / prev
    return ratio > threshold


def _check(name: str, current: float, higher_is_better: bool = True, baseline: float = 1.0) -> Check:
    drop = (baseline - current) if higher_is_better else (current - baseline)
    return Check("cand", name, baseline, current, drop, drop - 0.01, drop + 0.01, 0.01, "base", higher_is_better)


def test_scores_and_mce_go_to_the_file_of_their_direction(tmp_path):
    result = GateResult([_check("clean", 0.9, baseline=0.95), _check(MCE, 1.25, higher_is_better=False),
                         _check("summary: mean corrupted", float("nan"))], tolerance=0.01, confidence=0.95)
    path = tmp_path / "bench.json"
    assert write_benchmark_json(result, path) == [path, tmp_path / "bench.smaller.json"]
    bigger = json.loads(path.read_text())
    smaller = json.loads(smaller_is_better_path(path).read_text())
    assert [e["name"] for e in bigger] == ["base clean"]  # NaN left out: JSON.parse refuses it
    assert [(e["name"], e["value"]) for e in smaller] == [(f"base {MCE}", 1.25)]
    assert all(e["value"] > 0 for e in bigger + smaller)
    # a worse mCE alerts under the smaller-is-better tool, a better one does not
    assert _alerts("customSmallerIsBetter", prev=1.0, current=smaller[0]["value"])
    assert not _alerts("customSmallerIsBetter", prev=1.0, current=0.8)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_a_result_without_lower_is_better_checks_writes_one_file(tmp_path):
    path = tmp_path / "bench.json"
    assert write_benchmark_json(GateResult([_check("clean", 0.9)], 0.01, 0.95), path) == [path]
    assert not smaller_is_better_path(path).exists()


@pytest.fixture(scope="module")
def run_and_harder_baseline(tmp_path_factory):
    """The committed checkpoint's quick run, and a baseline of it whose corrupted cells have half
    their errors turned right: against it the run's mCE is about 2."""
    out = tmp_path_factory.mktemp("bench") / "run"
    assert main(["eval", str(CHECKPOINT), "--protocol", "quick", "--out", str(out), "--quiet"]) == 0
    run = load_run(out)
    baseline = make_baseline(run)
    n = len(baseline["ids"])
    for cell in baseline["cells"]:
        if cell["family"] != Family.CORRUPTION:
            continue
        bits = np.unpackbits(np.frombuffer(base64.b64decode(cell["scores"]), dtype=np.uint8))[:n].copy()
        wrong = np.flatnonzero(bits == 0)
        bits[wrong[: len(wrong) // 2]] = 1
        cell["scores"] = base64.b64encode(np.packbits(bits).tobytes()).decode()
        cell["score"] = float(bits.mean())
    return run, baseline


def test_mce_is_a_lower_is_better_check_against_the_baseline(run_and_harder_baseline, tmp_path):
    run, baseline = run_and_harder_baseline
    result = gate(run, baseline, 0.01, n_resamples=200)
    mce = next(c for c in result.checks if c.name == MCE)
    assert not mce.higher_is_better and mce.baseline == 1.0
    assert mce.current > 1.0 and mce.drop == pytest.approx(mce.current - 1.0)
    assert mce.drop_low <= mce.drop <= mce.drop_high
    assert mce.regressed  # twice the baseline's errors on every corruption
    written = write_benchmark_json(result, tmp_path / "bench.json")
    smaller = json.loads(written[1].read_text())
    assert smaller == [{
        "name": f"{mce.baseline_model} {MCE}", "unit": "ratio to the baseline", "value": round(mce.current, 6),
        "range": f"±{(mce.drop_high - mce.drop_low) / 2:.4f}", "extra": "baseline 1.0000",
    }]
    assert _alerts("customSmallerIsBetter", prev=1.0, current=smaller[0]["value"])
