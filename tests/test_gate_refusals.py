"""Issue 24: a gate never passes what it did not check, and a malformed baseline is one line with
exit 2 (exit 1 is the gate's regression verdict). The baseline is validated against
robustbench_mm/schemas/baseline.schema.json by `robustbench_mm.schema`, which must agree with the
`jsonschema` package on every case here."""

from __future__ import annotations

import json

import pytest

from robustbench_mm.schema import load_schema, violation
from test_fault_cases import Linear, _eval, _one_line_error, _rbmm, _script, here  # noqa: F401 (fixture)

TWO_LEVELS = 'name = "two"\ndescription = "noise on vec"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["vec"]\nlevels = [1, 3]\n'


@pytest.fixture
def recorded(here, capsys):
    """A complete run `r` (3 cells) and its baseline `base.json`."""
    (here / "two.toml").write_text(TWO_LEVELS)
    model = _script(Linear(), here / "m.pt")
    argv = ["eval", model, "--data", "feats.npz", "--protocol", "two.toml", "--quiet", "--out", "r"]
    assert _rbmm(capsys, *argv)[0] == 0
    assert _rbmm(capsys, "baseline", "r", "-o", "base.json")[0] == 0
    return json.loads((here / "base.json").read_text())


def _without(doc: dict, key: str) -> dict:
    return {k: v for k, v in doc.items() if k != key}


def _cells(doc: dict, cells) -> dict:
    return {**doc, "cells": cells}


MALFORMED = {
    "no cells": lambda d: _cells(d, []),
    "cells a string": lambda d: _cells(d, "cells"),
    "cells null": lambda d: _cells(d, None),
    "a cell without scores": lambda d: _cells(d, [_without(d["cells"][0], "scores")] + d["cells"][1:]),
    "scores a number": lambda d: _cells(d, [{**d["cells"][0], "scores": 3}] + d["cells"][1:]),
    "truncated scores": lambda d: _cells(d, [{**d["cells"][0], "scores": d["cells"][0]["scores"][:-4]}] + d["cells"][1:]),
    "scores not base64": lambda d: _cells(d, [{**d["cells"][0], "scores": "!!!!"}] + d["cells"][1:]),
    "NaN in ids": lambda d: {**d, "ids": [float("nan")] + d["ids"][1:]},
    "a string in ids": lambda d: {**d, "ids": ["0"] + d["ids"][1:]},
    "an id beyond int64": lambda d: {**d, "ids": [10**30] + d["ids"][1:]},
    "ids null": lambda d: {**d, "ids": None},
    "no ids": lambda d: _without(d, "ids"),
    "no task": lambda d: _without(d, "task"),
    "no dataset": lambda d: _without(d, "dataset"),
    "no plugins (version 3)": lambda d: _without(d, "plugins"),
    "a plug-in without sha256": lambda d: {**d, "plugins": [{"name": "x", "source": "y"}]},
    "protocol a list": lambda d: {**d, "protocol": []},
    "task unknown": lambda d: {**d, "task": "ranking"},
    "rng a number": lambda d: {**d, "rng": 1},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_baseline_is_one_line_with_exit_2(here, capsys, recorded, case):
    (here / "bad.json").write_text(json.dumps(MALFORMED[case](recorded)))
    line = _one_line_error(*_rbmm(capsys, "gate", "r", "--baseline", "bad.json")[::2])
    assert "bad.json" in line


def test_a_nesting_bomb_is_one_line(here, capsys, recorded):
    (here / "bad.json").write_text("[" * 200_000 + "]" * 200_000)
    line = _one_line_error(*_rbmm(capsys, "gate", "r", "--baseline", "bad.json")[::2])
    assert "not readable JSON" in line


def test_a_baseline_missing_cells_of_the_protocol_is_refused_with_the_counts(here, capsys, recorded):
    (here / "bad.json").write_text(json.dumps(_cells(recorded, recorded["cells"][:2])))
    line = _one_line_error(*_rbmm(capsys, "gate", "r", "--baseline", "bad.json")[::2])
    assert "baseline holds 2 of the 3 cells the run's protocol defines for model 'm'" in line
    assert _rbmm(capsys, "gate", "r", "--baseline", "base.json")[0] == 0


def test_our_schema_check_agrees_with_jsonschema(recorded):
    jsonschema = pytest.importorskip("jsonschema")
    schema = load_schema("baseline")
    assert violation(recorded, schema) is None
    jsonschema.validate(recorded, schema)
    for case, make in MALFORMED.items():
        doc = json.loads(json.dumps(make(recorded)))
        ours = violation(doc, schema)
        theirs = next(iter(jsonschema.Draft202012Validator(schema).iter_errors(doc)), None)
        if case in ("truncated scores", "scores not base64", "an id beyond int64"):  # beyond what a schema says
            assert ours is None and theirs is None, case
        else:
            assert ours is not None and theirs is not None, (case, ours, theirs)

