"""ImageNet-C's 15 corruptions at ImageNet-C's own parameters, one table per image size.

Two suites, each a set of kernels named `<suite>/<ImageNet-C name>` (`imagenet-c/fog`):

imagenet-c : the 224-px tables of bethgelab/imagecorruptions 1.1.2 (imagecorruptions/corruptions.py,
    one function per corruption), which are those of hendrycks/robustness
    ImageNet-C/create_c/make_imagenet_c.py except `elastic_transform` (imagecorruptions' version,
    relative to the image size, which is what `pip install imagecorruptions` users run).
tiny-imagenet-c : the 64-px tables of hendrycks/robustness ImageNet-C/create_c/make_tinyimagenet_c.py.

A suite's kernels apply its table whatever the image size (a table is a choice of strengths, not a
resize): the protocol file names the suite (`imagenet-c`, `tiny-imagenet-c`), and the run's manifest
says which table ran on which image size. The catalog's kernels of the same names (image.py) keep
their own tables; these never replace them.

A kernel's parameter is ImageNet-C's severity, an integer 1-5 (0 is the identity). Values are read
in the modality's value range and clipped back into it. Randomness comes from `rng` only (common
random numbers), so a stochastic kernel matches its reference in distribution, not draw for draw;
deterministic ones (defocus, zoom, brightness, contrast, pixelate, JPEG) follow the reference's
arithmetic. JPEG runs through Pillow's libjpeg on the host.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.batch import ModalitySpec
from ..errors import InputError
from . import image, noise
from .registry import CorruptionSpec, register_suite
from .rng import SampleRandom, runs_compiled

SUITES = ("imagenet-c", "tiny-imagenet-c")
IMAGE_SIZE = {"imagenet-c": 224, "tiny-imagenet-c": 64}
SOURCE = {
    "imagenet-c": "bethgelab/imagecorruptions 1.1.2 imagecorruptions/corruptions.py (make_imagenet_c.py's 224-px tables)",
    "tiny-imagenet-c": "hendrycks/robustness ImageNet-C/create_c/make_tinyimagenet_c.py (64-px tables)",
}
NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
         "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
# Kernels whose output bits changed on purpose (`CorruptionSpec.revision`, in both suites): what
# changed is in the kernel's docstring; every protocol that can select one hashes its revision.
REVISIONS = {"elastic_transform": 2, "snow": 2}

# Each corruption's rows for severities 1-5, per suite, as the cited function writes them.
TABLES: dict[str, dict[str, tuple]] = {
    "imagenet-c": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),  # np.arange(1, stop, step)
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                 (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12),  # alpha
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
    },
    "tiny-imagenet-c": {
        "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
        "shot_noise": (250, 100, 50, 30, 15),
        "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
        "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
        "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
        "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        "zoom_blur": ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
        "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
        "fog": ((0.4, 3), (0.7, 3), (1.0, 2.5), (1.5, 2), (2.0, 1.75)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        # (alpha, sigma, affine jitter) in pixels: IMSIZE * (0, 0, .08), (.05, .3, .06), ... with IMSIZE 64
        "elastic_transform": ((0.0, 0.0, 5.12), (3.2, 19.2, 3.84), (6.4, 5.12, 3.84), (6.4, 1.92, 1.92),
                              (10.24, 1.92, 1.28)),
        "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
        "jpeg_compression": (65, 58, 50, 40, 25),
    },
}


def _row(suite: str, name: str, severity: float):
    if severity != int(severity) or not 1 <= severity <= 5:
        raise InputError(f"corruption {suite}/{name}: severity {severity:g}; ImageNet-C's severities are the integers 1-5")
    return TABLES[suite][name][int(severity) - 1]


def _unit(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    return image._to_unit(x, spec)


def _back(u: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    return image._from_unit_(u, spec)


def _padded_index(n: int, before: int, after: int, mode: str, device) -> torch.Tensor:
    """Source indices of a 1-D signal of length n padded by (before, after).

    mode: "reflect101" (cv2's BORDER_REFLECT_101, d c b | a b c d), "symmetric" (scipy's 'reflect',
    c b a | a b c), "edge" (scipy's 'nearest'); reflections fold as often as the padding needs.
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "symmetric":
        period = 2 * n
        i = i % period
        return torch.where(i < n, i, period - 1 - i)
    period = max(2 * n - 2, 1)
    i = i % period
    return torch.where(i < n, i, period - i)


def _pad(u: torch.Tensor, rows: int, cols: int, mode: str) -> torch.Tensor:
    """(B, C, H, W) padded by `rows` above and below and `cols` left and right, borders as `_padded_index`.

    F.pad's "reflect" is reflect-101 and its "replicate" is "edge", the same copies as the index
    gathers but 36-49x faster on CPU (measured on 16 images at 224 px, 7 px of padding); the
    gathers remain for scipy's "symmetric" (no F.pad mode) and for reflections that fold more than once.
    """
    h, w = u.shape[-2:]
    if mode == "edge" or (mode == "reflect101" and rows < h and cols < w):
        return F.pad(u, (cols, cols, rows, rows), mode="replicate" if mode == "edge" else "reflect")
    padded = u.index_select(-2, _padded_index(h, rows, rows, mode, u.device)) if rows else u
    return padded.index_select(-1, _padded_index(w, cols, cols, mode, u.device)) if cols else padded


def _filter_axis(u: torch.Tensor, weights: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """Correlate every plane of (B, C, H, W) with a centred odd 1-D kernel along dim (-1 or -2)."""
    k = weights.numel()
    r = k // 2
    padded = _pad(u, r if dim == -2 else 0, r if dim == -1 else 0, mode)
    b, c = u.shape[:2]
    if dim == -1:
        planes = padded.reshape(b * c, 1, -1, padded.shape[-1])
        kernel = weights.to(u.dtype).reshape(1, 1, 1, k)
    else:
        planes = padded.reshape(b * c, 1, padded.shape[-2], -1)
        kernel = weights.to(u.dtype).reshape(1, 1, k, 1)
    return F.conv2d(planes, kernel).reshape(u.shape)


def _gaussian_weights(sigma: float, truncate: float, device) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter1d's kernel: radius int(truncate * sigma + 0.5), normalised."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _skimage_gaussian(u: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian on each channel (scipy gaussian_filter; its default mode 'nearest')."""
    g = _gaussian_weights(sigma, truncate, u.device)
    return _filter_axis(_filter_axis(u, g, -1, mode), g, -2, mode)


# --- noise: the catalog's kernels at the suite's strengths --------------------------------------------


def _gaussian_noise(x, c, rng, spec):
    return noise.gaussian_noise(x, float(c), rng, spec)


def _shot_noise(x, c, rng, spec):
    """np.random.poisson(x c) / c, drawn as round(x c + sqrt(x c) z) / c, floored at 0: the Gaussian
    approximation made integer like the Poisson counts (closer to them in mean |change| than the
    continuous one at ImageNet-C's smallest c, 3 and 5)."""

    def add_counts(z: torch.Tensor, u: torch.Tensor) -> None:
        counts = u.mul(float(c))
        image._from_unit_(z.mul_(counts.sqrt()).add_(counts).round_().clamp_(min=0.0).div_(float(c)), spec)

    return rng.combine("normal", add_counts, _unit(x, spec))


def _impulse_noise(x, c, rng, spec):
    """skimage.util.random_noise(mode='s&p', amount=c): each value salt or pepper with probability c / 2."""
    return image.impulse_noise(x, float(c), rng, spec)


# --- blurs ----------------------------------------------------------------------------------------------


def _cv2_gaussian_kernel(ksize: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0."""
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


@functools.cache
def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """make_imagenet_c.py `disk`: the aliased disk X^2 + Y^2 <= r^2 on [-8, 8]^2 (or [-r, r]^2 when
    r > 8), normalised, then cv2.GaussianBlur (ksize 3, or 5 when r > 8; BORDER_REFLECT_101) with
    sigma alias_blur; cropped to its non-zero support (the zero rim adds nothing)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).to(torch.float64)
    disk = (disk / disk.sum())[None, None]
    g = _cv2_gaussian_kernel(ksize, alias_blur)
    blurred = _filter_axis(_filter_axis(disk, g, -1, "reflect101"), g, -2, "reflect101")[0, 0]
    keep = blurred.abs().sum(dim=0) > 0
    lo = int(torch.nonzero(keep)[0])
    return blurred[lo : blurred.shape[0] - lo, lo : blurred.shape[1] - lo].contiguous()


def _defocus_blur(x, row, rng, spec):
    """make_imagenet_c.py `defocus_blur`: cv2.filter2D of each channel with `_disk` (BORDER_REFLECT_101)."""
    kernel = _disk(float(row[0]), float(row[1])).to(device=x.device, dtype=x.dtype)
    k = kernel.shape[-1]
    r = k // 2
    u = _unit(x, spec)
    b, c, h, w = u.shape
    padded = _pad(u, r, r, "reflect101").reshape(1, b * c, h + 2 * r, w + 2 * r)
    y = F.conv2d(padded, kernel.expand(b * c, 1, k, k), groups=b * c).reshape(b, c, h, w)
    return _back(y, spec)


def _shift_sum(u: torch.Tensor, angle_deg: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """imagecorruptions `_motion_blur` (ImageMagick's MotionBlurImage as make_tinyimagenet_c.py calls
    it through Wand): the sum over i < 2 radius + 1 of copies shifted by i steps along the angle,
    weighted exp(-i^2 / (2 sigma^2)) normalised, borders replicated, stopping at the first shift
    as long as the image. One window of an edge-padded copy per (sample, step), taken by
    `as_strided` at its offset: the (2 radius + 1) x batch adds are small, and slicing four
    dimensions per add cost about 1 ms per 16 images of call overhead, at 64 px as at 224 px."""
    b, c, h, w = u.shape
    width = 2 * radius + 1
    weights = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(width)]
    weights = [v / sum(weights) for v in weights]
    rad = np.deg2rad(angle_deg.detach().cpu().double().numpy()) if angle_deg.device.type != "meta" else np.zeros(b)
    pad = width
    padded = _pad(u, pad, pad, "edge")
    sample_stride, channel_stride, row_stride, column_stride = padded.stride()
    out = torch.zeros_like(u)
    for s in range(b):
        sin, cos = math.sin(rad[s]), math.cos(rad[s])
        target = out[s]
        for i in range(width):
            dy, dx = -math.ceil(i * sin - 0.5), -math.ceil(i * cos - 0.5)
            if abs(dy) >= h or abs(dx) >= w:
                break
            start = padded.storage_offset() + s * sample_stride + (pad - dy) * row_stride + (pad - dx) * column_stride
            window = padded.as_strided((c, h, w), (channel_stride, row_stride, column_stride), start)
            target.add_(window, alpha=weights[i])
    return out


def _motion_blur(x, row, rng, spec):
    """imagecorruptions `motion_blur`: `_shift_sum` at an angle U(-45, 45) degrees per sample."""
    radius, sigma = row
    angle = rng.uniform(dtype=torch.float64) * 90.0 - 45.0
    return _back(_shift_sum(_unit(x, spec), angle, int(radius), float(sigma)), spec)


@functools.cache
def _glass_displacements(delta: int, iterations: int, grid: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference shuffle's displacement law: ((n, 2) row and column offsets, (n,) cumulative probabilities).

    make_imagenet_c.py `glass_blur` visits every interior pixel, bottom-right to top-left, drawing an
    offset randint(-d, d) per axis, `iterations` times, and "swaps" with
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]`; on an (H, W, 3) image both sides are views, so the
    second assignment writes back what the first wrote: pixel (h, w) takes the value at (h', w'),
    which stays. Copies from already-visited pixels chain, so displacements spread much further than
    one move's. No pixel value steers the copies, so the law is found once by running that loop on
    pixel indices (a `grid`-px square, numpy seed 0) and reading each interior pixel's source offset.
    """
    draws = np.random.RandomState(0).randint(-delta, delta, size=(iterations, grid, grid, 2))
    index = np.arange(grid * grid).reshape(grid, grid)
    for it in range(iterations):
        for h in range(grid - delta, delta, -1):
            for w in range(grid - delta, delta, -1):
                dx, dy = draws[it, h, w]
                index[h, w] = index[h + dy, w + dx]
    rows, cols = np.divmod(index, grid)
    inner = slice(2 * delta + 2, grid - 2 * delta - 2)
    moves = np.stack([(rows - np.arange(grid)[:, None])[inner, inner].ravel(),
                      (cols - np.arange(grid)[None, :])[inner, inner].ravel()], axis=1)
    offsets, counts = np.unique(moves, axis=0, return_counts=True)
    return torch.from_numpy(offsets).long(), torch.from_numpy(np.cumsum(counts) / counts.sum())


def _glass_shuffle(u: torch.Tensor, rng: SampleRandom, delta: int, iterations: int) -> torch.Tensor:
    """Each pixel replaced by the one at a displacement drawn from `_glass_displacements` (both axes
    together: a pixel carried along moves in both), one batched gather with borders clamped, instead
    of the reference's per-pixel Python loop."""
    b, c, h, w = u.shape
    offsets, cdf = _glass_displacements(delta, iterations)
    offsets, cdf = offsets.to(u.device), cdf.to(device=u.device, dtype=torch.float64)
    moves = offsets[torch.searchsorted(cdf, rng.uniform(h, w, dtype=torch.float64)).clamp_(max=len(offsets) - 1)]
    rows = (torch.arange(h, device=u.device)[:, None] + moves[..., 0]).clamp_(0, h - 1)
    cols = (torch.arange(w, device=u.device)[None, :] + moves[..., 1]).clamp_(0, w - 1)
    index = (rows * w + cols).reshape(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(u.reshape(b, c, h * w), 2, index).reshape(b, c, h, w)


def _glass_blur(x, row, rng, spec):
    """make_imagenet_c.py `glass_blur`: Gaussian blur, 8-bit truncation, local pixel shuffle, blur again.

    The shuffle is `_glass_shuffle`: the reference's displacement law per pixel, not its permutation,
    so the output matches the reference in distribution, not pixel for pixel.
    """
    sigma, delta, iterations = row
    u = _unit(x, spec)
    blurred = _skimage_gaussian(u, float(sigma)).clamp_(0.0, 1.0).mul_(255.0).floor_().div_(255.0)
    return _back(_skimage_gaussian(_glass_shuffle(blurred, rng, int(delta), int(iterations)), float(sigma)), spec)


def _zoom_taps(n: int, zoom: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """make_imagenet_c.py `clipped_zoom` along one axis as bilinear taps (low index, high index,
    weight of high): crop ceil(n / zoom) centred pixels, scipy.ndimage.zoom order 1 (output i reads
    input i (in - 1) / (out - 1), out = round(in zoom)), trim the centre n."""
    crop = int(math.ceil(n / zoom))
    top = (n - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - n) // 2
    pos = torch.arange(trim, trim + n, dtype=torch.float64) * ((crop - 1) / (out - 1) if out > 1 else 0.0)
    low = pos.floor().clamp(0, crop - 1)
    frac = pos - low
    high = (low + 1).clamp(max=crop - 1)
    return low.long() + top, high.long() + top, frac


def _zoom_rows(n: int, zoom: float) -> torch.Tensor:
    """(n, n) matrix of `_zoom_taps` (for checks and the snow layer)."""
    low, high, frac = _zoom_taps(n, zoom)
    weights = torch.zeros((n, n), dtype=torch.float64)
    rows = torch.arange(n)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights


def _zoom_rows_of(u: torch.Tensor, taps) -> torch.Tensor:
    """Bilinear taps along the rows (dim -2): whole rows gathered and blended, contiguous copies."""
    low, high, frac = taps
    frac = frac.to(device=u.device, dtype=u.dtype)[:, None]
    return torch.lerp(u.index_select(-2, low.to(u.device)), u.index_select(-2, high.to(u.device)), frac)


def _zoom_blur(x, row, rng, spec):
    """make_imagenet_c.py `zoom_blur`: (x + sum over np.arange(1, stop, step) of clipped_zoom(x, z)) / (count + 1).

    Each zoom is two bilinear passes of whole-row gathers, the columns' pass on the transposed
    image (gathering single elements along the last axis is several times slower on CPU)."""
    stop, step = row
    u = _unit(x, spec)
    h, w = u.shape[-2:]
    zooms = np.arange(1, float(stop), float(step))
    total_t = u.transpose(-1, -2).clone(memory_format=torch.contiguous_format)  # (.., W, H)
    for z in zooms:
        along_rows = _zoom_rows_of(u, _zoom_taps(h, float(z))).transpose(-1, -2).contiguous()
        total_t += _zoom_rows_of(along_rows, _zoom_taps(w, float(z)))
    return _back(total_t.transpose(-1, -2).contiguous().div_(len(zooms) + 1), spec)


# --- weather --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _zoom_of_crop(n: int, zoom: float) -> torch.Tensor:
    """(n, ceil(n / zoom)): `_zoom_rows` without its columns outside the centre crop, all zero."""
    crop = int(math.ceil(n / zoom))
    top = (n - crop) // 2
    return _zoom_rows(n, zoom)[:, top : top + crop].contiguous()


def _snow(x, row, rng, spec):
    """make_imagenet_c.py `snow`: a layer N(loc, scale) per pixel, clipped_zoom'd, zeroed below the
    threshold, motion-blurred (`_shift_sum` at U(-135, -45) degrees), rounded to 8 bits; the image
    blended with max(x, 1.5 grey + 0.5) (cv2 RGB2GRAY) and the layer and its 180-degree rotation added.

    Revision 2 (issue 23): clipped_zoom reads only the layer's centre crop (ceil(n / zoom) pixels a
    side), so only the crop is drawn and multiplied (`_zoom_of_crop`); revision 1 drew the whole
    layer and multiplied by the whole (n, n) matrices, whose other columns are zero. The law is the
    same; the bits are not (other draws, and the products' sums in another order)."""
    loc, scale, zoom, threshold, radius, sigma, blend = row
    u = _unit(x, spec)
    h, w = u.shape[-2:]
    if zoom != 1:
        rows, cols = _zoom_of_crop(h, float(zoom)).to(u), _zoom_of_crop(w, float(zoom)).to(u)
        crop = rng.normal(1, rows.shape[1], cols.shape[1], dtype=u.dtype).mul_(scale).add_(loc)
        layer = torch.matmul(rows, torch.matmul(crop, cols.T))
    else:
        layer = rng.normal(1, h, w, dtype=u.dtype).mul_(scale).add_(loc)
    layer = layer.masked_fill_(layer < threshold, 0.0).clamp_(0.0, 1.0)
    angle = rng.uniform(dtype=torch.float64) * 90.0 - 135.0
    layer = _shift_sum(layer, angle, int(radius), float(sigma)).mul_(255.0).round_().div_(255.0)
    lifted = image._luma(u).mul_(1.5).add_(0.5) if u.shape[1] == 3 else u * 1.5 + 0.5
    y = torch.maximum(u, lifted).lerp_(u, blend)
    return _back(y.add_(layer).add_(layer.flip(-1, -2)), spec)


def frost_photo_folder() -> Path | None:
    """imagecorruptions' folder of ImageNet-C's frost photographs, when the package is installed."""
    found = importlib.util.find_spec("imagecorruptions")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / "frost"
    return folder if (folder / "frost1.png").is_file() else None


def frost_source() -> str:
    """Which frost the suites run: ImageNet-C's photographs (imagecorruptions installed) or the texture."""
    folder = frost_photo_folder()
    if folder is None:
        return "a procedural texture (imagecorruptions not installed: pip install 'robustbench-mm[imagenet-c]')"
    return f"ImageNet-C's photographs (imagecorruptions, {folder})"


_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # np.random.randint(5): frost6 never


@functools.lru_cache(maxsize=8)
def _frost_photos(suite: str, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The five photographs rescaled as the suite's `frost` does, as one (5, 3, Hmax, Wmax) float
    tensor in [0, 1] (zero-padded) and their (5, 2) sizes.

    imagecorruptions: cv2.resize by 1.1 x the factor that makes the photo cover the image (1 when it
    does), bicubic; make_tinyimagenet_c.py: by 0.3, bilinear (the cover rule then, if 0.3 is too small).
    Resized with torch's bicubic/bilinear (cv2's kernels, a = -0.75, half-pixel centres), rounded to 8 bits.
    """
    from PIL import Image

    folder = frost_photo_folder()
    photos = []
    for name in _FROST_FILES:
        with Image.open(folder / name) as im:
            photo = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float64).copy()).permute(2, 0, 1)
        ph, pw = photo.shape[-2:]
        cover = max(1.0, h / ph, w / pw)
        if suite == "tiny-imagenet-c" and ph * 0.3 > h and pw * 0.3 > w:
            size, mode = (int(round(ph * 0.3)), int(round(pw * 0.3))), "bilinear"
        else:
            factor = cover * 1.1
            size, mode = (int(math.ceil(ph * factor)), int(math.ceil(pw * factor))), "bicubic"
        resized = F.interpolate(photo[None], size=size, mode=mode, align_corners=False)[0]
        photos.append(resized.round_().clamp_(0, 255).div_(255.0))
    hmax, wmax = max(p.shape[1] for p in photos), max(p.shape[2] for p in photos)
    stack = torch.zeros((len(photos), 3, hmax, wmax), dtype=torch.float64)
    for i, p in enumerate(photos):
        stack[i, :, : p.shape[1], : p.shape[2]] = p
    sizes = torch.tensor([p.shape[1:] for p in photos], dtype=torch.int64)
    return stack, sizes


def _frost_crops(suite: str, rng: SampleRandom, u: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): per sample one of the five photographs (uniformly) cropped at a uniform position."""
    b, c, h, w = u.shape
    stack, sizes = _frost_photos(suite, h, w)
    stack, sizes = stack.to(device=u.device, dtype=u.dtype), sizes.to(u.device)
    which = rng.integers(5)
    top = torch.floor(rng.uniform(dtype=torch.float64) * (sizes[which, 0] - h)).long()
    left = torch.floor(rng.uniform(dtype=torch.float64) * (sizes[which, 1] - w)).long()
    if u.device.type == "meta":
        return torch.empty_like(u)
    picks = zip(which.tolist(), top.tolist(), left.tolist())  # one host sync for B small integers
    crops = torch.stack([stack[p, :, t : t + h, l : l + w] for p, t, l in picks])  # (B, 3, H, W)
    if c != 3:
        luma = torch.tensor([0.2989, 0.5870, 0.1140], dtype=u.dtype, device=u.device)  # imagecorruptions rgb2gray
        crops = torch.einsum("c,bchw->bhw", luma, crops)[:, None].expand(b, c, h, w)
    return crops


def _frost(suite: str):
    def frost(x, row, rng, spec):
        """make_imagenet_c.py `frost`: a x + b photo, with ImageNet-C's photographs when imagecorruptions
        is installed (`frost_source`), else image._frost_texture standing in for them."""
        a, weight = row
        u = _unit(x, spec)
        layer = _frost_crops(suite, rng, u) if frost_photo_folder() is not None else image._frost_texture(rng, u)
        return _back(torch.add(u * a, layer, alpha=weight), spec)

    return frost


def _plasma_quarters(rng: SampleRandom, size: int, decay: float, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The last diamond-square step's four (B, size / 2, size / 2) grids (corner, across, down,
    centre): the height map is their interleave, `map[2i + di, 2j + dj]` (size >= 2).

    The same values, bit for bit, as the catalog's `image._plasma_fractal` before its rescaling (a
    test checks it): the same draws in the same order and the same sums in the same order. The
    catalog's `total / 4 + wibble (2u - 1) wibble` is written `noise + 0.25 total` with noise
    2 wibble^2 (u - 0.5): each product has the same real value and exact factors, so it rounds
    alike (only a subnormal sum could differ, and only if the add were fused). What differs is the
    layout. The catalog writes each step into strided views of the full map, wraps with `roll` (a
    copy per neighbour) and draws its 24 noise grids one call each; here each step's grid of
    corners carries one wrapped row and column, so every wrapped neighbour is a shifted slice; the
    noise grids are one pass (`SampleRandom.uniform_streams`) scaled one step at a time; and a finer
    grid is written by `_interleave`. The last step's grids are returned unwritten, for
    `_plasma_crop` to write only the crop. When the draws ran compiled (`rng.runs_compiled`), the
    steps run as one compiled loop per map instead (`_plasma_numba.py`, the same bits). `dtype` is
    float32 or float64.
    """
    if size < 2:
        raise ValueError(f"the fractal needs size >= 2, got {size}")
    b, device = len(rng), rng.device
    widths = [size // 2**k for k in range(size.bit_length() - 1, 0, -1)]  # n per step, coarse to fine
    scales, wibble = [], 100.0
    for _ in widths:
        scales.append(2.0 * (wibble * wibble))
        wibble /= decay
    draws = rng.uniform_streams(tuple(n * n for n in widths for _ in range(3)), dtype=dtype)  # one pass for all 24
    if runs_compiled(draws.device):
        from . import _plasma_numba

        values = draws.numpy()
        quarters = torch.empty((4, b, size // 2, size // 2), dtype=dtype)
        _plasma_numba.plasma_quarters(values, np.array(scales, dtype=values.dtype), quarters.numpy())
        return tuple(quarters)
    # u - 0.5 is exact, so each noise value is the product rounded once
    noises, start = [], 0
    for n, scale in zip(widths, scales):
        grids = draws[:, start : start + 3 * n * n].sub_(0.5).mul_(scale)
        noises += [part.view(b, n, n) for part in grids.split(n * n, dim=1)]
        start += 3 * n * n
    noises = iter(noises)
    corners = torch.zeros((b, 2, 2), dtype=dtype, device=device)  # one corner, wrapped
    for n in widths:
        inner = corners[:, :n, :n]
        # centres: (C[i, j] + C[i+1, j]) + (C[i, j+1] + C[i+1, j+1]), as roll(-1) on rows then columns
        rows = corners[:, :n, :] + corners[:, 1:, :]
        centres = torch.empty((b, n + 1, n + 1), dtype=dtype, device=device)  # wrapped at the front
        middle = centres[:, 1:, 1:]
        torch.add(rows[:, :, :n], rows[:, :, 1:], out=middle)
        torch.add(next(noises), middle, alpha=0.25, out=middle)
        centres[:, 0, 1:] = middle[:, -1]
        centres[:, 1:, 0] = middle[:, :, -1]
        # across: S[i, j] + S[i-1, j] + C[i, j] + C[i, j+1]; down: S[i, j] + S[i, j-1] + C[i, j] + C[i+1, j]
        across = middle + centres[:, :-1, 1:]
        across.add_(inner).add_(corners[:, :n, 1:])
        torch.add(next(noises), across, alpha=0.25, out=across)
        down = middle + centres[:, 1:, :-1]
        down.add_(inner).add_(corners[:, 1:, :n])
        torch.add(next(noises), down, alpha=0.25, out=down)
        if n == widths[-1]:
            return inner, across, down, middle
        # rows of an even length, so that a row's (value, value) pairs are complex numbers
        store = torch.empty((b, 2 * n + 1, 2 * n + 2), dtype=dtype, device=device)
        _interleave((inner, across, down, middle), store[:, :-1, :-2])
        corners = store[:, :, :-1]
        corners[:, -1] = corners[:, 0]
        corners[:, :, -1] = corners[:, :, 0]


def _interleave(quarters: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
    """out[:, 2i + di, 2j + dj] = (corner, across, down, centre)[2 di + dj][:, i, j], out (B, 2m, 2k).

    As complex pairs (corner, across) and (down, centre): one contiguous write per row parity
    instead of two stride-2 writes, which cost 4-5x a contiguous one."""
    inner, across, down, middle = quarters
    pairs = out.unflatten(1, (out.shape[1] // 2, 2)).unflatten(3, (out.shape[2] // 2, 2))  # [:, i, di, j, dj]
    torch.complex(inner, across, out=torch.view_as_complex(pairs[:, :, 0]))
    torch.complex(down, middle, out=torch.view_as_complex(pairs[:, :, 1]))


def _plasma_crop(rng: SampleRandom, h: int, w: int, decay: float, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, h, w): the catalog's plasma fractal (`image._plasma_like` in `dtype`) cropped, identical.

    Rescaled to [0, 1] by the whole map's range, as the catalog does (the range of the four
    quarter grids), but only the crop is written and rescaled.
    """
    size = image._next_power_of_two(max(h, w))
    if size == 1:  # the catalog's map is one zero, rescaled to 0
        return torch.zeros((len(rng), 1, h, w), dtype=dtype, device=rng.device)
    quarters = _plasma_quarters(rng, size, decay, dtype)
    low = torch.stack([q.amin(dim=(1, 2)) for q in quarters]).amin(dim=0)[:, None, None]
    top = torch.stack([q.amax(dim=(1, 2)) for q in quarters]).amax(dim=0)[:, None, None].sub_(low).clamp_(min=1e-12)
    rows, cols = h + h % 2, w + w % 2  # even, for `_interleave`
    crop = torch.empty((len(rng), rows, cols), dtype=dtype, device=rng.device)
    _interleave(tuple(q[:, : rows // 2, : cols // 2] for q in quarters), crop)
    return crop.sub_(low).div_(top)[:, None, :h, :w]


def _fog(x, row, rng, spec):
    """make_imagenet_c.py `fog`: (x + c p) max(x) / (max(x) + c), p a plasma fractal of the image's
    next power-of-two size, max over the whole image."""
    strength, decay = row
    u = _unit(x, spec)
    peak = u.amax(dim=(1, 2, 3), keepdim=True)
    # float32 unless the image is float64: the fractal is rescaled to [0, 1], 23-bit draws are plenty
    work = torch.float64 if u.dtype == torch.float64 else torch.float32
    plasma = _plasma_crop(rng, u.shape[-2], u.shape[-1], float(decay), work).to(u.dtype)
    y = torch.add(u, plasma, alpha=float(strength))
    return _back(y.mul_(peak / (peak + strength)), spec)


def _brightness(x, c, rng, spec):
    """make_imagenet_c.py `brightness`: HSV value + c, clipped to 1 (skimage rgb2hsv/hsv2rgb).

    With hue and saturation fixed, RGB is linear in the value V = max(R, G, B), so the pixel is
    scaled by V' / V (black, V = 0, becomes grey V'); one channel: x + c, as imagecorruptions does.
    """
    u = _unit(x, spec)
    if u.shape[1] != 3:
        return _back(u + c, spec)
    value = u.amax(dim=1, keepdim=True)
    lifted = (value + c).clamp_(max=1.0)
    scaled = u * (lifted / value.clamp(min=1e-12))
    return _back(torch.where(value > 0, scaled, lifted.expand_as(u)), spec)


def _contrast(x, c, rng, spec):
    """make_imagenet_c.py `contrast`: (x - m) c + m with m each channel's mean over the image."""
    u = _unit(x, spec)
    means = u.mean(dim=(2, 3), keepdim=True)
    return _back((u - means).mul_(c).add_(means), spec)


# --- digital --------------------------------------------------------------------------------------------


def _to_grid_coordinate_(pixel: torch.Tensor, n: int, out: torch.Tensor) -> None:
    """grid_sample's normalised coordinate (align_corners False) of pixel coordinates along an axis
    of n pixels into `out`, consuming `pixel`: the same floats as `_sample_bilinear`'s
    (2 p + 1) / n - 1, in three in-place passes for its four. 2 p + 1 is 2 (p + 0.5), and doubling
    is exact in binary floating point, so (2 p + 1) / n and (p + 0.5) / (n / 2) are the same real
    number (n / 2 is exact too), rounded once.
    """
    torch.sub(pixel.add_(0.5).div_(n / 2), 1.0, out=out)


def _sample_bilinear(u: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """u at pixel coordinates (rows, cols), (B, H, W) each, bilinear, mirrored at the borders:
    about the edge pixels' centres (cv2 BORDER_REFLECT_101) with align_corners, else about their
    outer edges (scipy map_coordinates mode='reflect')."""
    h, w = u.shape[-2:]
    if align_corners:
        grid = torch.stack([cols * (2.0 / max(w - 1, 1)) - 1.0, rows * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    else:
        grid = torch.stack([(2.0 * cols + 1.0) / w - 1.0, (2.0 * rows + 1.0) / h - 1.0], dim=-1)
    return F.grid_sample(u, grid.to(u.dtype), mode="bilinear", padding_mode="reflection", align_corners=align_corners)


@functools.lru_cache(maxsize=32)
def _smoothing_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n): scipy gaussian_filter1d (truncate 3, mode 'reflect') as a matrix, borders folded in."""
    g = _gaussian_weights(sigma, 3.0, "cpu")
    r = g.numel() // 2
    source = _padded_index(n, r, r, "symmetric", "cpu")
    matrix = torch.zeros((n, n), dtype=torch.float64)
    for i in range(n):
        matrix[i].index_add_(0, source[i : i + 2 * r + 1], g)
    return matrix


def _band_rows(radius: int) -> int:
    """Output rows per block of a banded smoothing product: at least the kernel's width 2 radius + 1,
    so a block's inputs (its rows and `radius` more on each side) stay under twice its outputs,
    rounded up to a multiple of 16 (the float32 lanes of an AVX-512 register: at 224 px, blocks of
    15 and 30 rows took 1.4-2x the time of 16 and 32 for the product along the columns)."""
    return 16 * math.ceil((2 * radius + 1) / 16)


@functools.lru_cache(maxsize=32)
def _smoothing_bands(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> tuple:
    """`_smoothing_matrix(n, sigma)` cut into blocks of `_band_rows` output rows, each with the
    columns its Gaussian reaches: ((first row, end row, first input, end input, block), ...).

    Outside |i - j| <= radius the matrix is zero, the reflected border included (a tap's mirror image
    about an edge is nearer than the tap itself; a radius of n or more gives every block all n
    columns), so the blocks hold every nonzero weight and the products sum bands instead of whole rows."""
    matrix = _smoothing_matrix(n, sigma)
    radius = int(3.0 * sigma + 0.5)
    rows = _band_rows(radius)
    bands = []
    for first in range(0, n, rows):
        end = min(n, first + rows)
        low, high = max(0, first - radius), min(n, end + radius)
        bands.append((first, end, low, high, matrix[first:end, low:high].to(device=device, dtype=dtype)))
    return tuple(bands)


def _smooth_along_rows(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) smoothed along H: `_smoothing_matrix(H, sigma) @ field`, one block of rows at a time."""
    out = torch.empty_like(field)
    for first, end, low, high, block in _smoothing_bands(field.shape[-2], sigma, field.dtype, field.device):
        torch.matmul(block, field[:, low:high], out=out[:, first:end])
    return out


def _smooth_along_columns(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) smoothed along W: `field @ _smoothing_matrix(W, sigma).T`, one block of columns at a time."""
    out = torch.empty_like(field)
    for first, end, low, high, block in _smoothing_bands(field.shape[-1], sigma, field.dtype, field.device):
        torch.matmul(field[:, :, low:high], block.T, out=out[:, :, first:end])
    return out


def _smooth_field(rng: SampleRandom, h: int, w: int, sigma_h: float, sigma_w: float, low: float, like: torch.Tensor):
    """skimage gaussian(np.random.uniform(low, -low, (h, w)), sigma, mode='reflect', truncate=3),
    (B, H, W): the filter as two banded matrix products (revision 2 of both suites' elastic_transform,
    issue 23; revision 1 multiplied by the whole (n, n) matrices, about 4x the time at 224 px: the
    same weights, but the matrix library adds the terms in another order, which moved the output
    by up to 9.5e-7 in 0.09-0.23% of its values at 224 px, float32, severities 1-5).

    The draw is scaled and shifted in float64 and the sum stored in like's dtype by the add itself
    (the same roundings as a float64 result then `.to`, one pass and one float64 tensor fewer).
    """
    draw = rng.uniform(h, w, dtype=torch.float64).mul_(2.0 * -low)
    field = torch.add(draw, low, out=torch.empty(draw.shape, dtype=like.dtype, device=like.device))
    if sigma_h > 0:
        field = _smooth_along_rows(field, float(sigma_h))
    if sigma_w > 0:
        field = _smooth_along_columns(field, float(sigma_w))
    return field


def _elastic_imagecorruptions(x, alpha, rng, spec):
    """imagecorruptions `elastic_transform`: displacements gaussian(U(-d, d), sigma) alpha per axis, with
    d = 0.005 H and sigma = 0.01 x the image size, sampled by map_coordinates (order 1, mode 'reflect').
    Revision 2: the smoothing as banded products (`_smooth_field`)."""
    u = _unit(x, spec)
    b, h, w = u.shape[0], u.shape[-2], u.shape[-1]
    reach = h * 0.005
    # x then y coordinates as two planes: grid_sample reads its (B, H, W, 2) grid through strides, and
    # the planes are written contiguously (writing them interleaved took 0.4 ms more per 16 images at 224 px)
    planes = torch.empty((2, b, h, w), dtype=u.dtype, device=u.device)
    for axis, n in ((0, w), (1, h)):  # dx (columns) is drawn first, then dy (rows)
        shift = _smooth_field(rng, h, w, h * 0.01, w * 0.01, -reach, u).mul_(alpha)
        position = torch.arange(n, device=u.device, dtype=u.dtype)
        _to_grid_coordinate_(shift.add_(position[None, :] if axis == 0 else position[:, None]), n, out=planes[axis])
    y = F.grid_sample(u, planes.permute(1, 2, 3, 0), mode="bilinear", padding_mode="reflection", align_corners=False)
    return _back(y, spec)


def _elastic_tiny(x, row, rng, spec):
    """make_tinyimagenet_c.py `elastic_transform`: a random affine (three points moved by U(-j, j),
    cv2.warpAffine, BORDER_REFLECT_101), then displacements gaussian(U(-1, 1), sigma) alpha per axis
    sampled by map_coordinates (order 1, mode 'reflect'). Revision 2: the smoothing as banded
    products (`_smooth_field`)."""
    alpha, sigma, jitter = row
    u = _unit(x, spec)
    b, h, w = u.shape[0], u.shape[-2], u.shape[-1]
    side = min(h, w) // 3
    # pts1 as the reference builds it from np.float32(shape_size) // 2, (rows, cols) read as cv2's (x, y)
    cy, cx = float(h // 2), float(w // 2)
    pts1 = torch.tensor([[cy + side, cx + side], [cy + side, cx - side], [cy - side, cx - side]],
                        dtype=torch.float64, device=u.device)
    pts2 = pts1 + rng.uniform(3, 2, dtype=torch.float64).mul_(2.0 * jitter).sub_(jitter)
    # cv2.getAffineTransform: M [p, 1] = q for the three pairs; warpAffine reads dst(p) = src(M^-1 p)
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64, device=u.device)], dim=1).expand(b, 3, 3)
    m = torch.linalg.solve(src, pts2).transpose(1, 2)  # (B, 2, 3)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=u.device).expand(b, 1, 3)
    inverse = torch.linalg.inv(torch.cat([m, bottom], dim=1))[:, :2].to(u.dtype)
    ys = torch.arange(h, device=u.device, dtype=u.dtype)[:, None].expand(h, w)
    xs = torch.arange(w, device=u.device, dtype=u.dtype)[None, :].expand(h, w)
    src_x = inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    src_y = inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    warped = _sample_bilinear(u, src_y, src_x, align_corners=True)
    dx = _smooth_field(rng, h, w, sigma, sigma, -1.0, u) * alpha
    dy = _smooth_field(rng, h, w, sigma, sigma, -1.0, u) * alpha
    rows = torch.arange(h, device=u.device, dtype=u.dtype)[:, None] + dy
    cols = torch.arange(w, device=u.device, dtype=u.dtype)[None, :] + dx
    return _back(_sample_bilinear(warped, rows, cols, align_corners=False), spec)


def _box_rows(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of Pillow's BOX resize along one axis (libImaging/Resample.c
    precompute_coeffs: output pixel i averages the inputs whose centres lie in its box of width
    max(scale, 1) around (i + 0.5) scale, scale = n_in / n_out)."""
    scale = n_in / n_out
    support = max(scale, 1.0) * 0.5
    weights = torch.zeros((n_out, n_in), dtype=torch.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        for j in range(lo, hi):
            t = (j - centre + 0.5) / max(scale, 1.0)
            if -0.5 < t <= 0.5:
                weights[i, j] = 1.0
        weights[i] /= weights[i].sum()
    return weights


def _pillow_nearest_picks(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out,) input index of each output of Pillow's NEAREST resize: libImaging/Geometry.c
    ImagingScaleAffine accumulates the source coordinate, xo = scale / 2 then xo += scale per
    output, and truncates it. At an exact tie the accumulated rounding decides, so this repeats the
    float64 sum (floor((i + 0.5) scale) reads the next pixel at 207 of the 1,120 (size 1-224,
    severity) pairs of imagecorruptions' table, e.g. 4 -> 7 and 6 -> 11; none at 64 or 224 px)."""
    scale, position, picks = n_in / n_out, n_in / n_out * 0.5, []
    for _ in range(n_out):
        picks.append(min(int(position), n_in - 1))
        position += scale
    return torch.tensor(picks, dtype=torch.int64)


@functools.lru_cache(maxsize=64)
def _pixelate_plan(n: int, c: float, up: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis of length n: the BOX downscale to int(n c) as embedding-bag arguments (the
    input indices of every box, box by box, and where each box starts among them), and each output
    pixel's small pixel in the upscale (Pillow's NEAREST or BOX, both read one small pixel)."""
    small = max(1, int(n * c))
    down = _box_rows(n, small)
    boxes, inputs = torch.nonzero(down > 0, as_tuple=True)  # row-major: box by box, inputs ascending
    starts = torch.searchsorted(boxes, torch.arange(small))
    if up == "nearest":
        return inputs, starts, _pillow_nearest_picks(small, n)
    back = _box_rows(small, n)
    if not bool(((back > 0).sum(dim=1) == 1).all()):
        raise AssertionError("a BOX upscale reads one pixel per output")
    return inputs, starts, back.argmax(dim=1)


def _box_means_rows(u: torch.Tensor, inputs: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """(.., H, W) -> (.., h', W): each output row the mean of its box's input rows, one
    `embedding_bag` over all planes (each input row read once; a loop of row gathers costs 3x more
    on CPU at 224 px, a cumulative sum more still)."""
    h, w = u.shape[-2:]
    planes = u.numel() // (h * w)
    first = torch.arange(planes, device=u.device)[:, None]
    rows = (first * h + inputs.to(u.device)).reshape(-1)
    offsets = (first * inputs.numel() + starts.to(u.device)).reshape(-1)
    means = F.embedding_bag(rows, u.reshape(planes * h, w), offsets, mode="mean")
    return means.reshape(*u.shape[:-2], starts.numel(), w)


# Planes per pass of pixelate on the CPU: a pass's row means stay within about this many bytes, so the
# transposes and copies that follow find them in the core's cache (L2: 1-2 MB on current x86).
_PIXELATE_CHUNK_BYTES = 2 * 2**20


def _pixelate(up: str):
    def pixelate(x, c, rng, spec):
        """make_imagenet_c.py `pixelate`: PIL resize to int(size c) with BOX (each small pixel the
        mean of the inputs whose centres fall in its box), back with NEAREST (imagecorruptions) or
        BOX (make_tinyimagenet_c.py), both of which read one small pixel per output. Box means along
        the rows, then along the columns as rows of the transposed result; the upscale gathers
        whole rows, the columns' while still transposed. In floats: Pillow rounds to 8 bits after
        each pass, so 8-bit results can differ by one level.

        On the CPU the planes go through in groups whose row means fit `_PIXELATE_CHUNK_BYTES`
        (each plane's result depends on that plane alone, so the grouping changes no value): at
        224 px the whole batch's intermediates are tens of MB, and the two transposes and the
        upscale ran from main memory.
        """
        u = _unit(x, spec)
        h, w = u.shape[-2:]
        rows_inputs, rows_starts, rows_pick = _pixelate_plan(h, float(c), up)
        cols_inputs, cols_starts, cols_pick = _pixelate_plan(w, float(c), up)
        rows_pick, cols_pick = rows_pick.to(u.device), cols_pick.to(u.device)
        planes = u.reshape(-1, h, w)
        out = torch.empty(planes.shape, dtype=u.dtype, device=u.device)
        per = max(1, len(planes))
        if u.device.type == "cpu":
            per = max(1, _PIXELATE_CHUNK_BYTES // (rows_starts.numel() * w * u.element_size()))
        for first in range(0, len(planes), per):
            small = _box_means_rows(planes[first : first + per], rows_inputs, rows_starts)  # (p, h', W)
            small = _box_means_rows(small.transpose(-1, -2).contiguous(), cols_inputs, cols_starts)  # (p, w', h')
            small = _back(small, spec)  # clipped and mapped before the upscale, which only copies
            wide = small.index_select(-2, cols_pick).transpose(-1, -2).contiguous()  # (p, h', W)
            torch.index_select(wide, -2, rows_pick, out=out[first : first + per])
        return out.reshape(u.shape)

    return pixelate


def _jpeg_compression(x, quality, rng, spec):
    """make_imagenet_c.py `jpeg_compression`: Pillow's JPEG encoder at the quality, then decoded.

    Pixels are rounded to 8 bits first (the reference encodes 8-bit images); one channel goes through
    RGB and back to L, as imagecorruptions does for greyscale. Runs on the host CPU, image by image
    (rounding included), so that each image stays in the cache between the steps. Pillow's codec is
    most of the time; the stream is decoded by `Image.frombytes` into one reused image, the decoder
    `Image.open` + `load` run less the header parsing in Python (about 30% less time per image, same
    pixels). The conversions around the codec take one of two paths with the same bits (a test
    compares them): where the draws run compiled (`rng.runs_compiled`), two compiled loops between
    the float image and RGBX buffers that Pillow's images share (`_jpeg_rgbx`); otherwise torch and
    Pillow's own band operations (`_jpeg_planes`). Figures in the docs (ImageNet-C, Speed).
    """
    try:
        from PIL import Image
    except ImportError:
        raise InputError("jpeg_compression needs Pillow's JPEG codec: pip install 'robustbench-mm[imagenet-c]'") from None

    u = _unit(x, spec)
    if x.device.type == "meta":
        return torch.empty_like(x)
    u = u.detach().cpu()
    fits_loops = u.shape[1] == 3 and u.dtype == x.dtype and x.dtype in (torch.float32, torch.float64)
    if fits_loops and sys.byteorder == "little" and runs_compiled(u.device):
        y = _jpeg_rgbx(Image, u.contiguous(), int(quality))
    else:
        y = _jpeg_planes(Image, u, int(quality), x.dtype)
    y = y.to(x.device)
    # k / 255 lies in [0, 1], so _back's clip changes nothing (3% of the time at 224 px): only its mapping to another range is needed
    return y if image._range(spec) == (0.0, 1.0) else _back(y, spec)


def _jpeg_through_codec(image_in, image_out, buffer: io.BytesIO, quality: int) -> None:
    """Encode `image_in` with Pillow's JPEG encoder and decode the stream into `image_out`."""
    buffer.seek(0)
    buffer.truncate()
    image_in.save(buffer, "JPEG", quality=quality)
    image_out.frombytes(buffer.getvalue(), "jpeg", "RGB", "")  # JpegImagePlugin's tile: (rawmode, "")


def _jpeg_planes(Image, u: torch.Tensor, quality: int, dtype: torch.dtype) -> torch.Tensor:
    """The torch path: the 8-bit planes enter through reused `frombuffer` bands and `Image.merge`
    (4-6x cheaper than transposing the batch to (B, H, W, C)) and leave through one `tobytes` per
    band; k / 255 in `dtype` in one pass over the batch."""
    b, c, h, w = u.shape
    levels = torch.empty((c, h, w), dtype=u.dtype)
    planes = np.empty((c, h, w), dtype=np.uint8)  # the image being encoded, shared with `bands`
    bands = [Image.frombuffer("L", (w, h), planes[k], "raw", "L", 0, 1) for k in range(c)]
    decoded = Image.new("RGB", (w, h))
    out = np.empty((b, c, h, w), dtype=np.uint8)
    buffer = io.BytesIO()
    for i in range(b):
        # round(255 u) clamped to 0..255, as the clamp of the rounded value: 255 * 0 and 255 * 1 are exact
        torch.clamp(u[i], 0.0, 1.0, out=levels).mul_(255.0).round_()
        planes[...] = levels.to(torch.float32).numpy()  # whole numbers: exact in float32, cast by numpy (4x torch's)
        _jpeg_through_codec(bands[0].convert("RGB") if c == 1 else Image.merge("RGB", bands), decoded, buffer, quality)
        if c == 1:
            out[i, 0] = np.frombuffer(decoded.convert("L").tobytes(), dtype=np.uint8).reshape(h, w)
        else:
            for k, band in enumerate("RGB"):
                out[i, k] = np.frombuffer(decoded.tobytes("raw", band), dtype=np.uint8).reshape(h, w)
    # one pass: a 0-dim divisor of the input's dtype sets the result's dtype (k / 255 computed in it)
    return torch.div(torch.from_numpy(out), torch.tensor(255.0, dtype=dtype))


def _jpeg_rgbx(Image, u: torch.Tensor, quality: int) -> torch.Tensor:
    """The compiled path for 3-channel float32/float64 images on a little-endian host
    (`_jpeg_numba`): each image's levels are written straight into the (H, W, 4) buffer of an RGBX image, which Pillow encodes as RGB
    (Pillow keeps RGB pixels in 4 bytes: the same stream), and the stream is decoded into another
    shared buffer, read straight into the output; no merge, no `tobytes`, no pass over the batch."""
    from . import _jpeg_numba

    b, c, h, w = u.shape
    levels_in, levels_out = np.full((h, w, 4), 255, dtype=np.uint8), np.empty((h, w, 4), dtype=np.uint8)
    image_in = Image.frombuffer("RGBX", (w, h), levels_in, "raw", "RGBX", 0, 1)
    image_out = Image.frombuffer("RGBX", (w, h), levels_out, "raw", "RGBX", 0, 1)
    y = torch.empty(u.shape, dtype=u.dtype)
    images, out = u.numpy(), y.numpy()
    pixels_in, pixels_out = levels_in.view(np.uint32).reshape(h, w), levels_out.view(np.uint32).reshape(h, w)
    buffer = io.BytesIO()
    for i in range(b):
        _jpeg_numba.to_levels(images[i], pixels_in)
        _jpeg_through_codec(image_in, image_out, buffer, quality)
        _jpeg_numba.from_levels(pixels_out, out[i])
    return y


def suite_of(name: str) -> str | None:
    """The ImageNet-C suite a corruption name runs (`imagenet-c/fog`, or an alias of one), else None."""
    from .registry import ALIASES

    suite = ALIASES.get(name, name).partition("/")[0]
    return suite if suite in SUITES else None


def suite_lines(names, specs: dict[str, ModalitySpec]) -> list[str]:
    """For a run's manifest (`units`): per ImageNet-C suite the names use, the table and its source,
    each image modality's size against the table's, and which frost ran."""
    lines = []
    for suite in dict.fromkeys(s for s in map(suite_of, names) if s is not None):
        size = IMAGE_SIZE[suite]
        for m, spec in specs.items():
            if spec.kind != "image":
                continue
            shape = "x".join(str(v) for v in spec.shape)
            fits = spec.shape[-2:] == (size, size)
            lines.append(f"{suite}: ImageNet-C's {size}-px table ({SOURCE[suite]}) on {m!r} ({shape})"
                         + ("" if fits else f", not {size}x{size}: strengths are not the published ones"))
        lines.append(f"{suite}: frost from {frost_source()}")
    return lines


def _one_or_three_channels(spec: ModalitySpec) -> str | None:
    return None if spec.shape[0] in (1, 3) else f"needs 1 or 3 colour channels (as ImageNet-C's images), the image has {spec.shape[0]}"


def _kernels(suite: str) -> dict:
    return {
        "gaussian_noise": _gaussian_noise,
        "shot_noise": _shot_noise,
        "impulse_noise": _impulse_noise,
        "defocus_blur": _defocus_blur,
        "glass_blur": _glass_blur,
        "motion_blur": _motion_blur,
        "zoom_blur": _zoom_blur,
        "snow": _snow,
        "frost": _frost(suite),
        "fog": _fog,
        "brightness": _brightness,
        "contrast": _contrast,
        "elastic_transform": _elastic_imagecorruptions if suite == "imagenet-c" else _elastic_tiny,
        "pixelate": _pixelate("nearest" if suite == "imagenet-c" else "box"),
        "jpeg_compression": _jpeg_compression,
    }


def _bind(suite: str, name: str, kernel):
    def fn(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
        return kernel(x, _row(suite, name, param), rng, spec)

    fn.__name__ = f"{suite}/{name}"
    fn.__doc__ = kernel.__doc__
    return fn


def _register() -> None:
    for suite in SUITES:
        for name, kernel in _kernels(suite).items():
            register_suite(CorruptionSpec(
                name=f"{suite}/{name}",
                kinds=("image",),
                severity=(1.0, 2.0, 3.0, 4.0, 5.0),
                unit=f"ImageNet-C severity (integers 1-5): {TABLES[suite][name]} ({SOURCE[suite]}, function {name})",
                description=f"ImageNet-C {name} at {suite}'s parameters ({IMAGE_SIZE[suite]}-px table)",
                fn=_bind(suite, name, kernel),
                check=_one_or_three_channels,
                revision=REVISIONS.get(name, 1),
            ))


_register()
