"""The seed study: every method of the zoo, several training seeds, several protocols; who is more robust?

Uses only the suite. Trains (or reuses from the cache `rbmm demo` uses) every model of
`robustbench_mm.demo.ZOO` for each training seed, evaluates each protocol once per training seed
(`<out>/<protocol>-seed-<N>`; a complete run of the same models is reused, an
unfinished one resumed), and scores each (model, training seed,
protocol) by its mean accuracy over the protocol's perturbed cells (all evaluation seeds).
Across training seeds it reports, per protocol:
  - every model's mean with a 95% t-interval (n = the number of training seeds);
  - paired t-tests (pairs = training seeds) of each calibrated backbone against the same backbone
    without calibration, and of each fusion against the best unimodal model of that protocol (by
    mean), Holm-corrected over every test of the table;
  - a Friedman test and Nemenyi critical-difference ranking of all models, blocks = (protocol,
    training seed), drawn as a CD diagram (`<out>/cd-<data>.png`/`.svg`).

    python tools/seed_study.py --data avdigits                       # 3 seeds x 5 protocols
    python tools/seed_study.py --data avdigits --protocols standard missing conflict --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_mm.datasets import load_dataset
from robustbench_mm.demo import BACKBONES, ZOO, dataset_folder, model_name, train_zoo, zoo_entries
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.models import load_model
from robustbench_mm.plots import critical_difference as cd_figure
from robustbench_mm.plots import save_figure
from robustbench_mm.results import load_run, load_runs
from robustbench_mm.stats import critical_difference, holm, mean_ci, paired_ttest

PROTOCOLS = ("standard", "missing", "conflict", "qmf", "udml")


def run_study(
    dataset: str, seeds: tuple[int, ...], protocols: tuple[str, ...], cache: Path, out: Path,
    fusions: tuple[str, ...] | None = None, progress: bool = False,
) -> tuple[list[Path], list[str]]:  # fmt: skip
    """Train what the cache lacks, evaluate every (protocol, training seed); returns (run folders, model order)."""
    data = load_dataset(dataset, "test")
    entries = zoo_entries(seeds, list(data.modalities), ZOO, fusions)
    if not entries:
        raise InputError(f"--fusions {' '.join(fusions or ())}: none is in the zoo ({', '.join(f for f, _, _ in ZOO)})")
    zoo = train_zoo(entries, cache, dataset=dataset, progress=progress)
    runs = []
    for seed, paths in zoo.items():
        models = None
        for protocol in protocols:
            run = out / dataset_folder(dataset) / f"{protocol}-seed-{seed}"
            if not _finished(run, [p.stem for p in paths]):
                models = models or [load_model(p) for p in paths]
                evaluate(models, data, protocol, out=run, progress=progress)
            runs.append(run)
    return runs, list(dict.fromkeys(e.name for e in entries))


def _finished(run: Path, names: list[str]) -> bool:
    """A complete run of exactly these models: reused as it is (resuming it would load every model for nothing)."""
    if not (run / "manifest.json").is_file():
        return False
    done = load_run(run)
    return done.complete and set(done.cells["model"]) == set(names)


def seed_scores(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (protocol, training_seed, model): clean accuracy and mean accuracy over perturbed cells.

    `cells` are those of runs named `<protocol>-seed-<N>` (as `run_study` writes them).
    """
    parts = cells["run"].str.extract(r"^(?P<protocol>.+)-seed-(?P<training_seed>\d+)$")
    if parts.isna().any(axis=None):
        raise InputError("seed study runs must be named <protocol>-seed-<N>")
    cells = cells.assign(protocol=parts["protocol"], training_seed=parts["training_seed"].astype(int))
    keys = ["protocol", "training_seed", "model"]
    clean = cells[cells["family"] == "clean"].groupby(keys)["accuracy"].mean().rename("clean")
    perturbed = cells[cells["family"] != "clean"].groupby(keys)["accuracy"].mean().rename("perturbed")
    return pd.concat([clean, perturbed], axis=1).reset_index()


def _wide(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """(protocol, training_seed) x model table of one score column."""
    return scores.pivot_table(index=["protocol", "training_seed"], columns="model", values=column)


def method_table(scores: pd.DataFrame, models: list[str], protocols: list[str]) -> pd.DataFrame:
    """Mean [95% CI] across training seeds per model: clean (from the first protocol's runs) and each protocol."""
    wide = _wide(scores, "perturbed")
    clean = _wide(scores, "clean").xs(protocols[0], level="protocol")
    rows = []
    for model in models:
        row = {"model": model, "clean": mean_ci(clean[model])}
        row.update({p: mean_ci(wide.xs(p, level="protocol")[model]) for p in protocols})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def comparisons(models: list[str]) -> list[tuple[str, str | None]]:
    """(model, reference) pairs to test; reference None = the best unimodal model of the protocol."""
    pairs = [(model_name(b, True), model_name(b, False)) for b in BACKBONES]
    pairs = [(a, b) for a, b in pairs if a in models and b in models]
    if any(m.startswith("unimodal-") for m in models):
        pairs += [(m, None) for m in models if not m.startswith("unimodal-")]
    return pairs


def paired_table(scores: pd.DataFrame, models: list[str], protocols: list[str]) -> pd.DataFrame:
    """Per protocol and pair: both means, the paired difference's mean and 95% CI, t-test p, Holm p over the table."""
    wide = _wide(scores, "perturbed")
    unimodal = [m for m in models if m.startswith("unimodal-")]
    rows = []
    for protocol in protocols:
        table = wide.xs(protocol, level="protocol")
        for model, reference in comparisons(models):
            ref = reference or max(unimodal, key=lambda m: table[m].mean())
            a, b = table[model].to_numpy(), table[ref].to_numpy()
            ci = mean_ci(a - b)
            rows.append({
                "protocol": protocol, "model": model, "reference": ref, "model_mean": a.mean(), "reference_mean": b.mean(),
                "diff": ci.mean, "low": ci.low, "high": ci.high, "p": paired_ttest(a, b).p_value,
            })  # fmt: skip
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    return out


def ranking(scores: pd.DataFrame, models: list[str]):
    """Friedman + Nemenyi over blocks (protocol, training seed) of perturbed accuracy (stats.critical_difference)."""
    wide = _wide(scores, "perturbed")[models]
    return critical_difference(wide.to_numpy(), models)


def _ci(c) -> str:
    if np.isnan(c.low):
        return f"{c.mean:.3f}"
    return f"{c.mean:.3f} ± {c.high - c.mean:.3f}"


def markdown(dataset: str, seeds, protocols: list[str], methods: pd.DataFrame, pairs: pd.DataFrame, cd) -> str:
    lines = [
        f"Mean accuracy over each protocol's perturbed cells on {dataset} test, mean ± 95% CI half-width over "
        f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}); clean = the clean cell; rank = Friedman average rank (1 = best).",
        "",
        "| model | clean | " + " | ".join(protocols) + " | rank |",
        "|---|---:|" + "---:|" * len(protocols) + "---:|",
    ]
    ranks = cd.ranks
    for model, r in methods.iterrows():
        lines.append(f"| {model} | {_ci(r['clean'])} | " + " | ".join(_ci(r[p]) for p in protocols) + f" | {ranks[model]:.2f} |")
    fr = cd.friedman
    lines += [
        "",
        f"{fr.formula}, over {fr.n} blocks (protocol × training seed), {fr.k} models: chi2 = {fr.chi2:.2f}, p = {fr.p_value:.2g} "
        f"(Iman–Davenport F = {fr.f_stat:.2f}, p = {fr.f_p_value:.2g}); Nemenyi CD = {cd.cd:.2f} at α = {cd.alpha}.",
        "Groups not significantly different: " + ("; ".join("{" + ", ".join(c) + "}" for c in cd.clique_names) or "none"),
        "",
        f"Paired t-tests across training seeds (n = {len(seeds)}), Holm over all {len(pairs)} tests; reference "
        "`unimodal-*` = the protocol's best unimodal model:",
        "",
        "| protocol | model | reference | model | reference | difference [95% CI] | p | p (Holm) |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for r in pairs.itertuples():
        lines.append(
            f"| {r.protocol} | {r.model} | {r.reference} | {r.model_mean:.3f} | {r.reference_mean:.3f} "
            f"| {r.diff:+.3f} [{r.low:+.3f}, {r.high:+.3f}] | {r.p:.3f} | {r.p_holm:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="avdigits", help="dataset source, e.g. avdigits:split=speaker (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds, >= 2 (default: 0 1 2)")
    parser.add_argument(
        "--protocols", nargs="+", default=list(PROTOCOLS), metavar="NAME",
        help=f"protocols to evaluate (default: {' '.join(PROTOCOLS)})",
    )  # fmt: skip
    parser.add_argument("--fusions", nargs="+", metavar="FUSION", help="only these rows of the zoo (default: all of demo.ZOO)")
    parser.add_argument("--cache", default=".cache/rbmm-zoo", help="trained checkpoints, shared with `rbmm demo` (default: %(default)s)")
    parser.add_argument("--out", default="results/seed-study", help="run folders, tables and the CD diagram (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="show progress bars (default: off)")
    args = parser.parse_args(argv)
    try:
        if len(args.seeds) < 2:
            raise InputError("--seeds: give at least 2 training seeds (intervals and paired tests need them)")
        out = Path(args.out)
        runs, models = run_study(
            args.data, tuple(args.seeds), tuple(args.protocols), Path(args.cache), out,
            tuple(args.fusions) if args.fusions else None, args.progress,
        )  # fmt: skip
        scores = seed_scores(load_runs(runs).cells)
        protocols = list(args.protocols)
        methods, pairs, cd = method_table(scores, models, protocols), paired_table(scores, models, protocols), ranking(scores, models)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    folder = out / dataset_folder(args.data)
    scores.to_csv(folder / "scores.csv", index=False)
    pairs.to_csv(folder / "paired.csv", index=False)
    save_figure(cd_figure(cd.ranks, cd.cd, cd.clique_names, title=f"{args.data}: {', '.join(protocols)}"), folder / "cd")
    text = markdown(args.data, args.seeds, protocols, methods, pairs, cd)
    (folder / "study.md").write_text(text + "\n")
    print(text)
    print(f"\nwritten: {folder}/study.md, scores.csv, paired.csv, cd.png/.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
