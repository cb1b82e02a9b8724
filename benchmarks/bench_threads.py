"""Thread settings of `rbmm eval`, as measured in one run (not a timed test).

Runs the same command under each setting in interleaved rounds (round 1: every setting once,
round 2: again, ...), so a change in the machine's load falls on every setting alike, and prints
min/median wall time and the CPU time (user + system of the child process) per setting:

- default: torch's own choice (one thread per core, OpenMP workers spin while idle), the
  `rbmm` behaviour before issue 23 (OMP_WAIT_POLICY=ACTIVE stands in for "unset": the CLI now
  sets PASSIVE when the variable is absent);
- passive: what `rbmm` now does by default (OMP_WAIT_POLICY=PASSIVE, torch's thread count);
- one thread: `rbmm --threads 1`.

    python benchmarks/bench_threads.py [--rounds 3] [-- rbmm arguments]
    (default arguments: eval results/baselines/mfeat-concat.pt --data mfeat --protocol quick)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMAND = ["eval", str(ROOT / "results" / "baselines" / "mfeat-concat.pt"), "--data", "mfeat",
                   "--protocol", "quick", "--quiet", "--overwrite"]
SETTINGS = {
    "default (spinning)": ([], {"OMP_WAIT_POLICY": "ACTIVE"}),
    "passive (rbmm default)": ([], {}),
    "--threads 1": (["--threads", "1"], {}),
}


def _run(prefix: list[str], env_extra: dict[str, str], command: list[str], out: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one `python -m robustbench_mm` child."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "robustbench_mm", *prefix, *command, "--out", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("command", nargs="*", default=DEFAULT_COMMAND, help="rbmm arguments (after --)")
    args = parser.parse_args()
    print(f"rbmm {' '.join(args.command)}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, (prefix, env) in SETTINGS.items():
                times[name].append(_run(prefix, env, args.command, Path(tmp) / "run"))
    print(f"load average {os.getloadavg()[0]:.1f} at end; {args.rounds} interleaved rounds")
    print(f"{'setting':<24} {'wall min':>9} {'wall median':>12} {'CPU median':>11}")
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:<24} {min(walls):>8.1f}s {statistics.median(walls):>11.1f}s {statistics.median(cpus):>10.1f}s")


if __name__ == "__main__":
    main()
