"""Issue 24, hostile data: modality names that joins would misread, a working directory that
shadows an installed package, arrays whose headers claim more than the file or the memory holds,
.csd splits that list a video twice. Each is one line with exit 2 (docs/faults.md)."""

from __future__ import annotations

import numpy as np
import pytest

from test_fault_cases import Linear, _one_line_error, _rbmm, _script, here  # noqa: F401 (fixture)


@pytest.mark.parametrize("name", ["a+b", "a/b", "a|b", "a..b", "..", "a b", ""])
def test_a_modality_name_that_joins_or_paths_would_misread_is_refused(here, capsys, name):
    arrays = dict(np.load(here / "feats.npz"))
    np.savez(here / "odd.npz", **{name: arrays["vec"], "other": arrays["vec"], "labels": arrays["labels"]})
    model = _script(Linear(), here / "m.pt")
    argv = ["eval", model, "--data", "odd.npz", "--protocol", "one.toml", "--quiet", "--out", "r"]
    line = _one_line_error(*_rbmm(capsys, *argv)[::2])
    assert f"modality name {name!r}" in line


SHADOW = "raise ImportError('this is not h5py')\n"


def test_a_module_in_the_working_directory_does_not_shadow_an_installed_package(tmp_path):
    """`python -m robustbench_mm` puts the working directory first on sys.path; a ./h5py.py there
    must neither replace the real h5py nor make us tell the user to pip install it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["vec"] = rng.normal(size=(12, 5)).astype(np.float32)
        f["labels"] = np.arange(12) % 3
    (tmp_path / "one.toml").write_text('name = "one"\ndescription = "x"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\n'
                                       'targets = ["vec"]\nlevels = [3]\n')
    (tmp_path / "h5py.py").write_text(SHADOW)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "robustbench_mm", "show", "protocol", "one.toml", "--data", "x.h5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "pip install" not in done.stderr, done.stderr


def test_a_failing_import_of_an_installed_package_does_not_say_pip_install(monkeypatch):
    import importlib

    from robustbench_mm.datasets.readers.common import optional_import
    from robustbench_mm.errors import InputError

    def broken(name, *args):
        raise ImportError("this is not h5py", name=name, path="/somewhere/h5py.py")

    pytest.importorskip("h5py")
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(InputError) as e:
        optional_import("h5py", "HDF5")
    assert "is installed but importing it failed" in str(e.value) and "pip install" not in str(e.value)


def _npy_bytes(shape, dtype, data: bytes) -> bytes:
    """An .npy whose header claims `shape` x `dtype`, followed by `data` (maybe far less)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def test_an_npy_with_a_lying_header_is_one_line_naming_the_array(tmp_path):
    from robustbench_mm.datasets import load_dataset
    from robustbench_mm.errors import InputError

    folder = tmp_path / "av"
    (folder / "image").mkdir(parents=True)
    np.save(folder / "train_labels.npy", np.arange(4) % 2)
    np.save(folder / "test_labels.npy", np.arange(4) % 2)
    np.save(folder / "image" / "train_data.npy", np.zeros((4, 16), np.float32))
    (folder / "image" / "test_data.npy").write_bytes(_npy_bytes((10**9, 16), np.float32, b"\0" * 80))
    with pytest.raises(InputError, match=r"array 'test_data' claims shape \(1000000000, 16\) of float32 \(59.60 GiB\), "
                                         r"but the file holds at most 80 bytes"):
        load_dataset(str(folder), "test")


def test_an_npz_member_claiming_more_than_deflate_can_hold_is_one_line(here, capsys):
    import zipfile

    with zipfile.ZipFile(here / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("vec.npy", _npy_bytes((2**31, 5), np.float32, b"\0" * 1000))
        z.writestr("labels.npy", _npy_bytes((12,), np.int64, np.zeros(12, np.int64).tobytes()))
    argv = ["eval", _script(Linear(), here / "m.pt"), "--data", "bomb.npz", "--protocol", "one.toml", "--quiet", "--out", "r"]
    line = _one_line_error(*_rbmm(capsys, *argv)[::2])
    assert "array 'vec' claims shape (2147483648, 5) of float32 (40.00 GiB)" in line


def test_an_array_larger_than_the_memory_available_is_refused_before_allocation(here, capsys, monkeypatch):
    """A well-formed compressed .npz (zeros deflate about 1000:1) and an HDF5 gzip bomb: honest
    headers, too large for memory (made small here, so that the test allocates nothing big)."""
    import robustbench_mm.datasets.limits as limits

    h5py = pytest.importorskip("h5py")
    np.savez_compressed(here / "zeros.npz", vec=np.zeros((40_000, 5), np.float32), labels=np.arange(40_000) % 3)
    with h5py.File(here / "zeros.h5", "w") as f:
        f.create_dataset("vec", data=np.zeros((40_000, 5), np.float32), compression="gzip", chunks=(40_000, 5))
        f["labels"] = np.arange(40_000) % 3
    monkeypatch.setattr(limits, "available_memory", lambda: 500_000)
    model = _script(Linear(), here / "m.pt")
    for data in ("zeros.npz", "zeros.h5"):
        argv = ["eval", model, "--data", data, "--protocol", "one.toml", "--quiet", "--out", f"r-{data}"]
        line = _one_line_error(*_rbmm(capsys, *argv)[::2])
        assert "array 'vec' claims shape (40000, 5) of float32 (781.25 KiB), more than the 488.28 KiB of memory available" in line


def test_csd_splits_listing_a_video_in_two_folds_is_one_line(tmp_path):
    import json

    from robustbench_mm.datasets import load_dataset
    from robustbench_mm.errors import InputError
    from test_readers_arrays import _csd_folder

    _csd_folder(tmp_path / "mosi")
    (tmp_path / "mosi" / "splits.json").write_text(json.dumps({"train": ["v1", "v3", "v5"], "valid": ["v2"], "test": ["v4", "v6", "v5"]}))
    with pytest.raises(InputError, match=r"1 video id\(s\) are in split 'train' and in 'test': 'v5'"):
        load_dataset(str(tmp_path / "mosi"), "test")
