"""Fault cases of issue 11 through the `rbmm` command: a wrong result is never printed silently,
and bad input is one line on stderr with exit 2 (never a traceback).

The models are small TorchScript files and the data a seeded .npz, so each case runs in a second.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_mm.cli import main

N = 12
ONE = 'name = "one"\ndescription = "noise on vec"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["vec"]\nlevels = [3]\n'


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(5, 3)

    def forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(inputs["vec"])


class NanOnBigBatches(Linear):
    def forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.lin(inputs["vec"])
        if out.shape[0] > 2:
            out = out * float("nan")
        return out


class Pair(Linear):
    def forward(self, inputs: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.lin(inputs["vec"])
        return out, out.softmax(1)


class MissingKey(Linear):
    def forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(inputs["nokey"])


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh working directory with a feature file `feats.npz` (no split) and `one.toml`."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "feats.npz", vec=rng.normal(size=(N, 5)).astype(np.float32), labels=np.arange(N) % 3)
    (tmp_path / "one.toml").write_text(ONE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _script(module: torch.nn.Module, path: Path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


def _rbmm(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("rbmm: note:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rbmm: error: "), err
    return lines[0]


def _eval(*extra) -> list[str]:
    return ["eval", *extra, "--data", "feats.npz", "--protocol", "one.toml", "--quiet", "--batch-size", "8"]


def test_nan_on_larger_batches_is_an_error_naming_model_cell_and_ids(here, capsys):
    model = _script(NanOnBigBatches(), here / "nanny.pt")
    line = _one_line_error(*_rbmm(capsys, *_eval(model, "--out", "r"))[::2])
    assert "model 'nanny' returned NaN/Inf outputs in cell nanny__s0__clean" in line and "ids 0, 1, 2, ..." in line
    code, out, err = _rbmm(capsys, *_eval(model, "--out", "w", "--nonfinite", "wrong"))
    assert code == 0 and "NaN/Inf outputs counted as wrong: 24 sample-cells" in out  # 12 samples x 2 cells
    cells = pd.read_csv(here / "w" / "cells.csv")
    assert cells["nonfinite"].tolist() == [N, N] and cells["accuracy"].tolist() == [0.0, 0.0]
    assert main(["report", "w", "-o", "rep"]) == 0
    assert "NaN/Inf outputs, counted as wrong predictions" in (here / "rep" / "report.md").read_text()


def test_torchscript_tuple_output_and_interpreter_message(here, capsys):
    plain = _rbmm(capsys, *_eval(_script(Linear(), here / "plain.pt"), "--out", "a"))
    pair = _rbmm(capsys, *_eval(_script(Pair(), here / "pair.pt"), "--out", "b"))
    assert plain[0] == pair[0] == 0
    assert pd.read_csv(here / "a" / "cells.csv")["accuracy"].tolist() == pd.read_csv(here / "b" / "cells.csv")["accuracy"].tolist()
    line = _one_line_error(*_rbmm(capsys, *_eval(_script(MissingKey(), here / "missing.pt"), "--out", "c"))[::2])
    assert line.endswith("RuntimeError: KeyError: nokey") and "TorchScript interpreter" not in line


def test_a_file_without_split_is_said_and_recorded_as_all(here, capsys):
    code, out, err = _rbmm(capsys, *_eval(_script(Linear(), here / "m.pt"), "--out", "r"))
    assert code == 0
    assert "rbmm: note: dataset 'feats.npz' has no 'split' array: all 12 samples are evaluated (recorded as split 'all')" in err
    assert "rbmm: note: dataset 'feats.npz': task classification, inferred from its integer labels (--task overrides)" in err
    assert json.loads((here / "r" / "manifest.json").read_text())["dataset"]["split"] == "all"
    assert "all of its samples were evaluated (split: all)" in out


def test_task_flag_makes_whole_number_floats_classes(here, capsys):
    arrays = dict(np.load(here / "feats.npz"))
    np.savez(here / "floats.npz", vec=arrays["vec"], labels=arrays["labels"].astype(np.float64))
    model = _script(Linear(), here / "m.pt")
    argv = ["eval", model, "--data", "floats.npz", "--protocol", "one.toml", "--quiet"]
    line = _one_line_error(*_rbmm(capsys, *argv, "--out", "a")[::2])
    assert "expected (2,) for regression" in line  # inferred regression; the note names the inference
    code, _, err = _rbmm(capsys, *argv, "--out", "b", "--task", "classification")
    assert code == 0 and "inferred" not in err
    assert json.loads((here / "b" / "manifest.json").read_text())["dataset"]["task"] == "classification"


def test_factory_without_weights_needs_random_weights(here, capsys):
    (here / "my_arch.py").write_text(textwrap.dedent("""
        import torch
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(5, 3)
            def forward(self, inputs):
                return self.lin(inputs["vec"])
        def make():
            return M()
    """))
    try:
        line = _one_line_error(*_rbmm(capsys, *_eval("my_arch:make", "--out", "a"))[::2])
        assert "no --weights given" in line and "--random-weights" in line
        code, _, err = _rbmm(capsys, *_eval("my_arch:make", "--out", "b", "--random-weights"))
        assert code == 0 and "rbmm: WARNING: model 'my_arch:make' is evaluated with RANDOM initial weights" in err
    finally:
        sys.modules.pop("my_arch", None)


@pytest.mark.parametrize("where", ["eval", "show"])  # `rbmm list protocols` warns and lists the rest (test_cli.py)
def test_binary_protocol_file_is_one_line(here, capsys, where):
    (here / "protocols").mkdir()
    (here / "protocols" / "bin.toml").write_bytes(b"\x00\x89PNG\xff\xfe")
    argv = {"eval": ["eval", _script(Linear(), here / "m.pt"), "--data", "feats.npz", "--protocol", "protocols/bin.toml", "--out", "r"],
            "show": ["show", "protocol", "bin", "--data", "feats.npz"]}[where]
    line = _one_line_error(*_rbmm(capsys, *argv)[::2])
    assert "bin.toml: not a text file (byte" in line


def test_overwrite_keeps_the_users_own_files(here, capsys):
    (here / "r" / "samples").mkdir(parents=True)
    (here / "r" / "samples" / "my_experiment.npz").write_bytes(b"precious")
    line = _one_line_error(*_rbmm(capsys, *_eval(_script(Linear(), here / "m.pt"), "--out", "r", "--overwrite"))[::2])
    assert "holds no run" in line and "samples/my_experiment.npz" in line
    assert (here / "r" / "samples" / "my_experiment.npz").read_bytes() == b"precious"


@pytest.mark.parametrize("text", ["[]", '"run"', '{"cells": 3}'])
def test_eval_out_on_a_foreign_manifest_is_one_line(here, capsys, text):
    (here / "r").mkdir()
    (here / "r" / "manifest.json").write_text(text)
    line = _one_line_error(*_rbmm(capsys, *_eval(_script(Linear(), here / "m.pt"), "--out", "r"))[::2])
    assert "manifest.json" in line and ("JSON object" in line or "not a manifest" in line)


def test_train_takes_task_and_says_the_inferred_one(here, capsys):
    arrays = dict(np.load(here / "feats.npz"))
    np.savez(here / "floats.npz", vec=arrays["vec"], labels=arrays["labels"].astype(np.float64))
    argv = ["train", "--data", "floats.npz", "--fusion", "concat", "--epochs", "1", "--quiet"]
    code, _, err = _rbmm(capsys, *argv, "--out", "reg.pt")
    assert code == 0 and "task regression, inferred from its float labels (--task overrides)" in err
    code, _, err = _rbmm(capsys, *argv, "--out", "cls.pt", "--task", "classification")
    assert code == 0 and "inferred" not in err
    from robustbench_mm.models import load_model

    assert load_model(here / "cls.pt").config["num_classes"] == 3  # a classifier over the 3 whole-number labels


DIM_LIGHT = '''
from robustbench_mm.corruptions import corruption

@corruption("dim_light", kinds=("image",), severity=(0.1, 0.2, 0.3, 0.4, 0.5),
            unit="fraction of the value range subtracted", description="underexposure")
def dim_light(x, param, rng, spec):
    low, high = spec.value_range
    return (x - param * (high - low)).clamp(low, high)
'''


class ImageLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3 * 4 * 4, 3)

    def forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(inputs["img"].flatten(1))


def test_readme_plugin_on_standardised_images_is_one_line_naming_value_range(here, capsys):
    """The README's dim_light example reads spec.value_range, which standardised images lack: the
    failure was a 38-line traceback; it is one line naming the corruption's file and --value-range."""
    from robustbench_mm.corruptions.registry import unregister

    raw = np.random.default_rng(1).uniform(size=(N, 3, 4, 4)).astype(np.float32)
    np.savez(here / "std.npz", img=(raw - 0.5) / 0.25, labels=np.arange(N) % 3)
    (here / "dim_light.py").write_text(DIM_LIGHT)
    (here / "dim.toml").write_text('name = "dim"\ndescription = "d"\n[[corruption]]\ncorruptions = ["dim_light"]\ntargets = ["kind:image"]\nlevels = [1]\n')
    model = _script(ImageLinear(), here / "img.pt")
    argv = ["--plugins", "dim_light.py", "eval", model, "--data", "std.npz", "--protocol", "dim.toml", "--quiet",
            "--normalization", "0.5,0.25"]
    try:
        line = _one_line_error(*_rbmm(capsys, *argv, "--out", "a")[::2])
        assert "('dim_light' from dim_light.py) failed on 'img' (image, value range None): TypeError:" in line
        assert line.endswith("image modality 'img' has no value range (standardised images?): give it in the data's units with --value-range LO,HI")
        assert _rbmm(capsys, *argv, "--value-range=-2,2", "--out", "b")[0] == 0
    finally:
        unregister("dim_light")
