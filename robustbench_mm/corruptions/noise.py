"""Additive Gaussian noise, one name for images, feature vectors and sequences.

Units: images -> sigma as a fraction of the value range (ImageNet-C's table on [0, 1] pixels);
vectors and sequences -> sigma in units of each feature's (channel's) train std.
"""

from __future__ import annotations

import torch

from ..datasets.batch import ModalitySpec
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
def gaussian_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    sigma = noise_scale(x, spec) * param
    if isinstance(sigma, torch.Tensor):
        return rng.combine("normal", lambda z, xc, s: clip_(z.mul_(s).add_(xc), spec), x, sigma)
    return rng.combine("normal", lambda z, xc: clip_(z.mul_(sigma).add_(xc), spec), x)
