"""`--data PATH` picks a reader, `--format` overrides it, `--trust-data` gates pickles, end to end."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd

from robustbench_mm.cli import build_parser, main
from robustbench_mm.datasets.loader import FORMATS


def _one_line_error(capsys) -> str:
    """The error, one line (notes and warnings from earlier steps in this process may precede it)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("rbmm: note:", "rbmm: warning:"))]
    assert len(lines) == 1 and lines[0].startswith("rbmm: error: "), lines
    return lines[0]


def test_cli_format_help_names_the_library_formats(capsys):
    eval_help = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    eval_help = re.sub(r"-\s+", "-", re.sub(r"\s+", " ", eval_help))  # undo argparse's line wrapping
    assert all(f in eval_help for f in FORMATS)
    capsys.readouterr()
    assert main(["show", "protocol", "quick", "--data", "x", "--format", "nope"]) == 2
    assert "--format" in _one_line_error(capsys)


def _avmnist(root):
    rng = np.random.default_rng(0)
    for m, shape in (("image", (16,)), ("audio", (6, 3))):
        (root / m).mkdir(parents=True)
        for split, n in (("train", 30), ("valid", 10), ("test", 10)):
            np.save(root / m / f"{split}_data.npy", rng.normal(size=(n, *shape)).astype(np.float32))
    for split, n in (("train", 30), ("valid", 10), ("test", 10)):
        np.save(root / f"{split}_labels.npy", np.arange(n) % 2)


def test_train_then_eval_on_an_npy_folder_and_format_override(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _avmnist(tmp_path / "av")
    ckpt = tmp_path / "m.pt"
    assert main(["train", "--data", str(tmp_path / "av"), "--fusion", "concat", "--out", str(ckpt), "--epochs", "1", "--quiet"]) == 0
    assert main(["eval", str(ckpt), "--data", str(tmp_path / "av"), "--protocol", "quick", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    cells = pd.read_csv(tmp_path / "run" / "cells.csv")
    assert (cells["n"] == 10).all()
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--data", str(tmp_path / "av"), "--format", "parquet", "--out", str(tmp_path / "r2")]) == 2
    assert "--format parquet reads one .parquet file" in _one_line_error(capsys)


def test_pickles_need_trust_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    data = {s: {"vision": rng.normal(size=(n, 3, 2)), "audio": rng.normal(size=(n, 3, 2)), "text": rng.normal(size=(n, 3, 4)),
                "labels": rng.normal(size=(n, 1, 1)), "id": np.arange(n)} for s, n in (("train", 20), ("valid", 8), ("test", 8))}
    (tmp_path / "affect.pkl").write_bytes(pickle.dumps(data))
    assert main(["show", "protocol", "quick", "--data", str(tmp_path / "affect.pkl")]) == 2
    assert "--trust-data" in _one_line_error(capsys)
    assert main(["show", "protocol", "quick", "--data", str(tmp_path / "affect.pkl"), "--trust-data"]) == 0
    assert "vision" in capsys.readouterr().out


def test_list_datasets_names_every_format(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    for fmt in FORMATS[2:]:
        assert f"--format {fmt}" in out
