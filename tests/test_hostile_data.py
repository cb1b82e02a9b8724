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
