"""Common random numbers on CPU: torch's path against the compiled one (numba), as ratios measured in one run.

    PYTHONPATH=. python benchmarks/bench_rng.py [--threads 1] [--repeat 7]

Part 1 times `SampleRandom(ids, seed, key).normal(...)` / `.uniform(...)` (a fresh generator each
call, as every condition of a run makes one) on both paths, RBMM_RNG=torch and RBMM_RNG=compiled,
in alternating rounds, best of --repeat; `torch.randn`/`torch.rand` of the same size (torch's own
stateful generator, which gives no common random numbers) stand beside them for scale. The draws are
bit-identical on both paths (tests/test_rng_compiled.py), so the ratio is the whole story.
Part 2 measures what the compiled path costs to start, in fresh processes (CPU seconds): importing
numba, and loading the loops, compiled from scratch (an empty NUMBA_CACHE_DIR) and from numba's
disk cache; that cost is why RBMM_RNG=auto loads them only after 2**29 values on torch's path.
Torch's intra-op threads are pinned (--threads) and printed; the compiled loops run on one thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SIZES = [  # (label, batch, per-sample shape)
    ("ImageNet-C 16 x 3x224x224", 16, (3, 224, 224)),
    ("64 x 3x64x64", 64, (3, 64, 64)),
    ("mfeat 256 x 240", 256, (240,)),
    ("256 x 1 (one value a sample)", 256, ()),
]

_LOAD = """
import os, sys, time, torch
from robustbench_mm.corruptions.rng import SampleRandom
ids = torch.arange(16)
SampleRandom(ids, 0, "warm").uniform(8)  # torch's path is warm, numba not yet imported
start = time.process_time()
import numba
imported = time.process_time()
os.environ["RBMM_RNG"] = "compiled"
SampleRandom(ids, 0, "k").uniform(8)
print(imported - start, time.process_time() - imported)
"""


def _per_call(fn) -> float:
    """Seconds per call of `fn`, timed over enough calls to take ~20 ms, after one warm-up call."""
    calls = max(1, int(0.02 / max(1e-6, _once(fn))))
    return _once(fn, calls)


def _once(fn, calls: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _time_paths(draw, reference, repeat: int) -> tuple[float, float, float]:
    """(torch path, compiled path, torch's own generator): best seconds per call over alternating rounds."""
    best = {"torch": float("inf"), "compiled": float("inf"), "reference": float("inf")}
    for _ in range(repeat):
        for path in ("torch", "compiled"):
            os.environ["RBMM_RNG"] = path
            best[path] = min(best[path], _per_call(draw))
        best["reference"] = min(best["reference"], _per_call(reference))
    return best["torch"], best["compiled"], best["reference"]


def _load_costs(rounds: int) -> list[tuple[float, float, float]]:
    """(import numba, loops compiled from scratch, loops from the disk cache) CPU seconds, per round."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RBMM_RNG": "torch"}
    costs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            env["NUMBA_CACHE_DIR"] = cache
            runs = [subprocess.run([sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, check=True)
                    for _ in range(2)]
        (imported, compiled), (_, cached) = ([float(v) for v in r.stdout.split()] for r in runs)
        costs.append((imported, compiled, cached))
    return costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned; default %(default)s)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--load-rounds", type=int, default=3, help="fresh-process rounds of part 2")
    args = ap.parse_args()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from robustbench_mm.corruptions.rng import SampleRandom
    from robustbench_mm.runtime import describe_threads

    torch.set_num_threads(args.threads)
    print(f"{describe_threads()}; load average {os.getloadavg()[0]:.1f}")
    print("\n## draws: microseconds per call (best of rounds), torch's path / compiled path")
    print(f"{'size':32s} {'draw':14s} {'torch path':>11s} {'compiled':>10s} {'ratio':>7s} {'torch.randn/rand':>17s}")
    for label, batch, shape in SIZES:
        ids = torch.arange(batch) * 7919
        draws = [
            ("normal f32", lambda: SampleRandom(ids, 0, "k").normal(*shape), lambda: torch.randn(batch, *shape)),
            ("uniform f32", lambda: SampleRandom(ids, 0, "k").uniform(*shape), lambda: torch.rand(batch, *shape)),
            ("uniform f64", lambda: SampleRandom(ids, 0, "k").uniform(*shape, dtype=torch.float64),
             lambda: torch.rand(batch, *shape, dtype=torch.float64)),
        ]
        for name, draw, reference in draws:
            slow, fast, ref = _time_paths(draw, reference, args.repeat)
            print(f"{label:32s} {name:14s} {slow * 1e6:11.1f} {fast * 1e6:10.1f} {slow / fast:6.2f}x {ref * 1e6:17.1f}")
    print(f"\n## starting the compiled path: CPU seconds in a fresh process ({args.load_rounds} rounds)")
    costs = _load_costs(args.load_rounds)
    for column, label in enumerate(("import numba", "load loops, compiling them (empty cache)", "load loops from numba's cache")):
        values = sorted(c[column] for c in costs)
        print(f"{label:42s} min {values[0]:.2f} s, median {values[len(values) // 2]:.2f} s")


if __name__ == "__main__":
    main()
