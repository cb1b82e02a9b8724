"""Throughput of our batched corruption kernels vs. per-sample references, in one run.

    PYTHONPATH=. python benchmarks/bench_corruptions.py                 # ImageNet-C suite, 64 and 224 px
    PYTHONPATH=. python benchmarks/bench_corruptions.py --suite catalog # the catalog's kernels, 64 px + mfeat

References, on the same images:
  (a) a per-sample numpy/PIL/scipy loop written here (the usual way such code is written; catalog only);
  (b) the ImageNet-C package `imagecorruptions` (PyPI 1.1.2, the `test` extra), imported with the
      shims its release needs today (numpy 2's removed np.float_, which its `fog` uses; setuptools'
      removed pkg_resources; scikit-image's renamed `multichannel`), so all 15 corruptions run.
--suite imagenet-c (default): our `imagenet-c/<name>` kernels (ImageNet-C's parameters) against
imagecorruptions at the same severity: every pair does the same work. N smooth synthetic RGB images
(seeded) at 3x64x64 and --n224 at 3x224x224 (ImageNet-C's size); the run ends with one table of
both sizes' ratios. --suite catalog: the catalog's kernels as before (3x64x64 and mfeat `pix` 1x16x15,
which imagecorruptions refuses, under 32 px). Torch's thread count is pinned (--threads, default 1)
and printed: default threads on a busy machine under-report kernels several-fold.
Throughput is images per second; the ratio is ours / reference. Timings are the best of --repeat
runs of the corruption call alone (inputs already in each library's native format), ours and the
references timed in alternating rounds so that all see the machine in the same state.
"floor ceiling" is the reference's time over the time of the one step our kernel cannot skip (the
random-number draw for noise and ImageNet-C's fog, one copy of the batch for pixelate, the disk's
depthwise convolution for defocus blur, Pillow's codec for JPEG; `floor_step`): no kernel built on
that step can beat that ratio here; the floors' draws take the kernels' path (--rng, RBMM_RNG). "same work"
marks pairs running the same operation at the same parameter.
Ours is also timed back to back (warm caches), once under glibc's default malloc and once after
`robustbench_mm.runtime.keep_freed_memory()` (what `rbmm` applies), for the allocator line; the
ratios against the references use the timings in rounds (ours after a reference: colder caches).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage

from robustbench_mm.corruptions import SampleRandom, get_corruption, imagenet_c
from robustbench_mm.datasets import ModalitySpec
from robustbench_mm.runtime import keep_freed_memory

def _shim_imagecorruptions() -> None:
    """imagecorruptions 1.1.2 imports pkg_resources (gone from setuptools >= 81) and its fog uses
    np.float_ (gone in numpy 2): give both back, for this benchmark only, changing no computation."""
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(Path(importlib.util.find_spec(package).origin).parent / name)
        sys.modules["pkg_resources"] = shim


try:
    _shim_imagecorruptions()
    from imagecorruptions import corrupt as ic_corrupt

    IC_ERROR = None
except Exception as exc:  # noqa: BLE001 - report why the reference is missing
    ic_corrupt = None
    IC_ERROR = f"{type(exc).__name__}: {exc}"
finally:  # imagecorruptions keeps its resource_filename; nothing else should find the stand-in
    if getattr(sys.modules.get("pkg_resources"), "__file__", None) is None:
        sys.modules.pop("pkg_resources", None)


def _map_skimage_multichannel() -> bool:
    """Let imagecorruptions 1.1.2 call scikit-image >= 0.20, which renamed `multichannel` to `channel_axis`.

    Its glass_blur and gaussian_blur call skimage.filters.gaussian(..., multichannel=True) and crash
    otherwise; the mapping changes no computation (channel_axis=-1 is what multichannel=True meant).
    Returns whether the mapping was needed.
    """
    import inspect

    import imagecorruptions.corruptions as ic_module

    original = ic_module.gaussian
    if "multichannel" in inspect.signature(original).parameters:
        return False

    def gaussian(image, sigma=1, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs["channel_axis"] = -1 if multichannel else None
        return original(image, sigma=sigma, **kwargs)

    ic_module.gaussian = gaussian
    return True


IC_SKIMAGE_MAPPED = _map_skimage_multichannel() if ic_corrupt is not None else False

# our name -> imagecorruptions name
IC_NAMES = {
    "gaussian_noise": "gaussian_noise", "shot_noise": "shot_noise", "impulse_noise": "impulse_noise",
    "speckle_noise": "speckle_noise", "gaussian_blur": "gaussian_blur", "defocus_blur": "defocus_blur",
    "motion_blur": "motion_blur", "contrast": "contrast", "brightness": "brightness", "desaturate": "saturate",
    "pixelate": "pixelate", "jpeg": "jpeg_compression", "elastic": "elastic_transform",
    "glass_blur": "glass_blur", "zoom_blur": "zoom_blur", "snow": "snow", "frost": "frost", "fog": "fog",
}


# Pairs where imagecorruptions does the same work at level 3 (same operation, same parameter). The
# others differ: Poisson vs Gaussian shot noise, HSV vs RGB brightness and saturation, a 13x13 disk
# and 15-px motion kernel (sized for 224-px images) vs our 5x5 and 7 px, a full JPEG codec with
# chroma subsampling vs our DCT quantisation, a different elastic field; for ImageNet-C's last five,
# imagecorruptions' 224-px tables against our 64-px ones (zoom blur: 11 zooms to 1.20 against our 16 to
# 1.15; fog and frost other strengths; snow other rows) and, for glass blur, three numba passes of
# pixel swaps against our one gather (the sigma, 1 px, is the same). Frost reads a photograph
# where ours builds a texture.
SAME_WORK = {"gaussian_noise", "speckle_noise", "impulse_noise", "contrast", "pixelate"}

# The ImageNet-C suite: each kernel runs imagecorruptions' own table, so every pair is the same work.
IMAGENET_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
              "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
for _name in IMAGENET_C:
    IC_NAMES[f"imagenet-c/{_name}"] = _name
    SAME_WORK.add(f"imagenet-c/{_name}")


def floor_step(name: str, x: torch.Tensor, level: float):
    """The cheapest step our kernel cannot skip, as a zero-argument call (None if not named).

    Noise kernels must draw one common random number per value; pixelate must at least read
    and write the batch once; ImageNet-C's fog draws its plasma fractal's 65,535 common random
    numbers per image (the next power of two's square, less one) and defocus blur runs its disk
    as one depthwise convolution; JPEG is Pillow's encode and decode of the 8-bit images (the
    reference's own work, decoded as our kernel decodes: `Image.frombytes`, no `Image.open`). Reference time / floor time bounds the ratio any kernel built on
    that step could reach here.
    """
    ids = torch.arange(x.shape[0], device=x.device)
    if name == "imagenet-c/fog":
        side = 1 << (max(x.shape[-2:]) - 1).bit_length()
        return lambda: SampleRandom(ids, 0, name).uniform(side, side)
    if name == "imagenet-c/defocus_blur":
        kernel = imagenet_c._disk(*imagenet_c._row("imagenet-c", "defocus_blur", level)).to(x)
        k, planes = kernel.shape[-1], x.shape[0] * x.shape[1]
        padded = torch.nn.functional.pad(x, (k // 2,) * 4, mode="reflect").reshape(1, planes, *[n + k - 1 for n in x.shape[-2:]])
        return lambda: torch.nn.functional.conv2d(padded, kernel.expand(planes, 1, k, k), groups=planes)
    if name == "imagenet-c/jpeg_compression":
        quality = imagenet_c._row("imagenet-c", "jpeg_compression", level)
        images = [Image.fromarray(im) for im in x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()]
        decoded = Image.new("RGB", images[0].size)

        def codec():  # the kernel's codec calls: encode, then decode without Image.open's header parsing
            for im in images:
                buffer = io.BytesIO()
                im.save(buffer, "JPEG", quality=quality)
                decoded.frombytes(buffer.getvalue(), "jpeg", "RGB", "")

        return codec
    name = name.split("/")[-1]  # another suite kernel has the catalog's floor
    if name in ("gaussian_noise", "speckle_noise", "shot_noise"):
        return lambda: SampleRandom(ids, 0, name).normal(*x.shape[1:])
    if name == "impulse_noise":
        return lambda: SampleRandom(ids, 0, name).uniform(*x.shape[1:])
    if name == "pixelate":
        return x.clone
    return None


# --- (a) per-sample reference loop: one image (H, W, C) float in [0, 1] at a time ----------------------

def _loop_gaussian_noise(img, p, rs):
    return np.clip(img + rs.normal(size=img.shape) * p, 0, 1)


def _loop_shot_noise(img, p, rs):
    return np.clip(rs.poisson(img / p) * p, 0, 1)


def _loop_impulse_noise(img, p, rs):
    out = img.copy()
    hit = rs.random(img.shape) < p
    out[hit] = (rs.random(int(hit.sum())) < 0.5).astype(img.dtype)
    return out


def _loop_speckle_noise(img, p, rs):
    return np.clip(img + img * rs.normal(size=img.shape) * p, 0, 1)


def _pil(img):
    return Image.fromarray((img * 255).round().astype(np.uint8).squeeze(-1) if img.shape[-1] == 1 else (img * 255).round().astype(np.uint8))


def _np(im, c):
    a = np.asarray(im, dtype=np.float64) / 255.0
    return a[..., None] if c == 1 else a


def _loop_gaussian_blur(img, p, rs):
    return _np(_pil(img).filter(ImageFilter.GaussianBlur(p)), img.shape[-1])


def _loop_defocus_blur(img, p, rs):
    r = int(np.ceil(p))
    t = np.arange(-r, r + 1)
    disk = np.clip(p + 0.5 - np.hypot(t[:, None], t[None, :]), 0, 1)
    disk /= disk.sum()
    return np.stack([ndimage.convolve(img[..., c], disk, mode="nearest") for c in range(img.shape[-1])], -1)


def _loop_motion_blur(img, p, rs):
    r = max(1, int(np.ceil(p / 2)))
    t = np.arange(-r, r + 1)
    a = rs.random() * np.pi
    along = t[None, :] * np.cos(a) + t[:, None] * np.sin(a)
    across = -t[None, :] * np.sin(a) + t[:, None] * np.cos(a)
    k = np.clip(1 - np.abs(across), 0, None) * np.clip(p / 2 + 0.5 - np.abs(along), 0, 1)
    k /= k.sum()
    return np.stack([ndimage.convolve(img[..., c], k, mode="nearest") for c in range(img.shape[-1])], -1)


def _loop_contrast(img, p, rs):
    m = img.mean()
    return (img - m) * (1 - p) + m


def _loop_brightness(img, p, rs):
    return np.clip(img + p, 0, 1)


def _loop_desaturate(img, p, rs):
    return _np(ImageEnhance.Color(_pil(img)).enhance(1 - p), 3)


def _loop_pixelate(img, p, rs):
    b = int(np.floor(p + 0.5))
    h, w = img.shape[:2]
    im = _pil(img)
    small = im.resize((max(1, w // b), max(1, h // b)), Image.BOX)
    return _np(small.resize((w, h), Image.NEAREST), img.shape[-1])


def _loop_jpeg(img, p, rs):
    buf = io.BytesIO()
    _pil(img).save(buf, "JPEG", quality=int(100 - p))
    return _np(Image.open(buf), img.shape[-1])


def _loop_elastic(img, p, rs):
    h, w = img.shape[:2]
    dx = ndimage.gaussian_filter(rs.normal(size=(h, w)), max(h, w) / 8)
    dy = ndimage.gaussian_filter(rs.normal(size=(h, w)), max(h, w) / 8)
    scale = p / max(np.sqrt((dx**2 + dy**2).mean() / 2), 1e-6)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy * scale, xx + dx * scale]
    return np.stack([ndimage.map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(img.shape[-1])], -1)


LOOPS = {name[len("_loop_"):]: fn for name, fn in globals().items() if name.startswith("_loop_")}


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _best_interleaved(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """Best-of-`repeat` seconds of each function, timed in alternating rounds.

    This VM's speed drifts by up to 1.5x within minutes; timing each method in every round puts
    ours and the references under the same conditions instead of in different phases.
    """
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def smooth_images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, h // 8, w // 8, generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return (fine + 0.05 * torch.randn(n, c, h, w, generator=g)).clamp(0, 1)


def reference_images(x: torch.Tensor, spec: ModalitySpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """The batch as the references take it: (N, H, W, C) float64 in [0, 1] for the loops and a list of
    (H, W, C) uint8 images (H, W for one channel) for imagecorruptions, each C-contiguous, as a
    caller's own images would be. A strided (H, W, C) view of the planar batch made every reference
    copy its input first (Image.fromarray transposes a strided array through tobytes)."""
    lo, hi = spec.value_range
    unit_np = ((x - lo) / (hi - lo)).permute(0, 2, 3, 1).contiguous().double().numpy()
    uint8 = [(im * 255).round().astype(np.uint8) for im in unit_np]
    return unit_np, [im.squeeze(-1) if x.shape[1] == 1 else im for im in uint8]


def our_kernel(x: torch.Tensor, name: str, spec: ModalitySpec, level: float, device: str):
    """A zero-argument call of our kernel on the batch (warmed up once), or None if it refuses the spec."""
    spec_c = get_corruption(name)
    if spec_c.supports(spec):
        return None
    param = spec_c.param(level, "image")
    xd = x.to(device)
    ids = torch.arange(x.shape[0], device=device)

    def ours():
        y = spec_c(xd, param, SampleRandom(ids, 0, name), spec)
        if device != "cpu":
            torch.cuda.synchronize()
        return y

    ours()  # warm-up (kernel building, allocator)
    return ours


def time_ours(x: torch.Tensor, spec: ModalitySpec, level: float, repeat: int, device: str,
              names: list[str]) -> dict[str, float]:
    """Best-of-`repeat` seconds of each of our kernels on the batch, per corruption name."""
    kernels = {name: our_kernel(x, name, spec, level, device) for name in names}
    return {name: _best(fn, repeat) for name, fn in kernels.items() if fn is not None}


def compare(label: str, x: torch.Tensor, spec: ModalitySpec, level: float, repeat: int, device: str,
            ours_default: dict[str, float], ours_kept: dict[str, float]) -> dict[str, float]:
    """Time ours (kept memory) and the references in alternating rounds, print the ratios and
    return them (imagecorruptions' time over ours, per corruption)."""
    n = x.shape[0]
    unit_np, uint8 = reference_images(x, spec)
    print(f"\n## {label}: {n} images {tuple(x.shape[1:])}, level {level}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'':16s} {'ours img/s':>11s} {'back to back:':>26s}")
    print(f"{'corruption':16s} {'(rounds)':>11s} {'kept':>10s} {'glibc malloc':>15s} {'loop img/s':>11s} {'ratio':>7s} "
          f"{'imagecorr img/s':>16s} {'ratio':>7s} {'same work':>9s} {'floor ceiling':>13s}")
    ratios_loop, ratios_ic, ratios_malloc, ratios_same = [], [], [], []
    by_name = {}
    for name in ours_default:
        param = get_corruption(name).param(level, "image")
        rs = np.random.default_rng(0)
        loop = LOOPS.get(name)  # no loop written for ImageNet-C's last five: imagecorruptions is that reference
        fns = {"ours": our_kernel(x, name, spec, level, device)}
        if loop is not None:
            fns["loop"] = lambda: [loop(im, param, rs) for im in unit_np]
        floor = floor_step(name, x.to(device), level)
        if floor is not None:
            fns["floor"] = floor
        ic_text, floor_text = "-", ""
        if ic_corrupt is not None:
            ic_name = IC_NAMES[name]
            ic_call = lambda: [ic_corrupt(im, corruption_name=ic_name, severity=int(round(level))) for im in uint8]  # noqa: E731
            try:
                ic_call()
                fns["imagecorruptions"] = ic_call
            except Exception as exc:  # noqa: BLE001 - the reference's own failures are part of the result
                ic_text = f"{'fails: ' + type(exc).__name__ + ': ' + str(exc)[:48]}"
        t = _best_interleaved(fns, repeat)
        if "imagecorruptions" in t:
            ratios_ic.append(t["imagecorruptions"] / t["ours"])
            by_name[name] = ratios_ic[-1]
            ic_text = f"{n / t['imagecorruptions']:16.0f} {ratios_ic[-1]:6.1f}x {'yes' if name in SAME_WORK else 'no':>9s}"
            if name in SAME_WORK:
                ratios_same.append(ratios_ic[-1])
            if "floor" in t:
                floor_text = f" {t['imagecorruptions'] / t['floor']:12.1f}x"
        loop_text = f"{'-':>11s} {'-':>7s}"
        if "loop" in t:
            ratios_loop.append(t["loop"] / t["ours"])
            loop_text = f"{n / t['loop']:11.0f} {ratios_loop[-1]:6.1f}x"
        ratios_malloc.append(ours_default[name] / ours_kept[name])
        print(f"{name:16s} {n / t['ours']:11.0f} {n / ours_kept[name]:10.0f} {n / ours_default[name]:15.0f} "
              f"{loop_text} {ic_text}{floor_text}")
    gm = lambda r: float(np.exp(np.mean(np.log(r)))) if r else float("nan")  # noqa: E731
    means = [f"vs loop {gm(ratios_loop):.1f}x over {len(ratios_loop)}"] if ratios_loop else []  # no loop for the suite
    if ratios_ic:
        means.append(f"vs imagecorruptions {gm(ratios_ic):.1f}x over {len(ratios_ic)} corruptions"
                     f" ({gm(ratios_same):.1f}x over the {len(ratios_same)} doing the same work)")
    print("geometric mean ratio: " + (", ".join(means) or "no reference timed"))
    print(f"ours with kept memory vs glibc's default malloc: {gm(ratios_malloc):.2f}x faster (geometric mean of back-to-back timings, one phase each)")
    return by_name


_DEFAULT_RNG = "compiled" if importlib.util.find_spec("numba") is not None else "torch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("imagenet-c", "catalog"), default="imagenet-c")
    ap.add_argument("--n", type=int, default=256, help="number of 3x64x64 images")
    ap.add_argument("--n224", type=int, default=32, help="number of 3x224x224 images (imagenet-c suite)")
    ap.add_argument("--level", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned; default %(default)s)")
    ap.add_argument("--rng", choices=("compiled", "torch"), default=_DEFAULT_RNG,
                    help="path of the common random numbers on CPU, pinned as RBMM_RNG (default %(default)s: "
                         "a long run's, numba present; the same bits either way)")
    ap.add_argument("--corruptions", nargs="+", metavar="NAME",
                    help="time only these (default: the suite's all; imagenet-c suite: ImageNet-C names)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["RBMM_RNG"] = args.rng  # the kernels' draws and the floors' alike
    cv2_threads = "no cv2"
    if importlib.util.find_spec("cv2") is not None:  # imagecorruptions' filters run in OpenCV's own pool
        import cv2

        cv2.setNumThreads(args.threads)
        cv2_threads = str(cv2.getNumThreads())
    print(f"torch threads: {torch.get_num_threads()} (--threads {args.threads}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), OpenCV threads {cv2_threads}, random numbers RBMM_RNG={args.rng}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("imagecorruptions:", "available" if ic_corrupt else f"NOT available ({IC_ERROR}); only the loop reference is timed",
          "(scikit-image's multichannel keyword mapped to channel_axis)" if IC_SKIMAGE_MAPPED else "")
    if args.suite == "imagenet-c":
        names = [f"imagenet-c/{n}" for n in (args.corruptions or IMAGENET_C)]
        batches = [
            ("RGB 64 px", smooth_images(args.n, 3, 64, 64), ModalitySpec("rgb", "image", (3, 64, 64), value_range=(0.0, 1.0))),
            ("RGB 224 px", smooth_images(args.n224, 3, 224, 224), ModalitySpec("rgb", "image", (3, 224, 224), value_range=(0.0, 1.0))),
        ]
    else:
        from robustbench_mm.datasets import load_dataset

        names = args.corruptions or [n for n in IC_NAMES if "/" not in n]
        mfeat = load_dataset("mfeat", "test")
        batches = [
            ("RGB", smooth_images(args.n, 3, 64, 64), ModalitySpec("rgb", "image", (3, 64, 64), value_range=(0.0, 1.0))),
            ("mfeat pix", mfeat.inputs["pix"].float(), mfeat.specs["pix"]),
        ]
    unknown = [n for n in names if n not in IC_NAMES]
    if unknown:
        ap.error(f"--corruptions: unknown {unknown}; expected: {', '.join(n.split('/')[-1] for n in IC_NAMES if ('/' in n) == (args.suite == 'imagenet-c'))}")
    # ours back to back under glibc's default malloc, then as `rbmm` runs (freed memory kept for
    # reuse); then, with memory kept, interleaved with the references
    default = [time_ours(x, spec, args.level, args.repeat, args.device, names) for _, x, spec in batches]
    print("keep_freed_memory applied:", keep_freed_memory())
    kept = [time_ours(x, spec, args.level, args.repeat, args.device, names) for _, x, spec in batches]
    ratios = [compare(label, x, spec, args.level, args.repeat, args.device, t_default, t_kept)
              for (label, x, spec), t_default, t_kept in zip(batches, default, kept)]
    if ic_corrupt is not None:
        labels = [label for label, _, _ in batches]
        print(f"\n## ratios: imagecorruptions' time / ours, level {args.level:g}, {torch.get_num_threads()} torch thread(s), one run")
        print(f"{'corruption':30s}" + "".join(f"{label:>14s}" for label in labels))
        for name in names:
            print(f"{name:30s}" + "".join(f"{r[name]:13.1f}x" if name in r else f"{'-':>14s}" for r in ratios))
        gm = [float(np.exp(np.mean(np.log(list(r.values()))))) if r else float("nan") for r in ratios]
        print(f"{'geometric mean':30s}" + "".join(f"{g:13.1f}x" for g in gm))


if __name__ == "__main__":
    main()
