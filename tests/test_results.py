"""The results store: deterministic, numpy-only per-sample files, atomic writes, loading runs."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from fakes import fake_manifest, write_manifest
from robustbench_mm.errors import InputError
from robustbench_mm.atomic import atomic_write
from robustbench_mm.results import csv_bytes, load_run, load_runs, npz_bytes


def _record(n: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "ids": np.arange(n, dtype=np.int64),
        "target": rng.integers(0, 3, n),
        "conf": rng.random(n).astype(np.float32),
        "affected": rng.random(n) < 0.5,
    }


def test_npz_is_byte_deterministic_and_loads_with_numpy_alone(tmp_path):
    rec = _record()
    a, b = npz_bytes(rec), npz_bytes(dict(reversed(list(rec.items()))))
    assert a == b
    path = tmp_path / "x.npz"
    path.write_bytes(a)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(rec)
        for k, v in rec.items():
            assert z[k].dtype == v.dtype and np.array_equal(z[k], v)
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zipfile.ZipFile(path).infolist())


def test_atomic_write_replaces_whole_files_and_reports_unwritable_places(tmp_path, read_only_dir):
    path = tmp_path / "f.bin"
    atomic_write(path, b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "read-only"]  # no temporary file left
    atomic_write(tmp_path / "new" / "f.bin", b"x")  # parent folders are created
    assert (tmp_path / "new" / "f.bin").read_bytes() == b"x"
    with pytest.raises(InputError, match="cannot write"):
        atomic_write(read_only_dir / "f.bin", b"x")


def _fake_run(path, model: str, acc: float):
    """A run folder written by hand, as another tool (or an older run) would leave it."""
    (path / "samples").mkdir(parents=True)
    rows = [{
        "cell_id": f"{model}__clean", "model": model, "seed": 0, "condition": "clean|clean|-|l=0|r=1",
        "family": "clean", "name": "clean", "modalities": "", "level": 0.0, "param": np.nan, "rate": 1.0,
        "group": "clean", "n": 5, "accuracy": acc, "seconds": 0.1,
    }]
    (path / "cells.csv").write_bytes(csv_bytes(rows))
    write_manifest(path, fake_manifest([model], protocol="p"))
    (path / "samples" / f"{model}__clean.npz").write_bytes(npz_bytes(_record()))


def test_load_run_and_load_runs(tmp_path):
    _fake_run(tmp_path / "a" / "seed0", "m", 0.5)
    _fake_run(tmp_path / "seed1", "m", 0.75)
    run = load_run(tmp_path / "a" / "seed0")
    assert run.complete and run.cells.loc[0, "modalities"] == ""
    assert np.array_equal(run.samples("m__clean")["ids"], np.arange(5))
    assert "clean accuracy 0.5000" in run.summary()
    both = load_runs([tmp_path / "a" / "seed0", tmp_path / "seed1"])
    assert list(both.cells["run"]) == ["seed0", "seed1"]
    assert both.cells.groupby("model")["accuracy"].mean()["m"] == pytest.approx(0.625)
    same_name = load_runs([tmp_path / "a" / "seed0", tmp_path / "a" / "seed0"])
    assert len(same_name.runs) == 1  # the same folder twice is one run
    with pytest.raises(InputError, match="no samples for cell 'nope'"):
        run.samples("nope")


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="is not a run folder: no manifest.json"):
        load_run(tmp_path)


def test_a_real_manifest_matches_its_schema_and_round_trips(tmp_path):
    """The written manifest is the documented contract: its JSON Schema validates it and
    Manifest.from_json(to_json()) gives the same manifest."""
    import jsonschema

    from robustbench_mm.cli import main
    from robustbench_mm.results import Manifest

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    assert main(["eval", str(root / "results" / "baselines" / "mfeat-concat.pt"), "--protocol", "quick",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "r" / "manifest.json").read_text())
    schema = json.loads((root / "robustbench_mm" / "schemas" / "manifest.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert Manifest.from_json(doc).to_json() == Manifest.from_json(json.loads(json.dumps(doc))).to_json()
    assert load_run(tmp_path / "r").manifest.version == 2


def test_a_version_1_manifest_is_migrated_and_a_newer_one_refused(tmp_path):
    from robustbench_mm.results import Manifest

    v2 = fake_manifest(["m"]).to_json()
    v1 = {"identity": {k: v2[k] for k in ("models", "dataset", "seeds", "rng", "amp")}
          | {"protocol": {k: v2["protocol"][k] for k in ("name", "hash", "source")}},
          "protocol": {"name": v2["protocol"]["name"], "hash": v2["protocol"]["hash"], "seed": 0, "metrics": ["accuracy"]},
          "models": v2["models"], "status": "complete", "plugins": [], "package": {}, "started": "", "cell_seconds": {}}
    migrated = Manifest.from_json(v1)
    assert migrated.complete and migrated.version == 2 and migrated.nonfinite == "error"
    assert migrated.identity() == Manifest.from_json(v2).identity()
    with pytest.raises(InputError, match="manifest version 3; this robustbench-mm reads versions 1 and 2"):
        Manifest.from_json(dict(v2, version=3))
