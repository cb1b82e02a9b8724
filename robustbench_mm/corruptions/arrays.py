"""`corrupt`: one image corruption on an array batch, as imagecorruptions users call it, with the
kernels, parameters and common random numbers the protocols use."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.batch import ModalitySpec
from ..domain import Family
from ..errors import InputError
from .apply import condition_random
from .condition import Condition
from .imagenet_c import NAMES
from .registry import ALIASES, get_corruption

MODALITY = "image"  # the modality name whose protocol cells `corrupt` reproduces


def resolve_name(name: str) -> str:
    """The corruption a `corrupt` name runs: a bare ImageNet-C name is the `imagenet-c` suite's kernel
    (imagecorruptions' tables, as `imagecorruptions.corrupt` runs them), a suite name
    (`tiny-imagenet-c/fog`) or a catalog name (`jpeg`, `speckle_noise`) is itself."""
    name = ALIASES.get(name, name)
    return f"imagenet-c/{name}" if name in NAMES else name


def corrupt(images, name: str, severity: float, *, seed: int = 0, value_range: tuple[float, float] | None = None):
    """`images` corrupted by `name` at `severity`, in the same type, dtype and layout.

    images : uint8 NumPy array (B, H, W, C), pixels 0-255 (returned as uint8, rounded down as
        imagecorruptions' np.uint8 does), or float Tensor (B, C, H, W) on any device, in
        `value_range` (default (0, 1)).
    name : an ImageNet-C name (`fog`: the `imagenet-c` suite, the 224-px tables), a suite kernel
        (`tiny-imagenet-c/fog`) or any registered image corruption of the catalog (`jpeg`).
    severity : 0-5 (0 is the identity; ImageNet-C kernels take the integers).
    seed : the protocol seed. Sample i of the batch gets the noise a protocol with this seed gives
        sample id i of a modality named "image": `corrupt` reproduces that protocol's cells exactly.
    """
    full = resolve_name(name)
    spec_c = get_corruption(full)
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise InputError(f"corrupt: images as a NumPy array must be uint8 of shape (B, H, W, C), got {images.dtype} {images.shape}")
        if value_range is not None:
            raise InputError("corrupt: value_range applies to float tensors; uint8 arrays are pixels 0-255, leave it unset")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        y = _run(x, full, spec_c, severity, seed, (0.0, 1.0))
        # rounded down as np.uint8 does; 1/1000 of a level absorbs float32 rounding, which would
        # otherwise drop an exact level (a JPEG pixel k / 255 read back as k - 1e-5) by one
        pixels = torch.floor(y.double().mul_(255.0).add_(1e-3)).clamp_(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.dim() != 4:
            raise InputError(f"corrupt: images as a tensor must be float of shape (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
        lo, hi = value_range if value_range is not None else (0.0, 1.0)
        if not hi > lo:
            raise InputError(f"corrupt: value_range {value_range}: expected (low, high) with high > low")
        return _run(images, full, spec_c, severity, seed, (float(lo), float(hi)))
    raise InputError(f"corrupt: images must be a uint8 NumPy array (B, H, W, C) or a float tensor (B, C, H, W), got {type(images).__name__}")


def _run(x: torch.Tensor, name: str, spec_c, severity: float, seed: int, value_range) -> torch.Tensor:
    spec = ModalitySpec(MODALITY, "image", tuple(x.shape[1:]), value_range=value_range)
    why = spec_c.supports(spec)
    if why:
        raise InputError(why)
    condition = Condition(Family.CORRUPTION, name, (MODALITY,), level=float(severity))
    ids = torch.arange(x.shape[0], device=x.device)
    rng = condition_random(ids, condition, seed, MODALITY)
    return spec_c(x, spec_c.param(float(severity), "image"), rng, spec)
