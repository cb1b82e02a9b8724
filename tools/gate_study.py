"""The gate study: do the pre-fusion calibration gates fall on corrupted and conflicting inputs,
and does calibration change accuracy under the `standard`, `missing` and `conflict` protocols?

Uses only the suite: trains each backbone with and without calibration for several training
seeds (`train_and_save`, checkpoints cached under --cache), evaluates them with the engine
(`evaluate`), reads the gates the models recorded per sample (`report.gate_samples`), and
compares with `stats` (`mean_ci`, `paired_ttest`, `holm`).

Gates: per training seed, the median over affected samples of (gate - the same sample's clean
gate) and the fraction of samples whose gate is lower than its clean gate; then mean and 95%
t-interval of those per-seed values across training seeds. Accuracy: per training seed the mean
accuracy over every cell of a protocol, with minus without calibration; mean, 95% t-interval,
paired t-test across seeds, Holm over every row of the accuracy table.

    python tools/gate_study.py --data avdigits --seeds 0 1 2 --backbones concat   # prints Markdown tables
    python tools/gate_study.py --data synthetic:conflict=0.3 --protocols standard conflict \
        --calibration-conflict 0.3 --relative-gate --out results/gate-study-after   # an opt-in variant
    python tools/gate_study.py --probe --cues evidence --data avdigits --calibration-conflict 0.3   # cue probe only

A variant (any of --cues evidence, --calibration-conflict, --relative-gate) keeps its calibrated
checkpoints in a folder of its own and its runs and tables under --out/<variant>; the models
without calibration are the same for every variant and are shared.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from robustbench_mm.datasets import load_dataset, load_splits
from robustbench_mm.demo import model_name
from robustbench_mm.engine import evaluate
from robustbench_mm.models import load_model
from robustbench_mm.models.calibration import CUES
from robustbench_mm.models.training import train_and_save
from robustbench_mm.report import gate_summary, gate_samples
from robustbench_mm.results import load_runs
from robustbench_mm.stats import cliffs_delta, holm, mean_ci, paired_ttest

PROTOCOLS = ("standard", "missing", "conflict")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _options(calibration_conflict: float, relative: bool, cues: str = "summary") -> dict | None:
    """The calibrated models' extra build options (None: the default module; the default `summary`
    cues are left out, so their checkpoints keep the folder they always had)."""
    options = {"calibration_conflict": calibration_conflict, "calibration_relative": relative,
               "calibration_cues": cues if cues != "summary" else None}
    return {k: v for k, v in options.items() if v} or None


def _variant(options: dict | None) -> str:
    """'' for the default module, else e.g. '-calibration_cues=evidence'."""
    return "".join(f"-{k}={v}" for k, v in (options or {}).items())


def _folder(cache: Path, dataset: str, seed: int, options: dict | None) -> Path:
    """Checkpoints of one training seed; a variant gets its own folder (so nothing is reused across variants).
    Models without calibration take no variant options: they always live in the option-free folder."""
    return cache / _safe(dataset) / _safe(f"seed-{seed}{_variant(options)}")


def train(dataset: str, seeds, backbones, cache: Path, epochs: int | None, modality_dropout: float,
          options: dict | None, calibrations=(False, True)) -> dict[int, list[Path]]:
    """Checkpoints per training seed (only the missing ones are trained); prints training seconds.
    options : the calibrated models' build options (`_options`)."""
    splits = None
    zoo: dict[int, list[Path]] = {}
    for seed in seeds:
        for backbone in backbones:
            for calibration in calibrations:
                path = _folder(cache, dataset, seed, options if calibration else None) / f"{model_name(backbone, calibration)}.pt"
                if not path.exists():
                    splits = splits or load_splits(dataset)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    t0 = time.perf_counter()
                    metrics = train_and_save(fusion=backbone, calibration=calibration, splits=splits, seed=seed, out=path,
                                             epochs=epochs, modality_dropout=modality_dropout, progress=False,
                                             model_options=options if calibration else None)
                    print(f"trained {dataset} seed {seed} {path.stem}: test acc {metrics['test']['accuracy']:.4f}, "
                          f"{time.perf_counter() - t0:.0f} s, {metrics['epochs_run']} epochs", flush=True)
                zoo.setdefault(seed, []).append(path)
    return zoo


def run_all(dataset: str, zoo: dict[int, list[Path]], out: Path, protocols=PROTOCOLS) -> dict[tuple[int, str], Path]:
    data = load_dataset(dataset, "test")
    runs = {}
    for seed, paths in zoo.items():
        models = [load_model(p) for p in paths]
        for protocol in protocols:
            run = out / _safe(dataset) / f"{protocol}-seed-{seed}"
            t0 = time.perf_counter()
            evaluate(models, data, protocol, out=run, progress=False)
            print(f"evaluated {dataset} seed {seed} {protocol}: {time.perf_counter() - t0:.0f} s", flush=True)
            runs[seed, protocol] = run
    return runs


def gate_table(dataset: str, runs: dict[tuple[int, str], Path]) -> pd.DataFrame:
    """Per (backbone, modality, input, gate kind): per-seed median change and fraction lower, across seeds."""
    frames = []
    for (seed, protocol), run in runs.items():
        if protocol == "missing":
            continue  # removal: the gate of an absent modality is not defined
        s = gate_samples([run])
        if protocol == "standard":
            s = s[s["input"] != "clean"]
        frames.append(s.assign(training_seed=seed))
    if not frames:  # only `missing` runs: no gate to read
        return pd.DataFrame(columns=["dataset", "model", "modality", "input", "gate"])
    samples = pd.concat(frames, ignore_index=True)
    per_seed = gate_summary(samples, by=("model", "modality", "input", "training_seed"))
    rows = []
    for (model, modality, inp), g in per_seed.groupby(["model", "modality", "input"], sort=False):
        if inp == "clean":
            continue
        pooled = gate_summary(samples[(samples["model"] == model) & (samples["modality"] == modality) & (samples["input"] == inp)],
                              by=("model",)).iloc[0]
        clean = samples[(samples["model"] == model) & (samples["modality"] == modality) & (samples["input"] == "clean")]
        for kind in ("instance", "dim"):
            change, lower = mean_ci(g[f"median_change_{kind}"]), mean_ci(g[f"lower_{kind}"])
            rows.append({
                "dataset": dataset, "model": model, "modality": modality, "input": inp, "gate": kind,
                "seeds": len(g), "n": int(pooled["n"]),
                "median_clean": float(np.nanmedian(clean[f"gate_{kind}"])), "median_input": pooled[f"median_{kind}"],
                "median_change": change.mean, "change_low": change.low, "change_high": change.high,
                "lower": lower.mean, "lower_low": lower.low, "lower_high": lower.high,
                "accuracy": pooled["accuracy"],
            })
    return pd.DataFrame(rows)


def accuracy_table(dataset: str, runs: dict[tuple[int, str], Path], backbones) -> pd.DataFrame:
    rows = []
    for protocol in dict.fromkeys(p for _, p in runs):
        cells = load_runs([run for (seed, p), run in runs.items() if p == protocol]).cells
        cells["training_seed"] = cells["run"].str.extract(r"seed-(\d+)$", expand=False).astype(int)
        acc = cells.groupby(["training_seed", "model"])["accuracy"].mean().unstack("model")
        for backbone in backbones:
            a, b = acc[model_name(backbone, False)].to_numpy(), acc[model_name(backbone, True)].to_numpy()
            ci = mean_ci(b - a)
            rows.append({"dataset": dataset, "backbone": backbone, "protocol": protocol, "seeds": len(a),
                         "without": a.mean(), "with_cal": b.mean(), "gain": ci.mean, "low": ci.low, "high": ci.high,
                         "p": paired_ttest(b, a).p_value})
    return pd.DataFrame(rows)


def _swapped_features(model, data, generator: torch.Generator):
    """Clean features of every sample, and for each modality a copy where only it comes from a random
    sample of another class (what the `conflict` protocol does, on the encoded features)."""
    with torch.no_grad():
        features = {m: model.encode(m, data.inputs[m]) for m in model.modalities}
    labels, n = data.labels, len(data.labels)
    donor = torch.randint(0, n, (n,), generator=generator)
    for _ in range(50):  # redraw donors of the same class
        same = labels[donor] == labels
        if not same.any():
            break
        donor[same] = torch.randint(0, n, (int(same.sum()),), generator=generator)
    return features, {m: dict(features, **{m: features[m][donor]}) for m in model.modalities}


def cue_probe(checkpoint: Path, dataset: str) -> pd.DataFrame:
    """Can the calibration cues tell a swapped modality from a clean one, and does the gate use them?

    A logistic-regression probe (torch LBFGS) on the cue vector of modality m, fitted on the
    training split (clean vs m swapped), scored on the test split as AUC = (Cliff's delta + 1) / 2;
    beside it the AUC of the trained instance gate itself (lower gate = swapped), the fraction of
    samples whose gate fell (for m, and for the other modalities when m was swapped: a gate that
    falls for every modality sees conflict but not its source), the fraction whose share
    g_m / mean_n g_n fell (m lost weight against the others), and, for `evidence` cues, the test
    accuracy of each modality's evidence head (what bounds how well a swap shows).
    """
    model = load_model(checkpoint).module.eval()
    splits = load_splits(dataset)
    g = torch.Generator().manual_seed(0)
    cues, gates, evidence_acc = {}, {}, {}

    def instance_gates(features, present) -> torch.Tensor:
        found = model.calibrate.compute_gates(features, present)
        return torch.stack([found[m][0] for m in model.modalities], dim=1)

    for split in ("train", "test"):
        clean, swapped = _swapped_features(model, splits[split], g)
        present = model.presence(clean, None)
        with torch.no_grad():
            if model.calibrate.cue_kind == "evidence":  # how often each modality's own evidence names the class
                right = model.calibrate.evidence_logits(clean).argmax(-1) == splits[split].labels[:, None]
                evidence_acc.update({m: float(right[:, i].float().mean()) for i, m in enumerate(model.modalities)})
            base_cues, base_gates = model.calibrate.cues(clean, present), instance_gates(clean, present)
            for i, m in enumerate(model.modalities):
                other_cues = model.calibrate.cues(swapped[m], present)
                cues[split, m] = (base_cues[:, i], other_cues[:, i])
                gates[split, m] = (base_gates, instance_gates(swapped[m], present))  # (B, M) each
    rows = []
    for i, m in enumerate(model.modalities):
        (a, b), (ta, tb) = cues["train", m], cues["test", m]
        x, y = torch.cat([a, b]), torch.cat([torch.zeros(len(a)), torch.ones(len(b))])
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
        w = torch.zeros(x.shape[1], requires_grad=True)
        c = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, c], max_iter=200)

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits((x - mu) / sd @ w + c, y) + 1e-3 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            score_clean, score_swapped = ((ta - mu) / sd @ w + c).numpy(), ((tb - mu) / sd @ w + c).numpy()
        all_clean, all_swapped = gates["test", m]
        g_clean, g_swapped = all_clean[:, i], all_swapped[:, i]
        others = [j for j in range(len(model.modalities)) if j != i]
        share_clean, share_swapped = g_clean / all_clean.mean(1), g_swapped / all_swapped.mean(1)
        rows.append({
            "dataset": dataset, "checkpoint": checkpoint.parent.name + "/" + checkpoint.stem, "modality": m,
            "probe_auc": (cliffs_delta(score_swapped, score_clean) + 1) / 2,
            "gate_auc": (cliffs_delta(g_clean.numpy(), g_swapped.numpy()) + 1) / 2,
            "gate_lower": float((g_swapped < g_clean).float().mean()),
            "others_lower": float((all_swapped[:, others] < all_clean[:, others]).float().mean()),
            "share_lower": float((share_swapped < share_clean).float().mean()),
            "evidence_acc": evidence_acc.get(m, float("nan")),  # test split; NaN for summary cues
        })
    return pd.DataFrame(rows)


def probe_summary(probes: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, backbone, modality): mean and 95% t-interval across training seeds of the probe's
    AUC, the gate's AUC and the fraction of samples whose gate fell (0.5 = blind to the swap)."""
    probes = probes.assign(backbone=probes["checkpoint"].str.split("/").str[-1])
    rows = []
    for (dataset, backbone, modality), g in probes.groupby(["dataset", "backbone", "modality"], sort=False):
        row = {"dataset": dataset, "model": backbone, "modality": modality, "seeds": len(g)}
        for column in ("probe_auc", "gate_auc", "gate_lower", "others_lower", "share_lower", "evidence_acc"):
            ci = mean_ci(g[column].to_numpy())
            row[column] = f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]" if g[column].notna().all() else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def _md(df: pd.DataFrame) -> str:
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = [f"{v:.3f}" if np.isfinite(v) else "–" for v in shown[c]]
    head = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    return head + "\n".join("| " + " | ".join(str(v) for v in r) + " |" for r in shown.itertuples(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", help="dataset (repeatable); default avdigits and synthetic:conflict=0.3")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--backbones", nargs="+", default=["concat", "transformer", "conv"])
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    ap.add_argument("--epochs", type=int, default=None, help="training epoch cap (default: the recipe's)")
    ap.add_argument("--modality-dropout", type=float, default=0.0)
    ap.add_argument("--calibration-conflict", type=float, default=0.0,
                    help="train the calibrated models with this fraction of feature swaps (PreFusionCalibration.swap_for_training)")
    ap.add_argument("--relative-gate", action="store_true",
                    help="calibrated models: instance gates divided by their mean over present modalities")
    ap.add_argument("--cues", choices=CUES, default="summary",
                    help="the calibrated models' cues (model option calibration_cues; default: %(default)s)")
    ap.add_argument("--probe", action="store_true",
                    help="only the cue probe of the calibrated checkpoints (trains the missing calibrated ones, evaluates none)")
    ap.add_argument("--cache", type=Path, default=Path("results/gate-study/checkpoints"))
    ap.add_argument("--out", type=Path, default=Path("results/gate-study"))
    args = ap.parse_args()
    started = time.perf_counter()
    options = _options(args.calibration_conflict, args.relative_gate, args.cues)
    out = args.out / _safe(_variant(options).lstrip("-")) if options else args.out  # runs and tables of a variant apart
    if args.probe:
        probes = []
        for dataset in args.data or ["avdigits", "synthetic:conflict=0.3"]:
            zoo = train(dataset, args.seeds, args.backbones, args.cache, args.epochs, args.modality_dropout,
                        options, calibrations=(True,))
            probes += [cue_probe(path, dataset) for paths in zoo.values() for path in paths]
        probes = pd.concat(probes, ignore_index=True)
        print(_md(probes))
        print("\n## Across training seeds (mean [95% CI])\n")
        print(_md(probe_summary(probes)))
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
        return
    gates, accuracy = [], []
    for dataset in args.data or ["avdigits", "synthetic:conflict=0.3"]:
        zoo = train(dataset, args.seeds, args.backbones, args.cache, args.epochs, args.modality_dropout, options)
        runs = run_all(dataset, zoo, out / "runs", args.protocols)
        gates.append(gate_table(dataset, runs))
        accuracy.append(accuracy_table(dataset, runs, args.backbones))
    gates, accuracy = pd.concat(gates, ignore_index=True), pd.concat(accuracy, ignore_index=True)
    accuracy["p_holm"] = holm(accuracy["p"].to_numpy())
    out.mkdir(parents=True, exist_ok=True)
    gates.to_csv(out / "gates.csv", index=False)
    accuracy.to_csv(out / "accuracy.csv", index=False)
    print("\n## Gates vs the same sample's clean gate (instance gate)\n")
    print(_md(gates[gates["gate"] == "instance"].drop(columns="gate")))
    print("\n## Gates vs clean (mean dimension gate)\n")
    print(_md(gates[gates["gate"] == "dim"].drop(columns="gate")))
    print("\n## Accuracy: with minus without calibration (mean over the protocol's cells)\n")
    print(_md(accuracy))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
