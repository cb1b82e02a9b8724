"""The documentation's commands, run as written from an empty working directory, so it cannot drift
from the program: every fenced bash, python, toml and yaml block of README.md and of the pages in
docs/ (tests/test_docs.py fails if a page with such blocks is run by no test here).

- README.md and docs/getting-started.md: the install and test commands are checked against
  pyproject.toml; their `rbmm demo` commands run in the slow tests (the demo trains 14 models).
- The tutorial, in order, each page building on the files the previous ones made:
  getting-started.md, reading-the-report.md, extending.md, gating.md (its GitHub Actions job runs
  in a test of its own, in a fresh checkout).
- exporting.md from the models this repository ships; corruption-plugins.md on its own;
  models.md from an empty folder, with the module, data and weights files the page writes; the
  pages of FRESH_CHECKOUT each in a fresh checkout.

Blocks are read from the pages, never paraphrased: a python or toml block whose first line is a
`# PATH` comment is a file the reader creates; other python blocks are executed, other toml blocks
parsed; bash lines (with `\\` continuations, `&&` and `#` comments) are `rbmm` commands run in this
process, `pip install` lines are checked against pyproject.toml. A command the runner does not know
fails the test. Blocks without a language are records (a study's commands and their measured
output, hours of work) and are not run; tests/test_docs.py checks the options they name.
The literal run trains the full recipe and evaluates `standard` (slow); the fast variant runs
the same blocks with `--epochs 1` added to `rbmm train` and `standard` replaced by `quick`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
import torch
from docpages import ROOT, blocks, commands, page, section

from robustbench_mm.cli import main

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
TUTORIAL = ("getting-started.md", "reading-the-report.md", "extending.md", "gating.md")
STANDALONE = ("README.md", "exporting.md", "corruption-plugins.md", "models.md")  # each run by a test of its own below
# Pages whose blocks run as they stand in a fresh checkout, checked only by their exit codes: a new
# page with command blocks goes here (or gets a test of its own with the files it should make).
FRESH_CHECKOUT: tuple[str, ...] = ("report.md", "imagenet-c.md")
DEMO_PAGES = ("README.md", "getting-started.md")


def check_pip(argv: list[str]) -> None:
    """`pip install` cannot run here (no network); what it names must exist as written."""
    assert argv[:2] == ["pip", "install"], argv
    for arg in argv[2:]:
        if arg.startswith("torch=="):
            assert torch.__version__.split("+")[0] == arg.split("==")[1], "the docs pin another torch than the one measured"
        elif arg.startswith("."):
            extras = re.fullmatch(r"\.(?:\[(.*)\])?", arg)
            assert extras, arg
            for extra in filter(None, (extras.group(1) or "").split(",")):
                assert extra in PYPROJECT["project"]["optional-dependencies"], f"pyproject has no extra {extra!r}"
        elif arg.startswith("--index-url"):
            continue
        else:
            assert arg in ("-e",) or arg.startswith("https://"), f"unexpected pip argument {arg!r}"


class Reader:
    """Runs the pages' blocks in the current working directory; `fast` shortens training and grids.
    `rbmm demo` commands are collected in `demos`, not run (the demo tests run them)."""

    def __init__(self, capsys, fast: bool):
        self.capsys, self.fast = capsys, fast
        self.output: list[tuple[list[str], str]] = []  # (argv, stdout) of each rbmm command
        self.demos: list[list[str]] = []

    def out(self, *prefix: str) -> str:
        """stdout of the last rbmm command whose argv starts with `prefix`."""
        return next(out for argv, out in reversed(self.output) if tuple(argv[: len(prefix)]) == prefix)

    def rbmm(self, argv: list[str], allowed: tuple[int, ...] = (0,)) -> int:
        if self.fast:
            argv = ["quick" if a == "standard" else a for a in argv]
            if argv[0] == "train":
                argv = [*argv, "--epochs", "1"]
        code = main(argv)
        captured = self.capsys.readouterr()
        self.output.append((argv, captured.out))
        assert code in allowed, f"`rbmm {shlex.join(argv)}` exited {code}: {captured.err.strip()}"
        return code

    def run(self, text: str, allowed: dict[str, tuple[int, ...]] | None = None, skip: tuple[str, ...] = ()) -> None:
        for language, body in blocks(text):
            if language in skip:
                continue
            first = body.splitlines()[0]
            if language in ("python", "toml") and re.fullmatch(r"# [\w./-]+\.(py|toml)", first):
                path = Path(first[2:])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body, encoding="utf-8")
            elif language == "python":
                exec(compile(body, "docs", "exec"), {"__name__": "__docs__"})
            elif language == "toml":
                tomllib.loads(body)
            elif language == "bash":
                for argv in commands(body):
                    self.command(argv, allowed or {})
            elif language == "yaml":
                for step in re.findall(r"^\s*- run: (.*)$", body, flags=re.M):
                    for argv in commands(step):
                        self.command(argv, allowed or {})
            else:
                raise AssertionError(f"block in {language!r}: the test does not know how to run it")

    def command(self, argv: list[str], allowed: dict[str, tuple[int, ...]]) -> None:
        if argv[:2] == ["rbmm", "demo"]:
            self.demos.append(argv)
        elif argv[0] == "rbmm":
            self.rbmm(argv[1:], allowed.get(argv[1], (0,)))
        elif argv[0] == "pip":
            check_pip(argv)
        elif argv[:3] == ["python", "-m", "pytest"]:
            assert PYPROJECT["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]  # this very suite
        else:
            raise AssertionError(f"command the test cannot run: {shlex.join(argv)}")


def test_python_version_claims_match_the_code():
    """pyproject and the README state one minimum Python, and the code needs no newer one."""
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum, PYPROJECT["project"]["requires-python"]
    claimed = (int(minimum.group(1)), int(minimum.group(2)))
    for name in DEMO_PAGES:
        assert f"Python ≥ {claimed[0]}.{claimed[1]}" in page(name), name
    needs_311 = [
        p.relative_to(ROOT) for p in (ROOT / "robustbench_mm").rglob("*.py")
        if re.search(r"^\s*import tomllib|\bStrEnum\b", p.read_text(encoding="utf-8"), flags=re.M)
    ]
    assert not needs_311 or claimed >= (3, 11), f"{needs_311} need Python 3.11"


@pytest.fixture
def plugin_cleanup():
    """The pages' plug-ins register `dim_light` and the five extensions of section 3b in this
    process: forget them afterwards."""
    yield
    from robustbench_mm.registry import all_registries

    names = {"dim_light", "error_rate", "mean-pool", "tiny-blobs", "keep_only", "clean-spread"}
    for registry in all_registries().values():
        for name in names & set(registry.names()):
            registry.remove(name)


def test_readme_and_install_blocks(tmp_path, monkeypatch, capsys):
    """README.md's blocks: pip lines checked, the demo commands collected (run by the slow tests)."""
    monkeypatch.chdir(tmp_path)
    reader = Reader(capsys, fast=True)
    reader.run(page("README.md"))
    assert reader.demos == [["rbmm", "demo", "--fast"], ["rbmm", "demo"]]


def _four_things(tmp_path, monkeypatch, capsys, fast: bool) -> Reader:
    monkeypatch.chdir(tmp_path)
    reader = Reader(capsys, fast)
    # install and demo (collected), then 1. train + eval (and the Python snippet)
    reader.run(page("getting-started.md"))
    assert reader.demos == [["rbmm", "demo", "--fast"], ["rbmm", "demo"]]
    assert set(pd.read_csv("results/mine/cells.csv")["model"]) == {"concat-cal", "concat"}
    assert set(pd.read_csv("results/q/cells.csv")["model"]) == {"plain"}

    # 2. report + compare
    reader.run(page("reading-the-report.md"))
    assert Path("reports/mine/index.html").is_file() and Path("reports/mine/report.md").is_file()
    assert reader.out("compare").strip()

    # 3. a new plug-in and a protocol naming it, written from the page's own text
    extending = page("extending.md")
    add, extend = section(extending, "3. Add a corruption type"), section(extending, "3b. Extend it the same way")
    assert blocks(add) + blocks(extend) == blocks(extending)  # no block of the page left out
    reader.run(add)
    assert "dim_light" in reader.out("list", "corruptions")
    dim = pd.read_csv("results/dim/cells.csv")
    assert set(dim["name"]) == {"clean", "dim_light"}
    assert set(dim.loc[dim["name"] == "dim_light", "level"]) == {1, 3, 5}

    # 3b. a metric, a backbone, a dataset, a condition family and a report section from one plug-in folder
    reader.run(extend)
    listed = reader.out("--plugins", "my_extensions", "list")
    for name, source in (("error_rate", "my_metrics.py"), ("mean-pool", "mean_pool.py"), ("tiny-blobs", "my_data.py"),
                         ("keep_only", "keep_only.py"), ("clean-spread", "my_section.py")):
        row = next(line for line in listed.splitlines() if line.split() and line.split()[0] == name)
        assert row.endswith(f"{source}]"), row
    cells = pd.read_csv("results/extend/cells.csv")
    assert {"error_rate", "error_rate_se"} <= set(cells.columns) and set(cells["model"]) == {"mp", "mp-cal"}
    assert set(cells["family"]) == {"clean", "keep_only", "corruption"}
    assert (cells["error_rate"] - (1 - cells["accuracy"])).abs().max() < 1e-12
    assert "clean accuracy spread over the models" in Path("reports/extend/report.md").read_text()

    # 4. baseline + gate against a candidate of another name: a verdict, never "unusable input"
    reader.run(page("gating.md"), allowed={"gate": (0, 1)}, skip=("yaml",))
    assert "comparing candidate 'concat-cal' with baseline model 'concat'" in reader.out("gate")
    cases = ET.parse("gate.xml").getroot().findall("testcase")
    assert len(cases) > 20 and {c.get("classname") for c in cases} == {"concat-cal"}
    assert json.loads(Path("gate-bench.json").read_text()) and "robustbench-mm gate" in Path("gate.md").read_text()
    return reader


def test_the_four_things_fast(tmp_path, monkeypatch, capsys, plugin_cleanup):
    _four_things(tmp_path, monkeypatch, capsys, fast=True)


@pytest.mark.slow
def test_the_four_things_as_written(tmp_path, monkeypatch, capsys, plugin_cleanup):
    _four_things(tmp_path, monkeypatch, capsys, fast=False)


def _fresh_checkout(tmp_path: Path) -> None:
    """An empty folder holding the committed CI models and baselines where a checkout has them."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "baselines").symlink_to(ROOT / "results" / "baselines")


def test_github_actions_job_as_written(tmp_path, monkeypatch, capsys):
    """The workflow's own commands, in a fresh checkout: the committed model passes its baseline."""
    _fresh_checkout(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step-summary.md"))
    monkeypatch.chdir(tmp_path)
    reader = Reader(capsys, fast=False)
    gate_section = page("gating.md")
    reader.run("".join(f"```{lang}\n{body}```\n" for lang, body in blocks(gate_section) if lang == "yaml"))
    assert "gate passed" in reader.out("gate")
    assert "no robustness regression" in (tmp_path / "step-summary.md").read_text()
    assert ET.parse(tmp_path / "gate.xml").getroot().get("failures") == "0"
    workflow = next(body for lang, body in blocks(gate_section) if lang == "yaml")
    charted = re.findall(r"output-file-path: (\S+)", workflow)
    assert charted == ["gate-bench.json", "gate-bench.smaller.json"]
    for name, tool in zip(charted, re.findall(r"tool: (\S+)", workflow)):
        entries = json.loads((tmp_path / name).read_text())  # the action's custom-tool format
        assert entries and all({"name", "unit", "value"} <= set(e) for e in entries), name
        assert tool == ("customSmallerIsBetter" if name.endswith(".smaller.json") else "customBiggerIsBetter")


def test_exports_as_written(tmp_path, monkeypatch, capsys):
    """exporting.md: the shipped model under `imagenet-c`, exported to RobustBench's and lm-eval's layouts."""
    _fresh_checkout(tmp_path)
    monkeypatch.chdir(tmp_path)
    Reader(capsys, fast=False).run(page("exporting.md"))
    model = json.loads(Path("export/rb/mfeat-concat.json").read_text())
    assert model["clean_acc"] and model["corruptions_acc"]
    table = pd.read_csv("export/rb/unaggregated_results.csv", header=[0, 1], index_col=0)
    assert list(table.index) == ["mfeat-concat"] and table.shape[1] == 15 * 5
    assert list(Path("export/lm/mfeat-concat").glob("results*.json"))


def test_corruption_plugin_page_as_written(tmp_path, monkeypatch, capsys):
    """corruption-plugins.md (corruptions/README.md): the entry-point table parses; the decorator
    example registers its corruption, in a process of its own (this one holds the real `rain`)."""
    monkeypatch.chdir(tmp_path)
    text = page("corruption-plugins.md")
    Reader(capsys, fast=False).run(text, skip=("python",))
    (example,) = [body for lang, body in blocks(text) if lang == "python"]
    check = "from robustbench_mm.corruptions import get_corruption\nprint(get_corruption('rain').unit)\n"
    done = subprocess.run([sys.executable, "-c", example + check], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fraction of pixels where a drop starts"


@pytest.fixture
def user_modules():
    """models.md imports the reader's own modules (`mymm`, `mymodels`, `models.mymodels`): forget them afterwards."""
    yield
    for name in ("mymm", "mymodels", "models.mymodels", "models"):
        sys.modules.pop(name, None)


def test_models_page_as_written(tmp_path, monkeypatch, capsys, user_modules):
    """models.md from an empty folder: its own model module, data, weights and cards; the python
    blocks import from that folder, as `python` run there does."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    Reader(capsys, fast=True).run(page("models.md"))
    cells = {run: pd.read_csv(f"results/{run}/cells.csv").drop(columns=["cell_id", "seconds"])
             for run in ("av", "av-flags", "av-pt2", "rgbd", "rgbd-flags")}
    assert len(cells["av"]) > 10 and set(cells["av"]["model"]) == {"ogm-av"}
    pd.testing.assert_frame_equal(cells["av"], cells["av-flags"])  # the flags say what the card says
    pd.testing.assert_frame_equal(cells["av"], cells["av-pt2"])  # the exported program is the same model
    pd.testing.assert_frame_equal(cells["rgbd"], cells["rgbd-flags"])
    api = pd.read_csv("results/av-api/cells.csv").pivot(index="condition", columns="model", values="accuracy")
    assert len(api) == len(cells["av"]) and (api["ogm-av"] == api["models.mymodels:build_av"]).all()  # adapt() is the card
    assert cells["av"].set_index("name").loc["clean", "accuracy"] == 1.0  # the trained AV model reads its audio
    ab = pd.read_csv("results/ab/cells.csv")
    clean = ab[ab["family"] == "clean"].set_index("model")["accuracy"]
    assert clean["good"] > clean["bad"]  # per-model weights: the trained state dict is the better one
    assert set(pd.read_csv("results/mixed/cells.csv")["model"]) == {"baseline", "mine"}


@pytest.mark.parametrize("name", FRESH_CHECKOUT)
def test_page_as_written_in_a_fresh_checkout(name, tmp_path, monkeypatch, capsys):
    _fresh_checkout(tmp_path)
    monkeypatch.chdir(tmp_path)
    Reader(capsys, fast=True).run(page(name))


def _demo_commands() -> list[list[str]]:
    """The `rbmm demo` commands of the pages that show them: the same on each."""
    found = {name: [argv for lang, body in blocks(page(name)) if lang == "bash" for argv in commands(body)
                    if argv[:2] == ["rbmm", "demo"]] for name in DEMO_PAGES}
    assert all(demos == found["README.md"] for demos in found.values()), found
    return found["README.md"]


@pytest.mark.slow
def test_demo_fast_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _demo_commands()[0] == ["rbmm", "demo", "--fast"]
    assert main(["demo", "--fast", "--quiet"]) == 0
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()


@pytest.mark.slow
def test_quick_start_demo_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _demo_commands()[1] == ["rbmm", "demo"]
    assert main(["demo", "--quiet"]) == 0
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()
    assert len(list((tmp_path / "results" / "demo").iterdir())) == 3  # one run per training seed
