"""Additive Gaussian noise, one name for images, feature vectors and sequences.

Units: images -> sigma as a fraction of the value range (ImageNet-C's table on [0, 1] pixels);
vectors and sequences -> sigma in units of each feature's (channel's) train std.
"""

from __future__ import annotations

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
    channels: str = "independent", overflow: str = "clip", unit: str = "default",
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
        on x86 numpy. A bug of the original kept for `faithful` presets.
    """
    if channels not in _CHANNELS:
        raise InputError(f"gaussian_noise: channels {channels!r}; expected one of: {', '.join(_CHANNELS)}")
    if overflow not in _OVERFLOW:
        raise InputError(f"gaussian_noise: overflow {overflow!r}; expected one of: {', '.join(_OVERFLOW)}")
    if unit not in _UNITS:
        raise InputError(f"gaussian_noise: unit {unit!r}; expected one of: {', '.join(_UNITS)}")
    scale = noise_scale(x, spec) if unit == "default" else 1.0
    if channels == "independent" and overflow == "clip":
        sigma = scale * param
        if isinstance(sigma, torch.Tensor):
            return rng.combine("normal", lambda z, xc, s: clip_(z.mul_(s).add_(xc), spec), x, sigma)
        return rng.combine("normal", lambda z, xc: clip_(z.mul_(sigma).add_(xc), spec), x)
    if channels == "shared" and spec.kind != "image":
        raise InputError(f"gaussian_noise: channels 'shared' needs an image modality, {spec.name!r} is of kind {spec.kind!r}")
    if overflow == "wrap" and (spec.value_range is None or tuple(spec.value_range) != (0.0, 255.0)):
        raise InputError(f"gaussian_noise: overflow 'wrap' (the uint8 cast) needs the value range (0, 255), {spec.name!r} has {spec.value_range}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    shape = x.shape[1:] if channels == "independent" else (1,) + tuple(x.shape[2:])
    y = x.to(work) + rng.normal(*shape, dtype=work) * (scale * param)
    if overflow == "clip":
        return clip_(y, spec).to(x.dtype)
    return torch.remainder(y.clamp_(max=255.0).trunc_(), 256.0).to(x.dtype)


_CHANNELS = ("independent", "shared")
_OVERFLOW = ("clip", "wrap")
_UNITS = ("default", "data")
