"""Time of the demo-sized report, and where it goes (a benchmark, not a timed test).

The report of `rbmm demo` (3 runs, one per training seed, × 14 models, `standard` protocol on
mfeat) is rebuilt stage by stage as `report.write_report` does it, each stage timed on its own:
loading the runs, reading every cell's per-sample records, the bootstrap of every cell
(`Boot.values`; the sections would otherwise do both lazily), each section (the calibration section holds the paired tests) and rendering.
One torch/BLAS thread, pinned before numpy and torch load.

    rbmm demo --cache .cache/zoo --out .cache/bench/demo-runs --report .cache/bench/demo-report
    python benchmarks/bench_report.py [RUN ...] [--out FOLDER] [--profile]
    (default runs: .cache/bench/demo-runs/seed-*)

It imports only what `write_report` uses, so the same script times another checkout's code:
`PYTHONPATH=/path/to/other/checkout python benchmarks/bench_report.py`.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy/torch load: one thread, as the target is stated
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = sorted((ROOT / ".cache" / "bench" / "demo-runs").glob("seed-*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--out", type=Path, help="report folder (default: a temporary one)")
    parser.add_argument("--profile", action="store_true", help="also print the 25 functions with most cumulative time")
    args = parser.parse_args()
    if not args.runs:
        parser.error("no runs given and none in .cache/bench/demo-runs; create them with the `rbmm demo` line in this file's docstring")

    start_all = time.process_time()
    import torch

    import robustbench_mm
    from robustbench_mm.report import Context, FigureSink, ordered_sections
    from robustbench_mm.report.estimates import Boot
    from robustbench_mm.report.load import load
    from robustbench_mm.report.render import render

    imports = time.process_time() - start_all
    print(f"code: {Path(robustbench_mm.__file__).parent}; torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average {os.getloadavg()[0]:.1f}")
    profile = cProfile.Profile() if args.profile else None
    stages: list[tuple[str, float, float]] = [("imports", imports, float("nan"))]

    def timed(name, fn):
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn()
        stages.append((name, time.process_time() - cpu, time.perf_counter() - wall))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report"
        if profile:
            profile.enable()
        data = timed("load runs", lambda: load(args.runs))
        boot = Boot(data)
        cells = data.cells
        keys = [{"run": run, "cell_id": cell} for run, cell in zip(cells["run"], cells["cell_id"])]
        timed(f"records of every cell ({len(cells)} cells)", lambda: [data.record(key) for key in keys])
        timed("bootstrap of every cell", lambda: [boot.values(key) for key in keys])
        ctx = Context(data, boot, data.models[0], FigureSink(out / "figures"))
        built = [timed(f"section {spec.name}", lambda spec=spec: spec.build(ctx)) for spec in ordered_sections()]
        timed("render HTML + Markdown", lambda: render([s for s in built if s is not None], "bench", "bench", out))
        if profile:
            profile.disable()
    total_cpu = sum(cpu for _, cpu, _ in stages)
    total_wall = sum(w for _, _, w in stages[1:])
    print(f"{len(data.runs)} runs x {len(data.models)} models, {len(cells)} cells, metric {data.metric}")
    print(f"{'stage':<44} {'CPU s':>7} {'wall s':>7} {'share':>6}")
    for name, cpu, wall in stages:
        print(f"{name:<44} {cpu:>7.2f} {wall:>7.2f} {cpu / total_cpu:>6.0%}")
    print(f"{'total':<44} {total_cpu:>7.2f} {total_wall + imports:>7.2f}  (wall: stages + import CPU)")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
