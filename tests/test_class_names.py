"""Issue 24: labels that cannot shift. Checkpoints record the class names of their training data,
runs record the dataset's, evaluation refuses a dataset whose names or order differ from the
model's; a media index with a label that is not an integer is refused unless --classes names
the classes; a class-folder set missing a class is stated, never shifted (docs/faults.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from robustbench_mm.cli import main
from robustbench_mm.datasets import load_dataset
from robustbench_mm.errors import InputError
from robustbench_mm.models import load_model

ONE = 'name = "one"\ndescription = "x"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["image"]\nlevels = [3]\n'


def _images(root, classes, per_class=5):
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((4, 6), 40 * k + i, np.uint8)).save(root / c / f"{c}{i}.png")


def _index(root, labels):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["label,image"]
    for i, label in enumerate(labels):
        Image.fromarray(np.full((4, 6), i, np.uint8)).save(root / f"{i}.png")
        rows.append(f"{label},{i}.png")
    (root / "index.csv").write_text("\n".join(rows) + "\n")


def test_one_non_integer_label_in_an_index_is_refused_not_renumbered(tmp_path):
    _index(tmp_path / "idx", [str(i % 12) for i in range(23)] + ["1O"])
    with pytest.raises(InputError, match=r"label '1O' \(row 24\) is neither an integer class id nor a number.*--classes"):
        load_dataset(str(tmp_path / "idx"), "all")
    _index(tmp_path / "blank", ["0", "1", " ", "2"])
    with pytest.raises(InputError, match=r"label '' \(row 3\)"):
        load_dataset(str(tmp_path / "blank"), "all")


def test_classes_name_index_labels_by_position(tmp_path):
    _index(tmp_path / "idx", ["dog", "cat", "bird", "dog"])
    data = load_dataset(str(tmp_path / "idx"), "all", classes=["cat", "dog", "bird"])
    assert data.labels.tolist() == [1, 0, 2, 1] and data.class_names == ["cat", "dog", "bird"]
    with pytest.raises(InputError, match=r"label\(s\) 'bird' are not among --classes"):
        load_dataset(str(tmp_path / "idx"), "all", classes=["cat", "dog"])
    with pytest.raises(InputError, match="not a media dataset"):
        load_dataset("mfeat", classes=["a", "b"])


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A model trained on class folders a, b, c (checkpoint `m.pt`), and eval folders."""
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "train", ["a", "b", "c"])
    _images(tmp_path / "all3", ["a", "b", "c"], per_class=2)
    _images(tmp_path / "no_b", ["a", "c"], per_class=2)
    (tmp_path / "one.toml").write_text(ONE)
    assert main(["train", "--data", "train", "--fusion", "concat", "--epochs", "1", "--quiet", "--out", "m.pt"]) == 0
    return tmp_path


def _eval(data, out, *extra):
    return main(["eval", "m.pt", "--data", data, "--protocol", "one.toml", "--quiet", "--out", out, *extra])


def test_checkpoints_and_runs_record_class_names(trained, capsys):
    assert load_model(trained / "m.pt").config["class_names"] == ["a", "b", "c"]
    assert _eval("all3", "r") == 0
    assert json.loads((trained / "r" / "manifest.json").read_text())["dataset"]["class_names"] == ["a", "b", "c"]


def test_a_class_folder_missing_a_class_is_refused_then_stated_never_shifted(trained, capsys):
    capsys.readouterr()
    assert _eval("no_b", "r") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has classes ['a', 'c'], model 'm' was trained on ['a', 'b', 'c'] (the dataset lacks 'b')" in err
    assert "--classes a,b,c" in err
    assert _eval("no_b", "r", "--classes", "a,b,c") == 0
    assert "1 of the 3 --classes have no samples in split 'all': 'b'" in capsys.readouterr().err
    labels = np.concatenate([np.load(p)["target"] for p in sorted((trained / "r" / "samples").glob("*clean*.npz"))])
    assert sorted(set(labels.tolist())) == [0, 2]  # 'c' keeps the model's number 2


def test_class_names_in_another_order_are_refused(trained, capsys):
    assert _eval("all3", "r", "--classes", "c,b,a") == 2
    assert "same names, another order" in capsys.readouterr().err
