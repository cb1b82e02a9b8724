"""ImageNet-C complete and by its names: aliases, the imagenet-c protocol, and the new kernels'
reference parameters (hendrycks/robustness ImageNet-C/create_c, bethgelab/imagecorruptions).

The generic contract (identity, range, common random numbers, monotone severity) is enforced on the
new kernels by tests/test_corruption_contract.py, which covers every registered corruption.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_mm.corruptions import SampleRandom, get_corruption
from robustbench_mm.corruptions import image
from robustbench_mm.datasets import ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import load_protocol

# robustbench/data.py CORRUPTIONS (github:RobustBench/robustbench): ImageNet-C's 15
IMAGENET_C = {"shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness", "fog",
              "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression", "elastic_transform"}
OURS = {"jpeg_compression": "jpeg", "elastic_transform": "elastic"}


def test_imagenet_c_names_resolve_to_the_same_corruption():
    assert get_corruption("jpeg_compression") is get_corruption("jpeg")
    assert get_corruption("elastic_transform") is get_corruption("elastic")
    for name in IMAGENET_C:
        assert get_corruption(name).name == OURS.get(name, name)


def test_saturate_is_not_an_alias_of_desaturate():
    """ImageNet-C's saturate scales HSV saturation by 0.3, 0.1, 2, 5, 20: from level 3 it saturates more."""
    with pytest.raises(InputError, match="unknown corruption 'saturate'"):
        get_corruption("saturate")


def test_imagenet_c_protocol_is_fifteen_corruptions_by_five_severities_per_image_modality():
    specs = {
        "rgb": ModalitySpec("rgb", "image", (3, 16, 16), value_range=(0.0, 1.0)),
        "depth": ModalitySpec("depth", "image", (1, 16, 16), value_range=(0.0, 1.0)),
        "vec": ModalitySpec("vec", "vector", (4,), mean=torch.zeros(4), std=torch.ones(4)),
    }
    conditions = load_protocol("imagenet-c").expand(specs)
    corrupted = [c for c in conditions if c.family == "corruption"]
    assert len(conditions) == 1 + 2 * 15 * 5
    for modality in ("rgb", "depth"):
        own = [c for c in corrupted if c.modalities == (modality,)]
        assert {(c.name, c.level) for c in own} == {(OURS.get(n, n), lv) for n in IMAGENET_C for lv in range(1, 6)}
    assert not [c for c in corrupted if "vec" in c.modalities]


def test_glass_blur_shuffle_matches_the_reference_displacement_variance():
    """Each pass of the reference moves a pixel by numpy randint(-d, d) per axis, `iterations` times."""
    rng = np.random.default_rng(0)
    for (_, delta, passes), (_, reach) in zip(image._GLASS_IMAGENET_C, image._GLASS):
        moves = rng.integers(-delta, delta, size=(200_000, passes)).sum(axis=1)
        assert reach**2 / 3 == pytest.approx(moves.var(), rel=0.02)


def test_glass_blur_shuffle_moves_pixels_by_the_declared_reach():
    """A ramp image (value = column index) read back after the shuffle gives each pixel's horizontal offset."""
    h = w = 64
    cols = torch.arange(w, dtype=torch.float64).expand(1, 1, h, w).repeat(8, 1, 1, 1)
    reach = 3.354
    moved = image._shuffle_locally(cols, SampleRandom(torch.arange(8), 0, "glass"), reach)
    offsets = (moved - cols)[..., 8:-8]  # away from the clamped borders
    assert offsets.abs().max() <= math.floor(reach + 0.5)
    assert float(offsets.mean()) == pytest.approx(0.0, abs=0.05)  # symmetric, no drift
    assert float(offsets.var()) == pytest.approx(reach**2 / 3 + 1 / 12, rel=0.05)  # U(-d, d) rounded


@pytest.mark.parametrize("level", [1, 3, 5])
def test_zoom_blur_is_the_mean_of_centred_zooms(level):
    """Independently: each zoom by F.grid_sample of a centred affine scale 1/z (bilinear, border)."""
    x = torch.rand(3, 3, 16, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spec = get_corruption("zoom_blur")
    param = spec.param(level)
    zooms = [1.0 + 0.01 * k for k in range(round(param / 0.01) + 1)]
    layers = []
    for z in zooms:
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]], dtype=torch.float64).expand(3, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        layers.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))
    expected = (x + sum(layers)) / (len(zooms) + 1)
    got = spec(x, param, SampleRandom(torch.arange(3), 0, "zoom"), ModalitySpec("i", "image", (3, 16, 12), value_range=(0.0, 1.0)))
    assert torch.allclose(got, expected, atol=1e-9)


def test_fog_adds_a_haze_and_keeps_the_image_maximum():
    """make_tinyimagenet_c.py fog: (x + c p) * max(x) / (max(x) + c) with p in [0, 1], so max(y) <= max(x)."""
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.8
    spec = get_corruption("fog")
    y = spec(x, 5.0, SampleRandom(torch.arange(4), 0, "fog"), ModalitySpec("i", "image", (3, 16, 16), value_range=(0.0, 1.0)))
    assert bool((y.amax(dim=(1, 2, 3)) <= x.amax(dim=(1, 2, 3)) + 1e-6).all())
    flat = (y.std(dim=(2, 3)) / x.std(dim=(2, 3))).mean()
    assert float(flat) < 0.6  # strength 2 over a peak of 0.8: contrast falls to under 0.8 / 2.8 of the haze-free image


def test_frost_texture_has_the_photographs_brightness():
    """Mean per channel over many samples near the mean of frost1-5 (0.572, 0.656, 0.702, measured)."""
    x = torch.zeros(256, 3, 32, 32)
    texture = image._frost_texture(SampleRandom(torch.arange(256), 0, "frost"), x)
    means = texture.mean(dim=(0, 2, 3))
    for got, want in zip(means.tolist(), (0.572, 0.656, 0.702)):
        assert got == pytest.approx(want, abs=0.04)
