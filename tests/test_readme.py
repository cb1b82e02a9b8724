"""The README's commands, run as written from an empty working directory, so it cannot drift from
the program: every fenced bash, python, toml and yaml block of "Quick start" and "The four things
you do with it", in the README's order (each section builds on the files the previous ones made).

Blocks are read from README.md, never paraphrased: a python or toml block whose first line is a
`# PATH` comment is a file the reader creates; other python blocks are executed; bash lines (with
`\\` continuations, `&&` and `#` comments) are `rbmm` commands run in this process, `pip install`
lines are checked against pyproject.toml. A command the runner does not know fails the test.
The literal run trains the full recipe and evaluates `standard` (slow); the fast variant runs
the same blocks with `--epochs 1` added to `rbmm train` and `standard` replaced by `quick`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustbench_mm.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def section(title: str) -> str:
    """The README text from the heading that starts with `title` to the next heading of its level."""
    match = re.search(rf"^(#+) {re.escape(title)}.*$", README, flags=re.M)
    assert match, f"README has no section {title!r}"
    level = match.group(1)
    rest = README[match.end():]
    end = re.search(rf"^{level} \S", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.M | re.S)


def commands(bash: str) -> list[list[str]]:
    """Each command of a bash block as argv: continuations joined, comments dropped, split at &&."""
    out: list[list[str]] = []
    for line in bash.replace("\\\n", " ").splitlines():
        tokens = shlex.split(os.path.expandvars(line), comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            out.append(tokens[:cut])
            tokens = tokens[cut + 1:]
    return [c for c in out if c]


def check_pip(argv: list[str]) -> None:
    """`pip install` cannot run here (no network); what it names must exist as written."""
    assert argv[:2] == ["pip", "install"], argv
    for arg in argv[2:]:
        if arg.startswith("torch=="):
            assert torch.__version__.split("+")[0] == arg.split("==")[1], "the README pins another torch than the one measured"
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
    """Runs README blocks in the current working directory; `fast` shortens training and grids."""

    def __init__(self, capsys, fast: bool):
        self.capsys, self.fast = capsys, fast
        self.output: list[tuple[list[str], str]] = []  # (argv, stdout) of each rbmm command

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
                exec(compile(body, "README.md", "exec"), {"__name__": "__readme__"})
            elif language == "bash":
                for argv in commands(body):
                    self.command(argv, allowed or {})
            elif language == "yaml":
                for step in re.findall(r"^\s*- run: (.*)$", body, flags=re.M):
                    for argv in commands(step):
                        self.command(argv, allowed or {})
            else:
                raise AssertionError(f"README block in {language!r}: the test does not know how to run it")

    def command(self, argv: list[str], allowed: dict[str, tuple[int, ...]]) -> None:
        if argv[0] == "rbmm":
            self.rbmm(argv[1:], allowed.get(argv[1], (0,)))
        elif argv[0] == "pip":
            check_pip(argv)
        elif argv[:3] == ["python", "-m", "pytest"]:
            assert PYPROJECT["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]  # this very suite
        else:
            raise AssertionError(f"README command the test cannot run: {shlex.join(argv)}")


def quick_start_without_demo() -> str:
    """The Quick start's blocks with `rbmm demo` left to the slow test (it trains 18 models)."""
    return section("Quick start").replace(" && rbmm demo", "")


def test_readme_names_only_real_options():
    """Every `--flag` in the README's rbmm commands is an option of that subcommand."""
    from robustbench_mm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    top = {s for a in build_parser()._actions for s in a.option_strings}
    for _, body in blocks(section("Quick start") + section("The four things you do with it")):
        for argv in commands(body) if "rbmm" in body else []:
            if argv[0] != "rbmm":
                continue
            at = 1
            while argv[at].startswith("--"):  # options before the command (--plugins PATH)
                assert argv[at] in top, f"README: rbmm has no option {argv[at]} before a command"
                at += 2
            options = {s for a in sub.choices[argv[at]]._actions for s in a.option_strings} | top
            for arg in argv[at + 1:]:
                if arg.startswith("--"):
                    assert arg.split("=")[0] in options, f"README: rbmm {argv[1]} has no option {arg}"


def test_python_version_claims_match_the_code():
    """pyproject and the README state one minimum Python, and the code needs no newer one."""
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum, PYPROJECT["project"]["requires-python"]
    claimed = (int(minimum.group(1)), int(minimum.group(2)))
    assert f"Python ≥ {claimed[0]}.{claimed[1]}" in README
    needs_311 = [
        p.relative_to(ROOT) for p in (ROOT / "robustbench_mm").rglob("*.py")
        if re.search(r"^\s*import tomllib|\bStrEnum\b", p.read_text(encoding="utf-8"), flags=re.M)
    ]
    assert not needs_311 or claimed >= (3, 11), f"{needs_311} need Python 3.11"


@pytest.fixture
def plugin_cleanup():
    """The README's plug-ins register `dim_light` and the five extensions of section 3b in this
    process: forget them afterwards."""
    yield
    from robustbench_mm.registry import all_registries

    readme_names = {"dim_light", "error_rate", "mean-pool", "tiny-blobs", "keep_only", "clean-spread"}
    for registry in all_registries().values():
        for name in readme_names & set(registry.names()):
            registry.remove(name)


def _four_things(tmp_path, monkeypatch, capsys, fast: bool) -> Reader:
    monkeypatch.chdir(tmp_path)
    reader = Reader(capsys, fast)
    reader.run(quick_start_without_demo())

    # 1. train + eval (and the Python snippet)
    reader.run(section("1. Evaluate a checkpoint under corruption"))
    assert set(pd.read_csv("results/mine/cells.csv")["model"]) == {"concat-cal", "concat"}
    assert set(pd.read_csv("results/q/cells.csv")["model"]) == {"plain"}

    # 2. report + compare
    reader.run(section("2. Generate a robustness report, compare two runs"))
    assert Path("reports/mine/index.html").is_file() and Path("reports/mine/report.md").is_file()
    assert reader.out("compare").strip()

    # 3. a new plug-in and a protocol naming it, written from the README's own text
    reader.run(section("3. Add a corruption type"))
    assert "dim_light" in reader.out("list", "corruptions")
    dim = pd.read_csv("results/dim/cells.csv")
    assert set(dim["name"]) == {"clean", "dim_light"}
    assert set(dim.loc[dim["name"] == "dim_light", "level"]) == {1, 3, 5}

    # 3b. a metric, a backbone, a dataset, a condition family and a report section from one plug-in folder
    reader.run(section("3b. Extend it the same way"))
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
    reader.run(section("4. Gate CI on robustness regressions"), allowed={"gate": (0, 1)}, skip=("yaml",))
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


def test_github_actions_job_as_written(tmp_path, monkeypatch, capsys):
    """The workflow's own commands, in a fresh checkout: the committed model passes its baseline."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "baselines").symlink_to(ROOT / "results" / "baselines")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step-summary.md"))
    monkeypatch.chdir(tmp_path)
    reader = Reader(capsys, fast=False)
    gate_section = section("4. Gate CI on robustness regressions")
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


@pytest.mark.slow
def test_quick_start_demo_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demo = [argv for _, body in blocks(section("Quick start")) for argv in commands(body) if argv[:2] == ["rbmm", "demo"]]
    assert demo == [["rbmm", "demo"]]
    assert main(demo[0][1:] + ["--quiet"]) == 0
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()
    assert len(list((tmp_path / "results" / "demo").iterdir())) == 3  # one run per training seed
