"""A condition family from outside the package flows through protocols, eval and report.

The family, `keep_only`, keeps the named modality and zeroes every other one: it changes inputs
beyond its touched modalities, so it says `full_forward=True`, and the engine must run the whole
model for its cells instead of re-encoding only the touched modality.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_mm.corruptions import CONDITION_FAMILIES, Condition, apply_condition, get_family
from robustbench_mm.corruptions.plugins import load_plugins
from robustbench_mm.datasets import load_dataset
from robustbench_mm.domain import clean_cells
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.models import load_model
from robustbench_mm.protocols import parse_protocol
from robustbench_mm.report import write_report

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"

FAMILY_SOURCE = '''
import torch
from robustbench_mm.corruptions import condition_family


@condition_family("{name}", full_forward=True, description="keep one modality, zero the others")
def keep_only(batch, condition, ctx):
    from robustbench_mm.corruptions import affected_mask
    mask = affected_mask(batch.ids, condition, ctx.seed)
    out = batch
    for m, x in batch.inputs.items():
        if m not in condition.modalities:
            keep = mask.reshape((-1,) + (1,) * (x.dim() - 1))
            out = out.with_modality(m, torch.where(keep, torch.zeros_like(x), x))
    return out
'''

PROTOCOL = """
name = "keep-only"
description = "each modality alone"
[[condition]]
family = "{name}"
targets = ["each"]
rates = [1.0, 0.5]
"""


@pytest.fixture
def keep_only(tmp_path, monkeypatch):
    """The family registered by importing a module of the user's (on sys.path, outside the package)."""
    (tmp_path / "user_families.py").write_text(FAMILY_SOURCE.format(name="keep_only"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("user_families")  # registers the family

    yield get_family("keep_only")
    CONDITION_FAMILIES.remove("keep_only")
    sys.modules.pop("user_families", None)


def test_a_new_family_flows_through_protocol_eval_and_report(keep_only, tmp_path):
    assert keep_only.full_forward and not keep_only.needs_donors
    assert CONDITION_FAMILIES.source("keep_only") == "user_families"
    model, data = load_model(CHECKPOINT), load_dataset("mfeat")
    protocol = parse_protocol(PROTOCOL.format(name="keep_only"), source="keep-only.toml")
    assert [(p["name"], p["source"]) for p in protocol.plugins] == [("family:keep_only", "user_families")]
    run = evaluate(model, data, protocol, out=tmp_path / "run", batch_size=64, progress=False)
    assert [p["name"] for p in run.manifest.plugins] == ["family:keep_only"]  # the gate compares these

    cells = run.cells
    ours = cells[cells["family"] == "keep_only"]
    assert len(ours) == 2 * len(data.specs) and len(cells) == len(ours) + 1  # + clean
    assert set(ours["modalities"]) == set(data.specs) and set(ours["rate"]) == {1.0, 0.5}

    # the cell's predictions are the whole model's on the perturbed inputs (not clean features reused
    # for the modalities the family zeroed although it does not name them)
    kept = sorted(data.specs)[0]
    row = ours[(ours["modalities"] == kept) & (ours["rate"] == 1.0)].iloc[0]
    condition = Condition(family="keep_only", name="keep_only", modalities=(kept,))
    batch = next(data.batches(len(data), "cpu"))
    perturbed = apply_condition(batch, condition, data.specs, protocol.seed)
    with torch.inference_mode():
        expected = model.module(perturbed.inputs, perturbed.present).argmax(-1).numpy()
    record = run.samples(row["cell_id"])
    assert np.array_equal(record["ids"], batch.ids.numpy())
    assert np.array_equal(record["pred"], expected) and record["affected"].all()
    clean_acc = float(clean_cells(cells)["accuracy"].iloc[0])
    assert float(row["accuracy"]) < clean_acc  # one modality alone is worse than all of them

    index = write_report(run, tmp_path / "report")
    assert index.is_file() and "keep_only" in (tmp_path / "report" / "report.md").read_text()


def test_a_plugin_file_can_register_a_family_and_a_protocol_then_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = PROTOCOL.format(name="keep_only_plugin")
    hashes = []
    for i, extra in enumerate(("", "\n# the same family, edited\n")):
        plugin = tmp_path / f"keep_only_plugin_{i}.py"
        plugin.write_text(FAMILY_SOURCE.format(name="keep_only_plugin") + extra)
        try:
            load_plugins([str(plugin)], entry_points=False)
            assert CONDITION_FAMILIES.source("keep_only_plugin") == str(plugin)
            protocol = parse_protocol(text)
            specs = load_dataset("mfeat").specs
            assert [c.family for c in protocol.expand(specs)[1:3]] == ["keep_only_plugin"] * 2
            hashes.append(protocol.hash)
        finally:
            CONDITION_FAMILIES.remove("keep_only_plugin")
    assert hashes[0] != hashes[1]  # the family's code is part of what the protocol means
    with pytest.raises(InputError, match="unknown condition family 'keep_only_plugin'; expected one of: clean, conflict"):
        parse_protocol(PROTOCOL.format(name="keep_only_plugin"))


def test_the_builtin_families_say_what_the_engine_needs():
    flags = pd.DataFrame(
        [(n, f.perturbs, f.needs_donors, f.full_forward) for n, f in CONDITION_FAMILIES.items()],
        columns=["name", "perturbs", "needs_donors", "full_forward"],
    ).set_index("name")
    assert list(flags.index[:4]) == ["clean", "corruption", "removal", "conflict"]
    assert flags.loc["clean"].tolist() == [False, False, False]
    assert flags.loc["conflict"].tolist() == [True, True, False]
    assert not flags.loc[["corruption", "removal"], ["needs_donors", "full_forward"]].to_numpy().any()
