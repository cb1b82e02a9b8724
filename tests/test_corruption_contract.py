"""The corruption contract, enforced on every registered corruption (built-ins and plug-ins).

Each property below is one rule of the contract; the last block holds regression tests for the
MultiBench bugs named in the issue (each would fail on the buggy behaviour).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robustbench_mm.corruptions import Condition, SampleRandom, apply_condition, get_corruption, list_corruptions
from robustbench_mm.corruptions.plugins import example_input, load_plugins
from robustbench_mm.datasets import Batch, ModalitySpec
from robustbench_mm.errors import InputError


PLUGIN_DIR = Path(__file__).resolve().parents[1] / "corruptions"
load_plugins([str(PLUGIN_DIR)], entry_points=False)

CASES = [
    pytest.param(spec.name, kind, id=f"{spec.name}-{kind}")
    for spec in list_corruptions()
    for kind in spec.kinds
]
FEW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _setup(name: str, kind: str, dtype: torch.dtype = torch.float32):
    spec = get_corruption(name)
    x, mspec = example_input(kind, spec.check)
    if x.is_floating_point():
        x = x.to(dtype)
    return spec, x, mspec, torch.arange(1000, 1000 + x.shape[0])


def _run(spec, x, mspec, ids, level, seed, kind):
    return spec(x, spec.param(level, kind), SampleRandom(ids, seed, f"test|{spec.name}"), mspec)


def _distance(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean absolute change (fraction of changed ids for tokens)."""
    if not x.is_floating_point():
        return (y != x).double().flatten(1).mean(1)
    return (y.double() - x.double()).abs().flatten(1).mean(1)


def test_catalog_covers_the_issue():
    names = {s.name for s in list_corruptions()}
    wanted = {
        "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
        "motion_blur", "contrast", "brightness", "desaturate", "pixelate", "jpeg", "occlusion", "affine",
        "elastic", "white_noise", "pink_noise", "brown_noise", "clipping", "time_mask", "gain", "lowpass",
        "reverb", "blank", "replace", "swap", "truncate", "frame_dropout", "frame_freeze", "temporal_shift",
        "spikes", "feature_dropout", "scale_drift", "quantize", "rain",
    }
    assert wanted <= names
    for kind in ("image", "audio", "tokens", "sequence", "vector"):
        assert len(list_corruptions(kind)) >= 4


@pytest.mark.parametrize("name,kind", CASES)
@FEW
@given(seed=seeds)
def test_level_zero_is_identity(name, kind, seed):
    spec, x, mspec, ids = _setup(name, kind)
    assert torch.equal(_run(spec, x, mspec, ids, 0.0, seed, kind), x)
    raw = spec.fn(x, spec.param(0.0, kind), SampleRandom(ids, seed, "raw"), mspec)  # the declared identity is honest
    assert torch.allclose(raw.double(), x.double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,kind", CASES)
@FEW
@given(seed=seeds, level=st.floats(0.0, 5.0), double=st.booleans())
def test_shape_dtype_range_finite_and_no_mutation(name, kind, seed, level, double):
    spec, x, mspec, ids = _setup(name, kind, torch.float64 if double else torch.float32)
    before = x.clone()
    y = _run(spec, x, mspec, ids, level, seed, kind)
    assert torch.equal(x, before), "input mutated"
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    if x.is_floating_point():
        assert torch.isfinite(y).all()
    if mspec.value_range is not None:
        assert y.min() >= mspec.value_range[0] and y.max() <= mspec.value_range[1]
    if kind == "tokens":
        assert y.min() >= 0 and y.max() < mspec.vocab_size
        assert torch.equal(y[x == 0], x[x == 0]), "PAD positions changed"


@pytest.mark.parametrize("name,kind", CASES)
@FEW
@given(seed=seeds)
def test_every_sample_corrupted_at_level_five(name, kind, seed):
    """No hidden p = 0.5: a kernel that skipped samples would leave about half of them unchanged.

    Random kernels may legitimately leave a sample as it was (no pair drawn in a short sentence, a
    swap of equal tokens: 1.5% of samples for `swap` at level 5, measured over 100 seeds), so up
    to a quarter of 32 may stay unchanged: a kernel skipping half the samples passes with
    probability 0.35%, a correct one at 1.5% fails with probability 8e-10.
    """
    spec = get_corruption(name)
    x, mspec = example_input(kind, spec.check, batch=32)
    if x.is_floating_point():
        x = x.float()
    y = _run(spec, x, mspec, torch.arange(1000, 1032), 5.0, seed, kind)
    unchanged = int((_distance(y, x) == 0).sum())
    assert unchanged <= 8, f"p = 1: {unchanged} of 32 samples unchanged at level 5"


@pytest.mark.parametrize("name,kind", CASES)
@FEW
@given(seed=seeds, perm_seed=seeds)
@example(seed=1002347, perm_seed=0)  # frost differed in the last bits here while it used torch's pow
def test_common_random_numbers_do_not_depend_on_the_batch(name, kind, seed, perm_seed):
    spec, x, mspec, ids = _setup(name, kind)
    whole = _run(spec, x, mspec, ids, 3.0, seed, kind)
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(perm_seed))
    shuffled = _run(spec, x[perm], mspec, ids[perm], 3.0, seed, kind)
    assert torch.equal(shuffled, whole[perm])
    for i in (0, len(ids) - 1):
        alone = _run(spec, x[i : i + 1], mspec, ids[i : i + 1], 3.0, seed, kind)
        assert torch.equal(alone[0], whole[i])


@pytest.mark.parametrize("name,kind", CASES)
@FEW
@given(seed=seeds)
def test_distance_grows_with_level(name, kind, seed):
    spec, x, mspec, ids = _setup(name, kind)
    d = [float(_distance(_run(spec, x, mspec, ids, lv, seed, kind), x).mean()) for lv in range(6)]
    assert all(b >= a - 1e-9 for a, b in zip(d, d[1:])), d
    assert d[5] > d[0]


@pytest.mark.parametrize("name,kind", CASES)
def test_runs_on_the_meta_device(name, kind):
    """Device-generic: no hidden CPU tensors, no host sync (meta tensors have no values)."""
    spec, x, mspec, ids = _setup(name, kind)
    y = _run(spec, x.to("meta"), mspec, ids.to("meta"), 3.0, 0, kind)
    assert y.device.type == "meta" and y.shape == x.shape and y.dtype == x.dtype


def test_bad_names_kinds_and_levels_are_one_line_errors():
    with pytest.raises(InputError, match="unknown corruption 'nope'; expected one of: .*gaussian_noise"):
        get_corruption("nope")
    with pytest.raises(InputError, match="level 7 out of range"):
        get_corruption("blank").param(7)
    x, mspec = example_input("tokens")
    batch = Batch(inputs={"tok": x}, labels=torch.zeros(len(x), dtype=torch.long), ids=torch.arange(len(x)))
    with pytest.raises(InputError, match="does not apply to modality 'tok' of kind 'tokens'; it supports: image"):
        apply_condition(batch, Condition("corruption", "jpeg", ("tok",), level=1), {"tok": mspec}, 0)
    with pytest.raises(InputError, match="unknown modality 'img'; expected one of: tok"):
        apply_condition(batch, Condition("corruption", "jpeg", ("img",), level=1), {"tok": mspec}, 0)
    gray = ModalitySpec("g", "image", (1, 4, 4), value_range=(0.0, 1.0))
    gb = Batch(inputs={"g": torch.rand(2, 1, 4, 4)}, labels=torch.zeros(2, dtype=torch.long), ids=torch.arange(2))
    with pytest.raises(InputError, match="needs 3 colour channels"):
        apply_condition(gb, Condition("corruption", "desaturate", ("g",), level=1), {"g": gray}, 0)


def test_param_interpolates_and_db_identity_is_infinite():
    spec = get_corruption("gaussian_noise")
    assert spec.param(2.5, "image") == pytest.approx((0.12 + 0.18) / 2)
    assert spec.param(1, "vector") == 0.25
    snr = get_corruption("white_noise")
    assert snr.param(0) == float("inf")
    assert snr.param(0.5) == pytest.approx(20 + 20 * 0.30103, abs=1e-3)  # half the noise amplitude of level 1


# --- regression tests for the MultiBench bugs named in the issue -------------------------------------


def test_unselected_samples_are_untouched_not_zeroed():
    x, mspec = example_input("audio", batch=64)
    batch = Batch(inputs={"wav": x}, labels=torch.zeros(64, dtype=torch.long), ids=torch.arange(64))
    out = apply_condition(batch, Condition("corruption", "white_noise", ("wav",), level=5, rate=0.5), {"wav": mspec}, 0)
    changed = (out.inputs["wav"] != x).any(dim=1)
    assert 0 < int(changed.sum()) < 64
    assert torch.equal(out.inputs["wav"][~changed], x[~changed])
    assert bool((out.inputs["wav"][~changed].abs().sum(dim=1) > 0).all()), "unselected samples were zeroed"


def test_swap_permutes_tokens_instead_of_copying():
    x, mspec = example_input("tokens", batch=32)
    y = get_corruption("swap")(x, 0.7, SampleRandom(torch.arange(32), 0, "swap"), mspec)
    assert not torch.equal(y, x)
    assert torch.equal(torch.sort(y, dim=1).values, torch.sort(x, dim=1).values), "swap must keep the multiset"


@pytest.mark.parametrize("name", ["affine", "elastic", "pixelate", "motion_blur", "gaussian_blur", "jpeg", "glass_blur", "zoom_blur"])
def test_geometric_kernels_keep_orientation_of_non_square_images(name):
    mspec = ModalitySpec("pix", "image", (1, 16, 15), value_range=(0.0, 1.0))
    rows = torch.linspace(0, 1, 16)[:, None].expand(16, 15)  # vertical ramp: a transpose would be a horizontal one
    x = rows.expand(4, 1, 16, 15).clone()
    spec = get_corruption(name)
    y = spec(x, spec.param(1.0), SampleRandom(torch.arange(4), 0, name), mspec)
    assert y.shape == x.shape
    assert (y - x).abs().mean() < 0.05, "content moved far: transposed or flipped?"


def test_gaussian_noise_has_the_declared_sigma_in_grey_levels():
    mspec = ModalitySpec("pix", "image", (1, 32, 32), value_range=(0.0, 255.0))
    x = torch.full((8, 1, 32, 32), 128.0)
    y = get_corruption("gaussian_noise")(x, 0.08, SampleRandom(torch.arange(8), 0, "g"), mspec)
    sigma = float((y - x).std())
    assert sigma == pytest.approx(0.08 * 255, rel=0.05), f"noise sigma {sigma} grey levels"
    assert sigma > 1.0


IMAGE_KERNELS = [s.name for s in list_corruptions("image") if s.source == "builtin"]


@pytest.mark.parametrize("name", IMAGE_KERNELS)
@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (2.0, 5.0)])
def test_image_kernels_commute_with_the_value_range(name, value_range):
    """Corrupting lo + (hi - lo) u in [lo, hi] is the same as mapping the corrupted u from [0, 1]."""
    lo, hi = value_range
    unit_spec = ModalitySpec("img", "image", (3, 16, 16), value_range=(0.0, 1.0))
    range_spec = ModalitySpec("img", "image", (3, 16, 16), value_range=value_range)
    u = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    spec = get_corruption(name)
    param = spec.param(3.0, "image")
    on_unit = spec(u, param, SampleRandom(torch.arange(8), 0, name), unit_spec)
    on_range = spec(lo + (hi - lo) * u, param, SampleRandom(torch.arange(8), 0, name), range_spec)
    mapped_back = (on_range - lo) / (hi - lo)
    assert float((mapped_back - on_unit).abs().mean()) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [8000, 1000, 20])
def test_time_mask_clears_the_same_bits_as_a_per_sample_mask(dtype, n):
    """time_mask clears equal segments through an integer view (fast path) and unequal ones with
    torch.where; both must give the bits the per-sample mask gives (the kernel's definition),
    -0.0 inputs and +0.0 fills included."""
    x = (torch.rand(6, n, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
    x[:, ::7] = -0.0
    segments = min(32, n)
    drop = SampleRandom(torch.arange(6), 3, "time-mask-test").uniform(segments, dtype=torch.float64) < 0.4
    expected = torch.where(drop[:, torch.arange(n) * segments // n], torch.zeros_like(x), x)
    got = get_corruption("time_mask")(x, 0.4, SampleRandom(torch.arange(6), 3, "time-mask-test"),
                                      ModalitySpec("a", "audio", (n,)))
    assert got.dtype == dtype and torch.equal(got, expected)
    assert torch.equal(torch.signbit(got), torch.signbit(expected))
