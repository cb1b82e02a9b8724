"""Issue 24: paths named by data files (a media index, symlinks in class folders) stay inside the
dataset's folder unless the user opts in with --allow-outside-paths (docs/faults.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from robustbench_mm.cli import main
from robustbench_mm.datasets import load_dataset
from robustbench_mm.errors import InputError


def _image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6), value, np.uint8)).save(path)


@pytest.fixture
def layout(tmp_path):
    """data/ (an index and three images inside) and secret/ beside it, outside the dataset."""
    data = tmp_path / "data"
    for i in range(3):
        _image(data / f"img{i}.png", i)
    _image(tmp_path / "secret" / "s.png", 9)
    return tmp_path


def _index(data, last: str):
    (data / "index.csv").write_text(f"label,image\n0,img0.png\n1,img1.png\n0,{last}\n")


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlinked file"])
def test_an_index_path_outside_the_dataset_is_refused(layout, how):
    data = layout / "data"
    last = {"dotdot": "../secret/s.png", "absolute": str(layout / "secret" / "s.png"), "symlinked file": "link.png"}[how]
    if how == "symlinked file":
        os.symlink(layout / "secret" / "s.png", data / "link.png")
    _index(data, last)
    with pytest.raises(InputError, match=r"lies outside the dataset folder .*--allow-outside-paths"):
        load_dataset(str(data), "all")
    assert len(load_dataset(str(data), "all", outside_paths=True)) == 3


def test_a_symlinked_class_folder_or_file_is_refused(tmp_path):
    root = tmp_path / "pets"
    for c in ("cat", "dog"):
        for i in range(2):
            _image(root / c / f"{c}{i}.png", i)
    _image(tmp_path / "elsewhere" / "bird0.png")
    os.symlink(tmp_path / "elsewhere", root / "bird")
    with pytest.raises(InputError, match=r"bird' lies outside"):
        load_dataset(str(root), "all")
    os.unlink(root / "bird")
    os.symlink(tmp_path / "elsewhere" / "bird0.png", root / "cat" / "cat9.png")
    with pytest.raises(InputError, match=r"cat9.png' lies outside"):
        load_dataset(str(root), "all")
    (root / "cat" / "cat9.png").unlink()
    os.symlink(root / "cat" / "cat0.png", root / "cat" / "cat8.png")  # a link inside the folder is fine
    assert len(load_dataset(str(root), "all")) == 5


def test_the_cli_refuses_in_one_line_and_the_flag_opts_in(layout, capsys, monkeypatch):
    _index(layout / "data", "../secret/s.png")
    (layout / "one.toml").write_text('name = "one"\ndescription = "x"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\n'
                                     'targets = ["image"]\nlevels = [3]\n')
    monkeypatch.chdir(layout)
    assert main(["show", "protocol", "one.toml", "--data", "data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lies outside the dataset folder" in err[0]
    assert main(["show", "protocol", "one.toml", "--data", "data", "--allow-outside-paths"]) == 0


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_a_hugging_face_path_only_row_outside_the_table_folder_is_refused(layout, how):
    """An Image() column row with no bytes reads its `path`: only inside the table's folder."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = layout / "data"
    outside = {"dotdot": "../secret/s.png", "absolute": str(layout / "secret" / "s.png")}[how]
    rows = [{"bytes": None, "path": p} for p in ("img0.png", "img1.png", outside)]
    pq.write_table(pa.table({"image": rows, "label": [0, 1, 0]}), data / "t.parquet")
    with pytest.raises(InputError, match="lies outside the dataset folder"):
        load_dataset(str(data / "t.parquet"), "all")
    assert load_dataset(str(data / "t.parquet"), "all", outside_paths=True).inputs["image"].shape[0] == 3
