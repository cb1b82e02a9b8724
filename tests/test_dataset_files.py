"""Feature files (.npz / .pt) and module:factory datasets: kinds, splits, statistics, bad input."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from robustbench_mm.datasets.files import load_factory_splits, load_file_splits, parse_kind_overrides
from robustbench_mm.datasets.splits import stratified_split, train_stats
from robustbench_mm.errors import InputError


def _arrays(n: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "vec": rng.normal(size=(n, 5)).astype(np.float32),
        "seq": rng.normal(size=(n, 7, 3)).astype(np.float32),
        "img": rng.uniform(size=(n, 2, 4, 3)).astype(np.float32),
        "txt": rng.integers(0, 20, size=(n, 9)),
        "wave": rng.uniform(-1, 1, size=(n, 32)).astype(np.float32),
        "labels": np.repeat(np.arange(3), n // 3).astype(np.int64),
    }


def _save(tmp_path, arrays, name="feats.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# ----------------------------------------------------------------------------- kinds and round trip


def test_kinds_are_inferred_from_shape_and_dtype_and_overridable(tmp_path):
    path = _save(tmp_path, _arrays())
    data = load_file_splits(path, kinds={"wave": "audio"})["all"]
    kinds = {m: s.kind for m, s in data.specs.items()}
    assert kinds == {"vec": "vector", "seq": "sequence", "img": "image", "txt": "tokens", "wave": "audio"}
    assert data.specs["img"].shape == (2, 4, 3)
    assert data.specs["txt"].vocab_size == int(_arrays()["txt"].max()) + 1
    assert data.specs["wave"].value_range == (-1.0, 1.0)
    assert data.specs["img"].value_range == (0.0, 1.0)
    assert data.inputs["txt"].dtype == torch.int64 and data.inputs["vec"].dtype == torch.float32
    without = load_file_splits(path)["all"]
    assert without.specs["wave"].kind == "vector"


def test_a_3d_array_declared_image_gets_a_channel_axis(tmp_path):
    arrays = {"gray": np.zeros((6, 4, 5), np.float32), "labels": np.arange(6) % 2}
    data = load_file_splits(_save(tmp_path, arrays), kinds={"gray": "image"})["all"]
    assert data.specs["gray"].shape == (1, 4, 5)


def test_npz_round_trip_keeps_values_labels_and_ids(tmp_path):
    arrays = _arrays()
    arrays["ids"] = np.arange(100, 160)
    data = load_file_splits(_save(tmp_path, arrays))["all"]
    assert set(data.modalities) == {"vec", "seq", "img", "txt", "wave"}
    np.testing.assert_array_equal(data.inputs["seq"].numpy(), arrays["seq"])
    np.testing.assert_array_equal(data.inputs["txt"].numpy(), arrays["txt"])
    np.testing.assert_array_equal(data.labels.numpy(), arrays["labels"])
    np.testing.assert_array_equal(data.ids.numpy(), np.arange(100, 160))
    assert data.task == "classification" and data.num_classes == 3 and data.labels.dtype == torch.int64


def test_without_split_the_whole_file_is_the_evaluation_set_with_its_own_stats(tmp_path):
    arrays = _arrays()
    splits = load_file_splits(_save(tmp_path, arrays))
    assert list(splits) == ["all"] and len(splits["all"]) == 60
    spec = splits["all"].specs["vec"]
    np.testing.assert_allclose(spec.mean.numpy(), arrays["vec"].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(spec.std.numpy(), arrays["vec"].astype(np.float64).std(0), rtol=1e-6)


@pytest.mark.parametrize("as_strings", [True, False])
def test_split_array_selects_splits_and_stats_come_from_train(tmp_path, as_strings):
    arrays = _arrays()
    codes = np.arange(60) % 5 % 3  # 0,1,2,0,1 repeating: 24 train, 24 val, 12 test
    arrays["split"] = np.array(["train", "val", "test"])[codes] if as_strings else codes
    splits = load_file_splits(_save(tmp_path, arrays), kinds={"wave": "audio"})
    for code, name in enumerate(["train", "val", "test"]):
        np.testing.assert_array_equal(splits[name].ids.numpy(), np.flatnonzero(codes == code))
    train = codes == 0
    seq = arrays["seq"][train].astype(np.float64)
    wave = arrays["wave"][train].astype(np.float64)
    img = arrays["img"][train].astype(np.float64)
    for name in ["train", "val", "test"]:
        specs = splits[name].specs
        np.testing.assert_allclose(specs["seq"].mean.numpy(), seq.reshape(-1, 3).mean(0), rtol=1e-5)
        np.testing.assert_allclose(specs["seq"].std.numpy(), seq.reshape(-1, 3).std(0), rtol=1e-5)
        np.testing.assert_allclose(specs["img"].std.numpy(), img.std(0), rtol=1e-5)
        assert specs["wave"].mean.shape == () and specs["wave"].std.shape == ()
        np.testing.assert_allclose(float(specs["vec"].mean[0]), arrays["vec"][train, 0].astype(np.float64).mean(), rtol=1e-5)
        np.testing.assert_allclose(float(specs["wave"].std), wave.std(), rtol=1e-5)
        assert specs["txt"].mean is None


def test_seeded_split_of_a_file_without_split_is_stratified_disjoint_and_repeatable(tmp_path):
    path = _save(tmp_path, _arrays())
    first = load_file_splits(path, seed=3)
    again = load_file_splits(path, seed=3)
    other = load_file_splits(path, seed=4)
    ids = {s: set(d.ids.tolist()) for s, d in first.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert set().union(*ids.values()) == set(range(60))
    for s in first:
        assert torch.bincount(first[s].labels, minlength=3).tolist() == {"train": [12] * 3, "val": [4] * 3, "test": [4] * 3}[s]
        assert first[s].fingerprint() == again[s].fingerprint()
    assert first["train"].fingerprint() != other["train"].fingerprint()


def test_stratified_split_matches_an_independent_per_class_permutation():
    labels = np.repeat(np.arange(4), 25)
    rows = stratified_split(labels, seed=7, fractions=(0.6, 0.2, 0.2))
    rng = np.random.default_rng(7)
    expected = {"train": [], "val": [], "test": []}
    for c in range(4):
        perm = np.arange(25 * c, 25 * (c + 1))[rng.permutation(25)]
        expected["train"] += perm[:15].tolist()
        expected["val"] += perm[15:20].tolist()
        expected["test"] += perm[20:].tolist()
    for s in expected:
        assert rows[s].tolist() == sorted(expected[s])


def test_constant_feature_gets_unit_std():
    x = np.stack([np.full(10, 3.0), np.arange(10.0)], axis=1)
    mean, std = train_stats(x, "vector")
    assert std.tolist() == pytest.approx([1.0, float(np.arange(10.0).std())])
    assert mean.tolist() == pytest.approx([3.0, 4.5])


def test_float_labels_mean_regression(tmp_path):
    arrays = {"x": np.ones((8, 2), np.float32), "labels": np.linspace(0, 1, 8)}
    data = load_file_splits(_save(tmp_path, arrays))["all"]
    assert data.task == "regression" and data.num_classes is None and data.labels.dtype == torch.float32


def test_pt_dict_round_trip_with_list_split(tmp_path):
    arrays = _arrays()
    path = tmp_path / "feats.pt"
    payload = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    payload["split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    torch.save(payload, path)
    splits = load_file_splits(path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [40, 10, 10]
    np.testing.assert_array_equal(splits["test"].inputs["img"].numpy(), arrays["img"][50:])


# ----------------------------------------------------------------------------- module:factory

FACTORY_MODULE = """
import torch
from torch.utils.data import Dataset

class Toy(Dataset):
    def __init__(self, n, offset):
        self.n, self.offset = n, offset
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + i)
        return {"a": torch.randn(4, generator=g), "b": torch.randint(2, 9, (6,), generator=g), "label": (self.offset + i) % 2}

def with_split(split="test"):
    return Toy({"train": 20, "val": 6, "test": 8}[split], {"train": 0, "val": 100, "test": 200}[split])

def one_set():
    return Toy(10, 0)

def broken():
    raise RuntimeError("disk on fire")

def not_dicts():
    return [(1, 2)]

NOT_CALLABLE = 3
"""


@pytest.fixture
def factory_dir(tmp_path, monkeypatch):
    (tmp_path / "toyfactory.py").write_text(textwrap.dedent(FACTORY_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("toyfactory", None)


def test_factory_with_split_gives_three_splits_with_train_stats(factory_dir):
    splits = load_factory_splits("toyfactory:with_split")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20, 6, 8]
    assert splits["test"].specs["a"].kind == "vector" and splits["test"].specs["b"].kind == "tokens"
    train_a = np.stack([torch.randn(4, generator=torch.Generator().manual_seed(i)).numpy() for i in range(20)])
    np.testing.assert_allclose(splits["val"].specs["a"].mean.numpy(), train_a.astype(np.float64).mean(0), rtol=1e-5)
    assert splits["test"].labels.tolist() == [(200 + i) % 2 for i in range(8)]
    all_ids = torch.cat([splits[s].ids for s in splits]).tolist()
    assert len(set(all_ids)) == 34


def test_factory_without_split_is_one_evaluation_set(factory_dir):
    splits = load_factory_splits("toyfactory:one_set")
    assert list(splits) == ["all"] and splits["all"].ids.tolist() == list(range(10))


# ----------------------------------------------------------------------------- bad input


def test_missing_and_unreadable_files(tmp_path):
    assert "not found" in _error(load_file_splits, tmp_path / "nope.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    assert "garbage.npz" in _error(load_file_splits, garbage)
    good = tmp_path / "good.pt"
    torch.save({"x": torch.ones(4, 2), "labels": torch.zeros(4, dtype=torch.int64)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    assert "truncated.pt" in _error(load_file_splits, truncated)
    assert "expected .npz or .pt" in _error(load_file_splits, _save(tmp_path, _arrays(), "x.csv.npz").rename(tmp_path / "x.csv"))


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), labels=np.zeros(4, np.int64))
    assert "obj.npz" in _error(load_file_splits, path)
    pt = tmp_path / "obj.pt"
    torch.save({"x": torch.ones(2, 2), "labels": torch.zeros(2, dtype=torch.int64), "extra": _Custom()}, pt)
    assert "weights-only" in _error(load_file_splits, pt)


class _Custom:
    pass


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: a.pop("labels"), "no 'labels'"),
        (lambda a: a.update(vec=a["vec"][:50]), "'vec' has 50 samples but 'labels' has 60"),
        (lambda a: a["seq"].__setitem__((3, 2, 1), np.nan), "'seq' has 1 NaN/Inf"),
        (lambda a: a["vec"].__setitem__((slice(0, 2), 0), np.inf), "'vec' has 2 NaN/Inf"),
        (lambda a: a.update(flags=np.ones((60, 3), bool)), "'flags' has dtype bool"),
        (lambda a: a.update(vol=np.ones((60, 2, 2), np.int64)), "'vol' is a 3-D integer array"),
        (lambda a: a.update(labels=np.full(60, "cat")), "'labels' has shape (60,) and dtype <U3"),
        (lambda a: a.update(labels=-a["labels"] - 1), "negative class ids"),
        (lambda a: a.update(split=np.full(60, "training")), "'split' has value 'training'"),
        (lambda a: a.update(split=np.full(60, 3)), "outside 0/1/2"),
        (lambda a: a.update(ids=np.zeros(60, np.int64)), "'ids' must be 60 unique integers"),
        (lambda a: a.update(txt=-a["txt"] - 1), "negative token ids"),
    ],
)
def test_bad_arrays_name_the_field_and_the_expectation(tmp_path, change, expected):
    arrays = _arrays()
    change(arrays)
    message = _error(load_file_splits, _save(tmp_path, arrays))
    assert expected in message and "feats.npz" in message


@pytest.mark.parametrize(
    "kinds, expected",
    [
        ({"vec": "spectrogram"}, "unknown kind for modality 'vec'"),
        ({"nothere": "audio"}, "override for 'nothere', which is not a modality"),
        ({"vec": "sequence"}, "cannot be kind 'sequence'"),
        ({"vec": "tokens"}, "kind 'tokens' expects integer ids"),
    ],
)
def test_bad_kind_overrides(tmp_path, kinds, expected):
    assert expected in _error(load_file_splits, _save(tmp_path, _arrays()), kinds=kinds)


@pytest.mark.parametrize(
    "items, expected",
    [
        (["wave"], "expected NAME=KIND"),
        (["=audio"], "expected NAME=KIND"),
        (["wave=noise"], "unknown kind in --kind 'wave=noise'"),
        (["wave=audio", "wave=vector"], "two kinds"),
    ],
)
def test_parse_kind_overrides_rejects_malformed_items(items, expected):
    assert expected in _error(parse_kind_overrides, items)


def test_parse_kind_overrides_builds_the_mapping():
    assert parse_kind_overrides(["wave=audio", " txt = tokens "]) == {"wave": "audio", "txt": "tokens"}
    assert parse_kind_overrides(None) == {} and parse_kind_overrides([]) == {}


@pytest.mark.parametrize(
    "source, expected",
    [
        ("toyfactory:", "expected 'module:factory'"),
        ("no such:thing", "expected 'module:factory'"),
        ("missing_module_xyz:make", "cannot import module 'missing_module_xyz'"),
        ("toyfactory:absent", "has no attribute 'absent'"),
        ("toyfactory:NOT_CALLABLE", "is not callable"),
        ("toyfactory:broken", "the factory raised RuntimeError: disk on fire"),
        ("toyfactory:not_dicts", "sample 0 is a tuple"),
    ],
)
def test_bad_factories(factory_dir, source, expected):
    assert expected in _error(load_factory_splits, source)


# ----------------------------------------------------------------------------- fault cases (issue 11)


def test_task_override_turns_whole_number_floats_into_classes(tmp_path):
    arrays = _arrays()
    arrays["labels"] = arrays["labels"].astype(np.float64)  # 0.0, 1.0, 2.0: looks like regression
    path = _save(tmp_path, arrays)
    assert load_file_splits(path)["all"].task == "regression"
    data = load_file_splits(path, task="classification")["all"]
    assert data.task == "classification" and data.num_classes == 3 and data.labels.tolist() == arrays["labels"].tolist()
    ints = _save(tmp_path, _arrays(), "ints.npz")
    as_regression = load_file_splits(ints, task="regression")["all"]
    assert as_regression.task == "regression" and as_regression.labels.dtype == torch.float32
    arrays["labels"][0] = 0.5
    assert "not whole numbers" in _error(load_file_splits, _save(tmp_path, arrays, "half.npz"), task="classification")


def test_a_file_without_split_is_evaluated_whole_as_split_all(tmp_path):
    from robustbench_mm.datasets import load_dataset

    path = _save(tmp_path, _arrays())
    for split in ("test", "all"):
        data = load_dataset(str(path), split)
        assert data.split == "all" and len(data) == 60
    assert "no 'split' array" in _error(load_dataset, str(path), "train")


def test_zero_samples_is_one_error_without_numpy_warnings(tmp_path):
    import warnings

    arrays = {k: v[:0] for k, v in _arrays().items()}
    path = _save(tmp_path, arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (mean of empty slice) would fail here
        assert "zero samples" in _error(load_file_splits, path)
        assert "zero samples" in _error(load_file_splits, path, seed=0)
