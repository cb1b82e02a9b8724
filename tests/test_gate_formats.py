"""The gate's files as the field's tools read them: JUnit XML against the structure of Jenkins
xUnit's junit-10.xsd, and the github-action-benchmark JSON rendered into the Markdown table the
action writes (job summary, alert and PR comments), read back as GitHub's renderer splits rows."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from readers import benchmark_comment, junit_schema, markdown_tables
from robustbench_mm.errors import InputError
from robustbench_mm.gate import MCE, Check, GateResult, IncompleteRun, write_benchmark_json, write_junit, write_junit_error, write_summary

ROOT = Path(__file__).resolve().parents[1]
CELLS = ["seed=0 clean|clean|-|l=0", "seed=0 corruption|gaussian_noise|fac|l=3", "seed=0 removal|zero|fac|l=1"]


def _check(name: str, current: float, baseline: float = 0.9, regressed: bool = False, higher_is_better: bool = True) -> Check:
    drop = (baseline - current) if higher_is_better else (current - baseline)
    low, high = (0.05, 0.2) if regressed else (drop - 0.02, drop + 0.02)
    return Check("cand", name, baseline, current, drop, low, high, 0.01, "base", higher_is_better)


def _result(regressed: bool) -> GateResult:
    checks = [_check(c, 0.895) for c in CELLS] + [_check("summary: mean corrupted", 0.7 if regressed else 0.895, regressed=regressed),
                                                 _check(MCE, 1.005, baseline=1.0, higher_is_better=False)]
    return GateResult(checks=checks, tolerance=0.01, confidence=0.95)


@pytest.mark.parametrize("regressed", [False, True])
def test_junit_is_valid_against_junit_10_xsd(tmp_path, regressed):
    path = tmp_path / "gate.xml"
    write_junit(_result(regressed), path, seconds=1.25)
    junit_schema().validate(str(path))  # raises with the offending attribute
    suite = ET.parse(path).getroot()
    assert suite.get("errors") == "0" and suite.get("time") == "1.250"
    assert suite.get("failures") == ("1" if regressed else "0")
    assert int(suite.get("tests")) == len(suite.findall("testcase")) == len(CELLS) + 2


def test_the_schema_rejects_what_xunit_rejected(tmp_path):
    """The check can fail: the gate's old output (no `errors`) is what Jenkins xUnit refused."""
    path = tmp_path / "old.xml"
    path.write_text('<testsuite name="robustbench-mm gate" tests="1" failures="0"><testcase name="x"/></testsuite>')
    with pytest.raises(Exception, match="errors"):
        junit_schema().validate(str(path))


def test_incomplete_run_junit_names_each_missing_cell(tmp_path):
    path = tmp_path / "gate.xml"
    missing = [("cand", CELLS[1]), ("cand", CELLS[2])]
    write_junit_error(IncompleteRun("run r is incomplete: 2 of 3 baseline cells missing", missing), path, seconds=0.5)
    junit_schema().validate(str(path))
    suite = ET.parse(path).getroot()
    assert suite.get("errors") == suite.get("tests") == "2" and suite.get("failures") == "0"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == missing
    assert all(c.find("error") is not None and "2 of 3 baseline cells missing" in c.find("error").text for c in cases)


def test_other_unusable_input_gives_one_error_case(tmp_path):
    path = tmp_path / "gate.xml"
    write_junit_error(InputError("baseline field 'protocol' is 'standard', the run's 'quick'"), path)
    junit_schema().validate(str(path))
    (case,) = ET.parse(path).getroot().findall("testcase")
    assert "'standard'" in case.find("error").get("message")


def _bench_files(tmp_path: Path, result: GateResult) -> dict[str, list[dict]]:
    written = write_benchmark_json(result, tmp_path / "gate-bench.json")
    return {p.name: json.loads(p.read_text()) for p in written}


def test_benchmark_names_keep_the_action_table_at_four_columns(tmp_path):
    files = _bench_files(tmp_path, _result(False))
    for name, entries in files.items():
        assert all("|" not in e["name"] for e in entries), [e["name"] for e in entries]
        previous = [dict(e, value=e["value"] * 1.01) for e in entries]
        comment = benchmark_comment("robustness", entries, previous, bigger_is_better=not name.endswith(".smaller.json"))
        (table,) = markdown_tables(comment)
        assert all(len(row) == 4 for row in table), [row for row in table if len(row) != 4]
        assert [row[0].strip("`") for row in table[2:]] == [e["name"] for e in entries]
    assert "base seed=0 clean/clean/-/l=0" in [e["name"] for e in files["gate-bench.json"]]


def test_old_names_did_break_the_table():
    """The reader re-implementation can fail: a '|' in a name splits the action's row."""
    entry = {"name": "base seed=0 clean|clean|-|l=0", "value": 0.9, "unit": "score", "range": "±0.01"}
    (table,) = markdown_tables(benchmark_comment("x", [entry], [entry], bigger_is_better=True))
    assert len(table[2]) == 7


def _readme_ci_recipe() -> str:
    text = (ROOT / "docs" / "gating.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (recipe,) = [b for b in blocks if "github-action-benchmark" in b]
    return recipe


def test_readme_ci_recipe_renders_whole_tables(tmp_path):
    """The documentation's GitHub Actions recipe (docs/gating.md): the files its steps read exist under those names, and
    each renders as the action's four-column table; our own --summary table keeps its columns."""
    recipe = _readme_ci_recipe()
    gate_line = next(line for line in recipe.splitlines() if "rbmm gate" in line)
    bench_file = re.search(r"--benchmark-json (\S+)", gate_line).group(1)
    steps = re.findall(r"tool: (\w+)\s+output-file-path: (\S+)", recipe)
    assert steps == [("customBiggerIsBetter", bench_file), ("customSmallerIsBetter", bench_file.replace(".json", ".smaller.json"))]
    files = _bench_files(tmp_path, _result(True))
    for tool, file in steps:
        entries = files[file]
        comment = benchmark_comment("robustness", entries, entries, bigger_is_better=tool == "customBiggerIsBetter")
        (table,) = markdown_tables(comment)
        assert {len(row) for row in table} == {4}
    write_summary(_result(True), tmp_path / "summary.md")
    (table,) = markdown_tables((tmp_path / "summary.md").read_text())
    assert {len(row) for row in table} == {7}
