"""Train every model of the zoo (`robustbench_mm.demo.ZOO`) on a dataset; print clean accuracy and seconds per model.

    python benchmarks/train_zoo.py                      # mfeat (pix + fou + fac), seed 0
    python benchmarks/train_zoo.py --data avdigits:split=speaker --seed 1 --out /tmp/zoo
    python benchmarks/train_zoo.py --data synthetic --fusions udml qmf cal unimodal

This measures the issues' quality bars: every backbone with and without calibration, the late and
uncertainty-late baselines and the udml, qmf and cal methods should reach >= 95% clean test accuracy
on mfeat and >= 90% on avdigits, each in <= 60 s on 2 CPU cores; the unimodal models (one per
modality) are the reference. With --out the checkpoints are named as in the demo's cache
(`--out .cache/rbmm-zoo/avdigits/seed-0` fills what `rbmm demo --data avdigits` and
`tools/seed_study.py` reuse).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from robustbench_mm.datasets import load_splits
from robustbench_mm.demo import zoo_entries
from robustbench_mm.models import train_and_save, train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mfeat", help="dataset source (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=0, help="the dataset's split seed (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's, training.TRAIN_DEFAULTS)")
    p.add_argument("--modality-dropout", type=float, default=0.0, help="modality dropout rate in [0, 1) (default: %(default)s)")
    p.add_argument("--out", help="also write each checkpoint (+ metrics JSON) into this folder (default: not written)")
    p.add_argument("--fusions", nargs="+", metavar="FUSION", help="train only these rows of the zoo (default: all)")
    args = p.parse_args()

    splits = load_splits(args.data, seed=args.split_seed)
    print(f"{args.data}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; modalities "
          f"{', '.join(splits['train'].modalities)}; torch {torch.__version__}")  # fmt: skip
    print(f"{'model':<22} {'val acc':>8} {'test acc':>8} {'epochs':>6} {'best':>5} {'seconds':>8}")
    total = time.perf_counter()
    for entry in zoo_entries((args.seed,), list(splits["train"].modalities), fusions=args.fusions):
        fusion, calibration, modality, name = entry.fusion, entry.calibration, entry.modality, entry.name
        common = dict(seed=args.seed, epochs=args.epochs, modality_dropout=args.modality_dropout, progress=False)
        if args.out:
            metrics = train_and_save(
                fusion=fusion, calibration=calibration, splits=splits, out=Path(args.out) / f"{name}.pt",
                split_seed=args.split_seed, modality=modality, **common,
            )  # fmt: skip
        else:
            config = {"fusion": fusion, "calibration": calibration, **({"modality": modality} if modality else {})}
            _, metrics = train_model(config, splits, **common)
        key = "accuracy" if "accuracy" in metrics["test"] else "rmse"
        print(
            f"{name:<22} {metrics['val'][key]:>8.4f} {metrics['test'][key]:>8.4f} "
            f"{metrics['epochs_run']:>6} {metrics['best_epoch']:>5} {metrics['seconds']:>8.1f}",
            flush=True,
        )
    print(f"total {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
