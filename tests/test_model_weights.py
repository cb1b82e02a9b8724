"""Per-model weights, the factory's source hash in the run identity, and `--limit` smoke runs,
through the `rbmm` command (issue 21).

Two checkpoints of one architecture must be comparable in one run: each factory model gets its
own weights (`module:factory@FILE`, or `--weights` repeated in MODEL order), and the manifest
records each file's hash and the SHA-256 of the module that built it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_mm.cli import main
from robustbench_mm.models import load_model

N = 30
PROTOCOL = 'name = "one"\ndescription = "noise on vec"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["vec"]\nlevels = [3]\n'
MODULE = textwrap.dedent(
    """
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(5, 3)

        def forward(self, inputs):
            return self.lin(inputs["vec"])

    def build():
        return Head()
    """
)


class Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.lin = torch.nn.Linear(5, 3)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(inputs["vec"])


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Working directory with `mymm.py`, two different state dicts A.pt/B.pt, data and a protocol."""
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(N, 5)).astype(np.float32)
    labels = (vec[:, 0] > 0).astype(np.int64) + (vec[:, 1] > 0)
    np.savez(tmp_path / "feats.npz", vec=vec, labels=labels)
    (tmp_path / "one.toml").write_text(PROTOCOL)
    (tmp_path / "mymm.py").write_text(MODULE)
    for seed, name in ((1, "A.pt"), (2, "B.pt")):
        torch.manual_seed(seed)
        torch.save({f"lin.{k}": v for k, v in torch.nn.Linear(5, 3).state_dict().items()}, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("mymm", None)


def _rbmm(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _eval(*models, out="r", extra=()) -> list[str]:
    return ["eval", *models, "--data", "feats.npz", "--protocol", "one.toml", "--out", out, "--quiet", "--device", "cpu", *extra]


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _accuracy(folder, model: str) -> list[float]:
    cells = pd.read_csv(folder / "cells.csv")
    return cells[cells["model"] == model]["accuracy"].tolist()


def _error_line(err: str) -> str:
    """The one error line (notes about the data may come before it)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("rbmm: note: ")]
    assert len(lines) == 1 and lines[0].startswith("rbmm: error: "), err
    return lines[0]


@pytest.mark.parametrize("how", ["repeated", "at"])
def test_two_factory_models_get_their_own_weights_and_hashes(here, capsys, how):
    """Before issue 21, `--weights A.pt --weights B.pt` scored both models with B (and recorded B's hash)."""
    if how == "repeated":
        argv = _eval("good=mymm:build", "bad=mymm:build", extra=("--weights", "A.pt", "--weights", "B.pt"))
    else:
        argv = _eval("good=mymm:build@A.pt", "bad=mymm:build@B.pt")
    code, _, err = _rbmm(capsys, *argv)
    assert code == 0, err
    manifest = json.loads((here / "r" / "manifest.json").read_text())
    hashes = {m["name"]: m["sha256"] for m in manifest["models"]}
    assert hashes == {"good": _sha(here / "A.pt"), "bad": _sha(here / "B.pt")}
    # each cell is the one a run of that model alone gives
    for name, weights in (("good", "A.pt"), ("bad", "B.pt")):
        assert main(_eval(f"{name}=mymm:build", out=f"alone-{name}", extra=("--weights", weights))) == 0
        assert _accuracy(here / "r", name) == _accuracy(here / f"alone-{name}", name)
    samples = here / "r" / "samples"
    good = np.load(next(samples.glob("good*clean*.npz")))["p_true"]
    bad = np.load(next(samples.glob("bad*clean*.npz")))["p_true"]
    assert not np.array_equal(good, bad)


def test_torchscript_and_factory_models_in_one_run(here, capsys):
    torch.jit.script(Scripted()).save(str(here / "ts.pt"))
    code, _, err = _rbmm(capsys, *_eval("ts.pt", "mine=mymm:build", extra=("--weights", "A.pt")))
    assert code == 0, err
    models = json.loads((here / "r" / "manifest.json").read_text())["models"]
    assert [(m["name"], m["sha256"]) for m in models] == [("ts", _sha(here / "ts.pt")), ("mine", _sha(here / "A.pt"))]


@pytest.mark.parametrize(
    "models, weights, expected",
    [
        (("a=mymm:build", "b=mymm:build"), ("A.pt",), "--weights given 1 time(s) for 2 module:factory model(s); expected one per factory model, in MODEL order"),
        (("a=mymm:build@A.pt", "b=mymm:build"), ("B.pt",), "give factory weights either as MODEL@WEIGHTS or with --weights, not both"),
        (("a=mymm:build@missing.pt",), (), "weights file missing.pt: no such file"),
    ],
)
def test_weights_that_do_not_fit_the_models_are_one_line(here, capsys, models, weights, expected):
    argv = _eval(*models, extra=[a for w in weights for a in ("--weights", w)])
    code, _, err = _rbmm(capsys, *argv)
    assert code == 2 and expected in _error_line(err)


def test_the_factory_source_is_part_of_the_run_identity(here, capsys):
    assert main(_eval("mymm:build@A.pt")) == 0
    capsys.readouterr()
    models = json.loads((here / "r" / "manifest.json").read_text())["models"]
    assert models[0]["config"]["sources"] == {"mymm": _sha(here / "mymm.py")}
    assert main(_eval("mymm:build@A.pt")) == 0  # same code: resumes, nothing to do
    capsys.readouterr()
    (here / "mymm.py").write_text(MODULE.replace("self.lin(inputs", "2 * self.lin(inputs"))
    sys.modules.pop("mymm", None)
    code, _, err = _rbmm(capsys, *_eval("mymm:build@A.pt"))
    assert code == 2 and "holds a different run (changed: models)" in _error_line(err)


def test_load_model_accepts_factory_at_weights(here):
    loaded = load_model("mymm:build@B.pt")
    assert loaded.weights == "B.pt" and loaded.sha256 == _sha(here / "B.pt")
    torch.manual_seed(2)
    expected = torch.nn.Linear(5, 3)
    x = {"vec": torch.randn(4, 5)}
    assert torch.equal(loaded.module(x), expected(x["vec"]))


def test_limit_evaluates_the_first_samples_and_the_gate_refuses_it(here, capsys):
    code, _, err = _rbmm(capsys, *_eval("mymm:build@A.pt", out="smoke", extra=("--limit", "7")))
    assert code == 0 and "--limit 7: a smoke run of the first 7 samples per cell" in err
    manifest = json.loads((here / "smoke" / "manifest.json").read_text())
    assert manifest["limit"] == 7 and manifest["dataset"]["n"] == 7
    assert main(_eval("mymm:build@A.pt", out="full")) == 0
    capsys.readouterr()
    smoke = np.load(next((here / "smoke" / "samples").glob("*clean*.npz")))
    full = np.load(next((here / "full" / "samples").glob("*clean*.npz")))
    assert smoke["ids"].tolist() == full["ids"][:7].tolist() and np.array_equal(smoke["p_true"], full["p_true"][:7])
    assert json.loads((here / "full" / "manifest.json").read_text())["limit"] is None

    code, _, err = _rbmm(capsys, "baseline", "smoke", "-o", "base.json")
    assert code == 2 and "was evaluated with --limit 7" in _error_line(err)
    assert main(["baseline", "full", "-o", "base.json"]) == 0
    capsys.readouterr()
    code, _, err = _rbmm(capsys, "gate", "smoke", "--baseline", "base.json")
    line = _error_line(err)
    assert code == 2 and "the gate needs the full evaluation: run `rbmm eval` again without --limit" in line
    # a smoke run and a full run are different runs in one folder
    code, _, err = _rbmm(capsys, *_eval("mymm:build@A.pt", out="full", extra=("--limit", "7")))
    assert code == 2 and "changed: dataset, limit" in _error_line(err)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_limit_below_one_is_refused(here, capsys, value):
    code, _, err = _rbmm(capsys, *_eval("mymm:build@A.pt", extra=("--limit", value)))
    assert code == 2 and f"--limit must be an integer >= 1 (samples per cell), got {value}" in _error_line(err)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def build(:\n", "model 'mymm:build': importing module 'mymm' failed (SyntaxError: "),
        ("def build():\n    raise ValueError('no such layer size')\n", "model 'mymm:build': the factory raised ValueError: no such layer size"),
    ],
)
def test_a_failing_user_module_or_factory_is_one_line(here, capsys, source, expected):
    (here / "mymm.py").write_text(source)
    code, _, err = _rbmm(capsys, *_eval("mymm:build@A.pt"))
    assert code == 2 and expected in _error_line(err)
