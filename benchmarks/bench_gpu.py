"""The GPU figures of issue 23, prepared to run in one go on a lent device (runs on CPU too).

1. Each ImageNet-C kernel (the 15 of the `imagenet-c` protocol, our names) at 224 px, level 3,
   on a batch of 32 x 3 x 224 x 224 images on `--device`, against
   (a) imagecorruptions 1.1.2 on the CPU (one image at a time, uint8, as its API takes them; timed
       on the first `--reference-images` images and scaled to the batch: glass blur takes seconds
       per image), and
   (b) `x.clone()` on the same device (the cost of touching the batch once).
2. `evaluate()` of a ResNet-18-sized two-modality model (two ResNet-18 trunks, 11.2 M parameters
   each, features concatenated, one linear head) under `imagenet-c` on an in-memory two-image
   dataset, against the bare forward passes the evaluation needs (the same batches, perturbed
   beforehand outside the timer, one forward per condition): harness overhead = eval / bare.

    python benchmarks/bench_gpu.py --device cuda            # the real run (minutes on one GPU)
    python benchmarks/bench_gpu.py --device cpu --smoke     # seconds: 32 px, 2 corruptions, tiny model

CUDA times synchronise before each clock read. Ratios > 1: ours faster than the reference.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_mm.corruptions import DonorPool, SampleRandom, apply_condition, get_corruption
from robustbench_mm.datasets import ModalitySpec
from robustbench_mm.datasets.batch import MultimodalData
from robustbench_mm.engine import evaluate
from robustbench_mm.protocols import load_protocol
from robustbench_mm.runtime import describe_threads, keep_freed_memory

# our name -> imagecorruptions' name, for the 15 corruptions of ImageNet-C
IMAGENET_C = {
    "gaussian_noise": "gaussian_noise", "shot_noise": "shot_noise", "impulse_noise": "impulse_noise",
    "defocus_blur": "defocus_blur", "glass_blur": "glass_blur", "motion_blur": "motion_blur", "zoom_blur": "zoom_blur",
    "snow": "snow", "frost": "frost", "fog": "fog", "brightness": "brightness",
    "contrast": "contrast", "elastic": "elastic_transform", "pixelate": "pixelate", "jpeg": "jpeg_compression",
}


SMOKE_PROTOCOL = """name = "imagenet-c-smoke"
description = "two ImageNet-C corruptions at level 3 on each image modality (benchmarks/bench_gpu.py --smoke)"
[[corruption]]
corruptions = ["gaussian_noise", "defocus_blur"]
targets = ["kind:image"]
levels = [3]
"""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up: kernel building, allocator, cuFFT plans
    _sync(device)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _imagecorruptions():
    """imagecorruptions' `corrupt`, with shims for what it imports from older libraries (numpy 1's
    `np.float_`, setuptools' `pkg_resources.resource_filename`, scikit-image's `multichannel`);
    None if it is not installed."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda module, path: str(Path(importlib.util.find_spec(module).origin).parent / path)
        sys.modules["pkg_resources"] = shim
    try:
        if not hasattr(np, "float_"):
            np.float_ = np.float64  # removed in numpy 2; imagecorruptions' fog still names it
        from imagecorruptions import corrupt
        import imagecorruptions.corruptions as module
        from skimage.filters import gaussian as skimage_gaussian
    except ImportError:
        return None

    def gaussian(image, sigma=1, multichannel=None, **kwargs):  # `multichannel` became `channel_axis`
        if multichannel:
            kwargs.setdefault("channel_axis", -1)
        return skimage_gaussian(image, sigma=sigma, **kwargs)

    module.gaussian = gaussian
    return corrupt


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) float32 in [0, 1]: upsampled noise, so blurs and codecs see structure."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def kernels(args, device: torch.device) -> None:
    corrupt = _imagecorruptions()
    names = list(IMAGENET_C)[: 2 if args.smoke else None]
    x = smooth_images(args.images, args.size, 0)
    spec = ModalitySpec("rgb", "image", tuple(x.shape[1:]), value_range=(0.0, 1.0))
    xd = x.to(device)
    ids = torch.arange(x.shape[0], device=device)
    uint8 = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    clone = _best(lambda: xd.clone(), args.repeat, device)
    print(f"\n## kernels: {tuple(x.shape)} float32 on {device}, level 3; x.clone() on {device}: {clone * 1e3:.3f} ms")
    print(f"{'ours':<15} {'ours ms':>9} {'÷ clone':>8} {'imagecorruptions CPU ms':>24} {'ratio':>7}")
    ratios = []
    for name in names:
        kernel = get_corruption(name)
        param = kernel.param(3, "image")
        rng = SampleRandom(ids, 0, name)
        ours = _best(lambda: kernel(xd, param, rng, spec), args.repeat, device)
        theirs = math.nan
        if corrupt is not None:  # per image, timed on the first few and scaled to the batch
            few = uint8[: args.reference_images]
            theirs = _best(lambda: [corrupt(img, corruption_name=IMAGENET_C[name], severity=3) for img in few],
                           1, torch.device("cpu")) * len(uint8) / len(few)
            ratios.append(theirs / ours)
        print(f"{name:<15} {ours * 1e3:>9.3f} {ours / clone:>8.1f} {theirs * 1e3:>24.1f} {theirs / ours:>6.1f}x")
    if ratios:
        print(f"geometric mean against imagecorruptions on the CPU: {math.exp(np.mean(np.log(ratios))):.1f}x")
    else:
        print("imagecorruptions is not installed: no reference column")


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def resnet18_trunk(width: int = 64) -> nn.Module:
    """ResNet-18's layout (He et al. 2016: a 7x7 stem, 4 stages of 2 basic blocks), pooled features."""
    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        cout = width * 2**stage
        layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class TwoImageResNet(nn.Module):
    """Two ResNet-18 trunks (one per image modality), features concatenated, a linear head."""

    def __init__(self, modalities: list[str], classes: int, width: int):
        super().__init__()
        self.trunks = nn.ModuleDict({m: resnet18_trunk(width) for m in modalities})
        self.head = nn.Linear(8 * width * len(modalities), classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.trunks[m](inputs[m]) for m in self.trunks], dim=1))


def evaluation(args, device: torch.device) -> None:
    modalities = ["rgb", "depth"]
    n = args.samples
    images = {m: smooth_images(n, args.size, seed) for seed, m in enumerate(modalities)}
    specs = {m: ModalitySpec(m, "image", tuple(images[m].shape[1:]), value_range=(0.0, 1.0)) for m in modalities}
    labels = torch.arange(n) % 10
    data = MultimodalData(name="two-images", split="test", specs=specs, labels=labels, ids=torch.arange(n),
                          num_classes=10, inputs=images)
    torch.manual_seed(0)
    model = TwoImageResNet(modalities, 10, args.width).eval().to(device)
    out = Path(tempfile.mkdtemp())
    if args.smoke:
        (out / "smoke.toml").write_text(SMOKE_PROTOCOL)
        protocol = load_protocol(out / "smoke.toml")
    else:
        protocol = load_protocol("imagenet-c")
    conditions = protocol.expand(data.specs)
    params = sum(p.numel() for p in model.parameters())
    print(f"\n## eval: two-image ResNet-18 ({params / 1e6:.1f} M parameters), {n} samples at {args.size} px, "
          f"{len(conditions)} conditions, batch {args.batch_size}, {device}")
    try:
        start = time.perf_counter()
        evaluate([model], data, protocol, out=out / "run",
                 progress=False, batch_size=args.batch_size, device=str(device))
        _sync(device)
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    donors = DonorPool.from_data(data, device)
    inputs = [[apply_condition(b, c, data.specs, 0, donors) for c in conditions]
              for b in data.batches(args.batch_size, device)]
    _sync(device)
    with torch.inference_mode():
        start = time.perf_counter()
        for per_batch in inputs:
            for perturbed in per_batch:
                model(perturbed.inputs)
        _sync(device)
        bare = time.perf_counter() - start
    print(f"evaluate {wall:.2f} s, bare forward passes {bare:.2f} s: harness overhead {wall / bare:.2f}x "
          f"(includes corruption on {device}, records, per-cell statistics, file writes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="seconds on a CPU: 32 px, 2 kernels, 4 conditions, width 8")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--reference-images", type=int, default=4, help="images imagecorruptions is timed on")
    parser.add_argument("--images", type=int, help="batch of the kernel part (default 32; smoke 4)")
    parser.add_argument("--part", choices=["kernels", "eval", "both"], default="both")
    args = parser.parse_args()
    args.size, args.images, args.samples, args.width, args.batch_size = (
        (32, args.images or 4, 8, 8, 4) if args.smoke else (224, args.images or 32, 512, 64, 128))
    device = torch.device(args.device)
    keep_freed_memory()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device {name}; torch {torch.__version__}; {describe_threads()}")
    if args.part in ("kernels", "both"):
        kernels(args, device)
    if args.part in ("eval", "both"):
        evaluation(args, device)


if __name__ == "__main__":
    main()
