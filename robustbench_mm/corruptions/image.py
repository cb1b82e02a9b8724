"""Image corruptions on (B, C, H, W) batches of any size (mfeat's 1x16x15, 3x64x64, ...).

Each kernel draws its per-sample parameters from `rng` and then applies them to the whole batch in
one vectorised call (conv2d with built kernels, block-DCT matrix products, grid_sample). Values are
interpreted in the modality's value range (`spec.value_range`, default [0, 1]) and clipped back
into it. Units follow ImageNet-C where they translate to small images; blur sizes are in pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..datasets.batch import ModalitySpec
from ..errors import InputError
from .registry import corruption
from .rng import SampleRandom


def _range(spec: ModalitySpec) -> tuple[float, float]:
    return spec.value_range if spec.value_range is not None else (0.0, 1.0)


def _to_unit(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """x on [0, 1]; x itself (not a copy) when the range already is [0, 1], so never modify the result in place."""
    lo, hi = _range(spec)
    return x if (lo, hi) == (0.0, 1.0) else (x - lo) / (hi - lo)


def _from_unit_(u: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """Clip a [0, 1] tensor the kernel owns and map it back to the value range, in place."""
    lo, hi = _range(spec)
    u.clamp_(0.0, 1.0)
    return u if (lo, hi) == (0.0, 1.0) else u.mul_(hi - lo).add_(lo)


def _uniform_count_below(q: float, bits: int) -> int:
    """How many of the 2**bits uniform values (2k + 1) / 2**(bits + 1) lie below q."""
    return min(2**bits, max(0, math.ceil(q * 2.0**bits - 0.5)))


def _three_channels(spec: ModalitySpec) -> str | None:
    return None if spec.shape[0] == 3 else f"needs 3 colour channels, the image has {spec.shape[0]}"


@corruption(
    "shot_noise",
    kinds=("image",),
    severity=(1 / 60, 1 / 25, 1 / 12, 1 / 5, 1 / 3),
    unit="photon noise scale 1/c: variance = pixel * param, pixels in [0, 1] (ImageNet-C c = 60..3)",
    description="signal-dependent (Poisson-like, Gaussian approximation) sensor noise",
)
def shot_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    def add_noise(z: torch.Tensor, u: torch.Tensor) -> None:
        _from_unit_(z.mul_(u.clamp(min=0.0).mul_(param).sqrt_()).add_(u), spec)

    return rng.combine("normal", add_noise, _to_unit(x, spec))


@corruption(
    "impulse_noise",
    kinds=("image",),
    severity=(0.03, 0.06, 0.09, 0.17, 0.27),
    unit="fraction of pixel values set to the range's min or max",
    description="salt-and-pepper noise",
)
def impulse_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec, channels: str = "independent") -> torch.Tensor:
    """Salt and pepper: a fraction `param` of the values set to the range's min or max, half each.

    channels : "independent" (each value its own draw) or "shared": one (H, W) mask for every
        channel, pepper where u < param / 2 and salt where param / 2 <= u < param, as
        AddSaltPepperNoise.__call__ draws `np.random.choice((0, 1, 2), (h, w, 1), p=[d/2, d/2, 1-d])`
        and np.repeats it over the channels (QingyangZhang/QMF text-image-classification/src/data/
        dataset.py; shicaiwei123/UDML audio-visual-classification/dataset/CramedDataset.py add_salt_visual).
    """
    lo, hi = _range(spec)
    if channels == "shared":
        u = rng.uniform(1, *x.shape[2:], dtype=torch.float64)
        pepper, salt = u < param / 2, (u >= param / 2) & (u < param)
        return torch.where(pepper, torch.full_like(x, lo), torch.where(salt, torch.full_like(x, hi), x))
    if channels != "independent":
        raise InputError(f"impulse_noise: channels {channels!r}; expected one of: independent, shared")
    # One uniform u = (2k + 1) / 2**(bits + 1) decides both: salt (hi) where u < param / 2, pepper (lo) where
    # param / 2 <= u < param. As counts of k, clamp(K - k, 0, 1) is exactly 1 for u below the
    # threshold and 0 above; 0/1 weights make the blend exact and avoid comparisons and
    # torch.where, which cost several times more per element on CPU.
    bits = 32 if x.dtype == torch.float64 else 23  # SampleRandom.uniform's resolution
    salt_k, hit_k = _uniform_count_below(param / 2, bits), _uniform_count_below(param, bits)

    def scatter(u: torch.Tensor, xc: torch.Tensor) -> None:
        k = u.mul_(2.0**bits).sub_(0.5)
        salt = torch.sub(salt_k, k).clamp_(0.0, 1.0)
        keep = k.sub_(hit_k - 1).clamp_(0.0, 1.0)  # 1 where k >= hit_k, in place of u
        pepper = (1.0 - keep).sub_(salt) if lo != 0.0 else None
        keep.mul_(xc).add_(salt if hi == 1.0 else salt.mul_(hi))
        if pepper is not None:
            keep.add_(pepper.mul_(lo))

    return rng.combine("uniform", scatter, x)


@corruption(
    "speckle_noise",
    kinds=("image",),
    severity=(0.15, 0.2, 0.35, 0.45, 0.6),
    unit="sigma of multiplicative noise, pixels in [0, 1]",
    description="multiplicative Gaussian (speckle) noise",
)
def speckle_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    def multiply_noise(z: torch.Tensor, u: torch.Tensor) -> None:
        _from_unit_(z.mul_(param).add_(1.0).mul_(u), spec)

    return rng.combine("normal", multiply_noise, _to_unit(x, spec))


def _depthwise(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of every image with an odd (kh, kw) kernel, replicate padding.

    `kernels` is (kh, kw), shared by all images, or (B, kh, kw), one per image. Every plane is
    its own group of one batch entry: on CPU this depthwise layout runs about 15x faster than
    planes stacked as a batch of single-channel images.
    """
    b, c, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    kernels = kernels.to(x.dtype)
    if kernels.dim() == 3:
        per_plane = kernels.repeat_interleave(c, dim=0)
    else:
        per_plane = kernels.expand(b * c, kh, kw)
    y = F.pad(x.reshape(1, b * c, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    return F.conv2d(y, per_plane.reshape(b * c, 1, kh, kw), groups=b * c).reshape(b, c, h, w)


@corruption(
    "gaussian_blur",
    kinds=("image",),
    severity=(0.5, 1.0, 1.5, 2.0, 3.0),
    unit="sigma in pixels",
    description="Gaussian blur (separable convolution)",
)
def gaussian_blur(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * param))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / param) ** 2)
    g = g / g.sum()
    return _depthwise(_depthwise(x, g[None, :]), g[:, None])


@corruption(
    "defocus_blur",
    kinds=("image",),
    severity=(1.0, 1.5, 2.0, 3.0, 4.0),
    unit="disk radius in pixels",
    description="defocus blur: convolution with an anti-aliased disk",
)
def defocus_blur(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    radius = math.ceil(param)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float64)
    dist = torch.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    disk = (param + 0.5 - dist).clamp(0.0, 1.0)
    return _depthwise(x, disk / disk.sum())


@corruption(
    "motion_blur",
    kinds=("image",),
    severity=(3.0, 5.0, 7.0, 9.0, 13.0),
    unit="blur length in pixels (direction drawn per sample)",
    description="linear motion blur at a random angle per sample (grouped convolution)",
)
def motion_blur(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    radius = max(1, math.ceil(param / 2))
    angle = rng.uniform(dtype=torch.float64) * math.pi
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float64)
    yy, xx = t[:, None], t[None, :]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    along = xx * cos + yy * sin
    across = -xx * sin + yy * cos
    weight = (1 - across.abs()).clamp(min=0) * (param / 2 + 0.5 - along.abs()).clamp(0, 1)
    return _depthwise(x, weight / weight.sum(dim=(1, 2), keepdim=True))


@corruption(
    "contrast",
    kinds=("image",),
    severity=(0.6, 0.7, 0.8, 0.9, 0.95),
    unit="contrast reduction 1 - c (ImageNet-C c = 0.4..0.05)",
    description="contrast reduced towards each image's mean",
)
def contrast(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.add(mean * param, x, alpha=1.0 - param)  # (1 - c) x + c mean in one pass


@corruption(
    "brightness",
    kinds=("image",),
    severity=(0.1, 0.2, 0.3, 0.4, 0.5),
    unit="fraction of the value range added",
    description="brightness shift, clipped to the value range",
)
def brightness(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    return _from_unit_(_to_unit(x, spec) + param, spec)


@corruption(
    "desaturate",
    kinds=("image",),
    severity=(0.2, 0.4, 0.6, 0.8, 1.0),
    unit="fraction of saturation removed (1 = grayscale); 3-channel images only",
    description="saturation reduced towards the luma (gray) image",
    check=_three_channels,
)
def desaturate(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, c, h, w = x.shape
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    gray = torch.matmul(luma, x.reshape(b, c, h * w)).reshape(b, 1, h, w)
    return torch.add(gray.mul_(param), x, alpha=1.0 - param)  # (1 - s) x + s gray in one pass


@corruption(
    "pixelate",
    kinds=("image",),
    severity=(2.0, 3.0, 4.0, 5.0, 6.0),
    identity=1.0,
    unit="block size in pixels (rounded to an integer)",
    description="pixelation: each block x block tile replaced by its mean",
)
def pixelate(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    block = max(1, math.floor(param + 0.5))
    if block == 1:
        return x.clone()
    b, c, h, w = x.shape
    ph, pw = (-h) % block, (-w) % block
    tiles = F.avg_pool2d(F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x, block)
    th, tw = tiles.shape[-2:]
    # Upsample one axis at a time: the row copy is 1/block of the output, then whole rows are
    # copied (one strided copy of both axes at once is about 3x slower on CPU).
    rows = tiles.reshape(b * c * th, tw, 1).expand(-1, tw, block).reshape(b * c * th, 1, tw * block)
    up = rows.expand(-1, block, tw * block).reshape(b, c, th * block, tw * block)
    return up[..., :h, :w] if ph or pw else up


_JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float64,
)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


# The 2-D DCT of an 8x8 block flattened row-major is one (64, 64) matrix: kron(D, D).
_DCT_64 = torch.kron(_dct_matrix(), _dct_matrix())


@corruption(
    "jpeg",
    kinds=("image",),
    severity=(20.0, 50.0, 70.0, 85.0, 93.0),
    unit="JPEG quality lost, 100 - q (q = 80, 50, 30, 15, 7)",
    description="JPEG-like compression: 8x8 block DCT quantised with the standard luminance table",
)
def jpeg(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    quality = 100.0 - param
    if quality >= 100.0:
        return x.clone()
    quality = max(quality, 1.0)
    scale = 50.0 / quality if quality < 50 else (200.0 - 2 * quality) / 100.0
    step = (_JPEG_LUMA * scale).clamp(min=1.0).flatten()
    # Pixels p = 255 * unit - 128 with unit = (x - lo) / (hi - lo), i.e. p = s * x - shift. Quantisation
    # and scaling are folded into the two matrices: q = round(x_blocks @ (s K^T / step) - dc), then
    # x' = (q + dc) @ (step K / s). The shift only moves the DC coefficient (the DCT of a constant
    # block is 8 * constant there, 0 elsewhere), so it is applied to that column alone.
    lo, hi = _range(spec)
    s = 255.0 / (hi - lo)
    dc = 8.0 * (128.0 + s * lo) / float(step[0])
    forward = (s * _DCT_64.T / step[None, :]).to(device=x.device, dtype=x.dtype)
    inverse = (step[:, None] * _DCT_64 / s).to(device=x.device, dtype=x.dtype)
    b, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    by, bx = (h + ph) // 8, (w + pw) // 8
    blocks = y.reshape(b, c, by, 8, bx, 8).transpose(3, 4).reshape(-1, 64)  # the one copy in
    coeffs = torch.mm(blocks, forward)
    coeffs[:, 0].sub_(dc)
    coeffs.round_()
    coeffs[:, 0].add_(dc)
    back = torch.mm(coeffs, inverse)
    out = torch.empty((b, c, by * 8, bx * 8), dtype=x.dtype, device=x.device)
    # clamping writes the blocks back in image order (the one copy out)
    torch.clamp(back.view(b, c, by, bx, 8, 8), lo, hi, out=out.view(b, c, by, 8, bx, 8).transpose(3, 4))
    return out[..., :h, :w].contiguous() if ph or pw else out


@corruption(
    "occlusion",
    kinds=("image",),
    severity=(0.05, 0.1, 0.2, 0.3, 0.4),
    unit="fraction of the image area erased",
    description="random erasing: one rectangle per sample filled with uniform noise",
)
def occlusion(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, c, h, w = x.shape
    lo, hi = _range(spec)
    aspect = torch.exp((rng.uniform(dtype=torch.float64) - 0.5) * math.log(3.0))  # 1/sqrt3..sqrt3
    rh = torch.sqrt(param * h * w * aspect).clamp(max=h)
    rw = (param * h * w / rh.clamp(min=1e-9)).clamp(max=w)
    top = rng.uniform(dtype=torch.float64) * (h - rh)
    left = rng.uniform(dtype=torch.float64) * (w - rw)
    rows = torch.arange(h, device=x.device, dtype=torch.float64) + 0.5
    cols = torch.arange(w, device=x.device, dtype=torch.float64) + 0.5
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + rh)[:, None])
    in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + rw)[:, None])
    inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    fill = lo + (hi - lo) * rng.uniform(c, h, w, dtype=x.dtype)
    return torch.where(inside, fill, x)


@corruption(
    "affine",
    kinds=("image",),
    severity=(5.0, 10.0, 15.0, 20.0, 30.0),
    unit="rotation in degrees (sign per sample); shift and zoom of param/150 of the size",
    description="affine jitter: rotation, translation and zoom-in via grid_sample",
)
def affine(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    b, c, h, w = x.shape
    sign = torch.where(rng.uniform(dtype=torch.float64) < 0.5, -1.0, 1.0)
    theta_r = sign * math.radians(param)
    direction = rng.uniform(dtype=torch.float64) * 2 * math.pi
    shift = 2.0 * param / 150.0
    zoom = 1.0 - param / 150.0
    cos, sin = torch.cos(theta_r) * zoom, torch.sin(theta_r) * zoom
    # rotation in pixel space: normalised coordinates are scaled by the aspect ratio
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, shift * torch.cos(direction)], dim=1),
            torch.stack([sin * w / h, cos, shift * torch.sin(direction)], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _bicubic_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) weights of torch's bicubic (align_corners=True) resize along one axis."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
    weights = F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=True)
    return weights.reshape(n_in, n_out).T.to(device=like.device, dtype=like.dtype)


@corruption(
    "elastic",
    kinds=("image",),
    severity=(0.5, 1.0, 1.5, 2.0, 3.0),
    unit="displacement amplitude in pixels (field smoothed at 1/8 of the image size)",
    description="elastic deformation: smooth random displacement field via grid_sample",
)
def elastic(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    if param <= 0:
        return x.clone()
    b, c, h, w = x.shape
    coarse = (max(2, h // 8 + 1), max(2, w // 8 + 1))
    field = rng.normal(2, coarse[0], coarse[1], dtype=x.dtype)
    # bicubic upsampling as two small matrix products: the same weights, 2 ms instead of upsample_bicubic2d's 16 (256 fields, 64x64)
    rows, cols = _bicubic_matrix(coarse[0], h, x), _bicubic_matrix(coarse[1], w, x)
    field = torch.matmul(torch.matmul(rows, field), cols.T)
    # per-sample scale to an RMS displacement of `param` pixels, in grid units (2 / size per pixel)
    rms = field.square().mean(dim=(1, 2, 3)).sqrt_().clamp_(min=1e-6)
    per_pixel = torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype, device=x.device)
    scale = (param / rms)[:, None] * per_pixel  # (B, 2)
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) * 2.0 / h - 1.0
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) * 2.0 / w - 1.0
    grid = torch.empty((b, h, w, 2), dtype=x.dtype, device=x.device)  # written in place, no stack
    torch.addcmul(xs[None, None, :], field[:, 0], scale[:, 0, None, None], out=grid[..., 0])
    torch.addcmul(ys[None, :, None], field[:, 1], scale[:, 1, None, None], out=grid[..., 1])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- ImageNet-C's remaining five: glass blur, zoom blur, snow, frost, fog -------------------------------
#
# Parameter tables follow hendrycks/robustness, ImageNet-C/create_c/make_tinyimagenet_c.py (the 64x64
# variant, the size of our images; functions zoom_blur, snow, frost, fog) and, for glass_blur,
# make_imagenet_c.py (whose blur sigmas imagecorruptions also uses; `_shuffle_locally` says why the
# 64-px rows could not be kept under the contract). Where a level is a tuple of parameters (glass
# blur, snow, fog) the kernel's param is the ImageNet-C severity s itself: levels 1-5 are the table's
# rows, a level between two rows interpolates them (integer entries rounded), and between 0 and 1 the
# output is the input blended with level 1's output, so the corruption grows continuously from the
# identity.


def _severity_row(table: tuple[tuple[float, ...], ...], s: float) -> tuple[float, ...]:
    """The table's row at severity s in [1, 5], linear between rows."""
    low = min(int(s), 4)
    frac = s - low
    a, b = table[low - 1], table[min(low, 4)]
    return tuple(p + frac * (q - p) for p, q in zip(a, b))


def _blend_below_one(x: torch.Tensor, y: torch.Tensor, s: float) -> torch.Tensor:
    """Level s < 1 as the input moved the fraction s of the way to level 1's output y (y for s >= 1)."""
    return torch.lerp(x, y, s) if s < 1.0 else y


def _luma(u: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey image: ITU-R 601 luma for 3 channels (cv2's RGB2GRAY), the mean otherwise."""
    if u.shape[1] != 3:
        return u.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=u.dtype, device=u.device)
    return torch.einsum("c,bchw->bhw", weights, u)[:, None]


def _next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 2 ** (n - 1).bit_length()


def _plasma_fractal(rng: SampleRandom, size: int, decay: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, size, size) diamond-square height maps in [0, 1], in `dtype` (the catalog's: float64), one per sample.

    Our batched reading of `plasma_fractal` in make_tinyimagenet_c.py: each step fills the square
    centres and then the diamond points of the whole batch at once (wrapping at the edges as its
    np.roll does), with noise wibble * U(-wibble, wibble) and wibble divided by `decay` per step.
    """
    b = len(rng)
    heights = torch.zeros((b, size, size), dtype=dtype, device=rng.device)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        n = size // step

        def noise() -> torch.Tensor:
            return rng.uniform(n, n, dtype=dtype).mul_(2.0).sub_(1.0).mul_(wibble * wibble)

        corners = heights[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        heights[:, half::step, half::step] = square / 4 + noise()
        centres, corners = heights[:, half::step, half::step], heights[:, 0::step, 0::step]
        across = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        heights[:, 0::step, half::step] = across / 4 + noise()
        down = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        heights[:, half::step, 0::step] = down / 4 + noise()
        step //= 2
        wibble /= decay
    low = heights.amin(dim=(1, 2), keepdim=True)
    heights = heights - low
    return heights / heights.amax(dim=(1, 2), keepdim=True).clamp_(min=1e-12)


def _plasma_like(rng: SampleRandom, x: torch.Tensor, decay: float, work: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, 1, H, W) plasma fractal cropped to x's size, in x's dtype (built in `work`)."""
    h, w = x.shape[-2:]
    size = _next_power_of_two(max(h, w))
    return _plasma_fractal(rng, size, decay, work)[:, None, :h, :w].to(x.dtype)


# make_imagenet_c.py `glass_blur` rows (sigma, max_delta, iterations); the same as imagecorruptions'.
_GLASS_IMAGENET_C = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


def _one_pass_reach(max_delta: int, iterations: int) -> float:
    """Reach d of one shuffle pass with offsets round(U(-d, d)) having the reference's displacement variance.

    The reference moves a pixel `iterations` times by numpy randint(-max_delta, max_delta) per axis
    (max_delta itself excluded), a variance of ((2 max_delta)^2 - 1) / 12 per move; U(-d, d) has d^2 / 3.
    """
    return math.sqrt(3.0 * iterations * ((2 * max_delta) ** 2 - 1) / 12.0)


_GLASS = tuple((sigma, _one_pass_reach(delta, passes)) for sigma, delta, passes in _GLASS_IMAGENET_C)


def _shuffle_locally(u: torch.Tensor, rng: SampleRandom, reach: float) -> torch.Tensor:
    """Each pixel replaced by the pixel at offset round(reach * U(-1, 1)) per axis (borders clamped).

    ImageNet-C swaps pixel pairs one at a time in a Python loop over every pixel, `iterations` times
    (the reference's 46 s per image). Here one gather moves the whole batch with per-pixel offsets
    of the same displacement variance (`_one_pass_reach`). Two departures, both needed for the
    contract's monotone severity: the offsets are symmetric (numpy's randint(-d, d) excludes d,
    which drifts the image up-left by half a pixel per pass, and the distance to the clean image
    then follows the pass count, which falls from level 1 to 2 and from 3 to 4), and one pass
    whose reach grows with the level replaces the passes: a pixel's offset, a fixed random direction
    times the reach, grows with the level.
    """
    b, c, h, w = u.shape
    offsets = torch.round(rng.uniform(2, h, w).mul_(2.0).sub_(1.0).mul_(reach)).long()  # float32: 23 bits are plenty
    rows = (torch.arange(h, device=u.device)[:, None] + offsets[:, 0]).clamp_(0, h - 1)
    cols = (torch.arange(w, device=u.device)[None, :] + offsets[:, 1]).clamp_(0, w - 1)
    index = (rows * w + cols).reshape(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(u.reshape(b, c, h * w), 2, index).reshape(b, c, h, w)


@corruption(
    "glass_blur",
    kinds=("image",),
    severity=(1.0, 2.0, 3.0, 4.0, 5.0),
    unit="ImageNet-C severity: blur sigma 0.7, 0.9, 1, 1.1, 1.5 px; shuffle reach 1.2, 1.9, 3.4, 4.2, 5.6 px",
    description="glass blur: Gaussian blur, local pixel shuffling by one batched gather, Gaussian blur again",
)
def glass_blur(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """make_imagenet_c.py `glass_blur` (blur, shuffle, blur), batched; see `_shuffle_locally` for the
    shuffle. No 8-bit rounding between the steps (we stay in floats)."""
    if param <= 0:
        return x.clone()
    sigma, reach = _severity_row(_GLASS, max(param, 1.0))
    u = _to_unit(x, spec)
    y = _shuffle_locally(gaussian_blur(u, sigma, rng, spec), rng, reach)
    y = gaussian_blur(y, sigma, rng, spec).clamp_(0.0, 1.0)
    return _from_unit_(_blend_below_one(u, y, param), spec)


def _zoom_matrix(n: int, zoom: float, like: torch.Tensor) -> torch.Tensor:
    """(n, n) weights of a bilinear zoom by `zoom` >= 1 about the centre along one axis (border clamped)."""
    centre = (torch.arange(n, dtype=torch.float64) + 0.5 - n / 2) / zoom + n / 2 - 0.5
    low = centre.floor().clamp(0, n - 1)
    frac = (centre - low).clamp(0, 1)
    high = (low + 1).clamp(max=n - 1)
    weights = torch.zeros((n, n), dtype=torch.float64)
    rows = torch.arange(n)
    weights.index_put_((rows, low.long()), 1 - frac, accumulate=True)
    weights.index_put_((rows, high.long()), frac, accumulate=True)
    return weights.to(device=like.device, dtype=like.dtype)


@corruption(
    "zoom_blur",
    kinds=("image",),
    severity=(0.05, 0.10, 0.15, 0.20, 0.25),
    unit="largest zoom minus 1: the image averaged with its centre zooms by 1, 1.01, ... up to 1 + param",
    description="zoom blur: mean of centred bilinear zooms (two small matrix products per zoom)",
)
def zoom_blur(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """make_tinyimagenet_c.py `zoom_blur`: (x + sum of zooms 1, 1.01, ..., 1 + param) / (count + 1).

    The zoom is a centred bilinear resampling (our reading of its crop-then-scipy-zoom `clipped_zoom`).
    """
    steps = math.floor(param / 0.01 + 1e-6)
    if steps <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    total = x.clone()  # the zoom by 1 is x itself: ImageNet-C's ranges start at 1
    for k in range(1, steps + 1):
        zoom = 1.0 + 0.01 * k
        total += torch.matmul(_zoom_matrix(h, zoom, x), torch.matmul(x, _zoom_matrix(w, zoom, x).T))
    return _clip_to_range_(torch.add(total, x).div_(steps + 2), spec)


def _clip_to_range_(y: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    lo, hi = _range(spec)
    return y.clamp_(lo, hi)


# loc, scale, zoom, threshold, blur radius, blur sigma, blend (make_tinyimagenet_c.py `snow`)
_SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.8),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.8),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
)


def _streak(layer: torch.Tensor, rng: SampleRandom, radius: int, sigma: float) -> torch.Tensor:
    """One-sided motion blur of (B, 1, H, W) at a per-sample angle U(-135, -45) degrees.

    Our reading of ImageMagick's motion blur as imagecorruptions' `_motion_blur` writes it: the sum of
    2 radius + 1 copies shifted by i steps along the angle, weighted exp(-i^2 / (2 sigma^2)),
    normalised, borders replicated. The layer is replicate-padded once by the longest shift, so each
    shift is one gather at a fixed pixel index plus the sample's own offset (no per-step clamping:
    5-8x faster than clamped indices, and bit-identical to them).
    """
    b, _, h, w = layer.shape
    width = 2 * radius + 1
    angle = torch.deg2rad(rng.uniform(dtype=torch.float64) * 90.0 - 135.0)
    weights = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(width)]
    weights = [v / sum(weights) for v in weights]
    steps = torch.arange(width, dtype=torch.float64, device=layer.device)
    dy = -torch.ceil(steps[None, :] * torch.sin(angle)[:, None] - 0.5).long()  # (B, width), |dy|, |dx| < width
    dx = -torch.ceil(steps[None, :] * torch.cos(angle)[:, None] - 0.5).long()
    pad = width
    hp, wp = h + 2 * pad, w + 2 * pad
    flat = F.pad(layer, (pad, pad, pad, pad), mode="replicate").reshape(b, hp * wp)
    rows = torch.arange(h, device=layer.device)[:, None] + pad
    cols = torch.arange(w, device=layer.device)[None, :] + pad
    pixel = (rows * wp + cols).reshape(1, h * w)
    offset = -(dy * wp + dx)  # shift by (dx, dy): output (r, c) takes input (r - dy, c - dx)
    out = torch.zeros(b, h * w, dtype=layer.dtype, device=layer.device)
    for i in range(width):
        out.add_(torch.gather(flat, 1, pixel + offset[:, i, None]), alpha=weights[i])
    return out.reshape(b, 1, h, w)


def _snow_layer(noise: torch.Tensor, rng: SampleRandom, row: tuple[float, ...]) -> torch.Tensor:
    """One row's snow layer from the standard-normal field `noise` (B, 1, H, W): N(loc, scale),
    centre-zoomed, zeroed below the threshold, streaked, rounded to 8 bits."""
    loc, scale, zoom, threshold, radius, sigma, _ = row
    h, w = noise.shape[-2:]
    layer = noise * scale + loc
    if zoom > 1.0:
        layer = torch.matmul(_zoom_matrix(h, zoom, noise), torch.matmul(layer, _zoom_matrix(w, zoom, noise).T))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0.0, 1.0)
    return _streak(layer, rng.child("streak"), max(1, math.floor(radius + 0.5)), sigma).mul_(255.0).round_().div_(255.0)


@corruption(
    "snow",
    kinds=("image",),
    severity=(1.0, 2.0, 3.0, 4.0, 5.0),
    unit="ImageNet-C severity (7-parameter rows of make_tinyimagenet_c.py `snow`)",
    description="snow: thresholded zoomed noise streaked by a motion blur, over a whitened image",
)
def snow(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """make_tinyimagenet_c.py `snow`: a noise layer N(loc, scale), centre-zoomed, zeroed below the
    threshold, streaked (one-sided motion blur), rounded to 8 bits; the image blended with
    max(x, 1.5 grey + 0.5), then the layer and its 180-degree rotation added.

    Departure, for the contract's monotone severity: the layer at severity s is the pointwise
    maximum of the layers of the rows up to s (all from the same noise and streak angle), so snow
    only accumulates as the level rises. ImageNet-C's own rows 4 and 5 give the same expected amount
    of snow in finer flakes, and on its own the level-5 layer can lie closer to the clean image.
    """
    if param <= 0:
        return x.clone()
    s = max(param, 1.0)
    rows = [_SNOW[k - 1] for k in range(1, math.ceil(s)) if k < s] + [_severity_row(_SNOW, s)]
    b, c, h, w = x.shape
    u = _to_unit(x, spec)
    noise = rng.normal(1, h, w, dtype=x.dtype)
    layer = _snow_layer(noise, rng, rows[0])
    for row in rows[1:]:
        layer = torch.maximum(layer, _snow_layer(noise, rng, row))
    whitened = torch.maximum(u, _luma(u) * 1.5 + 0.5)
    y = torch.lerp(whitened, u, rows[-1][6]).add_(layer).add_(layer.flip(-1, -2)).clamp_(0.0, 1.0)
    return _from_unit_(_blend_below_one(u, y, param), spec)


# Image weight tied to the frost weight b, a = 1 - 0.42 b: the least-squares line through the origin
# of make_tinyimagenet_c.py's rows (a, b) = (1, 0.3) (0.9, 0.4) (0.8, 0.45) (0.75, 0.5) (0.7, 0.55).
# On those rows a pixel moves by 0.05 F - 0.1 x from level 2 to 3, back towards the clean value on
# typical images (x = 0.5, F = 0.65), so the distance to the clean image would fall; on one line
# every pixel moves further the same way at each level (the contract's monotone severity).
_FROST_DIM = 0.42

# Per-channel (R, G, B) mean and standard deviation of ImageNet-C's frost photographs frost1.png ...
# frost5.jpg (the five its `frost` draws from), measured on the files shipped in imagecorruptions 1.1.2
# (values / 255 over the whole photo).
_FROST_PHOTO_MEAN = ((0.305, 0.585, 0.650), (0.787, 0.805, 0.841), (0.787, 0.805, 0.841),
                     (0.540, 0.599, 0.648), (0.441, 0.484, 0.528))
_FROST_PHOTO_STD = ((0.106, 0.065, 0.060), (0.084, 0.087, 0.089), (0.084, 0.087, 0.089),
                    (0.112, 0.112, 0.117), (0.174, 0.170, 0.163))


_TEXTURE_MEAN, _TEXTURE_STD = 0.346, 0.18


def _frost_texture(rng: SampleRandom, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) procedural ice texture standing in for ImageNet-C's frost photographs.

    We cannot ship or fetch the photographs, so each sample gets thin bright ridges (where a rough
    plasma fractal crosses its middle value) over a soft fractal haze, standardised per channel to
    approximately the mean and standard deviation of the photograph ImageNet-C would draw for it (one of five,
    uniformly, as its `np.random.randint(5)` does; grey images get the photo's luma).
    """
    ridge = 1.0 - (2.0 * _plasma_like(rng, x, 1.6) - 1.0).abs()
    # ridge^6 by multiplication: torch's CPU pow rounds differently in its vectorised body and its
    # scalar tail, so which samples land in the tail (the batch size) changed their last bits
    squared = ridge * ridge
    ridges = squared * squared * squared
    texture = ridges.mul_(0.6).add_(_plasma_like(rng, x, 2.0), alpha=0.4)
    # standardised with the texture's own mean 0.346 and std 0.18 (measured over 512 draws at 16 and
    # 64 px): fixed constants, since a per-image mean would be a reduction whose rounding can
    # change with the batch, breaking common random numbers
    unit = texture.sub_(_TEXTURE_MEAN).div_(_TEXTURE_STD)
    photo = rng.integers(5)
    mean = torch.tensor(_FROST_PHOTO_MEAN, dtype=x.dtype, device=x.device)[photo]  # (B, 3)
    std = torch.tensor(_FROST_PHOTO_STD, dtype=x.dtype, device=x.device)[photo]
    if x.shape[1] != 3:
        luma = torch.tensor([0.2989, 0.5870, 0.1140], dtype=x.dtype, device=x.device)
        mean, std = (mean @ luma)[:, None].expand(-1, x.shape[1]), (std @ luma)[:, None].expand(-1, x.shape[1])
    return unit.mul(std[:, :, None, None]).add_(mean[:, :, None, None]).clamp_(0.0, 1.0)


@corruption(
    "frost",
    kinds=("image",),
    severity=(0.3, 0.4, 0.45, 0.5, 0.55),
    unit="frost weight b (ImageNet-C's 64-px rows); the image is dimmed to 1 - 0.42 b",
    description="frost: the image dimmed and a procedural ice texture added (stands in for ImageNet-C's photographs)",
)
def frost(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """make_tinyimagenet_c.py `frost`, a x + b frost, with `_frost_texture` in place of the photographs
    and the image weight a on one line with b (see `_FROST_DIM`)."""
    if param <= 0:
        return x.clone()
    u = _to_unit(x, spec)
    y = torch.add(u * (1.0 - _FROST_DIM * param), _frost_texture(rng, x), alpha=param)
    return _from_unit_(y, spec)


_FOG = ((0.4, 3.0), (0.7, 3.0), (1.0, 2.5), (1.5, 2.0), (2.0, 1.75))  # strength, fractal decay


@corruption(
    "fog",
    kinds=("image",),
    severity=(1.0, 2.0, 3.0, 4.0, 5.0),
    unit="ImageNet-C severity: (fog strength, fractal decay) = (0.4,3) (0.7,3) (1,2.5) (1.5,2) (2,1.75)",
    description="fog: a plasma-fractal haze added and the image rescaled to its former maximum",
)
def fog(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """make_tinyimagenet_c.py `fog`: (x + c p) * max(x) / (max(x) + c), p a plasma fractal per sample."""
    if param <= 0:
        return x.clone()
    strength, decay = _severity_row(_FOG, max(param, 1.0))
    u = _to_unit(x, spec)
    peak = u.amax(dim=(1, 2, 3), keepdim=True)
    y = torch.add(u, _plasma_like(rng, x, decay), alpha=strength).mul_(peak / (peak + strength)).clamp_(0.0, 1.0)
    return _from_unit_(_blend_below_one(u, y, param), spec)
