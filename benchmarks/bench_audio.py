"""Audio kernels against audiomentations, as ratios measured in one run (not a timed test).

Each pair does the same work on a batch of clips (default 256 clips x 8,000 samples at 8 kHz,
float32, level 3 of our severity table): our batched kernel on the whole (B, N) tensor against
audiomentations (installed, the `test` extra) called once per clip, as its API takes one clip.
Times are the best of interleaved rounds (ours, theirs, ours, ...; at least `--repeat`, more
for sub-millisecond pairs), one torch/BLAS
thread pinned before torch loads, and `keep_freed_memory()` applied as `rbmm` does. A ratio
> 1 means ours is faster. The floor column times, in the same rounds, the part of our work that the
kernel's output bits fix (a memory copy, the random draws, reverb's FFTs; `_floor`): theirs / floor
is the most any same-bits kernel could reach here.

Pairs and what differs between the two sides:
  white_noise  AddGaussianSNR (same SNR)             same work
  pink_noise   AddColorNoise  (f_decay -3.01 dB/oct) same work; theirs shapes noise with an FFT per clip
  brown_noise  AddColorNoise  (f_decay -6.02 dB/oct) same work
  time_mask    TimeMask (fade 0, one band of the same share)  same share of the clip silenced
  gain         Gain (same dB)                         same work
  clipping     ClippingDistortion (percentile thresholds)     theirs also finds percentiles
  reverb       ApplyImpulseResponse (our impulse responses written to WAV files, same length)
  lowpass      LowPassFilter (Butterworth IIR; ours an ideal FFT filter)  different method: not same work

    python benchmarks/bench_audio.py [--clips 256] [--samples 8000] [--repeat 5] [--level 3]
"""

from __future__ import annotations

import importlib.util
import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# one random-number path for the whole run (by default a process switches once it has drawn enough,
# robustbench_mm/corruptions/rng.py): the compiled one where numba is installed; RBMM_RNG=torch for the other
os.environ.setdefault("RBMM_RNG", "compiled" if importlib.util.find_spec("numba") else "torch")

import argparse  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robustbench_mm.corruptions import SampleRandom, get_corruption  # noqa: E402
from robustbench_mm.corruptions.audio import _CPU_BLOCK, _fft_length  # noqa: E402
from robustbench_mm.datasets import ModalitySpec  # noqa: E402
from robustbench_mm.runtime import describe_threads, keep_freed_memory  # noqa: E402

_MAX_ROUNDS = 200
SAME_WORK = ("white_noise", "pink_noise", "brown_noise", "time_mask", "gain", "clipping", "reverb")


def _theirs(name: str, param: float, ir_folder: Path):
    import audiomentations as am

    if name == "white_noise":
        return am.AddGaussianSNR(min_snr_db=param, max_snr_db=param, p=1.0)
    if name in ("pink_noise", "brown_noise"):
        decay = -3.01 if name == "pink_noise" else -6.02
        return am.AddColorNoise(min_snr_db=param, max_snr_db=param, min_f_decay=decay, max_f_decay=decay, p=1.0)
    if name == "time_mask":
        return am.TimeMask(min_band_part=param, max_band_part=param, fade_duration=0.0, p=1.0)
    if name == "gain":
        return am.Gain(min_gain_db=-param, max_gain_db=-param, p=1.0)
    if name == "clipping":
        percent = int(round(100 * param / 2))  # both tails: the share of samples clipped
        return am.ClippingDistortion(min_percentile_threshold=percent, max_percentile_threshold=percent, p=1.0)
    if name == "reverb":
        return am.ApplyImpulseResponse(ir_path=ir_folder, p=1.0)
    if name == "lowpass":
        cutoff = (1.0 - param) * 4000.0
        return am.LowPassFilter(min_cutoff_freq=cutoff, max_cutoff_freq=cutoff, p=1.0)
    raise KeyError(name)


def _write_impulse_responses(folder: Path, n: int, rate: int, count: int = 8) -> None:
    """Exponentially decaying noise bursts of our reverb's length (5 time constants of 5% of n)."""
    import soundfile

    tau = max(1.0, 0.05 * n)
    length = min(n, max(2, math.ceil(5 * tau)))
    rng = np.random.default_rng(0)
    for i in range(count):
        ir = rng.normal(size=length) * np.exp(-np.arange(length) / tau)
        ir[0] = 1.0
        soundfile.write(folder / f"ir{i}.wav", (ir / np.abs(ir).max()).astype(np.float32), rate)


def _floor(name: str, x: torch.Tensor, fresh):
    """The part of our kernel's work that its output bits fix, timed in the same rounds: a ratio
    theirs / floor below 3 means no same-bits kernel can reach 3x on this machine.

    Memory-bound kernels (one pass over the batch): `x.clone()`, after time_mask's segment draws.
    Noises: their random draws (and the colour's FFT pair, in the kernel's blocks of clips). Reverb:
    its three FFTs, in the clips' precision (float32 here) at the length its output bits depend on
    (revision 2: the smallest 2^a 5^b >= n + IR length - 1), in the kernel's blocks of clips (faster
    than on the whole batch)."""
    n = x.shape[-1]
    if name in ("gain", "clipping"):
        return lambda: x.clone()
    if name == "time_mask":  # its per-clip segment draws (part of its definition), then one pass
        return lambda: (next(fresh).uniform(min(32, n), dtype=torch.float64), x.clone())
    if name == "white_noise":
        return lambda: next(fresh).normal(n, dtype=x.dtype)
    if name in ("pink_noise", "brown_noise"):  # the FFT pair in the kernel's blocks of clips
        rows = max(2, _CPU_BLOCK // n)

        def draws_and_ffts():
            white = next(fresh).normal(n, dtype=torch.float64)
            for r0 in range(0, x.shape[0], rows):
                torch.fft.irfft(torch.fft.rfft(white[r0 : r0 + rows], dim=-1), n=n, dim=-1)

        return draws_and_ffts
    if name == "reverb":  # in the kernel's blocks of clips (audio._reverb_blocks), the fastest way measured
        length = min(n, max(2, math.ceil(5 * max(1.0, 0.05 * n))))
        size = _fft_length(n + length - 1)
        clips = x.shape[0]
        rows = math.ceil(clips / math.ceil(clips / max(1, _CPU_BLOCK // size)))
        buffer = torch.zeros(2 * rows, size, dtype=x.dtype)

        def ffts():
            for r0 in range(0, clips, rows):
                torch.fft.irfft(torch.fft.rfft(buffer)[: max(2, min(clips - r0, rows))], n=size)

        return ffts
    return None


def _fresh_generators(clips: int, key: str):
    """A new generator for every call, built before the timing: the engine builds one per condition
    and batch (`apply.condition_random`) and hands the kernel its stream 0, so that is what a
    kernel sees; its construction, the same for every kernel, is timed on its own line."""
    ids = torch.arange(clips)
    return iter([SampleRandom(ids, 0, key) for _ in range(_MAX_ROUNDS + 1)])


def _best_interleaved(fns: dict[str, object], repeat: int, budget: float = 1.0) -> dict[str, float]:
    """Best time of each function over interleaved rounds: at least `repeat` rounds, more for fast
    pairs (up to `budget` seconds of the slower side, at most 200 rounds), since a best-of-few of
    a sub-millisecond kernel on a loaded machine is mostly noise."""
    first = {}
    for k, fn in fns.items():
        start = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - start
    rounds = int(min(_MAX_ROUNDS, max(repeat, budget / max(first.values()))))
    best = dict(first)
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--level", type=int, default=3, choices=range(1, 6))
    args = parser.parse_args()
    print(f"keep_freed_memory applied: {keep_freed_memory()}; {describe_threads()}; "
          f"RBMM_RNG={os.environ['RBMM_RNG']}; load average {os.getloadavg()[0]:.1f}")
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(args.samples) / args.rate
    x = (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.randn(args.clips, args.samples, generator=gen)).clamp(-1, 1)
    clips = x.numpy()
    spec = ModalitySpec("audio", "audio", (args.samples,))
    ratios = {}
    print(f"{args.clips} clips x {args.samples} samples, float32, level {args.level}")
    print(f"{'kernel':<13} {'param':>6} {'ours ms':>8} {'theirs ms':>10} {'ratio':>7} {'floor ms':>9} {'theirs/floor':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        _write_impulse_responses(Path(tmp), args.samples, args.rate)
        for name in (*SAME_WORK, "lowpass"):
            kernel = get_corruption(name)
            param = kernel.severity[args.level - 1]
            theirs = _theirs(name, param, Path(tmp))
            fresh = _fresh_generators(args.clips, name)
            fns = {
                "ours": lambda: kernel(x, param, next(fresh), spec),
                "theirs": lambda: [theirs(samples=c, sample_rate=args.rate) for c in clips],
            }
            floor = _floor(name, x, _fresh_generators(args.clips, name))
            if floor is not None:
                fns["floor"] = floor
            best = _best_interleaved(fns, args.repeat)
            ratios[name] = best["theirs"] / best["ours"]
            note = "" if name in SAME_WORK else "  (different method)"
            bound = (f"{best['floor'] * 1e3:>9.2f} {best['theirs'] / best['floor']:>12.1f}x" if floor is not None
                     else f"{'':>9} {'':>13}")
            print(f"{name:<13} {param:>6g} {best['ours'] * 1e3:>8.2f} {best['theirs'] * 1e3:>10.2f} {ratios[name]:>6.1f}x "
                  f"{bound}{note}")
    ids = torch.arange(args.clips)
    build = _best_interleaved({"build": lambda: SampleRandom(ids, 0, "reverb")}, args.repeat)["build"]
    print(f"not in the kernels' times: a fresh SampleRandom for {args.clips} clips takes {build * 1e3:.3f} ms "
          "(once per condition and batch, whatever the kernel)")
    same = [ratios[n] for n in SAME_WORK]
    print(f"same-work pairs: geometric mean {math.exp(np.mean(np.log(same))):.1f}x, min {min(same):.1f}x "
          f"({min(SAME_WORK, key=ratios.get)})")


if __name__ == "__main__":
    main()
