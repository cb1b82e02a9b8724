"""Issue 24, load: memory of an evaluation must not grow with the number of samples beyond the
records themselves. The jackknife standard errors of a cell (every cell of every run computes
them) were the largest transient allocation: their weight block grew to 32 MiB as n passed 4,194,
which set the peak RSS of a streamed evaluation (+62 MiB between 2,500 and 20,000 images, measured
with benchmarks/media_rss.py's method in docs/faults.md). The jackknife now works from group sums
(`metrics.LeaveOneGroupOut`): no (groups, n) weight matrix at all, so what remains grows with n
only as the records' own (n, K) designs do (macro-F1 and ECE one-hot the classes)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from robustbench_mm.metrics import cell_metrics, cell_standard_errors


def _record(n: int, classes: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.integers(0, classes, n)
    conf = rng.uniform(0.1, 1.0, n).astype(np.float32)
    return {"ids": np.arange(n), "target": target, "pred": np.where(rng.uniform(size=n) < 0.7, target, (target + 1) % classes),
            "conf": conf, "p_true": conf * 0.9, "sq_prob": conf**2, "entropy": 1 - conf, "affected": np.ones(n, bool)}


def _peak_mib(n: int) -> float:
    record = _record(n)
    tracemalloc.start()
    try:
        cell_metrics(record, "classification", 10)
        cell_standard_errors(record, "classification", 10)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_the_metrics_of_a_cell_take_memory_in_proportion_to_the_record_not_to_a_weight_matrix():
    small, large = _peak_mib(2_500), _peak_mib(20_000)
    per_sample = (large - small) * 2**20 / (20_000 - 2_500)
    # a few (n, K) float64 designs at K = 10 classes: 80 bytes each per sample; a dense (1000, n)
    # jackknife block would be 8,000 bytes per sample (at a 2**22 block the peaks were 41 and 68 MiB)
    assert large < 16 and per_sample < 8 * 80, (small, large, per_sample)
