"""The CI regression gate: compare a fresh run with a committed baseline, fail only on real drops.

A check (one cell, or one summary of a model's cells) regresses when its drop from the baseline
is larger than the tolerance AND the paired bootstrap interval of the drop lies entirely beyond
the tolerance, so the gate never flaps on sampling noise. Every check is a function of the
per-sample scores of both runs (correctness for classification, -|error| for regression), so one
joint bootstrap over sample ids gives intervals for cells and summaries alike: resampling the same
samples in every cell keeps the pairing between cells that summaries average over.

The baseline is a compact JSON (schema: robustbench_mm/schemas/baseline.schema.json): per-cell
metrics and per-sample scores, bit-packed for classification.
"""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError
from .results import Run
from .stats import bootstrap_counts

BASELINE_SCHEMA = "robustbench-mm/baseline"
BASELINE_VERSION = 2


@dataclass(frozen=True)
class Check:
    """One gated quantity for one model: higher is better for every check (mCE enters as -mCE)."""

    model: str
    name: str
    baseline: float
    current: float
    drop: float
    drop_low: float
    drop_high: float
    tolerance: float

    @property
    def regressed(self) -> bool:
        return bool(self.drop > self.tolerance and self.drop_low > self.tolerance)


@dataclass(frozen=True)
class GateResult:
    checks: list[Check]
    tolerance: float
    confidence: float

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions


def _sample_scores(record: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample score, higher is better: correctness, or -|error| for regression."""
    if "pred" in record:
        return (record["pred"] == record["target"]).astype(np.float64)
    return -np.abs(record["output"].astype(np.float64) - record["target"].astype(np.float64))


def _pack(scores: np.ndarray, task: str) -> str:
    if task == "classification":
        return base64.b64encode(np.packbits(scores.astype(bool)).tobytes()).decode()
    return base64.b64encode(scores.astype("<f4").tobytes()).decode()


def _unpack(text: str, n: int, task: str) -> np.ndarray:
    raw = base64.b64decode(text.encode())
    if task == "classification":
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].astype(np.float64)
    return np.frombuffer(raw, dtype="<f4")[:n].astype(np.float64)


def _cell_label(row) -> str:
    return f"seed={int(row['seed'])} {row['condition']}"


def _run_scores(run: Run) -> tuple[np.ndarray, dict[tuple[str, str], dict]]:
    """Sample ids (sorted) and, per (model, cell label), the cell's facts and scores in id order."""
    ids_ref: np.ndarray | None = None
    cells: dict[tuple[str, str], dict] = {}
    for _, row in run.cells.iterrows():
        record = run.samples(row["cell_id"])
        order = np.argsort(record["ids"], kind="stable")
        ids = record["ids"][order]
        if ids_ref is None:
            ids_ref = ids
        elif not np.array_equal(ids, ids_ref):
            raise InputError(f"run {run.path}: cell {row['cell_id']} covers other samples than the first cell")
        cells[(str(row["model"]), _cell_label(row))] = {
            "family": str(row["family"]),
            "name": str(row["name"]),
            "modalities": str(row["modalities"]),
            "scores": _sample_scores(record)[order],
        }
    if ids_ref is None:
        raise InputError(f"run {run.path}: cells.csv has no cells")
    return ids_ref, cells


def _fingerprint(run: Run) -> dict:
    manifest = run.manifest
    dataset = manifest["dataset"]
    return {
        "protocol": {"name": manifest["protocol"]["name"], "hash": manifest["protocol"]["hash"]},
        "dataset": {"name": dataset["name"], "sha256": dataset["fingerprint"], "modalities": sorted(dataset["modalities"])},
        "task": dataset["task"],
        "rng": manifest.get("rng", "lowbias32/1"),  # runs before the field existed used version 1
    }


def make_baseline(run: Run) -> dict:
    """The JSON-able baseline of a run: what a later gate needs, nothing more."""
    facts = _fingerprint(run)
    ids, cells = _run_scores(run)
    return {
        "schema": BASELINE_SCHEMA,
        "version": BASELINE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        **facts,
        "ids": [int(i) for i in ids],
        "cells": [
            {
                "model": model,
                "cell": label,
                "family": cell["family"],
                "name": cell["name"],
                "modalities": cell["modalities"],
                "score": float(cell["scores"].mean()),
                "scores": _pack(cell["scores"], facts["task"]),
            }
            for (model, label), cell in cells.items()
        ],
    }


def write_baseline(run: Run, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(make_baseline(run), indent=1) + "\n")
    tmp.replace(out)
    return out


def load_baseline(path: str | Path) -> dict:
    """Read and validate a baseline file, with one-line errors naming the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"baseline {path}: no such file (create one with `rbmm baseline RUN -o {path}`)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"baseline {path}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise InputError(f"baseline {path}: field 'schema' must be {BASELINE_SCHEMA!r}")
    if data.get("version") != BASELINE_VERSION:
        raise InputError(f"baseline {path}: field 'version' must be {BASELINE_VERSION}, got {data.get('version')!r}")
    for key in ("protocol", "dataset", "task", "rng", "ids", "cells"):
        if key not in data:
            raise InputError(f"baseline {path}: missing field {key!r}")
    return data


def _check_comparable(baseline: dict, facts: dict, source: str) -> None:
    if baseline["rng"] != facts["rng"]:
        raise InputError(
            f"{source}: corruptions were drawn with random-number generator {facts['rng']!r}, the baseline's with "
            f"{baseline['rng']!r}; record a new baseline with this version"
        )
    if baseline["protocol"]["hash"] != facts["protocol"]["hash"]:
        raise InputError(
            f"{source}: protocol {facts['protocol']['name']!r} differs from the baseline's "
            f"{baseline['protocol']['name']!r} (hash mismatch); record a new baseline for it"
        )
    if baseline["dataset"]["modalities"] != facts["dataset"]["modalities"]:
        raise InputError(
            f"{source}: modalities {facts['dataset']['modalities']} differ from the baseline's "
            f"{baseline['dataset']['modalities']}"
        )
    if baseline["dataset"]["sha256"] != facts["dataset"]["sha256"]:
        raise InputError(
            f"{source}: dataset {facts['dataset']['name']!r} differs from the baseline's "
            f"{baseline['dataset']['name']!r} (content hash mismatch)"
        )


def _summaries(acc: np.ndarray, cells: list[dict]) -> dict[str, np.ndarray]:
    """Summary checks from per-cell mean scores `acc` (..., n_cells); all higher-is-better.

    clean, mean corrupted score, each removal subset (mean over its fills and rates), and for
    classification -mCE with the baseline as reference (so the baseline's own value is -1).
    """
    families = np.array([c["family"] for c in cells])
    out: dict[str, np.ndarray] = {}
    clean = families == "clean"
    if clean.any():
        out["clean"] = acc[..., clean].mean(axis=-1)
    corrupted = families == "corruption"
    if corrupted.any():
        out["mean corrupted"] = acc[..., corrupted].mean(axis=-1)
    for subset in sorted({c["modalities"] for c in cells if c["family"] == "removal"}):
        mask = np.array([c["family"] == "removal" and c["modalities"] == subset for c in cells])
        out[f"removal {subset}"] = acc[..., mask].mean(axis=-1)
    return out


def _mce(acc_new: np.ndarray, acc_base: np.ndarray, cells: list[dict]) -> np.ndarray:
    """ImageNet-C mCE of the new run against the baseline: mean_c sum_s E_new / sum_s E_base."""
    groups = sorted({(c["name"], c["modalities"]) for c in cells if c["family"] == "corruption"})
    ratios = []
    for name, mods in groups:
        mask = np.array([c["family"] == "corruption" and (c["name"], c["modalities"]) == (name, mods) for c in cells])
        err_base = (1.0 - acc_base[..., mask]).sum(axis=-1)
        err_new = (1.0 - acc_new[..., mask]).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(err_base > 0, err_new / err_base, np.where(err_new > 0, np.inf, 1.0)))
    return np.mean(ratios, axis=0)


def gate(
    run: Run,
    baseline: dict,
    tolerance: float,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateResult:
    """Compare `run` with `baseline`: one Check per cell and per summary, for every baseline model."""
    if not 0.0 <= tolerance < 1.0:
        raise InputError(f"tolerance must be in [0, 1), got {tolerance}")
    facts = _fingerprint(run)
    _check_comparable(baseline, facts, f"run {run.path}")
    task = baseline["task"]
    ids, current = _run_scores(run)
    base_ids = np.asarray(baseline["ids"], dtype=np.int64)
    if not np.array_equal(ids, base_ids):
        raise InputError(f"run {run.path}: evaluates {len(ids)} samples, the baseline {len(base_ids)} other ones")

    counts = bootstrap_counts(len(ids), n_resamples, seed)  # (R, n) multiplicities
    alpha = 1.0 - confidence
    checks: list[Check] = []
    for model in dict.fromkeys(c["model"] for c in baseline["cells"]):
        base_cells = [c for c in baseline["cells"] if c["model"] == model]
        missing = [c["cell"] for c in base_cells if (model, c["cell"]) not in current]
        if missing:
            raise InputError(f"run {run.path}: model {model!r} lacks {len(missing)} baseline cells, e.g. {missing[0]!r}")
        s_base = np.stack([_unpack(c["scores"], len(ids), task) for c in base_cells])
        s_new = np.stack([current[(model, c["cell"])]["scores"] for c in base_cells])
        point_base, point_new = s_base.mean(axis=1), s_new.mean(axis=1)
        boot_base = counts @ s_base.T / len(ids)  # (R, n_cells)
        boot_new = counts @ s_new.T / len(ids)

        named = {c["cell"]: i for i, c in enumerate(base_cells)}
        point = {name: (point_base[i], point_new[i]) for name, i in named.items()}
        boot = {name: (boot_base[:, i], boot_new[:, i]) for name, i in named.items()}
        sums_b, sums_n = _summaries(point_base, base_cells), _summaries(point_new, base_cells)
        boots_b, boots_n = _summaries(boot_base, base_cells), _summaries(boot_new, base_cells)
        for name in sums_b:
            point[f"summary: {name}"] = (sums_b[name], sums_n[name])
            boot[f"summary: {name}"] = (boots_b[name], boots_n[name])
        if task == "classification" and any(c["family"] == "corruption" for c in base_cells):
            point["summary: -mCE"] = (-1.0, -float(_mce(point_new, point_base, base_cells)))
            boot["summary: -mCE"] = (-np.ones(n_resamples), -_mce(boot_new, boot_base, base_cells))

        for name, (b, c) in point.items():
            drops = boot[name][0] - boot[name][1]
            low, high = np.quantile(drops, [alpha / 2, 1 - alpha / 2])
            checks.append(Check(model, name, float(b), float(c), float(b - c), float(low), float(high), tolerance))
    return GateResult(checks=checks, tolerance=tolerance, confidence=confidence)


def format_table(result: GateResult, only_regressions: bool = True) -> str:
    rows = result.regressions if only_regressions else result.checks
    if not rows:
        return f"gate passed: {len(result.checks)} checks, none dropped more than {result.tolerance:g} beyond noise"
    width = max(len(f"{c.model}  {c.name}") for c in rows)
    pct = int(round(result.confidence * 100))
    lines = [f"{'model  check':<{width}}  baseline  current     drop  {pct}% CI of drop"]
    for c in rows:
        lines.append(
            f"{c.model + '  ' + c.name:<{width}}  {c.baseline:8.4f}  {c.current:7.4f}  {c.drop:+7.4f}"
            f"  [{c.drop_low:+.4f}, {c.drop_high:+.4f}]{'  REGRESSED' if c.regressed else ''}"
        )
    head = (
        f"gate FAILED: {len(result.regressions)} of {len(result.checks)} checks dropped more than "
        f"{result.tolerance:g} with the whole {pct}% interval beyond it"
        if not result.passed
        else f"gate passed: {len(result.checks)} checks"
    )
    return head + "\n" + "\n".join(lines)


def write_junit(result: GateResult, path: str | Path) -> None:
    """One <testcase> per check, a <failure> for each regression, for any CI system's test view."""
    suite = ET.Element(
        "testsuite",
        name="robustbench-mm gate",
        tests=str(len(result.checks)),
        failures=str(len(result.regressions)),
    )
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=c.model, name=c.name)
        if c.regressed:
            failure = ET.SubElement(
                case,
                "failure",
                message=f"dropped {c.drop:.4f} (CI {c.drop_low:.4f}..{c.drop_high:.4f}) > tolerance {c.tolerance:g}",
            )
            failure.text = f"baseline {c.baseline:.4f}, current {c.current:.4f}"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _md(text: str) -> str:
    """A table-cell-safe string: condition keys contain '|'."""
    return text.replace("|", "\\|")


def write_summary(result: GateResult, path: str | Path) -> None:
    """Markdown for a CI step summary: verdict, then the regressed checks (or the worst drops)."""
    verdict = "❌ robustness regression" if not result.passed else "✅ no robustness regression"
    rows = result.regressions or sorted(result.checks, key=lambda c: -c.drop)[:10]
    lines = [
        f"## robustbench-mm gate: {verdict}",
        "",
        f"{len(result.checks)} checks, tolerance {result.tolerance:g}, {result.confidence:.0%} paired bootstrap intervals.",
        "",
        "| model | check | baseline | current | drop | CI of drop | regressed |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for c in rows:
        lines.append(
            f"| {_md(c.model)} | {_md(c.name)} | {c.baseline:.4f} | {c.current:.4f} | {c.drop:+.4f} "
            f"| [{c.drop_low:+.4f}, {c.drop_high:+.4f}] | {'yes' if c.regressed else 'no'} |"
        )
    Path(path).write_text("\n".join(lines) + "\n")


def write_benchmark_json(result: GateResult, path: str | Path) -> None:
    """github-action-benchmark's `customBiggerIsBetter` format: a list of {name, unit, value, range}."""
    entries = [
        {
            "name": f"{c.model} {c.name}",
            "unit": "score",
            "value": round(c.current, 6),
            "range": f"±{(c.drop_high - c.drop_low) / 2:.4f}",
            "extra": f"baseline {c.baseline:.4f}",
        }
        for c in result.checks
    ]
    Path(path).write_text(json.dumps(entries, indent=1) + "\n")
