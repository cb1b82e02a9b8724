"""Array readers: AV-MNIST .npy folders, HDF5 / CMU-MultimodalSDK .csd, MultiBench affect pickles.

Each test writes its own small files in the layout the field's code writes (cited in the readers)
and checks what comes back against the arrays it wrote, plus the bad cases: ids one file lacks,
ragged lengths, a missing split, a corrupt file.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from robustbench_mm.datasets import load_dataset, load_splits
from robustbench_mm.datasets.readers import detect_format
from robustbench_mm.errors import InputError

h5py = pytest.importorskip("h5py")


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- AV-MNIST .npy folders


def _avmnist(root, sizes={"train": 12, "test": 6}, valid=True):
    """MultiBench's layout: image/<split>_data.npy flat 28*28 rows, audio/<split>_data.npy (N, 112, 112)
    shrunk here to (N, 8, 5), <split>_labels.npy."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir(parents=True)
    (root / "audio").mkdir()
    written = {}
    if valid:
        sizes = {**sizes, "valid": 4}
    for split, n in sizes.items():
        image = rng.integers(0, 256, size=(n, 28 * 28)).astype(np.float32)
        audio = rng.uniform(0, 255, size=(n, 8, 5)).astype(np.float32)
        labels = (np.arange(n) % 3).astype(np.float64)  # MultiBench casts them with astype(int)
        np.save(root / "image" / f"{split}_data.npy", image)
        np.save(root / "audio" / f"{split}_data.npy", audio)
        np.save(root / f"{split}_labels.npy", labels)
        written[split] = (image, audio, labels)
    return written


def test_avmnist_folder_reads_each_split_with_images_reshaped(tmp_path):
    written = _avmnist(tmp_path / "avmnist")
    assert detect_format(tmp_path / "avmnist") == "npy-folder"
    splits = load_splits(str(tmp_path / "avmnist"))
    for ours, stored in (("train", "train"), ("val", "valid"), ("test", "test")):
        image, audio, labels = written[stored]
        data = splits[ours]
        assert data.specs["image"].kind == "image" and data.specs["image"].shape == (1, 28, 28)
        assert data.specs["audio"].kind == "image" and data.specs["audio"].shape == (1, 8, 5)  # as MultiBench's CNN takes it
        np.testing.assert_array_equal(data.inputs["image"].numpy().reshape(len(image), -1), image)
        np.testing.assert_array_equal(data.inputs["audio"].numpy()[:, 0], audio)
        assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.astype(int).tolist()
    # statistics come from train only: the per-pixel mean of the train images
    np.testing.assert_allclose(splits["test"].specs["image"].mean.numpy().reshape(-1), written["train"][0].mean(0), rtol=1e-5)
    # ids are stable and distinct across splits
    all_ids = torch.cat([splits[s].ids for s in splits])
    assert len(set(all_ids.tolist())) == len(all_ids)


def test_avmnist_missing_split_modality_and_mismatched_rows(tmp_path):
    _avmnist(tmp_path / "a", valid=False)
    assert "no 'val' samples" in _error(load_splits, str(tmp_path / "a"))  # 12 rows: too few for MultiBench's 5,000
    assert len(load_dataset(str(tmp_path / "a"), "test")) == 6
    (tmp_path / "a" / "audio" / "test_data.npy").unlink()
    assert "audio/test_data.npy does not" in _error(load_dataset, str(tmp_path / "a"))
    _avmnist(tmp_path / "b")
    np.save(tmp_path / "b" / "audio" / "train_data.npy", np.zeros((11, 8, 5), np.float32))
    assert "has 11 samples" in _error(load_dataset, str(tmp_path / "b"))


def test_avmnist_corrupt_or_pickled_npy_is_refused(tmp_path):
    _avmnist(tmp_path / "a")
    (tmp_path / "a" / "image" / "test_data.npy").write_bytes(b"\x93NUMPY garbage")
    assert "not a readable .npy" in _error(load_dataset, str(tmp_path / "a"))
    _avmnist(tmp_path / "b")
    np.save(tmp_path / "b" / "test_labels.npy", np.array([{"x": 1}] * 6, dtype=object), allow_pickle=True)
    assert "without pickled objects" in _error(load_dataset, str(tmp_path / "b"))


# --------------------------------------------------------------------------- HDF5 and .csd


def test_flat_hdf5_reads_like_a_feature_file(tmp_path):
    rng = np.random.default_rng(1)
    vec, labels = rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 2
    split = np.array(["train"] * 10 + ["val"] * 5 + ["test"] * 5, dtype="S5")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["vec"], f["labels"], f["split"] = vec, labels, split
    data = load_dataset(str(tmp_path / "f.h5"), "test")
    np.testing.assert_array_equal(data.inputs["vec"].numpy(), vec[15:])
    np.testing.assert_allclose(data.specs["vec"].mean.numpy(), vec[:10].mean(0), rtol=1e-5)
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all" * 10)
    assert "not a readable HDF5 file" in _error(load_dataset, str(tmp_path / "bad.h5"))


def _write_csd(path, root, data: dict, metadata={"root name": "x", "dimension names": []}):
    """The SDK's write_CSD layout: <root>/data/<vid>/{features,intervals}, <root>/metadata/<key>."""
    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        d = g.create_group("data")
        for vid, features in data.items():
            v = d.create_group(vid)
            v.create_dataset("features", data=features)
            v.create_dataset("intervals", data=np.stack([np.arange(len(features)), np.arange(len(features)) + 1], 1).astype(float))
        m = g.create_group("metadata")
        for key, value in metadata.items():
            m.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            m[key][0] = json.dumps(value)


def _csd_folder(root, videos=("v1", "v2", "v3", "v4", "v5", "v6")):
    rng = np.random.default_rng(2)
    root.mkdir()
    covarep = {v: rng.normal(size=(2 + i, 3)) for i, v in enumerate(videos)}
    glove = {v: rng.normal(size=(4, 2)) for v in videos}
    labels = {v: np.array([[float(i) - 2.5]]) for i, v in enumerate(videos)}
    _write_csd(root / "covarep.csd", "COVAREP", covarep)
    _write_csd(root / "glove.csd", "glove_vectors", glove)
    _write_csd(root / "Opinion_Labels.csd", "Opinion Segment Labels", labels)
    return covarep, glove, labels


def test_csd_folder_aligns_by_video_pads_and_keeps_lengths(tmp_path):
    covarep, glove, labels = _csd_folder(tmp_path / "mosi")
    (tmp_path / "mosi" / "splits.json").write_text(json.dumps({"train": ["v1", "v3", "v5"], "valid": ["v2"], "test": ["v4", "v6"]}))
    assert detect_format(tmp_path / "mosi") == "csd"
    splits = load_splits(str(tmp_path / "mosi"))
    test = splits["test"]
    assert test.task == "regression" and test.labels.tolist() == [0.5, 2.5]
    assert test.specs["covarep"].shape == (7, 3)  # longest video v6 has 2 + 5 steps
    assert test.lengths["covarep"].tolist() == [5, 7]
    x = test.inputs["covarep"].numpy()
    np.testing.assert_allclose(x[0, :5], covarep["v4"], rtol=1e-6)
    assert (x[0, 5:] == 0).all()
    np.testing.assert_allclose(test.inputs["glove"].numpy()[1], glove["v6"], rtol=1e-6)
    assert splits["val"].lengths["covarep"].tolist() == [3]
    # a subset keeps each sample's length with it
    assert test.subset(torch.tensor([1])).lengths["covarep"].tolist() == [7]


def test_csd_video_ids_one_file_lacks_are_listed(tmp_path):
    _csd_folder(tmp_path / "m")
    rng = np.random.default_rng(3)
    _write_csd(tmp_path / "m" / "glove.csd", "glove", {v: rng.normal(size=(4, 2)) for v in ("v1", "v2", "v3")})
    message = _error(load_dataset, str(tmp_path / "m"))
    assert "3 video ids that glove.csd lacks: 'v4', 'v5', 'v6'" in message


def test_csd_bad_cases(tmp_path):
    _csd_folder(tmp_path / "m")
    (tmp_path / "m" / "splits.json").write_text(json.dumps({"train": ["v1", "v2", "v9"], "test": ["v3"]}))
    assert "names 1 video ids the .csd files lack: 'v9'" in _error(load_dataset, str(tmp_path / "m"))
    (tmp_path / "m" / "splits.json").write_text(json.dumps({"train": ["v1", "v2"], "test": ["v3"]}))
    assert "3 video ids are in no split" in _error(load_dataset, str(tmp_path / "m"))
    (tmp_path / "m" / "splits.json").unlink()
    with h5py.File(tmp_path / "m" / "glove.csd", "a") as f:  # ragged: intervals for fewer rows than features
        del f["glove_vectors/data/v2/intervals"]
        f["glove_vectors/data/v2/intervals"] = np.zeros((3, 2))
    assert "has 4 feature rows but intervals of shape (3, 2)" in _error(load_dataset, str(tmp_path / "m"))
    _csd_folder(tmp_path / "n")
    (tmp_path / "n" / "glove.csd").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    assert "not a readable HDF5 file" in _error(load_dataset, str(tmp_path / "n"))
    _csd_folder(tmp_path / "o")
    (tmp_path / "o" / "Opinion_Labels.csd").unlink()
    assert "exactly one .csd whose name contains 'label'" in _error(load_dataset, str(tmp_path / "o"))


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    _csd_folder(tmp_path / "m")
    import importlib.metadata

    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # `import h5py` now raises ImportError
    real_version = importlib.metadata.version

    def not_installed(name):  # and its distribution is not installed either
        if name == "h5py":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    message = _error(load_dataset, str(tmp_path / "m"))
    assert "needs the Python package 'h5py': pip install 'robustbench-mm[h5]'" in message


# --------------------------------------------------------------------------- MultiBench affect pickles


def _affect(n={"train": 8, "valid": 4, "test": 4}, t=5):
    rng = np.random.default_rng(4)
    out = {}
    for split, size in n.items():
        audio = rng.normal(size=(size, t, 3))
        audio[0, 0, 0] = -np.inf  # COVAREP's log of silence; MultiBench sets it to 0
        out[split] = {
            "vision": rng.normal(size=(size, t, 4)).astype(np.float32),
            "audio": audio,
            "text": rng.normal(size=(size, t, 6)).astype(np.float32),
            "labels": rng.uniform(-3, 3, size=(size, 1, 1)),
            "id": np.array([[f"vid{split}{i}", str(i)] for i in range(size)]),
        }
    return out


def test_affect_pickle_needs_trust_and_then_reads_every_split(tmp_path):
    written = _affect()
    with open(tmp_path / "mosi_raw.pkl", "wb") as f:
        pickle.dump(written, f)
    message = _error(load_dataset, str(tmp_path / "mosi_raw.pkl"))
    assert "can execute arbitrary code" in message and "--trust-data" in message
    splits = load_splits(str(tmp_path / "mosi_raw.pkl"), trust=True)
    test = splits["test"]
    assert test.task == "regression"
    np.testing.assert_allclose(test.labels.numpy(), written["test"]["labels"].reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(test.inputs["vision"].numpy(), written["test"]["vision"], rtol=1e-6)
    assert test.inputs["audio"][0, 0, 0].item() == 0.0
    assert splits["val"].specs["text"].kind == "sequence" and len(splits["val"]) == 4


def test_affect_pickle_bad_cases(tmp_path):
    bad = _affect()
    del bad["test"]["audio"]
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump(bad, f)
    assert "split 'test' has" in _error(load_dataset, str(tmp_path / "a.pkl"), trust=True)
    bad = _affect()
    bad["train"]["vision"] = bad["train"]["vision"][:5]
    with open(tmp_path / "b.pkl", "wb") as f:
        pickle.dump(bad, f)
    assert "differing sample counts" in _error(load_dataset, str(tmp_path / "b.pkl"), trust=True)
    bad = _affect()
    bad["train"]["vision"] = [np.zeros((5, 4)), np.zeros((3, 4))] * 4
    with open(tmp_path / "c.pkl", "wb") as f:
        pickle.dump(bad, f)
    assert "ragged" in _error(load_dataset, str(tmp_path / "c.pkl"), trust=True)
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(_affect())[:100])
    assert "not a readable pickle" in _error(load_dataset, str(tmp_path / "d.pkl"), trust=True)
    with open(tmp_path / "e.pkl", "wb") as f:
        pickle.dump({"train": _affect()["train"]}, f)
    assert "no 'test' samples" in _error(load_dataset, str(tmp_path / "e.pkl"), trust=True)
