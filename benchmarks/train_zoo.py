"""Train the eight default configurations on a dataset and print clean accuracy and seconds per model.

    python benchmarks/train_zoo.py                      # mfeat (pix + fou + fac), seed 0
    python benchmarks/train_zoo.py --data synthetic --seed 1 --out /tmp/zoo

This measures the issue's quality bar: every backbone with and without calibration (and the late
and dynamic baselines) should reach >= 95% clean test accuracy on mfeat, each in <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from robustbench_mm.datasets import load_splits
from robustbench_mm.models import train_and_save, train_model

ZOO = [(f, c) for f in ("concat", "transformer", "conv") for c in (False, True)] + [("late", False), ("dynamic", False)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mfeat", help="dataset source (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--modality-dropout", type=float, default=0.0)
    p.add_argument("--out", help="also write each checkpoint (+ metrics JSON) into this folder")
    args = p.parse_args()

    splits = load_splits(args.data, seed=args.split_seed)
    print(f"{args.data}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; modalities "
          f"{', '.join(splits['train'].modalities)}; torch {torch.__version__}")  # fmt: skip
    print(f"{'model':<22} {'val acc':>8} {'test acc':>8} {'epochs':>6} {'best':>5} {'seconds':>8}")
    total = time.perf_counter()
    for fusion, calibration in ZOO:
        name = fusion + ("+cal" if calibration else "")
        common = dict(seed=args.seed, epochs=args.epochs, modality_dropout=args.modality_dropout, progress=False)
        if args.out:
            metrics = train_and_save(
                fusion=fusion, calibration=calibration, splits=splits, out=Path(args.out) / f"{name}.pt",
                split_seed=args.split_seed, **common,
            )  # fmt: skip
        else:
            _, metrics = train_model({"fusion": fusion, "calibration": calibration}, splits, **common)
        key = "accuracy" if "accuracy" in metrics["test"] else "rmse"
        print(
            f"{name:<22} {metrics['val'][key]:>8.4f} {metrics['test'][key]:>8.4f} "
            f"{metrics['epochs_run']:>6} {metrics['best_epoch']:>5} {metrics['seconds']:>8.1f}",
            flush=True,
        )
    print(f"total {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
