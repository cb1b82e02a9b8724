"""`rbmm compare`: matched cells of two runs, their paired differences, Holm-corrected."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..metrics import metric_of, resampled_metric
from ..stats import holm
from .document import fmt_p
from .estimates import ALPHA, paired_test
from .load import Data, load


def _match_models(a: Data, b: Data) -> list[tuple[str, str]]:
    shared = [m for m in a.models if m in b.models]
    if shared:
        return [(m, m) for m in shared]
    if len(a.models) == 1 and len(b.models) == 1:
        return [(a.models[0], b.models[0])]
    raise InputError(
        f"runs share no model name (A: {', '.join(a.models)}; B: {', '.join(b.models)}) and do not hold one model each"
    )


def compare_runs(run_a, run_b, *, metric: str = "accuracy", alpha: float = ALPHA) -> pd.DataFrame:
    """Matched cells of two runs (same model name, or the single model of each; same condition and seed).

    diff = metric(B) − metric(A), its 95% paired bootstrap interval and p from `estimates.paired_test`
    (exact McNemar for accuracy, the bootstrap p for every other metric: the same test as the
    report's calibration section), Holm-adjusted over all matched cells; significant = p_holm < alpha.
    Both runs must hold the same samples per cell.
    """
    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    a, b = load([run_a]), load([run_b])
    metric_of(metric, a.task)  # a miss lists the task's metrics
    if a.task != b.task:
        raise InputError(f"run {run_a} is {a.task}, run {run_b} is {b.task}: nothing to compare")
    rows = []
    for model_a, model_b in _match_models(a, b):
        ca = a.cells[a.cells["model"] == model_a].set_index(["condition", "seed"])
        cb = b.cells[b.cells["model"] == model_b].set_index(["condition", "seed"])
        for key in ca.index.intersection(cb.index):
            ra, rb = ca.loc[key], cb.loc[key]
            rec_a, rec_b = a.record(ra), b.record(rb)
            res = paired_test(rec_b, rec_a, metric, a.num_classes)
            va = float(resampled_metric(rec_a, metric, a.task, a.num_classes, np.ones((1, len(rec_a["ids"]))))[0])
            rows.append({
                "model_a": model_a, "model_b": model_b, "condition": key[0], "seed": key[1],
                "family": ra["family"], "name": ra["name"], "modalities": ra["modalities"], "level": ra["level"],
                "a": va, "b": va + res.diff, "diff": res.diff, "low": res.low, "high": res.high, "p": res.p,
            })
    differences = run_differences(next(iter(a.runs.values())).manifest.to_json(), next(iter(b.runs.values())).manifest.to_json())
    if not rows:
        raise InputError(f"runs {run_a} and {run_b} share no (model, condition, seed) cell" + "".join(f"; {d}" for d in differences))
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df["p"].to_numpy())
    df["significant"] = df["p_holm"] < alpha
    df = _by_effect(df)
    df.attrs.update(metric=metric, alpha=alpha, run_a=str(run_a), run_b=str(run_b), differences=differences)
    return df


def run_differences(a: dict, b: dict) -> list[str]:
    """What makes two runs' cells mean different things: the protocol (name, hash) and the plug-ins
    that shaped it (name, source, SHA-256), one line each, A first; empty when they agree."""
    out = []
    pa, pb = a.get("protocol") or {}, b.get("protocol") or {}
    if (pa.get("name"), pa.get("hash")) != (pb.get("name"), pb.get("hash")):
        out.append(
            f"protocol differs: A {pa.get('name')!r} (hash {str(pa.get('hash'))[:12]}), "
            f"B {pb.get('name')!r} (hash {str(pb.get('hash'))[:12]}); only the conditions both hold are compared"
        )
    plugs_a = {p.get("name"): p for p in a.get("plugins") or [] if isinstance(p, dict)}
    plugs_b = {p.get("name"): p for p in b.get("plugins") or [] if isinstance(p, dict)}
    for name in sorted(set(plugs_a) | set(plugs_b), key=str):
        pa_, pb_ = plugs_a.get(name), plugs_b.get(name)
        if pa_ is None or pb_ is None:
            have = pa_ or pb_
            out.append(f"plug-in {name!r} ({have.get('source')}, sha256 {str(have.get('sha256'))[:12]}) shaped only run {'A' if pb_ is None else 'B'}")
        elif pa_.get("sha256") != pb_.get("sha256"):
            out.append(
                f"plug-in {name!r} differs: A {pa_.get('source')} (sha256 {str(pa_.get('sha256'))[:12]}), "
                f"B {pb_.get('source')} (sha256 {str(pb_.get('sha256'))[:12]})"
            )
    return out


def _by_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by the size of the difference, largest |B − A| first (ties: smaller Holm p first)."""
    order = np.lexsort((df["p_holm"].to_numpy(), -df["diff"].abs().to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def format_comparison(df: pd.DataFrame) -> str:
    """Terminal table of the cells whose difference is significant after Holm correction, largest
    effect first."""
    metric, alpha = df.attrs.get("metric", "metric"), df.attrs.get("alpha", ALPHA)
    sig = _by_effect(df[df["significant"]])
    head = "".join(f"note: {d}\n" for d in df.attrs.get("differences", [])) + (
        f"{len(sig)} of {len(df)} matched cells differ significantly in {metric} (B − A, Holm-adjusted p < {alpha:g})"
    )
    if sig.empty:
        return head
    labels = [f"{r.model_a}" + ("" if r.model_a == r.model_b else f" vs {r.model_b}") + f"  s{r.seed} {r.condition}"
              for r in sig.itertuples()]
    width = max(len("cell"), *(len(x) for x in labels))
    lines = [head, f"{'cell':<{width}}  {'A':>7}  {'B':>7}  {'B − A':>8}  {'95% CI':>19}  {'p (Holm)':>9}"]
    for label, r in zip(labels, sig.itertuples()):
        lines.append(f"{label:<{width}}  {r.a:7.4f}  {r.b:7.4f}  {r.diff:+8.4f}  [{r.low:+.4f}, {r.high:+.4f}]  "
                     f"{fmt_p(r.p_holm):>9}")
    return "\n".join(lines)
