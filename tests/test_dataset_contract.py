"""The dataset contract, enforced on every registered dataset (built-ins and any registered before
collection): what the engine, common random numbers and the report rely on of a split."""

from __future__ import annotations

import pytest
import torch

from robustbench_mm.datasets import DATASETS, load_splits
from robustbench_mm.domain import Task

CASES = [pytest.param(name, id=name) for name in DATASETS.names()]


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_splits(name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", CASES)
def test_train_val_test_share_one_shape_and_disjoint_ids(name, loaded):
    splits = loaded(name)
    assert set(splits) == {"train", "val", "test"}
    first = splits["train"]
    ids = [set(d.ids.tolist()) for d in splits.values()]
    assert all(len(s) == len(d) for s, d in zip(ids, splits.values())), "ids must be unique within a split"
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]), "a sample in two splits"
    for split, data in splits.items():
        assert data.split == split and data.task == first.task and data.num_classes == first.num_classes
        assert {m: (s.kind, s.shape) for m, s in data.specs.items()} == {m: (s.kind, s.shape) for m, s in first.specs.items()}
        assert data.ids.dtype == torch.int64


@pytest.mark.parametrize("name", CASES)
def test_labels_inputs_and_the_fingerprint_are_what_the_engine_expects(name, loaded):
    test = loaded(name)["test"]
    if test.task == Task.CLASSIFICATION:
        assert test.labels.dtype == torch.int64 and int(test.labels.min()) >= 0 and int(test.labels.max()) < test.num_classes
    for m, x in test.inputs.items():
        assert tuple(x.shape[1:]) == test.specs[m].shape and bool(torch.isfinite(x.float()).all()), m
    again = load_splits(name)["test"]
    assert again.fingerprint() == test.fingerprint(), "loading twice must give the same data"
    assert test.subset(torch.arange(len(test))[::2]).fingerprint() != test.fingerprint()
