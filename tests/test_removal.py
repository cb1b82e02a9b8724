"""apply_condition: removal fills and presence, rates, conflict donors, common random numbers."""

from __future__ import annotations

import pytest
import torch

from robustbench_mm.corruptions import (
    CLEAN, Condition, DonorPool, affected_mask, apply_condition, removal_subsets,
)
from robustbench_mm.datasets import ModalitySpec, MultimodalData
from robustbench_mm.errors import InputError



def _data(n: int = 40, task: str = "classification") -> MultimodalData:
    g = torch.Generator().manual_seed(0)
    specs = {
        "vec": ModalitySpec("vec", "vector", (5,), mean=torch.arange(5.0), std=torch.full((5,), 2.0)),
        "img": ModalitySpec("img", "image", (1, 6, 5), mean=torch.full((1, 6, 5), 0.4),
                            std=torch.full((1, 6, 5), 0.1), value_range=(0.0, 1.0)),
        "tok": ModalitySpec("tok", "tokens", (8,), vocab_size=20),
    }
    labels = torch.arange(n) % 4 if task == "classification" else torch.rand(n, generator=g)
    return MultimodalData(
        name="toy", split="test", specs=specs,
        inputs={"vec": torch.randn(n, 5, generator=g), "img": torch.rand(n, 1, 6, 5, generator=g),
                "tok": torch.randint(2, 20, (n, 8), generator=g)},
        labels=labels, ids=torch.arange(n) * 3 + 11, task=task, num_classes=4 if task == "classification" else None,
    )


def _run(data, cond, batch_size, seed=0):
    pool = DonorPool.from_data(data)
    outs = [apply_condition(b, cond, data.specs, seed, pool) for b in data.batches(batch_size)]
    return {m: torch.cat([o.inputs[m] for o in outs]) for m in data.specs}, {
        m: torch.cat([o.present[m] for o in outs]) for m in data.specs
    }


def test_clean_returns_the_batch_unchanged():
    data = _data()
    batch = next(data.batches(8))
    assert apply_condition(batch, CLEAN, data.specs, 0) is batch


@pytest.mark.parametrize("fill", ["zero", "mean", "noise", "mask"])
def test_removal_fills_and_marks_absent(fill):
    data = _data()
    batch = next(data.batches(40))
    before = {m: v.clone() for m, v in batch.inputs.items()}
    out = apply_condition(batch, Condition("removal", fill, ("vec", "tok")), data.specs, 0)
    assert all(torch.equal(batch.inputs[m], before[m]) for m in before), "input batch mutated"
    assert not out.present["vec"].any() and not out.present["tok"].any() and out.present["img"].all()
    assert torch.equal(out.inputs["tok"], torch.zeros_like(before["tok"])), "tokens are removed to PAD"
    assert torch.equal(out.inputs["img"], before["img"])
    vec = out.inputs["vec"]
    if fill in ("zero", "mask"):
        assert torch.equal(vec, torch.zeros_like(vec))
    elif fill == "mean":
        assert torch.equal(vec, torch.arange(5.0).expand(40, 5))
    else:
        assert vec.mean(0).sub(torch.arange(5.0)).abs().max() < 1.2  # 40 draws of sd 2: se ~0.32
        assert 1.4 < float(vec.std(0).mean()) < 2.6


def test_noise_fill_stays_in_range_and_mean_fill_needs_statistics():
    data = _data()
    batch = next(data.batches(40))
    out = apply_condition(batch, Condition("removal", "noise", ("img",)), data.specs, 0)
    assert out.inputs["img"].min() >= 0 and out.inputs["img"].max() <= 1
    bare = dict(data.specs, vec=ModalitySpec("vec", "vector", (5,)))
    with pytest.raises(InputError, match="needs train statistics for modality 'vec'"):
        apply_condition(batch, Condition("removal", "mean", ("vec",)), bare, 0)
    with pytest.raises(InputError, match="unknown removal fill 'blank'; expected one of: mask, mean, noise, zero"):
        apply_condition(batch, Condition("removal", "blank", ("vec",)), data.specs, 0)


def test_missing_rate_masks_are_per_sample_nested_and_leave_others_bit_identical():
    data = _data(400)
    batch = next(data.batches(400))
    masks = [affected_mask(batch.ids, Condition("removal", "zero", ("vec",), rate=r), 0) for r in (0.1, 0.3, 0.5, 0.9)]
    for small, big in zip(masks, masks[1:]):
        assert bool((small <= big).all()), "samples missing at a lower rate stay missing at a higher one"
    assert abs(float(masks[2].float().mean()) - 0.5) < 0.08
    out = apply_condition(batch, Condition("removal", "zero", ("vec",), rate=0.5), data.specs, 0)
    assert torch.equal(~out.present["vec"], masks[2])
    assert torch.equal(out.inputs["vec"][~masks[2]], batch.inputs["vec"][~masks[2]])
    assert torch.equal(out.inputs["vec"][masks[2]], torch.zeros_like(out.inputs["vec"][masks[2]]))


@pytest.mark.parametrize(
    "cond",
    [
        Condition("corruption", "gaussian_noise", ("vec", "img"), level=3, rate=0.5),
        Condition("corruption", "blank", ("tok",), level=2),
        Condition("removal", "noise", ("img",), rate=0.3),
        Condition("conflict", "conflict", ("vec", "tok"), rate=0.7),
    ],
    ids=lambda c: c.key,
)
def test_common_random_numbers_across_batch_sizes(cond):
    data = _data(37)
    whole, present = _run(data, cond, 37)
    for size in (1, 5, 16):
        parts, pres = _run(data, cond, size)
        assert all(torch.equal(parts[m], whole[m]) for m in whole)
        assert all(torch.equal(pres[m], present[m]) for m in present)
    other, _ = _run(data, cond, 37, seed=1)
    assert any(not torch.equal(other[m], whole[m]) for m in cond.modalities), "the seed must matter"


def test_corruption_noise_is_shared_across_levels():
    data = _data()
    batch = next(data.batches(40))
    one = apply_condition(batch, Condition("corruption", "gaussian_noise", ("vec",), level=1), data.specs, 0)
    two = apply_condition(batch, Condition("corruption", "gaussian_noise", ("vec",), param=0.5), data.specs, 0)
    x = batch.inputs["vec"]
    assert torch.allclose(two.inputs["vec"] - x, 2 * (one.inputs["vec"] - x), atol=1e-5)


def test_conflict_takes_a_different_class_donor_deterministically():
    data = _data(40)
    batch = next(data.batches(40))
    cond = Condition("conflict", "conflict", ("vec", "img"))
    out = apply_condition(batch, cond, data.specs, 0, DonorPool.from_data(data))
    donor_rows = [int((data.inputs["vec"] == row).all(1).nonzero()[0]) for row in out.inputs["vec"]]
    donor_rows_img = [int((data.inputs["img"] == im).flatten(1).all(1).nonzero()[0]) for im in out.inputs["img"]]
    assert donor_rows == donor_rows_img, "one donor per sample for all conflicting modalities"
    assert all(int(data.labels[d]) != int(y) for d, y in zip(donor_rows, batch.labels))
    assert len(set(donor_rows)) > 10, "donors are spread over the pool"
    assert torch.equal(out.inputs["tok"], batch.inputs["tok"]) and out.present["vec"].all()
    with pytest.raises(InputError, match="needs a donor pool"):
        apply_condition(batch, cond, data.specs, 0)


def test_conflict_for_regression_never_picks_the_sample_itself():
    data = _data(30, task="regression")
    pool = DonorPool.from_data(data)
    from robustbench_mm.corruptions import SampleRandom

    for seed in range(20):
        idx = pool.donors(data.ids, data.labels, SampleRandom(data.ids, seed, "d"))
        assert bool((pool.ids[idx] != data.ids).all())


def test_removal_subsets():
    assert removal_subsets(["a", "b", "c"]) == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    assert removal_subsets(["a", "b", "c"], "leave-one-out") == [("a",), ("b",), ("c",)]
    assert removal_subsets(["a", "b", "c"], "keep-one") == [("b", "c"), ("a", "c"), ("a", "b")]
    with pytest.raises(InputError, match="at least 2 modalities"):
        removal_subsets(["a"])
    with pytest.raises(InputError, match="expected one of: all, keep-one, leave-one-out"):
        removal_subsets(["a", "b"], "every")


def test_bad_conditions_are_one_line_errors():
    data = _data()
    batch = next(data.batches(8))
    with pytest.raises(InputError, match="unknown condition family 'noise'"):
        apply_condition(batch, Condition("noise", "x", ("vec",)), data.specs, 0)
    with pytest.raises(InputError, match="rate 1.5 out of range"):
        apply_condition(batch, Condition("removal", "zero", ("vec",), rate=1.5), data.specs, 0)
    with pytest.raises(InputError, match="level 6 out of range"):
        apply_condition(batch, Condition("corruption", "gaussian_noise", ("vec",), level=6), data.specs, 0)
