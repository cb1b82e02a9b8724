"""Three checks behind the gate study's answer (docs/gate-study.md) to "do the calibration gates see
conflict?", read from the folders `tools/gate_study.py` writes (its checkpoints and runs; nothing is trained here).

    python tools/gate_checks.py swap-sums --variant calibration_conflict_0.3 \
        --variant calibration_conflict_0.3-calibration_cues_evidence        # avdigits, conflict at rate 1
    python tools/gate_checks.py cues --backbones concat transformer conv     # evidence minus summary cues
    python tools/gate_checks.py feature-scale --seed 0                       # a common scale of the features

swap-sums : with two modalities, "an image of class a with a voice of class b" is what both an image
    swap and a voice swap produce, so for any model accuracy(every image swapped) + accuracy(every
    voice swapped) <= 1 in expectation. Per variant and model: the two accuracies (mean over
    training seeds) and their sum per seed, from the `conflict` runs' rate-1 cells.
cues : the calibrated models' accuracy with evidence cues minus with summary cues (both trained with
    the same feature-swap augmentation), mean over each protocol's cells, paired by training seed:
    mean, 95% t-interval, paired t-test, Holm over every row.
feature-scale : how much a plain backbone's prediction depends on one common scale of all its
    modality features (what a gate falling for every modality at once amounts to): test accuracy,
    fraction of unchanged predictions and mean |change of logit| at scales 0.5, 0.8, 1.25, 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate_study import _folder, _safe  # noqa: E402  (the study's own folder layout)

from robustbench_mm.datasets import load_splits  # noqa: E402
from robustbench_mm.domain import Family, cells as select_cells  # noqa: E402
from robustbench_mm.models import load_model  # noqa: E402
from robustbench_mm.results import load_runs  # noqa: E402
from robustbench_mm.stats import holm, mean_ci, paired_ttest  # noqa: E402

SUMMARY = "calibration_conflict_0.3"
EVIDENCE = "calibration_conflict_0.3-calibration_cues_evidence"


def _runs(out: Path, variant: str, dataset: str, protocol: str) -> list[Path]:
    runs = sorted((out / variant / "runs" / _safe(dataset)).glob(f"{protocol}-seed-*"))
    if not runs:
        raise SystemExit(f"gate_checks: no {protocol} runs under {out / variant / 'runs' / _safe(dataset)}; "
                         "run tools/gate_study.py with that variant first")
    return runs


def swap_sums(out: Path, variants: list[str], dataset: str) -> None:
    print("| variant | model | " + " | ".join(f"{m} swapped" for m in ("image", "audio")) + " | sum (per seed) |")
    print("|---|---|---:|---:|---|")
    for variant in variants:
        table = select_cells(load_runs(_runs(out, variant, dataset, "conflict")).cells, Family.CONFLICT, rate=1.0)
        for model, rows in table.groupby("model"):
            per_seed = {m: rows[rows["modalities"] == m].groupby("run")["accuracy"].mean() for m in ("image", "audio")}
            total = per_seed["image"] + per_seed["audio"]
            print(f"| {variant} | {model} | {per_seed['image'].mean():.3f} | {per_seed['audio'].mean():.3f} | "
                  f"{total.mean():.3f} ({', '.join(f'{v:.3f}' for v in total)}) |")


def cues(out: Path, backbones: list[str], dataset: str) -> None:
    rows = []
    for backbone in backbones:
        for protocol in ("standard", "missing", "conflict"):
            acc = {}
            for variant in (EVIDENCE, SUMMARY):
                table = load_runs(_runs(out, variant, dataset, protocol)).cells
                acc[variant] = table[table["model"] == f"{backbone}+cal"].groupby("run")["accuracy"].mean().sort_index().to_numpy()
            diff = acc[EVIDENCE] - acc[SUMMARY]
            rows.append((backbone, protocol, acc[SUMMARY].mean(), acc[EVIDENCE].mean(), mean_ci(diff),
                         paired_ttest(acc[EVIDENCE], acc[SUMMARY]).p_value))
    adjusted = holm(np.array([r[5] for r in rows]))
    print("| backbone | protocol | summary+cal | evidence+cal | evidence − summary [95% CI] | p | p (Holm) |")
    print("|---|---|---:|---:|---|---:|---:|")
    for (backbone, protocol, s, e, ci, p), h in zip(rows, adjusted):
        print(f"| {backbone} | {protocol} | {s:.3f} | {e:.3f} | {ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] | {p:.3f} | {h:.3f} |")


def feature_scale(cache: Path, dataset: str, seed: int, backbones: list[str]) -> None:
    data = load_splits(dataset)["test"]
    print("| backbone | clean accuracy | scale | accuracy | same prediction | mean abs Δ logit |\n|---|---:|---:|---:|---:|---:|")
    for backbone in backbones:
        model = load_model(_folder(cache, dataset, seed, None) / f"{backbone}.pt").module.eval()
        with torch.no_grad():
            features = {m: model.encode(m, data.inputs[m]) for m in model.modalities}
            base = model.fuse(features)
            for scale in (0.5, 0.8, 1.25, 2.0):
                out = model.fuse({m: f * scale for m, f in features.items()})
                print(f"| {backbone} | {(base.argmax(1) == data.labels).float().mean():.3f} | {scale:g} | "
                      f"{(out.argmax(1) == data.labels).float().mean():.3f} | {(out.argmax(1) == base.argmax(1)).float().mean():.3f} | "
                      f"{(out - base).abs().mean():.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="check", required=True)
    for name in ("swap-sums", "cues", "feature-scale"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="avdigits")
        p.add_argument("--out", type=Path, default=Path("results/gate-study"), help="gate_study.py's --out")
        p.add_argument("--cache", type=Path, default=Path("results/gate-study/checkpoints"), help="gate_study.py's --cache")
        p.add_argument("--backbones", nargs="+", default=["concat", "transformer", "conv"])
        p.add_argument("--variant", action="append", help="swap-sums: a variant folder under --out (repeatable)")
        p.add_argument("--seed", type=int, default=0, help="feature-scale: the training seed's plain checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check == "swap-sums":
        swap_sums(args.out, args.variant or [SUMMARY, EVIDENCE], args.data)
    elif args.check == "cues":
        cues(args.out, args.backbones, args.data)
    else:
        feature_scale(args.cache, args.data, args.seed, args.backbones)


if __name__ == "__main__":
    main()
