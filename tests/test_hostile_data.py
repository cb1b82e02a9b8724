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
