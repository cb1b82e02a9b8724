"""A metric, a backbone and a dataset registered from outside the package flow through the suite.

Each is written the way a user writes it, in a file of their own: a metric in a module on
sys.path, a backbone in a plug-in file given with --plugins, a dataset behind an entry point of an
installed distribution (a fake `.dist-info` folder on sys.path). Each must then appear in
`rbmm list` with its source and in the CLI's help, be usable by name (`evaluate` writes the
metric's column, `rbmm train --fusion NEW`, `--data NEW`), and `write_report` must run on the
result. Registrations are removed after each test, so the order of tests does not matter.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_mm.cli import build_parser, main
from robustbench_mm.datasets import DATASETS, load_dataset
from robustbench_mm.engine import evaluate
from robustbench_mm.metrics import METRICS
from robustbench_mm.models import BACKBONES, load_model
from robustbench_mm.protocols import load_protocol
from robustbench_mm.report import write_report
from robustbench_mm.results import load_run

CHECKPOINT = Path(__file__).resolve().parents[1] / "results" / "baselines" / "mfeat-concat.pt"

TINY_PROTOCOL = """\
name = "tiny"
description = "clean, and Gaussian noise at level 2 on each modality"
seed = 0
metrics = [{metrics}]

[[corruption]]
group = "noise"
corruptions = ["gaussian_noise"]
targets = "each"
levels = [2]
"""


@pytest.fixture
def forget():
    """Registrations to undo at the end of the test: call it with (registry, name, the module
    that registers it), so that a later test imports that module afresh."""
    made = []
    yield lambda registry, name, module: made.append((registry, name, module))
    for registry, name, module in made:
        registry.remove(name)
        if module is not None:
            sys.modules.pop(module, None)


def _protocol(tmp_path, *metrics: str):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL.format(metrics=", ".join(f'"{m}"' for m in metrics)))
    return path


def _rbmm(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _help(capsys, command: str) -> str:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    text = sub.format_help()
    capsys.readouterr()
    return text


def _listed(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.split() and line.split()[0] == name)


def test_a_metric_from_a_module_of_ones_own_reaches_cells_list_and_report(tmp_path, monkeypatch, capsys, forget):
    (tmp_path / "my_metrics.py").write_text(textwrap.dedent("""\
        import numpy as np
        from robustbench_mm.metrics import metric, weighted_mean

        @metric("error_rate", task="classification", higher_is_better=False, description="fraction of wrong predictions")
        def error_rate(record, w, num_classes):
            return weighted_mean(w, record["pred"] != record["target"])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    forget(METRICS, "error_rate", "my_metrics")
    importlib.import_module("my_metrics")

    code, out, _ = _rbmm(capsys, "list", "metrics")
    assert code == 0
    assert _listed(out, "error_rate").endswith("classification, lower is better: fraction of wrong predictions  [my_metrics]")
    assert "error_rate" in _help(capsys, "compare")

    run = evaluate(
        load_model(str(CHECKPOINT)), load_dataset("mfeat"), load_protocol(_protocol(tmp_path, "accuracy", "error_rate")),
        out=tmp_path / "run", device="cpu", progress=False,
    )
    cells = pd.read_csv(tmp_path / "run" / "cells.csv")
    assert {"error_rate", "error_rate_se"} <= set(cells.columns) and len(cells) == 4
    for _, row in cells.iterrows():
        record = run.samples(row["cell_id"])
        assert row["error_rate"] == pytest.approx(np.mean(record["pred"] != record["target"]), abs=1e-12)
        assert row["error_rate_se"] == pytest.approx(row["accuracy_se"], abs=1e-12)  # SE of 1 - p is that of p
    assert write_report(tmp_path / "run", tmp_path / "report").is_file()


PLUGIN_BACKBONE = """\
import torch
from torch import nn

from robustbench_mm.models import FusionModel, backbone
from robustbench_mm.models.encoders import pool


@backbone("mean-pool", description="the mean of the modalities' pooled features -> linear head")
class MeanPool(FusionModel):
    def __init__(self, config):
        super().__init__(config)
        self.head = nn.Linear(int(config["dim"]), self.num_outputs)

    def fuse_features(self, features, present):
        return self.head(torch.stack([pool(features[m]) for m in self.modalities]).mean(0))
"""


def test_a_backbone_from_a_plugin_file_trains_with_calibration_evaluates_and_reports(tmp_path, monkeypatch, capsys, forget):
    plugin = tmp_path / "mean_pool.py"
    plugin.write_text(PLUGIN_BACKBONE)
    monkeypatch.chdir(tmp_path)
    forget(BACKBONES, "mean-pool", None)  # the plug-in loader imports each file once, under a name of its own

    code, out, _ = _rbmm(capsys, "--plugins", plugin, "list", "backbones")
    assert code == 0
    assert _listed(out, "mean-pool").endswith(f"(classification/regression)  [{plugin}]")
    assert "mean-pool" in _help(capsys, "train")  # registered now: the help reads the registry

    code, _, err = _rbmm(capsys, "--plugins", plugin, "train", "--fusion", "mean-pol", "--data", "mfeat", "--out", "x.pt")
    assert code == 2 and "unknown fusion 'mean-pol'; expected one of: cal, concat, conv, late, mean-pool" in err

    argv = ("--plugins", plugin, "train", "--fusion", "mean-pool", "--calibration", "--data", "mfeat", "--epochs", "1")
    assert _rbmm(capsys, *argv, "--out", "mp.pt", "--quiet")[0] == 0
    model = load_model("mp.pt").module
    assert type(model).__name__ == "MeanPool" and model.calibrate is not None  # attached by the base class
    assert next(reversed(model.state_dict())).startswith("calibrate.")  # registered last, as for our backbones

    code, _, err = _rbmm(capsys, "--plugins", plugin, "eval", "mp.pt", "--data", "mfeat", "--protocol", _protocol(tmp_path, "accuracy"),
                         "--out", "run", "--quiet", "--device", "cpu")
    assert code == 0, err
    cells = load_run(tmp_path / "run").cells
    assert set(cells["model"]) == {"mp"} and len(cells) == 4
    assert write_report(tmp_path / "run", tmp_path / "report").is_file()


TINY_DATASET = """\
import numpy as np

from robustbench_mm.datasets import dataset
from robustbench_mm.datasets.splits import build_splits, stratified_split


@dataset("tiny-blobs", description="two vector views of 3 classes, only 'a' informative", options=("n",))
def tiny_blobs(options, *, modalities, seed):
    n = int(options.get("n", 90))
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 3
    arrays = {
        "a": (rng.normal(size=(n, 4)) + 2.0 * labels[:, None]).astype(np.float32),
        "b": rng.normal(size=(n, 3)).astype(np.float32),
    }
    rows = stratified_split(labels, seed)
    splits = build_splits("tiny-blobs", f"tiny-blobs:n={n}", arrays, {"a": "vector", "b": "vector"}, labels,
                          np.arange(n, dtype=np.int64), rows, stats_rows=rows["train"], num_classes=3)
    return {s: d.select(modalities) for s, d in splits.items()} if modalities else splits
"""


def test_a_dataset_behind_an_entry_point_is_listed_trained_on_evaluated_and_reported(tmp_path, monkeypatch, capsys, forget):
    site = tmp_path / "site"
    (site / "rbmm_tiny_data-0.1.dist-info").mkdir(parents=True)
    (site / "rbmm_tiny_data-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: rbmm-tiny-data\nVersion: 0.1\n")
    (site / "rbmm_tiny_data-0.1.dist-info" / "entry_points.txt").write_text(
        "[robustbench_mm.datasets]\ntiny-blobs = rbmm_tiny_data:tiny_blobs\n"
    )
    (site / "rbmm_tiny_data.py").write_text(TINY_DATASET)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(DATASETS, "_entry_points_loaded", False)  # as in a fresh process with it installed
    monkeypatch.chdir(tmp_path)
    forget(DATASETS, "tiny-blobs", "rbmm_tiny_data")

    assert "tiny-blobs" in _help(capsys, "eval")  # listing names imports nothing
    assert "rbmm_tiny_data" not in sys.modules
    code, out, _ = _rbmm(capsys, "list", "datasets")
    assert code == 0
    assert _listed(out, "tiny-blobs").endswith("(options: n)  [entry point tiny-blobs (rbmm-tiny-data)]")

    code, _, err = _rbmm(capsys, "train", "--data", "tiny-blobs:m=1", "--fusion", "concat", "--out", "x.pt")
    assert code == 2 and "unknown option of dataset 'tiny-blobs' 'm'; expected one of: n" in err

    code, _, err = _rbmm(capsys, "train", "--data", "tiny-blobs:n=120", "--fusion", "concat", "--epochs", "1", "--out", "c.pt", "--quiet")
    assert code == 0, err
    assert "inferred" not in err  # a named dataset's task is its own
    code, _, err = _rbmm(capsys, "eval", "c.pt", "--data", "tiny-blobs:n=120", "--protocol", _protocol(tmp_path, "accuracy"),
                         "--out", "run", "--quiet", "--device", "cpu")
    assert code == 0, err
    run = load_run(tmp_path / "run")
    assert sorted(run.cells["modalities"].fillna("")) == ["", "a", "b"]  # clean, then noise on each view
    assert run.cells["n"].eq(24).all()  # the test split: 20% of each class of 40
    assert write_report(tmp_path / "run", tmp_path / "report").is_file()
