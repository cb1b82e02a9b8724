"""The report: self-contained HTML, escaped user strings, every section present or explained.

Runs are written by `write_fake_run` in the results format (manifest.json, cells.csv,
samples/<cell_id>.npz) from a seeded generator, so no model is trained here.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import fake_manifest, write_manifest
from robustbench_mm.results import DatasetInfo
from robustbench_mm.errors import InputError
from robustbench_mm.metrics import cell_metrics
from robustbench_mm.report import compare_runs, format_comparison, write_report

MODALITIES = ("pix", "fou", "fac")
N = 300
CLASSES = 10

# accuracy of each fake model under each condition family; the "+cal" model is better under
# corruption of pix at high levels, so the calibration section has significant and null cells
BASE = {"concat": 0.92, "concat+cal": 0.93, "late": 0.88, "<script>alert(1)</script>": 0.85}


def _accuracy(model: str, family: str, name: str, mods: tuple[str, ...], level: float) -> float:
    # a model outside BASE (the browser test's zoo of 14) gets a clean accuracy from its name
    acc = BASE.get(model, 0.80 + 0.01 * (int(hashlib.sha256(model.encode()).hexdigest(), 16) % 12))
    if family == "corruption":
        drop = 0.08 * level if "pix" in mods else 0.03 * level
        if model.endswith("+cal") and "pix" in mods:
            drop *= 0.5
        acc -= drop
    elif family == "removal":
        acc -= {"pix": 0.25, "fou": 0.05, "fac": 0.1}[mods[0]] * len(mods) ** 1.2 if len(mods) == 1 else 0.0
        if len(mods) > 1:
            acc = 0.9 / (1 + len(mods)) + (0.1 if "pix" not in mods else 0.0)
    elif family == "conflict":
        acc -= 0.3
    return float(np.clip(acc, 0.05, 0.99))


def _conditions() -> list[dict]:
    conds = [dict(family="clean", name="clean", modalities=(), level=0.0, group="clean")]
    for mod in ("pix", "fou"):
        for level in range(1, 6):
            conds.append(dict(family="corruption", name="gaussian", modalities=(mod,), level=float(level),
                              group="noise"))
    for subset in [("pix",), ("fou",), ("fac",), ("pix", "fou"), ("pix", "fac"), ("fou", "fac")]:
        conds.append(dict(family="removal", name="zero", modalities=subset, level=0.0, group="removal"))
    conds.append(dict(family="conflict", name="conflict", modalities=("pix",), level=0.0, group="conflict"))
    return conds


def _key(c: dict) -> str:
    return f"{c['family']}|{c['name']}|{'+'.join(c['modalities']) or '-'}|l={c['level']:g}|r=1"


def _record(rng: np.random.Generator, target: np.ndarray, acc: float, affected: bool) -> dict[str, np.ndarray]:
    correct = rng.uniform(size=N) < acc
    pred = np.where(correct, target, (target + 1 + rng.integers(0, CLASSES - 1, N)) % CLASSES)
    conf = np.clip(np.where(correct, rng.beta(8, 2, N), rng.beta(3, 3, N)), 1 / CLASSES + 1e-3, 1.0)
    p_true = np.where(correct, conf, (1 - conf) * rng.uniform(0.1, 0.9, N))
    rest = 1 - conf
    sq = conf**2 + rest**2 / (CLASSES - 1)
    entropy = -(conf * np.log(conf)) - rest * np.log(np.maximum(rest / (CLASSES - 1), 1e-12))
    return dict(
        ids=np.arange(N, dtype=np.int64),
        target=target.astype(np.int64),
        pred=pred.astype(np.int64),
        conf=conf.astype(np.float32),
        p_true=p_true.astype(np.float32),
        sq_prob=sq.astype(np.float32),
        entropy=entropy.astype(np.float32),
        affected=np.full(N, affected),
    )


def write_fake_run(path: Path, models: list[str], *, seeds=(0,), training_seed: int = 0,
                   families=("clean", "corruption", "removal", "conflict")) -> Path:
    """A run folder in the results format: the same targets for every cell, per-sample records."""
    path.mkdir(parents=True)
    (path / "samples").mkdir()
    target = np.random.default_rng(1234).integers(0, CLASSES, N)
    rows = []
    for m_idx, model in enumerate(models):
        for seed in seeds:
            for c in _conditions():
                if c["family"] not in families:
                    continue
                stream = int.from_bytes(hashlib.sha256(f"{model}{seed}{training_seed}{_key(c)}".encode()).digest()[:4],
                                        "little")
                rng = np.random.default_rng(stream)
                acc = _accuracy(model, c["family"], c["name"], c["modalities"], c["level"])
                record = _record(rng, target, acc, c["family"] != "clean")
                cell_id = f"m{m_idx}-s{seed}-" + hashlib.sha256(_key(c).encode()).hexdigest()[:10]
                np.savez_compressed(path / "samples" / f"{cell_id}.npz", **record)
                rows.append(dict(
                    cell_id=cell_id, model=model, seed=seed, condition=_key(c), family=c["family"],
                    name=c["name"], modalities="+".join(c["modalities"]), level=c["level"], param=np.nan,
                    rate=1.0, group=c["group"], n=N,
                    **cell_metrics(record, "classification", CLASSES),
                    seconds=0.01,
                ))
    pd.DataFrame(rows).to_csv(path / "cells.csv", index=False)
    entries = [
        {
            "name": model,
            "sha256": hashlib.sha256(model.encode()).hexdigest(),
            "config": {"fusion": model.split("+")[0] if model in ("concat", "concat+cal", "late") else "late",
                       "calibration": model.endswith("+cal"), "seed": training_seed},
        }
        for model in models
    ]
    manifest = fake_manifest(
        entries, num_classes=CLASSES, protocol="fake-<b>protocol</b>", seeds=seeds,
        dataset=DatasetInfo("mfeat", "test", "mfeat", "cd" * 32, N, "classification", CLASSES,
                            {m: {"kind": "vector", "shape": [4]} for m in MODALITIES}),
        plugins=({"name": "my_blur", "source": "corruptions/blur <i>kernel</i>.py", "sha256": "12" * 32},),
        finished="2026-11-23T10:01:00+00:00", device="cpu",
    )
    write_manifest(path, manifest)
    return path


@pytest.fixture(scope="module")
def three_model_run(tmp_path_factory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("runs") / "zoo", ["concat", "concat+cal", "late"])


@pytest.fixture(scope="module")
def report_dir(three_model_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "zoo"
    write_report([three_model_run], out, title="Zoo <on> mfeat")
    return out



# in page order: the answer first, the setup last; the gates are not recorded by the fake runs
SECTIONS = ["summary", "headline", "calibration", "curves", "removal", "reliance", "reliability", "ranking", "raw",
            "omitted", "setup"]


def test_report_html_is_self_contained_with_every_image_a_data_uri(report_dir):
    page = (report_dir / "index.html").read_text()
    images = re.findall(r"<img [^>]*>", page)
    assert len(images) == 5  # calibration gain, curves, removal, reliability, critical difference
    for tag in images:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', tag), tag[:80]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page.lower()
    where = [page.index(f'<section id="{anchor}">') for anchor in SECTIONS]
    assert where == sorted(where)
    # "concat+cal" has calibration but its fake records hold no gates: the section says why it is missing
    assert "Calibration gates: no model in these runs recorded calibration gates" in _section(page, "omitted")


def test_report_writes_markdown_figures_and_csv_tables(report_dir):
    md = (report_dir / "report.md").read_text()
    for heading in ["## Setup", "## Headline", "## With vs without calibration", "## Statistical ranking"]:
        assert heading in md
    for link in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md):
        assert (report_dir / link).is_file()
    assert (report_dir / "figures" / "curves.svg").is_file()
    cells = pd.read_csv(report_dir / "tables" / "cells.csv")
    assert len(cells) == 3 * 18  # 3 models x (clean + 2 x 5 corruption levels + 6 removal subsets + conflict)


def test_headline_numbers_match_an_independent_computation(three_model_run, report_dir):
    headline = pd.read_csv(report_dir / "tables" / "headline.csv").set_index("model")
    cells = pd.read_csv(three_model_run / "cells.csv")
    for model in ["concat", "concat+cal", "late"]:
        own = cells[cells["model"] == model]
        clean = own[own["family"] == "clean"].iloc[0]
        rec = np.load(three_model_run / "samples" / f"{clean['cell_id']}.npz")
        accuracy = (rec["pred"] == rec["target"]).mean()
        assert headline.loc[model, "clean"] == pytest.approx(accuracy)
        assert headline.loc[model, "clean_low"] < accuracy < headline.loc[model, "clean_high"]
        corrupted = own[own["family"] == "corruption"]["accuracy"].mean()
        assert headline.loc[model, "corrupted"] == pytest.approx(corrupted)
        assert headline.loc[model, "worst_removal"] == pytest.approx(own[own["family"] == "removal"]["accuracy"].min())
    # mCE against the first model: CE_c = sum_s (1 - a) / sum_s (1 - a_ref), mean over the two corruptions
    corr = cells[cells["family"] == "corruption"]
    err = corr.assign(e=1 - corr["accuracy"]).groupby(["model", "modalities"])["e"].sum()
    expected = (err["late"] / err["concat"]).mean()
    assert headline.loc["late", "mce"] == pytest.approx(expected)
    assert headline.loc["concat", "mce"] == pytest.approx(1.0)


def test_calibration_pairs_come_from_configs_and_holm_is_applied(report_dir):
    table = pd.read_csv(report_dir / "tables" / "calibration.csv")
    assert set(table["backbone"]) == {"concat"}
    assert set(table["with"]) == {"concat+cal"} and set(table["without"]) == {"concat"}
    # Holm over m cells: the smallest adjusted p is m times the smallest raw p
    m = len(table)
    assert table["p_holm"].min() == pytest.approx(min(1.0, m * table["p"].min()))
    assert (table["p_holm"] >= table["p"] - 1e-12).all()
    # the fake "+cal" model halves the drop on pix at high levels: the level-5 pix cell is significant
    strong = table[(table["name"] == "gaussian") & (table["modalities"] == "pix") & (table["level"] == 5)]
    assert strong["significant"].all() and (strong["diff"] > 0).all()


def test_calibration_pairing_rule_falls_back_to_name_suffix_only_without_config():
    from robustbench_mm.report import calibration_pairs

    configs = {"a": {"fusion": "late", "calibration": False}, "b": {"fusion": "late", "calibration": True}}
    assert calibration_pairs(["a", "b"], configs) == [("late", "a", "b")]
    assert calibration_pairs(["x", "x-cal", "y+cal"], {}) == [("x", "x", "x-cal")]
    # a config says "not calibrated" even when the name ends in +cal
    assert calibration_pairs(["x", "x+cal"], {"x+cal": {"fusion": "y", "calibration": False}}) == []


def test_user_strings_are_escaped_and_missing_sections_say_why(tmp_path):
    evil = "<script>alert(1)</script>"
    run = write_fake_run(tmp_path / "evil", ["concat", evil], families=("clean", "corruption"))
    out = tmp_path / "report"
    write_report([run], out, title="<img src=x onerror=alert(2)>")
    page = (out / "index.html").read_text()
    assert evil not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "fake-&lt;b&gt;protocol&lt;/b&gt;" in page and "<b>protocol" not in page
    assert "blur &lt;i&gt;kernel&lt;/i&gt;" in page and "<i>kernel" not in page
    assert evil not in (out / "report.md").read_text()
    # sections the runs cannot fill are left out, and why is said in one place near the end
    for anchor in ["removal", "reliance", "ranking"]:
        assert f'<section id="{anchor}">' not in page
    omitted = page.split('<section id="omitted">')[1].split("</section>")[0]
    assert "Modality removal: the runs have no modality-removal cells." in omitted
    assert "Reliance and contribution: the runs have no modality-removal cells at rate 1." in omitted
    assert "Statistical ranking: a Friedman test with post-hoc comparisons needs at least 3 models; these runs have 2" in omitted


def _set_clean_accuracy(run: Path, model: str, correct: int) -> None:
    """Make the clean cell of `model` get exactly `correct` of the N samples right."""
    cells = pd.read_csv(run / "cells.csv")
    i = cells.index[(cells["model"] == model) & (cells["family"] == "clean")][0]
    path = run / "samples" / f"{cells.loc[i, 'cell_id']}.npz"
    record = dict(np.load(path))
    record["pred"] = np.where(np.arange(N) < correct, record["target"], (record["target"] + 1) % CLASSES)
    np.savez_compressed(path, **record)
    for k, v in cell_metrics(record, "classification", CLASSES).items():
        cells.loc[i, k] = v
    cells.to_csv(run / "cells.csv", index=False)


def test_several_runs_are_replicates_with_bounded_two_stage_intervals(tmp_path):
    runs = [write_fake_run(tmp_path / f"seed{k}", ["concat", "concat+cal"], training_seed=k,
                           families=("clean", "corruption")) for k in range(3)]
    for run, correct in zip(runs, (N, 270, 291)):  # accuracies 1.0, 0.90, 0.97
        _set_clean_accuracy(run, "concat", correct)
    clean = np.array([N, 270, 291]) / N
    t_high = clean.mean() + 4.302653 * clean.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}: the old interval
    assert t_high > 1.0
    out = tmp_path / "report"
    write_report(runs, out, reference="concat")
    headline = pd.read_csv(out / "tables" / "headline.csv").set_index("model")
    row = headline.loc["concat"]
    assert row["clean"] == pytest.approx(clean.mean())
    # every resample is a mean of per-replicate accuracies: the interval lies within [min, max] of the
    # replicates' bootstrap values, hence within [0, 1], and around the estimate
    assert 0.0 <= row["clean_low"] < row["clean"] < row["clean_high"] <= 1.0
    assert row["clean_low"] >= 0.88 and row["clean_high"] <= 1.0
    for model, r in headline.iterrows():
        for what in ("clean", "corrupted"):
            assert 0.0 <= r[f"{what}_low"] <= r[what] <= r[f"{what}_high"] <= 1.0
    assert np.isnan(row["mce_low"]) and np.isnan(row["mce_high"]) and row["mce"] == pytest.approx(1.0)
    assert np.isfinite(headline.loc["concat+cal", "mce_low"])
    html_text = (out / "index.html").read_text()
    assert "two-stage bootstrap intervals across replicates" in html_text and "t intervals across" not in html_text


def test_unknown_reference_model_is_an_input_error(three_model_run, tmp_path):
    with pytest.raises(InputError, match="reference model 'nope'"):
        write_report([three_model_run], tmp_path / "r", reference="nope")


def test_compare_runs_finds_the_real_difference_and_formats_it(tmp_path):
    a = write_fake_run(tmp_path / "a", ["concat"])
    b = write_fake_run(tmp_path / "b", ["concat+cal"])
    df = compare_runs(a, b)
    assert len(df) == 18  # the single model of each run, every condition matched
    assert (df["p_holm"] >= df["p"] - 1e-12).all()
    row = df[df["condition"] == "corruption|gaussian|pix|l=5|r=1"].iloc[0]
    assert row["diff"] == pytest.approx(row["b"] - row["a"]) and row["low"] < row["diff"] < row["high"]
    assert row["significant"]
    text = format_comparison(df)
    assert text.splitlines()[0].startswith(f"{int(df['significant'].sum())} of 18 matched cells")
    assert "corruption|gaussian|pix|l=5|r=1" in text
    assert "clean|clean" not in text  # the clean cells do not differ significantly
    same = compare_runs(a, a)
    assert not same["significant"].any() and "0 of 18" in format_comparison(same)
    # largest effect first, in the table and in the printed rows
    effects = df["diff"].abs().to_numpy()
    assert (np.diff(effects) <= 1e-12).all()
    printed = [float(re.search(r"([+-]\d\.\d{4})\s+\[", line).group(1)) for line in text.splitlines()[2:]]
    assert printed == sorted(printed, key=abs, reverse=True) and len(printed) == int(df["significant"].sum())


def test_p_values_are_formatted_once():
    from robustbench_mm.report.document import fmt_p, p_text

    assert (fmt_p(2e-5), p_text(2e-5), p_text(0.0123)) == ("< 0.001", "p < 0.001", "p = 0.012")


def test_the_report_never_writes_p_equals_less_than_and_lists_plugins_as_a_table(report_dir):
    page = (report_dir / "index.html").read_text()
    assert "p = &lt;" not in page and "p = <" not in page and "p = " in page
    setup = _section(page, "setup")
    assert "{&#34;name&#34;" not in setup and '{"name"' not in setup  # no JSON dumped inline
    assert "tables/plugins.csv" in setup and "my_blur" in setup


def test_compare_runs_names_protocol_and_plugin_differences(tmp_path):
    a = write_fake_run(tmp_path / "a", ["concat"], families=("clean",))
    b = write_fake_run(tmp_path / "b", ["concat"], families=("clean",))
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["protocol"].update(name="quick", hash="ef" * 32)
    manifest["plugins"] = [{"name": "rain", "source": "corruptions/rain.py", "sha256": "12" * 32}]
    (b / "manifest.json").write_text(json.dumps(manifest))
    text = format_comparison(compare_runs(a, b))
    assert "note: protocol differs: A 'fake-<b>protocol</b>' (hash abababababab), B 'quick' (hash efefefefefef)" in text
    assert "note: plug-in 'my_blur' (corruptions/blur <i>kernel</i>.py, sha256 121212121212) shaped only run A" in text
    assert "note: plug-in 'rain' (corruptions/rain.py, sha256 121212121212) shaped only run B" in text
    assert "note:" not in format_comparison(compare_runs(a, a))


def test_write_report_takes_the_run_evaluate_returns(three_model_run, tmp_path):
    from robustbench_mm.results import Run

    index = write_report(Run(three_model_run), tmp_path / "r")
    assert index.is_file() and "concat+cal" in index.read_text()


def test_compare_runs_without_shared_models_is_an_input_error(tmp_path):
    a = write_fake_run(tmp_path / "a", ["concat", "late"], families=("clean",))
    b = write_fake_run(tmp_path / "b", ["concat+cal"], families=("clean",))
    with pytest.raises(InputError, match="share no model"):
        compare_runs(a, b)


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package `chromium`); "
                    "install it to check that the report renders")
def test_report_renders_in_headless_chromium_with_its_images(report_dir, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1280,3200", (report_dir / "index.html").resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (3200, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank page of one colour
    # the embedded figures are drawn, not broken-image icons: the second model's Okabe-Ito orange
    # (#E69F00, used by no CSS rule) covers many pixels of the curves and removal figures
    orange = (np.abs(pixels - np.array([0xE6, 0x9F, 0x00])).sum(axis=2) < 30).sum()
    assert orange > 500


def test_ranking_says_which_friedman_statistic_it_used(three_model_run, report_dir):
    """Ties are common among accuracies on the same samples: the tie-corrected chi2, named, and equal to scipy's."""
    from scipy.stats import friedmanchisquare

    md = (report_dir / "report.md").read_text()
    ranking = md.split("## Statistical ranking")[1]
    assert "Friedman chi2 with tie correction (as scipy.stats.friedmanchisquare)" in ranking
    cells = pd.read_csv(three_model_run / "cells.csv")
    scores = cells[cells["family"] != "clean"].pivot_table(index="condition", columns="model", values="accuracy")
    chi2 = friedmanchisquare(*[scores[m] for m in ["concat", "concat+cal", "late"]]).statistic
    assert f"χ²_F = {chi2:.2f}" in ranking


def test_a_section_registered_outside_the_package_appears_in_the_report_in_its_order(three_model_run, tmp_path):
    from robustbench_mm.report import SECTIONS, Section, Table, Text, section

    @section("clean-spread", order=15)  # between the headline (10) and the calibration section (20)
    def build(ctx):
        clean = ctx.data.cells[ctx.data.cells["family"] == "clean"]
        spread = float(clean["accuracy"].max() - clean["accuracy"].min())
        frame = pd.DataFrame({"spread": [spread]})
        return Section("Clean spread", "clean-spread", [Text(f"spread over {len(ctx.data.models)} models"),
                                                        Table("clean_spread", frame, frame.astype(str))])

    try:
        assert SECTIONS.source("clean-spread") == __name__
        write_report(three_model_run, tmp_path / "r")
    finally:
        SECTIONS.remove("clean-spread")
    page = (tmp_path / "r" / "index.html").read_text()
    assert page.index('<section id="headline">') < page.index('<section id="clean-spread">') < page.index(
        '<section id="calibration">')
    assert "spread over 3 models" in page and "## Clean spread" in (tmp_path / "r" / "report.md").read_text()
    cells = pd.read_csv(three_model_run / "cells.csv")
    clean = cells[cells["family"] == "clean"]["accuracy"]
    assert pd.read_csv(tmp_path / "r" / "tables" / "clean_spread.csv")["spread"].item() == pytest.approx(
        clean.max() - clean.min())
    write_report(three_model_run, tmp_path / "again")  # removed again: the next report has no such section
    assert 'id="clean-spread"' not in (tmp_path / "again" / "index.html").read_text()


def test_compare_runs_and_the_calibration_section_give_the_same_test_per_cell(tmp_path):
    """One paired test: `rbmm compare` of a run of concat against one of concat+cal gives, cell by cell,
    the difference, interval and p of the calibration section of a report holding both models."""
    a = write_fake_run(tmp_path / "a", ["concat"])
    b = write_fake_run(tmp_path / "b", ["concat+cal"])
    both = write_fake_run(tmp_path / "both", ["concat", "concat+cal"])  # the same records, in one run
    compared = compare_runs(a, b).set_index("condition")
    write_report(both, tmp_path / "r")
    section = pd.read_csv(tmp_path / "r" / "tables" / "calibration.csv").set_index("condition")
    assert sorted(section.index) == sorted(compared.index) and len(section) == 18
    for column in ["diff", "low", "high", "p", "p_holm", "significant"]:
        assert section[column].to_dict() == pytest.approx(compared.loc[section.index, column].to_dict()), column


def test_paired_test_gives_the_mcnemar_p_for_accuracy_and_the_bootstrap_p_for_other_metrics():
    from scipy.stats import binomtest

    from robustbench_mm.report.estimates import paired_test
    from robustbench_mm.stats import paired_bootstrap

    rng = np.random.default_rng(5)
    target = rng.integers(0, CLASSES, N)
    x, y = _record(rng, target, 0.8, False), _record(rng, target, 0.7, False)
    right_x, right_y = x["pred"] == target, y["pred"] == target
    only_x, only_y = int((right_x & ~right_y).sum()), int((~right_x & right_y).sum())
    accuracy = paired_test(x, y, "accuracy", CLASSES)
    assert accuracy.test == "exact McNemar"
    assert accuracy.p == pytest.approx(binomtest(only_x, only_x + only_y, 0.5).pvalue)
    assert accuracy.diff == pytest.approx(right_x.mean() - right_y.mean())
    nll = paired_test(x, y, "nll", CLASSES)
    assert nll.test == "paired bootstrap"
    assert nll.p == paired_bootstrap(x, y, "nll", n_resamples=2000, seed=0).p_value
    assert nll.diff == pytest.approx(np.mean(-np.log(np.maximum(x["p_true"], 1e-12)))
                                     - np.mean(-np.log(np.maximum(y["p_true"], 1e-12))), rel=1e-5)


def _section(page: str, anchor: str) -> str:
    return page.split(f'<section id="{anchor}">')[1].split("</section>")[0]


def test_summary_names_the_most_robust_model_by_a_paired_margin_and_what_calibration_did(three_model_run,
                                                                                           report_dir):
    summary = _section((report_dir / "index.html").read_text(), "summary")
    cells = pd.read_csv(three_model_run / "cells.csv")
    corrupted = cells[cells["family"] == "corruption"].groupby("model")["accuracy"].mean()
    headline = pd.read_csv(report_dir / "tables" / "headline.csv").set_index("model")
    best, runner, last = corrupted.sort_values(ascending=False).index  # concat+cal, concat, late
    row = headline.loc[best]
    assert (f"Most robust: {best}, mean corrupted accuracy {row['corrupted']:.3f} "
            f"[{row['corrupted_low']:.3f}, {row['corrupted_high']:.3f}]") in summary
    margin = re.search(rf"next model, {re.escape(runner)} \([^)]*\): ([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]",
                       summary)
    diff, low, high = map(float, margin.groups())
    assert diff == pytest.approx(corrupted[best] - corrupted[runner], abs=5e-4)
    assert 0 < low < diff < high  # the fake +cal model halves the drop under corruption of pix
    assert f"Least robust: {last}" in summary
    calibration = pd.read_csv(report_dir / "tables" / "calibration.csv")
    perturbed = calibration[calibration["family"] != "clean"]
    helped = int((perturbed["significant"] & (perturbed["diff"] > 0)).sum())
    hurt = int((perturbed["significant"] & (perturbed["diff"] < 0)).sum())
    assert helped > 0 and hurt == 0
    assert (f"Calibration on concat (concat+cal vs concat) helped: accuracy better in {helped} and worse in {hurt} "
            f"of {len(perturbed)} perturbed cells after Holm correction") in summary


def test_models_are_one_table_of_the_config_fields_that_differ(report_dir):
    models = pd.read_csv(report_dir / "tables" / "models.csv")
    assert list(models.columns) == ["model", "sha256", "fusion", "calibration"]  # seed is 0 for every model
    assert models.set_index("model")["fusion"].to_dict() == {"concat": "concat", "concat+cal": "concat", "late": "late"}
    setup = _section((report_dir / "index.html").read_text(), "setup")
    assert "Config of every model: seed = 0." in setup
    assert '{&#34;calibration' not in setup and "{&quot;calibration" not in setup  # no JSON config per model


def test_a_report_of_one_run_of_one_model_has_no_comparison_and_no_empty_section(tmp_path):
    run = write_fake_run(tmp_path / "one", ["concat"])
    write_report(run, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    anchors = re.findall(r'<section id="([^"]+)">', page)
    assert anchors == ["summary", "headline", "curves", "removal", "reliance", "reliability", "raw", "setup"]
    for section in anchors[1:]:  # below the summary's sentences, every section holds a table or a figure
        body = _section(page, section)
        assert "<table>" in body or "<img " in body, section
    text = re.sub(r"<[^>]+>", " ", page.split('<section id="setup">')[0])  # (the setup lists config fields)
    for comparison in ("mCE", "reference", "next model", "calibration", "Not computed", "Omitted"):
        assert comparison not in text, comparison
    cells = pd.read_csv(run / "cells.csv")
    clean = cells[cells["family"] == "clean"]["accuracy"].item()
    assert f"concat: clean accuracy {clean:.3f} [" in _section(page, "summary")
    assert "Config of concat: fusion = concat, calibration = false, seed = 0." in _section(page, "setup")
    headline = pd.read_csv(tmp_path / "r" / "tables" / "headline.csv")
    assert headline["mce"].isna().all()


def write_fake_regression_run(path: Path, models: list[str]) -> Path:
    """A regression run (ids, target, output, affected per sample): clean, noise on pix, pix or fou removed."""
    path.mkdir(parents=True)
    (path / "samples").mkdir()
    rng = np.random.default_rng(7)
    target = rng.normal(0.0, 1.0, N).astype(np.float32)
    conds = [dict(family="clean", name="clean", modalities=(), level=0.0, group="clean")]
    conds += [dict(family="corruption", name="gaussian", modalities=("pix",), level=float(lv), group="noise")
              for lv in (1, 3, 5)]
    conds += [dict(family="removal", name="zero", modalities=(m,), level=0.0, group="removal") for m in ("pix", "fou")]
    rows = []
    for m_idx, model in enumerate(models):
        for c in conds:
            noise = 0.1 + 0.05 * c["level"] + (0.4 if c["family"] == "removal" else 0.0) + 0.05 * m_idx
            record = dict(ids=np.arange(N, dtype=np.int64), target=target,
                          output=(target + rng.normal(0.0, noise, N)).astype(np.float32),
                          affected=np.full(N, c["family"] != "clean"))
            cell_id = f"m{m_idx}-" + hashlib.sha256(_key(c).encode()).hexdigest()[:10]
            np.savez_compressed(path / "samples" / f"{cell_id}.npz", **record)
            rows.append(dict(cell_id=cell_id, model=model, seed=0, condition=_key(c), family=c["family"], name=c["name"],
                             modalities="+".join(c["modalities"]), level=c["level"], param=np.nan, rate=1.0,
                             group=c["group"], n=N, **cell_metrics(record, "regression", None), seconds=0.01))
    pd.DataFrame(rows).to_csv(path / "cells.csv", index=False)
    manifest = fake_manifest(
        [{"name": m, "config": {"fusion": "concat", "width": 32 * (i + 1)}} for i, m in enumerate(models)],
        task="regression",
        dataset=DatasetInfo("sarcasm", "test", "sarcasm", "ef" * 32, N, "regression", None,
                            {m: {"kind": "vector", "shape": [4]} for m in ("pix", "fou")}),
    )
    write_manifest(path, manifest)
    return path


def test_a_regression_report_speaks_of_its_own_metric_and_leaves_classification_out(tmp_path):
    run = write_fake_regression_run(tmp_path / "reg", ["small"])
    write_report(run, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    md = (tmp_path / "r" / "report.md").read_text()
    anchors = re.findall(r'<section id="([^"]+)">', page)
    assert "reliability" not in anchors and "gates" not in anchors and "calibration" not in anchors
    assert anchors[:2] == ["summary", "headline"] and anchors[-1] == "setup"
    for word in (r"\baccuracy", "mCE", "Not computed", "reference"):  # (sign_accuracy is a regression metric)
        assert not re.search(word, md), word
    assert "confidence_i" not in md and "chance 1/K" not in md  # class-probability terms
    assert "Shapley contributions not computed: they need v(∅)" in md  # no run of every modality removed
    cells = pd.read_csv(run / "cells.csv")
    clean = cells[cells["family"] == "clean"]["mae"].item()
    summary = _section(page, "summary")
    assert f"small: clean mae {clean:.3f} [" in summary and "lower is better" in summary
    assert "Config of small: fusion = concat, width = 32." in _section(page, "setup")

    two = write_fake_regression_run(tmp_path / "reg2", ["small", "wide"])  # noise grows with the model index
    write_report(two, tmp_path / "r2")
    summary = _section((tmp_path / "r2" / "index.html").read_text(), "summary")
    assert "Most robust: small, mean corrupted mae" in summary and "(lower is better)" in summary
    models = pd.read_csv(tmp_path / "r2" / "tables" / "models.csv")
    assert list(models.columns) == ["model", "sha256", "width"] and list(models["width"]) == [32, 64]


def test_summary_and_calibration_table_count_the_same_pooled_cells_across_replicates(tmp_path):
    """With two training seeds the summary's counts come from one paired test per cell over both
    replicates' samples pooled, the rows the heatmap draws: per-seed cells whose signs flip between
    seeds are no longer counted twice."""
    runs = [write_fake_run(tmp_path / f"s{seed}", ["concat", "concat+cal"], training_seed=seed) for seed in (0, 1)]
    out = tmp_path / "report"
    write_report(runs, out)
    table = pd.read_csv(out / "tables" / "calibration.csv")
    assert len(table) == len(_conditions()) and (table["replicates"] == 2).all()
    perturbed = table[table["family"] != "clean"]
    helped = int((perturbed["significant"] & (perturbed["diff"] > 0)).sum())
    hurt = int((perturbed["significant"] & (perturbed["diff"] < 0)).sum())
    summary = _section((out / "index.html").read_text(), "summary")
    assert f"better in {helped} and worse in {hurt} of {len(perturbed)} perturbed cells" in summary
    assert "2 replicates pooled, as in the heatmap" in summary


def test_mean_corrupted_is_the_same_number_in_rbmm_eval_and_the_report(three_model_run, report_dir):
    """One definition: the corruption cells only (the fake run also has removal and conflict cells,
    which `rbmm eval` used to average in)."""
    from robustbench_mm.results import load_run

    printed = load_run(three_model_run).summary()
    headline = pd.read_csv(report_dir / "tables" / "headline.csv").set_index("model")
    for model in ("concat", "late"):
        found = re.search(rf"{re.escape(model)}\s+clean accuracy \S+\s+mean corrupted accuracy (\S+) \((\d+) corruption cells\)",
                          printed)
        assert found, printed
        assert float(found.group(1)) == pytest.approx(headline.loc[model, "corrupted"], abs=5e-5)
        assert int(found.group(2)) == 10  # gaussian on pix and fou, levels 1-5
    assert "removal and conflict cells excluded" in _section((report_dir / "index.html").read_text(), "headline")


def test_fills_with_identical_records_are_one_row_with_a_note(tmp_path):
    """A 'mean' fill whose records equal the 'zero' fill's (as for models that read the presence
    mask) is shown once in the removal and reliance tables, labelled with both fills."""
    run = write_fake_run(tmp_path / "run", ["concat", "late"])
    cells_csv = pd.read_csv(run / "cells.csv")
    copies = cells_csv[cells_csv["family"] == "removal"].copy()
    for i, row in copies.iterrows():
        new_id = row["cell_id"] + "-mean"
        shutil.copy(run / "samples" / f"{row['cell_id']}.npz", run / "samples" / f"{new_id}.npz")
        copies.loc[i, ["cell_id", "name", "condition"]] = [new_id, "mean", row["condition"].replace("|zero|", "|mean|")]
    pd.concat([cells_csv, copies]).to_csv(run / "cells.csv", index=False)
    out = tmp_path / "report"
    write_report([run], out)
    removal = pd.read_csv(out / "tables" / "removal.csv")
    assert removal["subset"].str.contains(r"\(zero = mean\)").sum() == 2 * 6  # two models, six subsets
    assert not removal["subset"].str.contains(r"\(mean\)").any()
    reliance = pd.read_csv(out / "tables" / "reliance.csv")
    assert set(reliance["fill"]) == {"zero = mean"}
    contribution = pd.read_csv(out / "tables" / "contribution.csv")
    assert set(contribution["fill"]) == {"zero = mean"} and len(contribution) == 2 * len(MODALITIES)
    page = (out / "index.html").read_text()
    assert "zero and mean fill gave identical predictions for every model in 6 removal subset(s)" in page


GALLERY_PROTOCOL = """
name = "gallery-test"
description = "two corruptions of mfeat's pixel image, for the gallery section"
seed = 2

[[corruption]]
corruptions = ["pixelate", "gaussian_noise"]
targets = ["pix"]
levels = [1, 5]
"""


@pytest.fixture(scope="module")
def mfeat_run(tmp_path_factory) -> Path:
    """A real run of the committed checkpoint on mfeat (the report reloads its dataset for the gallery)."""
    from robustbench_mm.cli import main

    folder = tmp_path_factory.mktemp("gallery")
    protocol = folder / "gallery.toml"
    protocol.write_text(GALLERY_PROTOCOL)
    checkpoint = Path(__file__).resolve().parents[1] / "results" / "baselines" / "mfeat-concat.pt"
    assert main(["eval", str(checkpoint), "--protocol", str(protocol), "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def test_gallery_section_draws_each_corruption_of_a_small_grid(mfeat_run, tmp_path):
    write_report([mfeat_run], tmp_path / "on")
    page = (tmp_path / "on" / "index.html").read_text()
    gallery = _section(page, "gallery")
    assert "protocol seed 2" in gallery and gallery.count("<img") == 2
    assert (tmp_path / "on" / "figures" / "gallery_pixelate.png").is_file()
    assert page.index('<section id="curves">') < page.index('<section id="gallery">') < page.index('<section id="setup">')


def test_gallery_is_left_out_when_off_or_when_the_dataset_is_not_the_evaluated_one(mfeat_run, three_model_run, tmp_path):
    write_report([mfeat_run], tmp_path / "off", gallery="off")
    page = (tmp_path / "off" / "index.html").read_text()
    assert '<section id="gallery">' not in page and "Corruption gallery: turned off (--gallery off)" in page
    # a run whose dataset fingerprint is not the reloaded data's: nothing is drawn from another dataset
    other = shutil.copytree(mfeat_run, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["dataset"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    write_report([other], tmp_path / "other-report")
    assert ("Corruption gallery: the dataset at &#39;mfeat:seed=0&#39; is not the one the run evaluated"
            in (tmp_path / "other-report" / "index.html").read_text())
    with pytest.raises(InputError, match="unknown --gallery 'maybe'"):
        write_report([three_model_run], tmp_path / "x", gallery="maybe")
