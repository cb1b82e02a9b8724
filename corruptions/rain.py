"""Example plug-in: rain streaks on images.

Any `.py` file in this folder is loaded by `rbmm` (and by `load_plugins()`); the decorator below
is all it takes to add a corruption to the registry, the protocols and the contract tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustbench_mm.corruptions import corruption


@corruption(
    "rain",
    kinds=("image",),
    severity=(0.01, 0.02, 0.04, 0.07, 0.1),
    unit="fraction of pixels where a rain drop starts",
    description="rain: slanted bright streaks (drops smeared along a line, blended towards white)",
)
def rain(x, param, rng, spec):
    """x (B, C, H, W) -> x with streaks; randomness only from `rng`, one vectorised pass."""
    b, c, h, w = x.shape
    lo, hi = spec.value_range if spec.value_range is not None else (0.0, 1.0)
    drops = (rng.uniform(1, h, w, dtype=torch.float64) < param).to(x.dtype)
    length = max(3, h // 4) | 1  # odd kernel size
    t = torch.arange(length, device=x.device, dtype=x.dtype) - length // 2
    kernel = torch.zeros(length, length, device=x.device, dtype=x.dtype)
    cols = (length // 2 + torch.round(t * math.tan(math.radians(15.0)))).long()
    kernel[torch.arange(length, device=x.device), cols] = 1.0
    pad = length // 2
    streaks = F.conv2d(F.pad(drops, (pad, pad, pad, pad)), kernel[None, None]).clamp(max=1.0)
    return x + (hi - x) * 0.8 * streaks
