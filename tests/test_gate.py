"""The CI gate, dogfooded: the committed checkpoint re-evaluated with `quick` must pass against the
committed baseline; a copy with one modality's encoder damaged, saved under another name, must fail;
unusable input (other protocol or plug-ins, an incomplete run, unmatched models) exits 2."""

import base64
import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from readers import junit_schema
from robustbench_mm.cli import main
from robustbench_mm.engine import evaluate
from robustbench_mm.datasets import load_dataset
from robustbench_mm.gate import Check, gate, load_baseline, make_baseline, write_baseline
from robustbench_mm.models import load_model, save_checkpoint
from robustbench_mm.results import load_run
from robustbench_mm.stats import paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"
BASELINE = ROOT / "results" / "baselines" / "mfeat-concat-quick.json"


def _eval(model: Path | str, out: Path, protocol: str = "quick", *extra: str, models: tuple = ()) -> Path:
    argv = ["eval", str(model), *map(str, models), "--protocol", protocol, "--out", str(out), "--quiet", *extra]
    assert main(argv) == 0
    return out


def _edit_manifest(run: Path, **fields) -> Path:
    path = run / "manifest.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **fields)))
    return run


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory) -> Path:
    return _eval(CHECKPOINT, tmp_path_factory.mktemp("fresh") / "run")


@pytest.fixture(scope="module")
def degraded_run(tmp_path_factory) -> Path:
    """The same model with its `fac` encoder weights perturbed, saved under another name (as a new
    candidate checkpoint always is): the gate must compare it with the one baseline model anyway."""
    loaded = load_model(CHECKPOINT)
    generator = torch.Generator().manual_seed(0)
    prefix = f"encoders.{loaded.module.modalities.index('fac')}."
    with torch.no_grad():
        for name, p in loaded.module.named_parameters():
            if name.startswith(prefix):
                p.add_(torch.randn(p.shape, generator=generator) * p.std() * 3.0)
    folder = tmp_path_factory.mktemp("degraded")
    path = save_checkpoint(loaded.module, folder / "degraded.pt", loaded.config)
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
    assert "comparing candidate 'degraded' with baseline model 'mfeat-concat'" in out.out
    failures = ET.parse(junit).getroot().findall("testcase/failure")
    assert failures, "JUnit XML must list the regressed checks"
    assert "robustness regression" in summary.read_text()
    entries = json.loads(bench.read_text())
    assert all(set(e) >= {"name", "unit", "value"} for e in entries)
    # series keep the baseline model's name, whatever the candidate file is called
    assert all(e["name"].startswith("mfeat-concat ") for e in entries)
    assert {c.get("classname") for c in ET.parse(junit).getroot().findall("testcase")} == {"degraded"}


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


def test_renamed_identical_candidate_passes_and_says_which_models_it_compared(tmp_path, capsys):
    renamed = _eval(CHECKPOINT, tmp_path / "renamed", "quick", "--name", "epoch-20")
    assert main(["gate", str(renamed), "--baseline", str(BASELINE)]) == 0
    out = capsys.readouterr().out
    assert "comparing candidate 'epoch-20' with baseline model 'mfeat-concat'" in out and "gate passed" in out


@pytest.fixture(scope="module")
def two_model_baseline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pair")
    run = _eval(CHECKPOINT, folder / "run", "quick", "--name", "alpha", "--name", "beta", models=(CHECKPOINT,))
    assert main(["baseline", str(run), "-o", str(folder / "pair.json")]) == 0
    return folder / "pair.json"


def test_unmatched_multi_model_run_exits_2_naming_both_sides(two_model_baseline, tmp_path, capsys):
    run = _eval(f"gamma={CHECKPOINT}", tmp_path / "run", "quick", models=(f"beta={CHECKPOINT}",))
    capsys.readouterr()
    assert main(["gate", str(run), "--baseline", str(two_model_baseline)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'alpha'" in err and "'gamma'" in err and "--match" in err, err
    # the explicit mapping pairs the rest; equal names pair by themselves
    assert main(["gate", str(run), "--baseline", str(two_model_baseline), "--match", "gamma=alpha"]) == 0
    out = capsys.readouterr().out
    assert "comparing candidate 'gamma' with baseline model 'alpha'" in out and "'beta' with" not in out
    assert main(["gate", str(run), "--baseline", str(two_model_baseline), "--match", "delta=alpha"]) == 2
    assert "no model 'delta'" in capsys.readouterr().err


def _interrupted_run(out: Path, after_cells: int) -> Path:
    """A real run stopped after `after_cells` cells (one condition per pass, so tables get written)."""
    def stop(cell: str) -> None:
        stop.count += 1
        if stop.count == after_cells:
            raise KeyboardInterrupt
    stop.count = 0
    with pytest.raises(KeyboardInterrupt):
        evaluate([load_model(CHECKPOINT)], load_dataset("mfeat", "test"), "quick", out=out, buffer_mb=0.01, on_cell=stop)
    return out


def test_incomplete_run_exits_2_with_the_count_of_missing_cells(tmp_path, capsys):
    run = _interrupted_run(tmp_path / "killed", after_cells=10)
    manifest = json.loads((run / "manifest.json").read_text())
    _edit_manifest(run, complete=manifest.get("complete", False))  # the field the engine marks false until the end
    written = len(load_run(run).cells)
    n_baseline = len(load_baseline(BASELINE)["cells"])
    assert 0 < written < n_baseline
    junit = tmp_path / "gate.xml"
    assert main(["gate", str(run), "--baseline", str(BASELINE), "--junit", str(junit)]) == 2
    err = capsys.readouterr().err
    assert f"{n_baseline - written} of {n_baseline} baseline cells missing" in err and "not marked complete" in err, err
    # CI still gets a report: one <error> case per missing cell, valid for Jenkins xUnit
    junit_schema().validate(str(junit))
    cases = ET.parse(junit).getroot().findall("testcase")
    present = {f"seed={int(r['seed'])} {r['condition']}" for _, r in load_run(run).cells.iterrows()}
    wanted = {c["cell"] for c in load_baseline(BASELINE)["cells"]}
    assert {c.get("name") for c in cases} == wanted - present
    assert all(c.find("error") is not None for c in cases)
    # the field is part of the run contract: a manifest without it is refused in one line
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.pop("complete")
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["gate", str(run), "--baseline", str(BASELINE)]) == 2
    assert "missing field 'complete'" in capsys.readouterr().err


def test_run_not_marked_complete_is_not_gated_even_with_every_cell(fresh_run, tmp_path, capsys):
    run = _edit_manifest(_copy_run(fresh_run, tmp_path / "run"), complete=False)
    assert main(["gate", str(run), "--baseline", str(BASELINE)]) == 2
    err = capsys.readouterr().err
    assert "0 of 25 baseline cells missing" in err and "not marked complete" in err
    assert main(["baseline", str(run), "-o", str(tmp_path / "b.json")]) == 2
    assert "not marked complete" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


RAIN = {"name": "rain", "source": "/repo/corruptions/rain.py", "sha256": "a" * 64}


def test_plugin_differences_are_named(fresh_run, tmp_path, capsys):
    with_rain = _edit_manifest(_copy_run(fresh_run, tmp_path / "with"), plugins=[RAIN], complete=True)
    baseline = write_baseline(load_run(with_rain), tmp_path / "rain.json")
    assert load_baseline(baseline)["plugins"] == [RAIN]

    without = _edit_manifest(_copy_run(fresh_run, tmp_path / "without"), plugins=[], complete=True)
    assert main(["gate", str(without), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert "plug-ins differ" in err and "'rain' (/repo/corruptions/rain.py) is in the baseline, not in the run" in err

    other_code = _edit_manifest(_copy_run(fresh_run, tmp_path / "other"), plugins=[dict(RAIN, sha256="b" * 64)], complete=True)
    assert main(["gate", str(other_code), "--baseline", str(baseline)]) == 2
    assert "'rain' has other code (sha256 bbbbbbbbbbbb" in capsys.readouterr().err

    moved = _edit_manifest(_copy_run(fresh_run, tmp_path / "moved"), plugins=[dict(RAIN, source="/ci/corruptions/rain.py")], complete=True)
    assert main(["gate", str(moved), "--baseline", str(baseline)]) == 0
    assert "loaded from /ci/corruptions/rain.py, the baseline's from /repo/corruptions/rain.py (same code)" in capsys.readouterr().out


def test_protocol_difference_is_named_before_missing_cells(fresh_run, tmp_path, capsys):
    """A run of `standard` against a `quick` baseline lacks cells, but the reason is the protocol."""
    protocol = json.loads((fresh_run / "manifest.json").read_text())["protocol"]
    run = _edit_manifest(_copy_run(fresh_run, tmp_path / "run"), protocol=dict(protocol, hash="f" * 64))
    assert main(["gate", str(run), "--baseline", str(BASELINE)]) == 2
    err = capsys.readouterr().err
    assert "protocol 'quick' (hash ffffffffffff) differs from the baseline's" in err and "missing" not in err


@pytest.mark.parametrize("manifest", ["[1, 2]", '{"protocol": {"name": "quick"}}', '"text"'])
def test_manifest_without_fields_or_not_an_object_is_one_line_exit_2(manifest, fresh_run, tmp_path, capsys):
    run = _copy_run(fresh_run, tmp_path / "run")
    (run / "manifest.json").write_text(manifest)
    assert main(["gate", str(run), "--baseline", str(BASELINE)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rbmm: error: ") and "manifest.json" in err and "\n" not in err, err



@pytest.mark.parametrize("flag", ["--junit", "--summary", "--benchmark-json"])
@pytest.mark.parametrize("where", ["directory", "below-a-file", "read-only"])
def test_unwritable_gate_outputs_are_refused_before_the_work(flag, where, fresh_run, tmp_path, read_only_dir, capsys):
    (tmp_path / "a-file").write_text("x")
    target = {"directory": tmp_path, "below-a-file": tmp_path / "a-file" / "gate.out", "read-only": read_only_dir / "gate.out"}[where]
    others = [f for f in ("--junit", "--summary", "--benchmark-json") if f != flag]
    written = [tmp_path / "out" / f"{f.strip('-')}.txt" for f in others]
    argv = ["gate", str(fresh_run), "--baseline", str(BASELINE), flag, str(target)]
    for f, path in zip(others, written):
        argv += [f, str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rbmm: error: {flag} ") and "\n" not in err, err
    assert not any(p.exists() for p in written), "nothing may be written when one output is unusable"


def test_baselines_match_their_schema(fresh_run):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "robustbench_mm" / "schemas" / "baseline.schema.json").read_text())
    jsonschema.validate(json.loads(BASELINE.read_text()), schema)  # the committed version-2 file
    fresh = make_baseline(_edit_manifest_copy(fresh_run, plugins=[RAIN]))
    jsonschema.validate(fresh, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in fresh.items() if k != "plugins"}, schema)


def _edit_manifest_copy(run: Path, **fields):
    """The run as loaded, with manifest fields replaced in memory (the folder is untouched)."""
    loaded = load_run(run)
    loaded.manifest = dataclasses.replace(loaded.manifest, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    return loaded


@pytest.mark.parametrize("option, value", [("--tolerance", "1.5"), ("--confidence", "1.5"), ("--confidence", "0"), ("--resamples", "0")])
def test_gate_numbers_out_of_range_are_one_line_exit_2(option, value, fresh_run, capsys):
    assert main(["gate", str(fresh_run), "--baseline", str(BASELINE), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rbmm: error: {option} must be") and "\n" not in err, err


def test_baseline_out_that_cannot_be_written_is_refused(fresh_run, tmp_path, capsys):
    assert main(["baseline", str(fresh_run), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
