"""Common random numbers: exact hashing, batch independence, and the distributions they claim."""

import numpy as np
import pytest
import torch
from scipy import stats

from robustbench_mm.corruptions import rng as rng_module
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
    as_int32 = torch.where(xs >= 2**31, xs - 2**32, xs).to(torch.int32)
    hashed = hash32(as_int32).to(torch.int64) & 0xFFFFFFFF
    assert [int(v) for v in hashed] == [_lowbias32_reference(int(v)) for v in xs]


def test_values_do_not_depend_on_how_the_block_is_chunked(monkeypatch):
    """CPU draws run in cache-sized chunks; any chunking, even ragged ones, gives the same bits."""
    ids = torch.arange(13) * 7919
    whole = SampleRandom(ids, 3, "chunks")
    expected = [whole.normal(3, 17, 19), whole.uniform(5000, dtype=torch.float64), whole.uniform(2, 3)]
    for chunk in (61, 97, 5000, 2**12):
        monkeypatch.setattr(rng_module, "_CPU_CHUNK", chunk)
        again = SampleRandom(ids, 3, "chunks")
        got = [again.normal(3, 17, 19), again.uniform(5000, dtype=torch.float64), again.uniform(2, 3)]
        assert all(torch.equal(a, b) for a, b in zip(expected, got)), chunk


def test_combine_sees_exactly_the_draws_under_any_chunking(monkeypatch):
    """`combine` hands over the very values normal()/uniform() return, with the matching x chunks."""
    ids = torch.arange(9) * 31
    x = torch.rand(9, 4, 50, generator=torch.Generator().manual_seed(1))
    scale = torch.linspace(0.5, 2.0, 50)  # broadcast operand, sliced along with x

    def add_scaled(values, xc, sc):
        values.mul_(sc).add_(xc)

    expected_normal = SampleRandom(ids, 5, "k").normal(4, 50) * scale + x
    expected_uniform = SampleRandom(ids, 5, "k").uniform(4, 50, dtype=torch.float64)
    for chunk in (2**19, 7, 64, 333):
        monkeypatch.setattr(rng_module, "_CPU_CHUNK", chunk)
        assert torch.equal(SampleRandom(ids, 5, "k").combine("normal", add_scaled, x, scale), expected_normal), chunk
        got = SampleRandom(ids, 5, "k").combine("uniform", lambda v, xc: None, x.double())
        assert torch.equal(got, expected_uniform), chunk


def test_combine_rejects_unknown_distributions_and_mismatched_batches():
    rng = SampleRandom(torch.arange(3), 0, "k")
    with pytest.raises(ValueError, match="distribution must be one of"):
        rng.combine("poisson", lambda v, xc: None, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x has 4 samples"):
        rng.combine("normal", lambda v, xc: None, torch.zeros(4, 2))


def test_low_precision_uniforms_stay_inside_the_open_interval():
    for dtype in (torch.float16, torch.bfloat16):
        u = SampleRandom(torch.arange(400), 0, "half").uniform(4000, dtype=dtype)
        assert u.dtype == dtype and 0 < u.min() and u.max() < 1


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
    z64 = rng.normal(501, dtype=torch.float64).flatten().numpy()
    assert stats.kstest(z64, "norm").pvalue > 1e-3
    assert stats.kstest(rng.uniform(500, dtype=torch.float64).flatten().numpy(), "uniform").pvalue > 1e-3
    # the tails are there: about 2 * 0.00135 of the draws beyond 3 sigma, 6.3e-5 beyond 4
    big = rng.normal(10_000).flatten().numpy()
    assert 0.0022 < np.mean(np.abs(big) > 3) < 0.0032 and 2e-5 < np.mean(np.abs(big) > 4) < 1.3e-4
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_uniform_streams_are_the_successive_uniform_draws(dtype):
    """`uniform_streams` (one pass over several streams) must give each size exactly what `uniform` would."""
    ids = torch.tensor([0, 5, 2**40 + 3, 77])
    sizes = (1, 6, 0, 5, 90_000)
    one, many = SampleRandom(ids, 3, "x"), SampleRandom(ids, 3, "x")
    one.normal(4), many.normal(4)  # start past stream 0
    expected = torch.cat([one.uniform(size, dtype=dtype) for size in sizes], dim=1)
    got = many.uniform_streams(sizes, dtype)
    assert got.shape == (4, sum(sizes)) and torch.equal(expected, got)
    assert torch.equal(one.uniform(3), many.uniform(3))  # the same streams consumed



def test_cached_salts_follow_the_formula_for_every_generator():
    """Small draws share their salts through a cache (a fresh generator per condition repeats
    them): each element i of stream s must still be salted by lowbias32(lowbias32(i + s * golden) ^ s),
    for the generator that filled the cache and for the next one that reads it."""
    ids = torch.tensor([0, 9, 2**33 + 1])
    mask = 0xFFFFFFFF
    for _ in range(2):
        rng = SampleRandom(ids, 4, "salt-cache")
        draws = [rng.uniform(5, dtype=torch.float64), rng.uniform(3, dtype=torch.float64)]
        for stream, u in enumerate(draws):
            for b, key in enumerate(rng.keys.tolist()):
                for i in range(u.shape[1]):
                    salt = _lowbias32_reference(_lowbias32_reference((i + stream * 0x9E3779B9) & mask) ^ stream)
                    bits = _lowbias32_reference((key & mask) ^ salt)
                    signed = bits - 2**32 if bits >= 2**31 else bits
                    assert u[b, i].item() == (signed + 2**31 + 0.5) * 2**-32, (stream, b, i)
