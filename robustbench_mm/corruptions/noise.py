"""Additive Gaussian noise, one name for images, feature vectors and sequences.

Units: images -> sigma as a fraction of the value range (ImageNet-C's table on [0, 1] pixels);
vectors and sequences -> sigma in units of each feature's (channel's) train std.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..datasets.batch import ModalitySpec
from ..errors import InputError
from ._util import clip_, train_std, value_span
from .registry import corruption
from .rng import SampleRandom


def noise_scale(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor | float:
    """The data unit sigma is expressed in: the value range for images, the train std otherwise.

    A float where one number serves every feature: scalar arithmetic is cheaper than a broadcast.
    """
    if spec.kind == "image" and spec.value_range is not None:
        return value_span(spec, x)
    return 1.0 if spec.std is None else train_std(spec, x)


@corruption(
    "gaussian_noise",
    kinds=("image", "vector", "sequence"),
    severity={
        "image": (0.08, 0.12, 0.18, 0.26, 0.38),
        "vector": (0.25, 0.5, 1.0, 1.5, 2.5),
        "sequence": (0.25, 0.5, 1.0, 1.5, 2.5),
    },
    unit="sigma: fraction of the value range (image); train std (vector, sequence)",
    description="additive Gaussian noise; clipped to the value range",
)
def gaussian_noise(
    x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec,
    channels: str = "independent", overflow: str = "clip", unit: str = "default", pattern: str = "per-sample",
) -> torch.Tensor:
    """x + sigma z, clipped to the value range.

    unit : "default" (sigma = param x the value range for images, x the train std otherwise) or
        "data" (sigma = param in the data's own units, e.g. UDML's sigma = level on a log
        spectrogram).
    channels : "independent" (one draw per value) or "shared" (images: one (H, W) field per
        sample copied to every channel, as AddGaussianNoise.__call__ draws (h, w, 1) and np.repeats
        it over the channels in QingyangZhang/QMF text-image-classification/src/data/dataset.py,
        RGBD-scene-recognition/data/additional_transform.py and shicaiwei123/UDML
        dataset/CramedDataset.py).
    overflow : "clip" (both ends) or "wrap": the original's uint8 cast, on a (0, 255) value
        range only: values above 255 set to 255, then truncation toward zero and negative values
        wrapped modulo 256 (-77.6 -> 179), as `img[img > 255] = 255; img.astype('uint8')` does
        on x86 numpy. What the paper presets reproduce by default.
    pattern : "per-sample" (common random numbers) or "numpy-seed-0": the one field every call of
        the originals draws, `np.random.seed(0)` then `np.random.normal(0, sigma, (h, w, 1))`
        (channels shared) or of the sample's shape (QMF dataset.py / additional_transform.py
        AddGaussianNoise.__call__, UDML audio-visual-classification/dataset/CramedDataset.py
        add_gaussian_visual); the same for every sample and seed. With overflow "wrap" on raw
        integer pixels the output is bit-identical to the original's uint8 array.
    """
    if channels not in _CHANNELS:
        raise InputError(f"gaussian_noise: channels {channels!r}; expected one of: {', '.join(_CHANNELS)}")
    if overflow not in _OVERFLOW:
        raise InputError(f"gaussian_noise: overflow {overflow!r}; expected one of: {', '.join(_OVERFLOW)}")
    if unit not in _UNITS:
        raise InputError(f"gaussian_noise: unit {unit!r}; expected one of: {', '.join(_UNITS)}")
    if pattern not in _PATTERNS:
        raise InputError(f"gaussian_noise: pattern {pattern!r}; expected one of: {', '.join(_PATTERNS)}")
    scale = noise_scale(x, spec) if unit == "default" else 1.0
    if channels == "independent" and overflow == "clip" and pattern == "per-sample":
        sigma = scale * param
        if isinstance(sigma, torch.Tensor):
            return rng.combine("normal", lambda z, xc, s: clip_(z.mul_(s).add_(xc), spec), x, sigma)
        return rng.combine("normal", lambda z, xc: clip_(z.mul_(sigma).add_(xc), spec), x)
    if channels == "shared" and spec.kind != "image":
        raise InputError(f"gaussian_noise: channels 'shared' needs an image modality, {spec.name!r} is of kind {spec.kind!r}")
    if overflow == "wrap" and (spec.value_range is None or tuple(spec.value_range) != (0.0, 255.0)):
        raise InputError(f"gaussian_noise: overflow 'wrap' (the uint8 cast) needs the value range (0, 255), {spec.name!r} has {spec.value_range}")
    work = torch.float64 if x.dtype == torch.float64 or pattern != "per-sample" or overflow == "wrap" else torch.float32
    shape = tuple(x.shape[1:]) if channels == "independent" else (1,) + tuple(x.shape[2:])
    sigma = scale * param
    if pattern == "per-sample":
        noise = rng.normal(*shape, dtype=work) * sigma
    else:
        noise = numpy_seed0_normal(shape, sigma).to(x.device)[None]
    y = x.to(work) + noise
    if overflow == "clip":
        return clip_(y, spec).to(x.dtype)
    return torch.remainder(y.clamp_(max=255.0).trunc_(), 256.0).to(x.dtype)


LOG_FLOOR = 1e-7  # UDML's spectrogram is np.log(|STFT| + 1e-7)


@corruption(
    "spectrogram_noise",
    kinds=("sequence",),
    catalog=False,  # its data must be stated natural-log magnitudes: by name only, not in "all"
    severity=(10.0, 20.0, 30.0, 50.0, 100.0),
    unit="sigma on each sample's 0-255 view of its STFT magnitude (UDML/QMF strength level x 10)",
    description="Gaussian noise on a natural-log magnitude spectrogram through its per-sample uint8 view",
)
def spectrogram_noise(
    x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec,
    layout: str = "time-major", pattern: str = "per-sample", overflow: str = "clip",
) -> torch.Tensor:
    """UDML's audio noise (shicaiwei123/UDML audio-visual-classification/dataset/CramedDataset.py
    add_gaussian_audio, called in CramedDataset.__getitem__ between np.abs(librosa.stft(...)) and
    np.log(... + 1e-7)) on the uint8 view (see `_uint8_view`): view + sigma z, values above 255
    set to 255, then overflow "wrap" (the original's uint8 cast: negatives wrapped modulo 256) or
    "clip" (at 0). The original draws its field in its (F, T) order; pattern "numpy-seed-0" is
    that field (np.random.RandomState(0).normal), "per-sample" common random numbers.
    """
    if pattern not in _PATTERNS:
        raise InputError(f"spectrogram_noise: pattern {pattern!r}; expected one of: {', '.join(_PATTERNS)}")
    if overflow not in _OVERFLOW:
        raise InputError(f"spectrogram_noise: overflow {overflow!r}; expected one of: {', '.join(_OVERFLOW)}")

    def add_noise(view: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        if pattern == "per-sample":
            noise = rng.normal(*shape, dtype=torch.float64) * float(param)
        else:
            noise = numpy_seed0_normal(shape, param).to(view.device)[None]
        noisy = (view.double() + _to_layout(noise, layout)).clamp_(max=255.0).trunc_()
        return torch.remainder(noisy, 256.0) if overflow == "wrap" else noisy.clamp_(min=0.0)

    return _through_uint8_view(x, spec, layout, add_noise, "spectrogram_noise", param == 0)


@corruption(
    "spectrogram_impulse_noise",
    kinds=("sequence",),
    catalog=False,  # its data must be stated natural-log magnitudes: by name only, not in "all"
    severity=(0.03, 0.06, 0.09, 0.17, 0.27),
    unit="fraction of each sample's magnitudes set to its min or max",
    description="salt and pepper on a natural-log magnitude spectrogram through its per-sample uint8 view",
)
def spectrogram_impulse_noise(
    x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec, layout: str = "time-major",
) -> torch.Tensor:
    """UDML's audio salt and pepper (audio-visual-classification/dataset/CramedDataset.py
    add_salt_audio): on the uint8 view, a fraction `param` of the values set to 0 or 255, half each
    (`np.random.choice((0, 1, 2), p=(d/2, d/2, 1 - d))`), i.e. the sample's min and max magnitude.
    The same law from two draws, not the original's one: which values are hit (u < param) and
    whether a hit is 0 or 255 (a second uniform below 1/2) are separate, so a value hit at one level
    keeps its value at every higher level and the distance to the input grows with the level (with
    one draw, a value at 0 at level 2 became 255 at level 3, and the mean distance could fall)."""

    def salt(view: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        hit = _to_layout(rng.uniform(*shape, dtype=torch.float64), layout) < param
        low = _to_layout(rng.uniform(*shape, dtype=torch.float64), layout) < 0.5
        return torch.where(hit & low, 0.0, torch.where(hit, 255.0, view.double()))

    return _through_uint8_view(x, spec, layout, salt, "spectrogram_impulse_noise", param == 0)


def _to_layout(field: torch.Tensor, layout: str) -> torch.Tensor:
    """A (B, F, T) field in the data's layout."""
    return field.transpose(1, 2) if layout == "time-major" else field


def _through_uint8_view(x: torch.Tensor, spec: ModalitySpec, layout: str, edit, name: str, zero: bool) -> torch.Tensor:
    """`edit(view, (F, T))` on each sample's uint8 view of its magnitude, as UDML's _audio_to_uint8 /
    _audio_from_uint8 build it: |S| = exp(x) - 1e-7 mapped from the sample's [min, max] onto 0-255
    (float32, clip, truncation), edited, mapped back (float32) and logged: log(max(s, 0) + 1e-7).
    Every value goes through the 256 levels, so magnitudes below (max - min) / 255 become the min.

    x : (B, T, F) natural-log magnitudes log(|STFT| + 1e-7) (layout "time-major") or (B, F, T)
        ("frequency-major", the original's librosa layout). A value below log(1e-7) means the data
        is something else (dB, standardised) and is refused; a constant sample is left as it is.
    """
    if layout not in _LAYOUTS:
        raise InputError(f"{name}: layout {layout!r}; expected one of: {', '.join(_LAYOUTS)}")
    if zero:  # the original skips the call at level 0 (no quantisation either)
        return x.clone()
    floor = math.log(LOG_FLOOR)
    lowest = float(x.min()) if x.numel() and x.device.type != "meta" else 0.0  # meta: shapes only
    if lowest < floor - 1e-3:
        raise InputError(
            f"{name} on {spec.name!r}: a value {lowest:g} is below log(1e-7) = {floor:.2f}, so this is not a "
            "natural-log magnitude log(|STFT| + 1e-7) (a dB or standardised spectrogram?); convert it to one first"
        )
    mag = (x.float().exp() - LOG_FLOOR).clamp_(min=0.0)
    lo = mag.amin(dim=(1, 2), keepdim=True)
    span = mag.amax(dim=(1, 2), keepdim=True).double() - lo.double()
    flat = span <= 0
    view = ((mag - lo) / span.clamp(min=1e-30).float() * 255.0).clamp_(0.0, 255.0).trunc_()
    shape = tuple(x.shape[1:]) if layout == "frequency-major" else tuple(x.shape[1:])[::-1]
    edited = edit(view, shape)
    back = edited.float() / 255.0 * span.float() + lo
    return torch.where(flat, x, torch.log(back.clamp_(min=0.0) + LOG_FLOOR).to(x.dtype))


@lru_cache(maxsize=32)
def _numpy_seed0_standard(shape: tuple[int, ...]) -> torch.Tensor:
    """numpy's legacy normals after `np.random.seed(0)`, in the (h, w, 1) / (h, w, c) order the
    originals draw, moved to our (C, H, W) layout (shared channels: (1, H, W))."""
    if len(shape) != 3:  # a vector or a (h, w) array, e.g. a spectrogram: numpy's order is ours
        return torch.from_numpy(np.random.RandomState(0).standard_normal(shape))
    c, h, w = shape
    return torch.from_numpy(np.random.RandomState(0).standard_normal((h, w, c))).permute(2, 0, 1).contiguous()


def numpy_seed0_normal(shape: tuple[int, ...], sigma: float) -> torch.Tensor:
    """`np.random.seed(0); np.random.normal(0.0, sigma, size)` as float64, bit for bit: the legacy
    normal is `loc + scale * gauss` on the same gauss stream as `standard_normal`."""
    return _numpy_seed0_standard(tuple(int(s) for s in shape)) * float(sigma)


_CHANNELS = ("independent", "shared")
_OVERFLOW = ("clip", "wrap")
_UNITS = ("default", "data")
_PATTERNS = ("per-sample", "numpy-seed-0")
_LAYOUTS = ("time-major", "frequency-major")
