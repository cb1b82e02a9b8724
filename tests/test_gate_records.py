"""Calibration gates in the per-sample records: written by our calibrated models only, the gates
the model actually applied, the same with and without encoder reuse and for any batch size."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mm.corruptions import DonorPool, apply_condition
from robustbench_mm.engine import evaluate
from robustbench_mm.models import build_model
from robustbench_mm.protocols import parse_protocol

from test_engine import PROTOCOL, BlackBox, tiny_data

RECORD_FIELDS = {"ids", "target", "pred", "conf", "p_true", "sq_prob", "entropy", "affected"}


def calibrated(data, fusion="concat", calibration=True, seed=0):
    """A small model of ours whose gates are not all 1 (random last gate layer), so they can differ."""
    torch.manual_seed(seed)
    config = {"fusion": fusion, "calibration": calibration, "specs": list(data.specs.values()),
              "num_classes": data.num_classes, "dim": 8, "width": 8, "hidden": 8}
    model = build_model(config).eval()
    if calibration:
        with torch.no_grad():
            nn.init.normal_(model.calibrate.gates.weight, std=0.5)
            nn.init.normal_(model.calibrate.gates.bias, std=0.5)
    return model


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(PROTOCOL, source="tiny.toml")


def records(run):
    return {cid: run.samples(cid) for cid in run.cells["cell_id"]}


@pytest.mark.parametrize("fusion", ["concat", "transformer", "conv", "qmf"])
def test_gates_are_the_same_with_and_without_encoder_reuse_and_any_batch_size(tmp_path, protocol, fusion):
    data = tiny_data()
    model = calibrated(data, fusion)
    reused = records(evaluate([model], data, protocol, out=tmp_path / "a", batch_size=8, progress=False))
    full = records(evaluate([model], data, protocol, out=tmp_path / "b", batch_size=8, progress=False, reuse_encoders=False))
    whole = records(evaluate([model], data, protocol, out=tmp_path / "c", batch_size=64, progress=False))
    fields = {f"gate_{kind}_{m}" for m in data.specs for kind in ("instance", "dim")}
    for cid, rec in reused.items():
        assert fields <= set(rec), cid
        for k in fields:
            assert rec[k].dtype == np.float32
            np.testing.assert_array_equal(rec[k], full[cid][k], err_msg=f"{cid} {k}")
            np.testing.assert_allclose(rec[k], whole[cid][k], rtol=0, atol=1e-6, err_msg=f"{cid} {k}")


def test_recorded_gates_are_the_ones_the_calibration_computes(tmp_path, protocol):
    """Independent computation: compute_gates on the perturbed batch, sample by sample."""
    data = tiny_data()
    model = calibrated(data)
    run = evaluate([model], data, protocol, out=tmp_path / "r", batch_size=8, progress=False)
    checked = 0
    for cond in protocol.expand(data.specs):
        cid = run.cells.loc[run.cells["condition"] == cond.key, "cell_id"].item()
        rec = run.samples(cid)
        batch = next(data.batches(len(data), "cpu"))
        perturbed = apply_condition(batch, cond, data.specs, protocol.seed, DonorPool.from_data(data, "cpu"))
        with torch.no_grad():
            features = {m: model.encode(m, perturbed.inputs[m]) for m in model.modalities}
            gates = model.calibrate.compute_gates(features, model.presence(features, perturbed.present))
        order = np.argsort(rec["ids"])
        for m, (instance, dim) in gates.items():
            present = model.presence(features, perturbed.present)[m].numpy()
            want_i = np.where(present, instance.numpy(), np.nan)
            want_d = np.where(present, dim.mean(-1).numpy(), np.nan)
            np.testing.assert_allclose(rec[f"gate_instance_{m}"][order], want_i, atol=1e-6, err_msg=cid)
            np.testing.assert_allclose(rec[f"gate_dim_{m}"][order], want_d, atol=1e-6, err_msg=cid)
            if cond.family == "removal":
                assert np.isnan(rec[f"gate_instance_{m}"][order][~present]).all()
            checked += 1
    assert checked == 3 * len(protocol.expand(data.specs))


def test_gates_differ_between_samples_and_between_conditions(tmp_path, protocol):
    """A record that could not fail would be a constant: the gates here vary, so they are read per sample."""
    data = tiny_data()
    run = evaluate([calibrated(data)], data, protocol, out=tmp_path / "r", batch_size=8, progress=False)
    clean = run.samples(run.cells.loc[run.cells["family"] == "clean", "cell_id"].item())
    assert np.std(clean["gate_instance_img"]) > 1e-3
    noisy = run.cells[(run.cells["family"] == "corruption") & (run.cells["modalities"] == "vec")]
    rec = run.samples(noisy["cell_id"].iloc[0])
    order_c, order_n = np.argsort(clean["ids"]), np.argsort(rec["ids"])
    assert not np.allclose(clean["gate_instance_vec"][order_c], rec["gate_instance_vec"][order_n])


def test_uncalibrated_and_foreign_models_write_no_gate_fields(tmp_path, protocol):
    data = tiny_data()
    models = [calibrated(data, calibration=False), BlackBox(calibrated(data))]
    run = evaluate(models, data, protocol, out=tmp_path / "r", batch_size=8, progress=False)
    for cid in run.cells["cell_id"]:
        assert set(run.samples(cid)) == RECORD_FIELDS, cid


def test_report_gate_section_matches_the_records_and_says_why_when_absent(tmp_path, protocol):
    from robustbench_mm.report import write_report

    data = tiny_data()
    named = [SimpleNamespace(module=calibrated(data), name="concat+cal"),
             SimpleNamespace(module=calibrated(data, calibration=False, seed=1), name="concat")]
    with_gates = evaluate(named, data, protocol,
                          out=tmp_path / "g", batch_size=16, progress=False)
    write_report(tmp_path / "g", tmp_path / "rep-g")
    md = (tmp_path / "rep-g" / "report.md").read_text()
    assert "## Calibration gates" in md and "figures/gates.png" in md
    table = __import__("pandas").read_csv(tmp_path / "rep-g" / "tables" / "gates.csv")
    model = "concat+cal"
    assert set(table["model"]) == {model}
    assert set(table["input"]) == {"clean", "corrupted", "conflicting", "other conflicting"}
    # independent computation for one row: noise on vec (both levels, both rates), affected samples only
    cells = with_gates.cells[(with_gates.cells["model"] == model)]
    clean = with_gates.samples(cells.loc[cells["family"] == "clean", "cell_id"].item())
    changes, lower = [], []
    for cid in cells.loc[(cells["family"] == "corruption") & (cells["modalities"] == "vec"), "cell_id"]:
        rec = with_gates.samples(cid)
        assert np.array_equal(rec["ids"], clean["ids"])
        hit = rec["affected"]
        diff = rec["gate_instance_vec"][hit].astype(np.float64) - clean["gate_instance_vec"][hit]
        changes.append(diff)
        lower.append(diff < 0)
    row = table[(table["modality"] == "vec") & (table["input"] == "corrupted")].iloc[0]
    assert row["n"] == sum(len(c) for c in changes)
    assert row["median_change_instance"] == pytest.approx(np.median(np.concatenate(changes)), abs=1e-7)
    assert row["lower_instance"] == pytest.approx(np.concatenate(lower).mean())

    evaluate([calibrated(data, calibration=False)], data, protocol, out=tmp_path / "n", batch_size=16, progress=False)
    write_report(tmp_path / "n", tmp_path / "rep-n")
    md = (tmp_path / "rep-n" / "report.md").read_text()
    assert "Calibration gates" not in md  # no model has calibration: no gates to expect, nothing to explain
    assert not (tmp_path / "rep-n" / "tables" / "gates.csv").exists()
