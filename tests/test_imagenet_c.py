"""ImageNet-C by its names: the suites (imagenet-c, tiny-imagenet-c), their protocols and
`robustbench_mm.corrupt`, with the catalog's kernels of the same names left as they were.

Reference comparisons live in tests/test_imagenet_c_reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_mm import corrupt
from robustbench_mm.corruptions import SampleRandom, apply_condition, get_corruption, image, imagenet_c
from robustbench_mm.datasets import Batch, ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import load_protocol

# robustbench/data.py CORRUPTIONS (github:RobustBench/robustbench): ImageNet-C's 15
IMAGENET_C = {"shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness", "fog",
              "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression", "elastic_transform"}
SUITE_KERNELS = [f"{s}/{n}" for s in imagenet_c.SUITES for n in imagenet_c.NAMES]


def _images(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def _spec(x: torch.Tensor, value_range=(0.0, 1.0)) -> ModalitySpec:
    return ModalitySpec("img", "image", tuple(x.shape[1:]), value_range=value_range)


def test_suites_cover_imagenet_c_and_leave_the_catalog_alone():
    assert set(imagenet_c.NAMES) == IMAGENET_C
    for name in SUITE_KERNELS:
        assert get_corruption(name).name == name
    # the catalog keeps its names and tables (quick/standard fingerprints depend on them)
    assert get_corruption("defocus_blur").name == "defocus_blur"
    assert get_corruption("defocus_blur").severity == (1.0, 1.5, 2.0, 3.0, 4.0)
    assert get_corruption("jpeg").name == "jpeg"


def test_jpeg_compression_and_elastic_transform_mean_imagenet_c():
    assert get_corruption("jpeg_compression") is get_corruption("imagenet-c/jpeg_compression")
    assert get_corruption("elastic_transform") is get_corruption("imagenet-c/elastic_transform")


def test_saturate_is_not_an_alias_of_desaturate():
    """ImageNet-C's saturate scales HSV saturation by 0.3, 0.1, 2, 5, 20: from level 3 it saturates more."""
    with pytest.raises(InputError, match="unknown corruption 'saturate'"):
        get_corruption("saturate")


@pytest.mark.parametrize("suite", imagenet_c.SUITES)
def test_suite_protocol_is_fifteen_corruptions_by_five_severities_per_image_modality(suite):
    specs = {
        "rgb": ModalitySpec("rgb", "image", (3, 16, 16), value_range=(0.0, 1.0)),
        "depth": ModalitySpec("depth", "image", (1, 16, 16), value_range=(0.0, 1.0)),
        "vec": ModalitySpec("vec", "vector", (4,), mean=torch.zeros(4), std=torch.ones(4)),
    }
    protocol = load_protocol(suite)
    conditions = protocol.expand(specs)
    corrupted = [c for c in conditions if c.family == "corruption"]
    assert len(conditions) == 1 + 2 * 15 * 5
    for modality in ("rgb", "depth"):
        own = [c for c in corrupted if c.modalities == (modality,)]
        assert {(c.name, c.level) for c in own} == {(f"{suite}/{n}", lv) for n in IMAGENET_C for lv in range(1, 6)}
    assert not [c for c in corrupted if "vec" in c.modalities]
    units = protocol.units(specs)
    size = imagenet_c.IMAGE_SIZE[suite]
    assert any(line.startswith(f"{suite}: ImageNet-C's {size}-px table") and "'rgb'" in line and "not the published" in line
               for line in units)
    assert any(line.startswith(f"{suite}: frost from ") for line in units)


def test_the_manifest_line_says_when_the_image_size_is_the_table_s():
    specs = {"rgb": ModalitySpec("rgb", "image", (3, 224, 224), value_range=(0.0, 1.0))}
    line = load_protocol("imagenet-c").units(specs)[0]
    assert "224-px table" in line and "not the published" not in line


def test_frost_source_follows_imagecorruptions():
    has_photos = imagenet_c.frost_photo_folder() is not None
    assert imagenet_c.frost_source().startswith("ImageNet-C's photographs" if has_photos else "a procedural texture")


@pytest.mark.parametrize("name", SUITE_KERNELS)
def test_suite_kernel_contract(name):
    """Level 0 is the identity; shape, dtype and range kept; input untouched; every sample's output
    depends on its id alone (common random numbers), on 1- and 3-channel images."""
    spec = get_corruption(name)
    for channels in (3, 1):
        x = _images(4)[:, :channels].contiguous()
        mspec = _spec(x)
        ids = torch.arange(100, 104)
        assert torch.equal(spec(x, spec.param(0.0), SampleRandom(ids, 0, "t"), mspec), x)
        before = x.clone()
        y = spec(x, spec.param(3.0), SampleRandom(ids, 0, "t"), mspec)
        assert torch.equal(x, before)
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert float((y - x).abs().mean()) > 0
        perm = torch.tensor([2, 0, 3, 1])
        shuffled = spec(x[perm], spec.param(3.0), SampleRandom(ids[perm], 0, "t"), mspec)
        assert torch.equal(shuffled, y[perm])


@pytest.mark.parametrize("name", ["imagenet-c/fog", "imagenet-c/defocus_blur", "tiny-imagenet-c/contrast", "imagenet-c/brightness"])
def test_suite_kernels_commute_with_the_value_range(name):
    u = _images(3).double()
    spec = get_corruption(name)
    on_unit = spec(u, 3.0, SampleRandom(torch.arange(3), 0, name), _spec(u))
    on_range = spec(2.0 + 3.0 * u, 3.0, SampleRandom(torch.arange(3), 0, name), _spec(u, (2.0, 5.0)))
    assert float(((on_range - 2.0) / 3.0 - on_unit).abs().max()) < 1e-9


def test_non_integer_severity_and_four_channels_are_one_line_errors():
    x = _images(2)
    with pytest.raises(InputError, match="severity 2.5; ImageNet-C's severities are the integers 1-5"):
        get_corruption("imagenet-c/fog")(x, 2.5, SampleRandom(torch.arange(2), 0, "f"), _spec(x))
    four = ModalitySpec("img", "image", (4, 32, 32), value_range=(0.0, 1.0))
    assert "needs 1 or 3 colour channels" in get_corruption("imagenet-c/fog").supports(four)


@pytest.mark.parametrize("path", ["torch", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_compression_is_pillows_codec_on_the_rounded_8_bit_image(dtype, channels, path, monkeypatch):
    """The definition, computed the reference's way (imagecorruptions' jpeg_compression: fromarray,
    save, Image.open; greyscale through RGB): round(255 u) to even, clipped to 0..255, in the input's
    dtype; the decoded levels over 255. Inputs below 0, above 1 and on exact halves (k + 0.5) / 255.
    On both paths (RBMM_RNG): with `compiled`, 3-channel images go through `_jpeg_numba`'s loops."""
    import io

    from PIL import Image

    from robustbench_mm.corruptions.rng import runs_compiled

    monkeypatch.setenv("RBMM_RNG", path)
    assert runs_compiled(torch.device("cpu")) == (path == "compiled")

    g = torch.Generator().manual_seed(7)
    shape = (3, channels, 40, 48)
    u = (torch.rand(shape, generator=g, dtype=torch.float64) * 1.2 - 0.1).to(dtype)
    halves = ((torch.randint(0, 255, shape, generator=g).to(dtype) + 0.5) / 255).to(dtype)
    u = torch.where(torch.rand(shape, generator=g) < 0.25, halves, u)
    assert bool((u * 255 % 1 == 0.5).any()), "the test must hold exact halves"
    quality = imagenet_c.TABLES["imagenet-c"]["jpeg_compression"][2]
    y = get_corruption("imagenet-c/jpeg_compression")(u, 3.0, SampleRandom(torch.arange(3), 0, "j"), _spec(u))
    levels = np.clip(np.rint(u.numpy() * u.numpy().dtype.type(255)), 0, 255).astype(np.uint8)
    expected = []
    for image_levels in levels:
        pil = Image.fromarray(image_levels[0]).convert("RGB") if channels == 1 else Image.fromarray(image_levels.transpose(1, 2, 0))
        stream = io.BytesIO()
        pil.save(stream, "JPEG", quality=quality)
        decoded = Image.open(stream)
        decoded = np.asarray(decoded.convert("L"))[None] if channels == 1 else np.asarray(decoded).transpose(2, 0, 1)
        expected.append(decoded)
    expected = torch.from_numpy(np.stack(expected)).to(dtype) / 255
    assert y.dtype == dtype and torch.equal(y, expected)


def test_disk_kernel_is_make_imagenet_c_s():
    """disk(radius 3, alias_blur 0.1): the aliased disk, normalised, then cv2.GaussianBlur 3x3 with
    sigma 0.1, whose side weights exp(-50) / (1 + 2 exp(-50)) ~ 2e-22 leave the disk as it was."""
    t = np.arange(-8, 9)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= 9).astype(np.float64)
    disk /= disk.sum()
    kernel = imagenet_c._disk(3.0, 0.1).numpy()
    assert kernel.shape == (9, 9)  # cropped to the support: radius 3, plus 1 of blur
    assert np.abs(kernel.sum() - 1.0) < 1e-12
    assert np.abs(kernel[1:-1, 1:-1] - disk[5:12, 5:12]).max() < 1e-12
    assert 0 < np.abs(kernel[0]).max() < 1e-20  # the blur reaches one pixel further, by ~2e-22 x the disk


def test_zoom_rows_are_scipy_zoom_of_the_centre_crop():
    """make_imagenet_c.py clipped_zoom along one axis, against scipy.ndimage.zoom itself."""
    from scipy.ndimage import zoom as scizoom

    n, z = 37, 1.13
    signal = np.random.default_rng(0).random(n)
    crop = int(np.ceil(n / z))
    top = (n - crop) // 2
    zoomed = scizoom(signal[top : top + crop], z, order=1)
    trim = (zoomed.shape[0] - n) // 2
    expected = zoomed[trim : trim + n]
    got = imagenet_c._zoom_rows(n, z).numpy() @ signal
    assert np.abs(got - expected).max() < 1e-12


@pytest.mark.parametrize("suite", imagenet_c.SUITES)
def test_pixelate_is_pillows_box_down_then_up_for_every_size(suite):
    """Pillow itself (float images, no 8-bit rounding) on images whose rows hold their own index, so
    a box or a pick one pixel off shows: BOX down to int(n c), then NEAREST (imagecorruptions) or BOX
    (make_tinyimagenet_c.py) back up, for every height 1-224 and severity, and the same on columns."""
    from PIL import Image

    up = Image.NEAREST if suite == "imagenet-c" else Image.BOX
    kernel = get_corruption(f"{suite}/pixelate")
    for severity, c in enumerate(imagenet_c.TABLES[suite]["pixelate"], start=1):
        for n in range(1, 225):
            rows = np.arange(n, dtype=np.float32)[:, None].repeat(3, axis=1)  # (n, 3): row i holds i
            small = Image.fromarray(rows).resize((3, max(1, int(n * c))), Image.BOX)
            expected = np.asarray(small.resize((3, n), up))
            for image_ in (rows, rows.T.copy()):
                x = torch.from_numpy(image_)[None, None].double() / 255.0
                got = kernel(x, float(severity), SampleRandom(torch.arange(1), 0, "pixelate"), _spec(x))[0, 0] * 255.0
                got = got.numpy() if image_ is rows else got.numpy().T
                assert np.abs(got - expected).max() < 1e-3, (suite, severity, n)


def _zoom_of_the_crop(n: int, zoom: float) -> torch.Tensor:
    """clipped_zoom along one axis as the (n, crop) matrix that reads the centre crop: `_zoom_rows`
    (scipy's zoom by test_zoom_rows_are_scipy_zoom_of_the_centre_crop) without its other columns."""
    crop = int(np.ceil(n / zoom))
    top = (n - crop) // 2
    return imagenet_c._zoom_rows(n, zoom)[:, top : top + crop]


def test_clipped_zoom_reads_nothing_outside_the_centre_crop():
    """Snow's revision 2 draws and multiplies only the crop: every weight outside it must be zero,
    at every zoom of both suites' tables, at their sizes and an odd one."""
    zooms = {float(r[2]) for suite in imagenet_c.SUITES for r in imagenet_c.TABLES[suite]["snow"] if r[2] != 1}
    for n in (64, 224, 37):
        for zoom in sorted(zooms):
            matrix = imagenet_c._zoom_rows(n, zoom)
            crop = _zoom_of_the_crop(n, zoom)
            assert float(matrix.sum()) == pytest.approx(float(crop.sum()), abs=1e-9) == pytest.approx(n, abs=1e-9)
            assert float(matrix.abs().sum()) == pytest.approx(float(crop.abs().sum()), abs=1e-9), (n, zoom)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_snow_is_its_formula_bit_for_bit(channels, dtype):
    """The suite's snow, written out as make_imagenet_c.py composes it from the kernel's parts (the
    layer: normal draw, clipped zoom, zeroed below the threshold, clipped, shift sum, 8 bits; the
    image: lerp from max(x, 1.5 grey + 0.5) towards x, plus the layer and its 180-degree turn):
    speed work on the composition must not move a bit. Revision 2: where it zooms, only the centre
    crop that clipped_zoom reads is drawn, and zoomed by `_zoom_of_the_crop` along each axis."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, channels, 48, 40, generator=g, dtype=dtype)
    for suite in imagenet_c.SUITES:
        for severity in (1, 3, 5):
            row = imagenet_c._row(suite, "snow", severity)
            loc, scale, zoom, threshold, radius, sigma, blend = row
            got = imagenet_c._snow(x, row, SampleRandom(torch.arange(3), 0, "snow"), _spec(x))
            rng = SampleRandom(torch.arange(3), 0, "snow")
            if zoom != 1:
                rows, cols = _zoom_of_the_crop(48, float(zoom)).to(dtype), _zoom_of_the_crop(40, float(zoom)).to(dtype)
                crop = rng.normal(1, rows.shape[1], cols.shape[1], dtype=dtype) * scale + loc
                layer = rows @ (crop @ cols.T)
            else:
                layer = rng.normal(1, 48, 40, dtype=dtype) * scale + loc
            layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0.0, 1.0)
            angle = rng.uniform(dtype=torch.float64) * 90.0 - 135.0
            layer = torch.round(imagenet_c._shift_sum(layer, angle, int(radius), float(sigma)) * 255.0) / 255.0
            grey = image._luma(x) if channels == 3 else x
            expected = (torch.lerp(torch.maximum(x, grey * 1.5 + 0.5), x, blend) + layer + layer.flip(-1, -2)).clamp(0.0, 1.0)
            assert torch.equal(got, expected), (suite, severity)


def test_glass_displacement_law_is_the_reference_loop_s():
    """Severity 1 at 224 px (d = 1, 2 passes). The reference's tuple "swap" on (H, W, 3) views copies
    x[h', w'] into x[h, w]; with offsets in {-1, 0} the source is never yet visited, so each pass adds
    an independent offset: per axis -2, -1, 0 with probabilities 1/4, 1/2, 1/4, both axes independent."""
    offsets, cdf = imagenet_c._glass_displacements(1, 2)
    p = np.diff(np.concatenate([[0.0], cdf.numpy()]))
    per_axis = {-2: 0.25, -1: 0.5, 0: 0.25}
    assert len(offsets) == 9
    for (dr, dc), prob in zip(offsets.tolist(), p):
        assert prob == pytest.approx(per_axis[dr] * per_axis[dc], abs=0.01)


def test_glass_blur_shuffle_of_the_catalog_matches_one_pass_variance():
    """The catalog's glass_blur keeps its own one-pass shuffle (image._shuffle_locally)."""
    rng = np.random.default_rng(0)
    for (_, delta, passes), (_, reach) in zip(image._GLASS_IMAGENET_C, image._GLASS):
        moves = rng.integers(-delta, delta, size=(200_000, passes)).sum(axis=1)
        assert reach**2 / 3 == pytest.approx(moves.var(), rel=0.02)


# --- robustbench_mm.corrupt -----------------------------------------------------------------------------


def test_corrupt_reproduces_the_protocol_cell():
    """corrupt(x, name, s, seed=k) is the cell of a protocol with seed k on a modality named "image"."""
    x = _images(4)
    spec = ModalitySpec("image", "image", (3, 32, 32), value_range=(0.0, 1.0))
    batch = Batch(inputs={"image": x}, labels=torch.zeros(4, dtype=torch.long), ids=torch.arange(4))
    protocol = load_protocol("imagenet-c")
    cell = next(c for c in protocol.expand({"image": spec}) if c.name == "imagenet-c/snow" and c.level == 4)
    expected = apply_condition(batch, cell, {"image": spec}, seed=protocol.seed + 7).inputs["image"]
    assert torch.equal(corrupt(x, "snow", 4, seed=7), expected)
    assert torch.equal(corrupt(x, "imagenet-c/snow", 4, seed=7), expected)
    assert not torch.equal(corrupt(x, "snow", 4, seed=8), expected)


def test_corrupt_keeps_uint8_layout_and_float_range():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 40, 36, 3), dtype=np.uint8)
    out = corrupt(pixels, "contrast", 2)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).double() / 255.0
    means = x.mean(dim=(2, 3), keepdim=True)
    expected = torch.floor(((x - means) * 0.3 + means).clamp(0, 1) * 255 + 1e-6).to(torch.uint8).permute(0, 2, 3, 1)
    assert np.abs(out.astype(int) - expected.numpy().astype(int)).max() <= 1
    y = corrupt(x.float() * 2 - 1, "tiny-imagenet-c/fog", 3, value_range=(-1, 1))
    assert y.dtype == torch.float32 and float(y.min()) >= -1 and float(y.max()) <= 1


def test_corrupt_runs_catalog_kernels_by_their_names():
    x = _images(2)
    y = corrupt(x, "jpeg", 3)  # the catalog's DCT approximation, not the codec
    spec = get_corruption("jpeg")
    assert torch.equal(y, spec(x, spec.param(3.0), SampleRandom(torch.arange(2), 0, "x"), _spec(x)))


def test_corrupt_refuses_bad_input_in_one_line():
    with pytest.raises(InputError, match=r"uint8 of shape \(B, H, W, C\)"):
        corrupt(np.zeros((4, 4, 3), dtype=np.uint8), "fog", 1)
    with pytest.raises(InputError, match="value_range applies to float tensors"):
        corrupt(np.zeros((1, 8, 8, 3), dtype=np.uint8), "fog", 1, value_range=(0, 255))
    with pytest.raises(InputError, match="unknown corruption 'fgo'"):
        corrupt(torch.zeros(1, 3, 8, 8), "fgo", 1)
    with pytest.raises(InputError, match=r"float of shape \(B, C, H, W\)"):
        corrupt(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "fog", 1)


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("batch", [1, 5])
def test_suite_fog_is_the_catalog_fractal_bit_for_bit(size, batch):
    """The suite's fast fractal (imagenet_c._plasma_crop) must not move a single draw or rounding:
    fog at every severity equals the formula run on the catalog's `image._plasma_like`."""
    spec = ModalitySpec("img", "image", (3, size, size), value_range=(0.0, 1.0))
    x = _images(batch, size, seed=batch)
    for seed in (0, 11):
        ids = torch.arange(batch, dtype=torch.int64) * 13 + seed
        for severity in range(1, 6):
            strength, decay = imagenet_c._row("imagenet-c", "fog", severity)
            peak = x.amax(dim=(1, 2, 3), keepdim=True)
            plasma = image._plasma_like(SampleRandom(ids, seed, "fog"), x, float(decay), torch.float32)
            expected = torch.add(x, plasma, alpha=float(strength)).mul_(peak / (peak + strength)).clamp_(0, 1)
            got = get_corruption("imagenet-c/fog")(x, severity, SampleRandom(ids, seed, "fog"), spec)
            assert torch.equal(got, expected), (seed, severity)


@pytest.mark.parametrize("path", ["torch", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_suite_plasma_equals_catalog_plasma_at_odd_sizes(dtype, path, monkeypatch):
    """On either random-number path (the compiled one also runs the fractal's steps compiled)."""
    ids = torch.tensor([0, 9, 2**40 + 1])
    for h, w in ((1, 1), (3, 5), (33, 17)):
        like = torch.zeros(3, 1, h, w, dtype=dtype)
        monkeypatch.setenv("RBMM_RNG", "torch")
        ref = image._plasma_like(SampleRandom(ids, 4, "p"), like, 1.75, dtype)
        monkeypatch.setenv("RBMM_RNG", path)
        assert torch.equal(imagenet_c._plasma_crop(SampleRandom(ids, 4, "p"), h, w, 1.75, dtype), ref)


def _float_bits(x: torch.Tensor) -> torch.Tensor:
    """The bytes of a float tensor (torch.equal calls -0.0 and 0.0 equal)."""
    return x.contiguous().view(torch.uint8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_fractal_steps_give_torchs_bits(dtype, monkeypatch):
    """_plasma_numba's loop must write the torch steps' quarter grids bit for bit, every map of a
    batch (its scratch is reused from map to map) and at every size, including the whole map."""
    from robustbench_mm.corruptions import rng as rng_module

    ids = torch.tensor([0, 1, 9, 2**40 + 1, 123456])
    for size, decay in ((2, 2.0), (4, 3.0), (16, 1.75), (256, 2.5)):
        monkeypatch.setenv("RBMM_RNG", "torch")
        expected = imagenet_c._plasma_quarters(SampleRandom(ids, 3, "q"), size, decay, dtype)
        monkeypatch.setenv("RBMM_RNG", "compiled")
        got = imagenet_c._plasma_quarters(SampleRandom(ids, 3, "q"), size, decay, dtype)
        assert rng_module.runs_compiled(ids.device)  # the loop above ran, not torch's steps
        for e, g in zip(expected, got, strict=True):
            assert torch.equal(_float_bits(e), _float_bits(g)), (size, decay)


def _smoothed_in_bands(field: torch.Tensor, sigma: float, dim: int) -> torch.Tensor:
    """Elastic transform's smoothing since its revision 2, written plainly: the Gaussian's (n, n)
    matrix (scipy's gaussian_filter1d, truncate 3, mode 'reflect') cut into blocks of output rows,
    16 rows per block for each started 16 of the kernel's 2 radius + 1 taps, each block multiplied
    by the inputs within `radius` of its rows, the blocks' outputs put side by side."""
    n = field.shape[dim]
    matrix = imagenet_c._smoothing_matrix(n, sigma).to(field.dtype)
    radius = int(3.0 * sigma + 0.5)
    rows = 16 * -(-(2 * radius + 1) // 16)
    parts = []
    for first in range(0, n, rows):
        end = min(n, first + rows)
        low, high = max(0, first - radius), min(n, end + radius)
        block = matrix[first:end, low:high]
        parts.append(block @ field[:, low:high] if dim == -2 else field[:, :, low:high] @ block.T)
    return torch.cat(parts, dim=dim)


def _elastic_sigmas() -> list[tuple[int, float]]:
    """(image size, smoothing sigma) of every severity of both suites at their own image sizes."""
    tiny = {(64, float(sigma)) for _, sigma, _ in imagenet_c.TABLES["tiny-imagenet-c"]["elastic_transform"] if sigma > 0}
    return [(224, 224 * 0.01), *sorted(tiny)]


@pytest.mark.parametrize("size,sigma", _elastic_sigmas())
def test_elastic_smoothing_bands_hold_every_weight_of_the_gaussian(size, sigma):
    """Revision 2 multiplies by bands of the smoothing matrix: the bands must hold every nonzero
    weight (reflected borders included), so the filter is the same and only roundings move: in
    float64 the banded and the dense products agree to 1e-15, in float32 to float32's rounding."""
    covered = torch.zeros((size, size), dtype=torch.bool)
    for first, end, low, high, _ in imagenet_c._smoothing_bands(size, sigma, torch.float64, torch.device("cpu")):
        covered[first:end, low:high] = True
    matrix = imagenet_c._smoothing_matrix(size, sigma)
    assert not matrix[~covered].any()
    field = torch.rand(3, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    dense = field @ matrix.T
    assert float((imagenet_c._smooth_along_columns(field, sigma) - dense).abs().max()) < 1e-15
    assert float((imagenet_c._smooth_along_columns(field.float(), sigma).double() - dense).abs().max()) < 1e-6
    dense = matrix @ field
    assert float((imagenet_c._smooth_along_rows(field, sigma) - dense).abs().max()) < 1e-15
    assert float((imagenet_c._smooth_along_rows(field.float(), sigma).double() - dense).abs().max()) < 1e-6


@pytest.mark.parametrize("size,sigma", _elastic_sigmas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_elastic_smoothing_is_its_banded_definition_bit_for_bit(size, sigma, dtype):
    """Both suites' elastic fields (`_smooth_field`) against `_smoothed_in_bands`: a draw mapped to
    U(low, -low) in float64 and stored in the image's dtype, smoothed along the rows then the columns."""
    ids = torch.tensor([4, 0, 2**33 + 7])
    like = torch.zeros(1, dtype=dtype)
    got = imagenet_c._smooth_field(SampleRandom(ids, 3, "f"), size, size, sigma, sigma, -1.0, like)
    draw = SampleRandom(ids, 3, "f").uniform(size, size, dtype=torch.float64) * 2.0 - 1.0
    expected = _smoothed_in_bands(_smoothed_in_bands(draw.to(dtype), sigma, -2), sigma, -1)
    assert got.dtype == dtype and torch.equal(got, expected)


def test_both_suites_elastic_transform_and_snow_are_at_revision_2():
    """Elastic's banded smoothing and snow's crop-only zoom moved bits (revision 2): the revision is
    what makes a run begun with revision 1 refuse to resume (tests/test_engine.py: the protocol's
    hash names it). The other kernels keep revision 1."""
    for suite in imagenet_c.SUITES:
        for name in imagenet_c.NAMES:
            assert get_corruption(f"{suite}/{name}").revision == (2 if name in ("elastic_transform", "snow") else 1)


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elastic_transform_is_its_unfused_formula_bit_for_bit(size, dtype):
    """imagecorruptions' elastic transform computes its sampling grid in place (imagenet_c.
    _to_grid_coordinate_); it must not move a rounding: the same output as the plain formula, a
    float64 draw mapped to U(-d, d) then stored in the image's dtype, the two smoothings (revision 2:
    `_smoothed_in_bands`), times alpha, plus the pixel index, (2 p + 1) / n - 1, grid_sample with reflection."""
    x = _images(3, size, seed=size).to(dtype)
    ids = torch.tensor([4, 0, 2**33 + 7])
    h = w = size
    for severity in range(1, 6):
        alpha = imagenet_c._row("imagenet-c", "elastic_transform", severity)
        rng = SampleRandom(ids, 3, "elastic")
        shifts = []
        for _ in range(2):
            field = rng.uniform(h, w, dtype=torch.float64).mul_(2.0 * h * 0.005).add_(-h * 0.005).to(dtype)
            shifts.append(_smoothed_in_bands(_smoothed_in_bands(field, h * 0.01, -2), w * 0.01, -1) * alpha)
        cols = torch.arange(w, dtype=dtype)[None, :] + shifts[0]
        rows = torch.arange(h, dtype=dtype)[:, None] + shifts[1]
        grid = torch.stack([(2.0 * cols + 1.0) / w - 1.0, (2.0 * rows + 1.0) / h - 1.0], dim=-1)
        expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False).clamp_(0, 1)
        got = get_corruption("imagenet-c/elastic_transform")(x, severity, SampleRandom(ids, 3, "elastic"), _spec(x))
        assert torch.equal(got, expected), severity


def _pixelate_by_the_definition(u: torch.Tensor, suite: str, c: float) -> torch.Tensor:
    """Pixelate as main's kernel computes it, written plainly: each box mean a sum from zero over the
    box's inputs in order, divided by their count (embedding_bag's 'mean'), along the rows first and
    then along the columns, clipped, then every output reads its small pixel. The boxes and picks
    are the ones `test_pixelate_is_pillows_box_down_then_up_for_every_size` checks against Pillow."""
    def means_along_rows(v: torch.Tensor) -> torch.Tensor:
        n = v.shape[-2]
        rows = []
        for weights in imagenet_c._box_rows(n, max(1, int(n * c))):
            inputs = torch.nonzero(weights > 0)[:, 0].tolist()
            total = torch.zeros_like(v[..., 0, :])
            for i in inputs:
                total = total + v[..., i, :]
            rows.append(total / len(inputs))
        return torch.stack(rows, dim=-2)

    up = "nearest" if suite == "imagenet-c" else "box"
    small = means_along_rows(means_along_rows(u).transpose(-1, -2)).transpose(-1, -2).clamp(0, 1)
    rows_pick = imagenet_c._pixelate_plan(u.shape[-2], c, up)[2]
    cols_pick = imagenet_c._pixelate_plan(u.shape[-1], c, up)[2]
    return small[..., rows_pick, :][..., cols_pick]


@pytest.mark.parametrize("suite", imagenet_c.SUITES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixelate_is_its_definition_bit_for_bit(suite, dtype):
    """The kernel's grouping of planes (and any later rewrite) must not move a rounding: every
    severity at 64 and 224 px, and at 224 x 160, on a batch that 224 px splits into groups. (In
    float16, embedding_bag sums in float32 and rounds before dividing: not this definition.)"""
    kernel = get_corruption(f"{suite}/pixelate")
    for h, w in ((64, 64), (224, 224), (224, 160)):
        x = torch.rand(12, 3, h, w, generator=torch.Generator().manual_seed(h + w)).to(dtype)
        for severity, c in enumerate(imagenet_c.TABLES[suite]["pixelate"], start=1):
            got = kernel(x, float(severity), SampleRandom(torch.arange(12), 0, "pixelate"), _spec(x))
            expected = _pixelate_by_the_definition(x, suite, c)
            assert got.dtype == dtype and torch.equal(got, expected), (h, w, severity)


@pytest.mark.parametrize("name", ["imagenet-c/elastic_transform", "imagenet-c/snow"])
def test_an_image_gets_the_same_bits_alone_and_in_a_batch_at_224_px(name):
    """Common random numbers at ImageNet-C's size, where the revision-2 kernels' matrix products
    (banded smoothing, the crop's zoom) are large enough for the matrix library to block them: each
    image, alone, must get the bits it gets in the batch (the contract test's 32-px images are one block)."""
    x = _images(4, 224, seed=1)
    ids = torch.arange(10, 14)
    spec = get_corruption(name)
    whole = spec(x, 3.0, SampleRandom(ids, 2, name), _spec(x))
    for i in range(4):
        alone = spec(x[i : i + 1], 3.0, SampleRandom(ids[i : i + 1], 2, name), _spec(x))
        assert torch.equal(alone[0], whole[i]), i


@pytest.mark.parametrize("channels", [1, 3])
def test_shift_sum_is_its_loop_of_slices_bit_for_bit(channels):
    """Motion blur's and snow's streak (`_shift_sum`) takes its windows by offset: the same bits as
    the plain loop, each sample's weighted slices of the edge-padded image added in step order,
    stopping at the first shift as long as the image (reached by 10-px images at radius 12); each
    add is torch's `add_(window, alpha=weight)`, as the kernel has always added."""
    import math

    g = torch.Generator().manual_seed(channels)
    for size, radius, sigma in ((10, 12, 8.0), (30, 10, 4.0), (64, 15, 12.0)):
        u = torch.rand(5, channels, size, size + 3, generator=g)
        angle = torch.rand(5, dtype=torch.float64, generator=g) * 360.0 - 180.0
        weights = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(2 * radius + 1)]
        weights = [v / sum(weights) for v in weights]
        pad = 2 * radius + 1
        padded = F.pad(u, (pad, pad, pad, pad), mode="replicate")
        expected = torch.zeros_like(u)
        for s in range(5):
            rad = float(np.deg2rad(angle[s].item()))
            for i, weight in enumerate(weights):
                dy, dx = -math.ceil(i * math.sin(rad) - 0.5), -math.ceil(i * math.cos(rad) - 0.5)
                if abs(dy) >= size or abs(dx) >= size + 3:
                    break
                expected[s].add_(padded[s, :, pad - dy : pad - dy + size, pad - dx : pad - dx + size + 3], alpha=weight)
        assert torch.equal(imagenet_c._shift_sum(u, angle, radius, sigma), expected), size
