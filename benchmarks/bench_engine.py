"""Engine speed, as ratios measured in one run (not a timed test).

1. Harness overhead, like for like: wall time of `evaluate()` with the `standard` protocol on the
   embedded default (mfeat: pix + fou + fac) divided by the time of the bare model compute it
   needs (the same batches, perturbed beforehand outside the timer): `evaluate()` with encoder
   reuse over the bare reuse path (clean encodings once per batch, re-encode the touched
   modality, fuse), and `evaluate()` without reuse over bare full forwards. Target <= 1.25.
2. Encoder reuse: time of a full forward per cell divided by the reuse path (clean encodings
   once per batch, re-encode only the touched modality, fuse), same conditions. Target >= 1.8.
3. Cells per second and samples per second of `evaluate()`.

    python benchmarks/bench_engine.py [--protocol standard] [--fusions concat transformer conv]
        [--batch-size 256] [--device cpu] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as `rbmm` sets it

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from robustbench_mm.corruptions import DonorPool, apply_condition
from robustbench_mm.datasets import load_dataset
from robustbench_mm.engine import evaluate
from robustbench_mm.runtime import describe_threads, keep_freed_memory
from robustbench_mm.models import build_model
from robustbench_mm.protocols import load_protocol


def _models(data, fusions):
    torch.manual_seed(0)
    specs = list(data.specs.values())
    return [build_model({"fusion": f, "specs": specs, "num_classes": data.num_classes}).eval() for f in fusions]


def _reuse_vs_full(model, data, conditions, seed, batch_size, device) -> tuple[float, float]:
    """Model compute only: (full forward per cell, reuse path) seconds over the same inputs."""
    donors = DonorPool.from_data(data, device)
    batches = list(data.batches(batch_size, device))
    inputs = [[apply_condition(b, c, data.specs, seed, donors) for c in conditions] for b in batches]
    with torch.inference_mode():
        t = time.perf_counter()
        for per_batch in inputs:
            for p in per_batch:
                model(p.inputs, p.present)
        full = time.perf_counter() - t
        t = time.perf_counter()
        for b, per_batch in zip(batches, inputs):
            clean = {k: model.encode(k, v) for k, v in b.inputs.items()}
            for c, p in zip(conditions, per_batch):
                features = dict(clean)
                for k in c.touched:
                    features[k] = model.encode(k, p.inputs[k])
                model.fuse(features, p.present)
        reuse = time.perf_counter() - t
    return full, reuse


def _reuse_bound(model, data, conditions, batch_size, device, repeats: int) -> tuple[float, dict[str, float], float]:
    """Why the reuse ratio is what it is: (ratio the parts allow, encode seconds per modality, fuse
    seconds), each part timed alone on the first batch. A full forward costs sum_m e_m + f per
    condition; the reuse path sum over touched m of e_m + f, plus one clean encoding per batch."""
    batch = next(iter(data.batches(batch_size, device)))
    with torch.inference_mode():
        features = {k: model.encode(k, v) for k, v in batch.inputs.items()}

        def best(fn) -> float:
            fn()
            times = []
            for _ in range(max(3, repeats)):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        encode = {k: best(lambda k=k: model.encode(k, batch.inputs[k])) for k in batch.inputs}
        fuse = best(lambda: model.fuse(features, batch.present))
    full = len(conditions) * (sum(encode.values()) + fuse)
    reuse = sum(encode.values()) + sum(sum(encode[k] for k in c.touched) + fuse for c in conditions)
    return full / reuse, encode, fuse


def main() -> None:
    keep_freed_memory()  # as `rbmm eval` runs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="standard")
    ap.add_argument("--data", default="mfeat")
    ap.add_argument("--fusions", nargs="+", default=["concat", "transformer", "conv"])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for every timing")
    ap.add_argument("--reuse-data", nargs="+", default=["mfeat", "avdigits"],
                    help="datasets for the encoder-reuse ratio")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    data = load_dataset(args.data)
    protocol = load_protocol(args.protocol)
    conditions = protocol.expand(data.specs)
    models = [m.to(device) for m in _models(data, args.fusions)]
    print(f"{args.data}: {len(data)} samples, modalities {', '.join(data.modalities)}; protocol {protocol.name}: "
          f"{len(conditions)} conditions x {len(models)} models ({', '.join(args.fusions)}); device {device}, "
          f"batch {args.batch_size}, torch {torch.__version__}; {describe_threads()}; load average {os.getloadavg()[0]:.1f}")

    tmp = Path(tempfile.mkdtemp(prefix="rbmm-bench-"))
    best = {"reuse": float("inf"), "full": float("inf"), "bare full": float("inf"), "bare reuse": float("inf")}
    try:
        for r in range(args.repeats):
            for mode in ("reuse", "full"):
                out = tmp / f"{mode}{r}"
                t = time.perf_counter()
                evaluate(models, data, protocol, out=out, device=device, batch_size=args.batch_size,
                         progress=False, reuse_encoders=mode == "reuse")
                best[mode] = min(best[mode], time.perf_counter() - t)
                shutil.rmtree(out)
            bare = [_reuse_vs_full(m, data, conditions, protocol.seed, args.batch_size, device) for m in models]
            best["bare full"] = min(best["bare full"], sum(full for full, _ in bare))
            best["bare reuse"] = min(best["bare reuse"], sum(reuse for _, reuse in bare))
        cells = len(conditions) * len(models)
        print(f"bare full forwards         {best['bare full']:8.2f} s")
        print(f"bare reuse path            {best['bare reuse']:8.2f} s")
        print(f"evaluate(), encoder reuse  {best['reuse']:8.2f} s   overhead ratio {best['reuse'] / best['bare reuse']:.2f} "
              "(over the bare reuse path; target <= 1.25)")
        print(f"evaluate(), full forwards  {best['full']:8.2f} s   overhead ratio {best['full'] / best['bare full']:.2f} "
              "(over bare full forwards)")
        print(f"throughput (reuse)         {cells / best['reuse']:8.1f} cells/s   {cells * len(data) / best['reuse']:10.0f} samples/s (sample x cell)")
        for source in args.reuse_data:
            rdata = data if source == args.data else load_dataset(source)
            rconditions = protocol.expand(rdata.specs)
            for model, name in zip([m.to(device) for m in _models(rdata, args.fusions)], args.fusions):
                full = reuse = float("inf")
                for _ in range(args.repeats):
                    f, u = _reuse_vs_full(model, rdata, rconditions, protocol.seed, args.batch_size, device)
                    full, reuse = min(full, f), min(reuse, u)
                print(f"encoder reuse speed-up, {source} ({', '.join(rdata.modalities)}), {name:<12} {full / reuse:5.2f}x  "
                      f"(full {full:.2f} s, reuse {reuse:.2f} s, {len(rconditions)} conditions; target >= 1.8)")
                bound, encode, fuse = _reuse_bound(model, rdata, rconditions, args.batch_size, device, args.repeats)
                touched = {k: sum(k in c.touched for c in rconditions) for k in encode}
                parts = ", ".join(f"{k} {encode[k] * 1e3:.1f} ms ({touched[k]} conditions touch it)" for k in encode)
                print(f"    parts allow {bound:.2f}x: encode per batch {parts}; fuse {fuse * 1e3:.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
