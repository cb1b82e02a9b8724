"""Common random numbers: exact hashing, batch independence, and the distributions they claim."""

import numpy as np
import torch
from scipy import stats

from robustbench_mm.corruptions.rng import SampleRandom, hash32, key32


def _lowbias32_reference(x: int) -> int:
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def test_hash_matches_pure_python_bit_for_bit():
    xs = torch.randint(0, 2**32, (2000,), dtype=torch.int64, generator=torch.Generator().manual_seed(0))
    xs = torch.cat([xs, torch.tensor([0, 1, 2**32 - 1, 2**31, 2**31 - 1])])
    assert [int(v) for v in hash32(xs)] == [_lowbias32_reference(int(v)) for v in xs]


def test_sample_values_do_not_depend_on_the_batch_they_are_in():
    ids = torch.tensor([3, 900, 5, 2**40 + 7, 11])
    together = SampleRandom(ids, seed=1, key="gaussian|pix").normal(4, 5)
    for i in range(len(ids)):
        alone = SampleRandom(ids[i : i + 1], seed=1, key="gaussian|pix").normal(4, 5)
        assert torch.equal(alone[0], together[i])
    shuffled = SampleRandom(ids.flip(0), seed=1, key="gaussian|pix").normal(4, 5)
    assert torch.equal(shuffled.flip(0), together)


def test_seed_key_and_stream_each_change_the_draw():
    ids = torch.arange(8)
    base = SampleRandom(ids, 0, "a")
    first, second = base.uniform(16), base.uniform(16)
    assert not torch.equal(first, second)
    assert not torch.equal(first, SampleRandom(ids, 1, "a").uniform(16))
    assert not torch.equal(first, SampleRandom(ids, 0, "b").uniform(16))
    assert torch.equal(first, SampleRandom(ids, 0, "a").uniform(16))
    assert key32(0, "a") != key32(0, "b")


def test_uniform_and_normal_follow_their_distributions():
    rng = SampleRandom(torch.arange(200), 0, "dist")
    u = rng.uniform(500).flatten().double().numpy()
    z = rng.normal(501).flatten().double().numpy()
    assert 0.0 < u.min() and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # neighbouring samples and neighbouring elements are uncorrelated
    grid = rng.normal(64).numpy()
    assert abs(np.corrcoef(grid[:-1].ravel(), grid[1:].ravel())[0, 1]) < 0.05
    assert abs(np.corrcoef(grid[:, :-1].ravel(), grid[:, 1:].ravel())[0, 1]) < 0.05


def test_integers_bernoulli_and_sample_mask():
    rng = SampleRandom(torch.arange(4000), 0, "discrete")
    k = rng.integers(7, 3)
    assert k.min() == 0 and k.max() == 6
    counts = np.bincount(k.flatten().numpy(), minlength=7)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert abs(rng.bernoulli(0.3, 10).float().mean().item() - 0.3) < 0.01
    mask = rng.sample_mask(0.25)
    assert mask.shape == (4000,) and abs(mask.float().mean().item() - 0.25) < 0.03
    assert rng.sample_mask(1.0).all()
