"""The demo zoo table and the seed study tool (tools/seed_study.py) on a tiny configuration."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustbench_mm.demo import EACH, ZOO, ZooEntry, dataset_folder, model_name, zoo_entries
from robustbench_mm.models import BACKBONES, train_and_save
from robustbench_mm.datasets import load_splits

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("seed_study", ROOT / "tools" / "seed_study.py")
seed_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_study)


def test_zoo_table_has_every_fusion_and_each_backbone_with_and_without_calibration():
    """The demo zoo is the study's zoo: every registered fusion once, the backbones twice, unimodal per modality."""
    fusions = {f for f, _, _ in ZOO}
    assert fusions == set(BACKBONES.names()), "a fusion registered but missing from the zoo (or the reverse)"
    for backbone in ("concat", "transformer", "conv"):
        assert {c for f, c, _ in ZOO if f == backbone} == {False, True}
    assert [(f, m) for f, _, m in ZOO if m is not None] == [("unimodal", EACH)]


def test_zoo_entries_expand_seeds_and_modalities_and_name_the_checkpoints(tmp_path):
    entries = zoo_entries((3, 4), ["image", "audio"], fusions=("conv", "unimodal"))
    assert [(e.seed, e.name) for e in entries] == [
        (s, n) for s in (3, 4) for n in ("conv", "conv+cal", "unimodal-image", "unimodal-audio")
    ]
    assert ZooEntry("qmf", False, 2).path(tmp_path, "avdigits:split=speaker") == (
        tmp_path / "avdigits_split-speaker" / "seed-2" / "qmf.pt"
    )
    assert dataset_folder("mfeat") == "mfeat"  # the demo's existing cache layout is kept
    assert model_name("conv", True) == "conv+cal"


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Two seeds of concat ± calibration and the unimodal models on mfeat, one epoch each, the conflict protocol."""
    root = tmp_path_factory.mktemp("study")
    cache, out = root / "cache", root / "out"
    splits = load_splits("mfeat")
    for entry in zoo_entries((0, 1), list(splits["train"].modalities), fusions=("concat", "unimodal")):
        train_and_save(
            fusion=entry.fusion, calibration=entry.calibration, modality=entry.modality, splits=splits,
            seed=entry.seed, out=entry.path(cache, "mfeat"), epochs=1, progress=False,
        )  # fmt: skip
    argv = ["--data", "mfeat", "--seeds", "0", "1", "--protocols", "conflict", "--fusions", "concat", "unimodal"]
    assert seed_study.main([*argv, "--cache", str(cache), "--out", str(out)]) == 0
    return out / "mfeat"


def test_study_scores_are_the_mean_of_each_runs_perturbed_cells(tiny_study):
    scores = pd.read_csv(tiny_study / "scores.csv")
    assert len(scores) == 2 * 5  # seeds x models (concat, concat+cal, 3 unimodal)
    cells = pd.read_csv(tiny_study / "conflict-seed-1" / "cells.csv")
    cells = cells[cells["model"] == "concat+cal"]
    row = scores[(scores["protocol"] == "conflict") & (scores["training_seed"] == 1) & (scores["model"] == "concat+cal")]
    assert row["perturbed"].item() == pytest.approx(cells.loc[cells["family"] != "clean", "accuracy"].mean())
    assert row["clean"].item() == pytest.approx(cells.loc[cells["family"] == "clean", "accuracy"].item())


def test_study_paired_tests_pair_training_seeds_and_holm_covers_the_table(tiny_study):
    scores = pd.read_csv(tiny_study / "scores.csv")
    paired = pd.read_csv(tiny_study / "paired.csv")
    # per protocol: concat+cal vs concat, and each of the two fusions vs the best unimodal model
    assert len(paired) == 3
    wide = scores.pivot_table(index=["protocol", "training_seed"], columns="model", values="perturbed")
    table = wide.xs("conflict", level="protocol")
    best = table[[c for c in table if c.startswith("unimodal-")]].mean().idxmax()
    row = paired[(paired["protocol"] == "conflict") & (paired["model"] == "concat")].iloc[0]
    assert row["reference"] == best
    d = table["concat"] - table[best]
    assert row["diff"] == pytest.approx(d.mean())
    if d.nunique() > 1:
        assert row["p"] == pytest.approx(stats.ttest_rel(table["concat"], table[best]).pvalue)
    p = paired["p"].to_numpy()
    ok = np.isfinite(p)
    m = ok.sum()
    expected = np.minimum(1, np.maximum.accumulate(np.sort(p[ok]) * (m - np.arange(m))))  # Holm by hand
    assert np.sort(paired["p_holm"].to_numpy()[ok]) == pytest.approx(expected)


def test_study_writes_the_ranking_table_and_cd_diagram(tiny_study):
    text = (tiny_study / "study.md").read_text()
    assert "Friedman chi2 without tie correction (Demšar 2006, eq. for chi2_F), over 2 blocks (protocol × training seed), 5 models" in text
    assert (tiny_study / "cd.png").stat().st_size > 0 and (tiny_study / "cd.svg").is_file()
    for model in ("concat", "concat+cal", "unimodal-pix", "unimodal-fou", "unimodal-fac"):
        assert f"| {model} |" in text


def test_study_refuses_one_seed_with_one_line(capsys, tmp_path):
    assert seed_study.main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --seeds") and "\n" not in err


def test_study_rerun_reuses_complete_runs(tiny_study):
    """A second call reads the finished runs (no model is evaluated again), and prints the same table."""
    cells = tiny_study / "conflict-seed-0" / "cells.csv"
    before, table = cells.stat().st_mtime_ns, (tiny_study / "study.md").read_text()
    argv = ["--data", "mfeat", "--seeds", "0", "1", "--protocols", "conflict", "--fusions", "concat", "unimodal"]
    assert seed_study.main([*argv, "--cache", str(tiny_study.parents[1] / "cache"), "--out", str(tiny_study.parent)]) == 0
    assert cells.stat().st_mtime_ns == before
    assert (tiny_study / "study.md").read_text() == table
