"""The metric contract, enforced on every registered metric (built-ins and any a test or plug-in adds).

A metric's compute function takes sample weights because one function serves the cell's value
(a row of ones), the paired bootstrap (multiplicities) and the jackknife (leave-a-group-out
masks). That only gives honest intervals if a weight means what it says: a sample of weight w
counts as w copies of it. Each rule below is checked for every metric of both tasks.
"""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_mm.domain import Task
from robustbench_mm.metrics import (
    JACKKNIFE_GROUPS, METRICS, SE_SUFFIX, LeaveOneGroupOut, cell_metrics, cell_standard_errors, resampled_metric,
)

K = 4
N = 60


def _record(task: Task, seed: int) -> dict[str, np.ndarray]:
    """A record of `task` with the fields `results.RECORD_FIELDS` names, values in their ranges."""
    rng = np.random.default_rng(seed)
    if task == Task.REGRESSION:
        target = rng.normal(size=N).astype(np.float32)
        return {"ids": np.arange(N), "target": target, "output": (target + rng.normal(0, 0.7, N)).astype(np.float32),
                "affected": np.ones(N, bool)}
    target = rng.integers(0, K, N)
    logits = rng.normal(size=(N, K))
    logits[np.arange(N), target] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {
        "ids": np.arange(N), "target": target, "pred": p.argmax(1), "conf": p.max(1).astype(np.float32),
        "p_true": p[np.arange(N), target].astype(np.float32), "sq_prob": (p**2).sum(1).astype(np.float32),
        "entropy": (-(p * np.log(p)).sum(1)).astype(np.float32), "affected": np.ones(N, bool),
    }


def _rows(record: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in record.items()}


CASES = [pytest.param(name, spec.task, id=name) for name, spec in METRICS.items()]


@pytest.mark.parametrize("name,task", CASES)
def test_one_value_per_weight_row_and_ones_give_the_cell_value(name, task):
    record = _record(task, 0)
    weights = np.random.default_rng(1).integers(0, 3, (7, N)).astype(np.float64)
    weights[0] = 1.0
    values = resampled_metric(record, name, task, K, weights)
    assert values.shape == (7,)
    assert values[0] == pytest.approx(cell_metrics(record, task, K)[name], nan_ok=True, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name,task", CASES)
def test_a_weight_counts_as_that_many_copies_of_the_sample(name, task):
    """The bootstrap's meaning of a weight: the metric under multiplicities w is the metric of the
    record with sample i repeated w_i times (zero weight: left out)."""
    record = _record(task, 2)
    rng = np.random.default_rng(3)
    for _ in range(5):
        w = rng.integers(0, 4, N)
        w[rng.integers(0, N)] = 1  # at least one sample
        weighted = resampled_metric(record, name, task, K, w[None, :].astype(np.float64))[0]
        repeated = cell_metrics(_rows(record, np.repeat(np.arange(N), w)), task, K)[name]
        assert weighted == pytest.approx(repeated, rel=1e-9, abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("name,task", CASES)
def test_the_order_of_samples_does_not_matter(name, task):
    record = _record(task, 4)
    order = np.random.default_rng(5).permutation(N)
    assert cell_metrics(_rows(record, order), task, K)[name] == pytest.approx(
        cell_metrics(record, task, K)[name], rel=1e-9, abs=1e-12, nan_ok=True)


# confidence scores the probabilities' sharpness and ECE their fit to accuracy, not correctness
CORRECTNESS_CASES = [c for c in CASES if c.values[0] not in ("confidence", "ece")]


@pytest.mark.parametrize("name,task", CORRECTNESS_CASES)
def test_a_perfect_prediction_is_at_least_as_good_as_a_noisy_one(name, task):
    """The declared direction is the metric's: predicting the target exactly is never worse."""
    record = _record(task, 6)
    perfect = dict(record)
    if task == Task.REGRESSION:
        perfect["output"] = record["target"].copy()
    else:
        one_hot = np.eye(K)[record["target"]]
        p = 0.97 * one_hot + 0.03 / K
        perfect.update(pred=record["target"].copy(), conf=p.max(1).astype(np.float32),
                       p_true=p[np.arange(N), record["target"]].astype(np.float32),
                       sq_prob=(p**2).sum(1).astype(np.float32), entropy=(-(p * np.log(p)).sum(1)).astype(np.float32))
    good, noisy = cell_metrics(perfect, task, K)[name], cell_metrics(record, task, K)[name]
    assert (good >= noisy) if METRICS[name].higher_is_better else (good <= noisy), (good, noisy)


def _dense_jackknife_se(record, name, task, groups) -> float:
    """The jackknife as it was computed before the group sums: one dense leave-a-group-out mask per
    row, through the metric's dense weight path (the definition the group sums must reproduce)."""
    n = len(record["target"])
    member = np.arange(n) % groups
    masks = (member[None, :] != np.arange(groups)[:, None]).astype(np.float64)
    theta = resampled_metric(record, name, task, K, masks)
    return float(np.sqrt((groups - 1) / groups * np.sum((theta - theta.mean()) ** 2)))


@pytest.mark.parametrize("name,task", CASES)
@pytest.mark.parametrize("n", [N, 2500])
def test_the_group_sum_jackknife_gives_the_dense_masks_standard_error(name, task, n):
    """`cell_standard_errors` takes totals minus group sums (LeaveOneGroupOut) instead of G dense
    masks: the same sums added in another order, so the SEs agree to rounding (1e-12), not bit
    for bit. n = 2500 covers groups of several samples (G = 1000), n = 60 leave-one-out."""
    rng = np.random.default_rng(7)
    record = _rows(_record(task, 8), rng.integers(0, N, n))
    groups = min(n, JACKKNIFE_GROUPS)
    fast = cell_standard_errors(record, task, K)[name + SE_SUFFIX]
    assert fast == pytest.approx(_dense_jackknife_se(record, name, task, groups), rel=1e-12, abs=1e-12, nan_ok=True)


def test_leave_one_group_out_is_the_dense_mask_matrix():
    """What a metric that needs more than `w @ x` and `w.sum(axis=1)` sees through np.asarray."""
    w = LeaveOneGroupOut(7, 3)
    dense = np.asarray(w)
    assert dense.shape == (3, 7) and np.array_equal(dense[1], [1, 0, 1, 1, 0, 1, 1])
    x = np.arange(14.0).reshape(7, 2)
    assert np.array_equal(w @ x, dense @ x) and np.array_equal(w.sum(axis=1), dense.sum(axis=1))


def test_row_sums_are_remembered_only_for_read_only_weights():
    """A shared (read-only) weight matrix is summed once; a writeable one may change, so its sums
    are recomputed: weighted means must follow an edited matrix."""
    from robustbench_mm.metrics import row_sums, weighted_mean

    w = np.ones((2, 4))
    assert np.array_equal(weighted_mean(w, np.arange(4.0)), [1.5, 1.5])
    w[1] = [0, 0, 0, 2]
    assert np.array_equal(weighted_mean(w, np.arange(4.0)), [1.5, 3.0])
    shared = np.array([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    shared.flags.writeable = False
    assert row_sums(shared) is row_sums(shared) and np.array_equal(row_sums(shared), [2, 2])
