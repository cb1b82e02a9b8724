"""The CI regression gate: compare a fresh run with a committed baseline, fail only on real drops.

A check (one cell, or one summary of a model's cells) regresses when its drop from the baseline
is larger than the tolerance AND the paired bootstrap interval of the drop lies entirely beyond
the tolerance, so the gate never flaps on sampling noise. Every check is a function of the
per-sample scores of both runs (correctness for classification, -|error| for regression), so one
joint bootstrap over sample ids gives intervals for cells and summaries alike: resampling the same
samples in every cell keeps the pairing between cells that summaries average over.

The baseline is a compact JSON (schema: robustbench_mm/schemas/baseline.schema.json): per-cell
metrics and per-sample scores, bit-packed for classification, and the plug-ins that shaped the run.

Candidates and baseline models are paired before anything is compared: one model on each side
is compared directly whatever the names (a checkpoint is rarely re-saved under the baseline's file
name); with several, by name or by an explicit `{candidate: baseline}` mapping. A gate never passes
what it did not check: a baseline model without a candidate, a missing baseline cell or a run not
marked complete is unusable input (exit 2), not a pass.
"""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .version import __version__
from .errors import InputError
from .escape import md_cell
from .domain import Family, Task, cells as select_cells, clean_cells, parse_task
from .atomic import atomic_write
from .results import Run, task_of
from .schema import check as check_schema
from .stats import bootstrap_counts

BASELINE_SCHEMA = "robustbench-mm/baseline"
BASELINE_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2 predates the `plugins` field; its plug-ins are unknown
_PLUGIN_KEYS = ("name", "source", "sha256")
MCE = "summary: mCE"  # the one lower-is-better check


class IncompleteRun(InputError):
    """A run missing baseline cells or not marked complete (exit 2); `missing` holds the
    (candidate model, cell label) pairs it lacks, so the JUnit report can name each one."""

    def __init__(self, message: str, missing: list[tuple[str, str]]):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Check:
    """One gated quantity for one model. `drop` is how much worse the current value is (baseline -
    current, or current - baseline for a lower-is-better check such as mCE), so a positive drop is
    always a loss and `regressed` reads the same for every check."""

    model: str
    name: str
    baseline: float
    current: float
    drop: float
    drop_low: float
    drop_high: float
    tolerance: float
    baseline_model: str = ""  # the baseline model this candidate `model` was compared with
    higher_is_better: bool = True

    @property
    def regressed(self) -> bool:
        return bool(self.drop > self.tolerance and self.drop_low > self.tolerance)


@dataclass(frozen=True)
class GateResult:
    checks: list[Check]
    tolerance: float
    confidence: float
    notes: tuple[str, ...] = ()  # how models were paired, what was not gated: printed with the verdict

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions


def _sample_scores(record: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample score, higher is better: correctness, or -|error| for regression."""
    if task_of(record) == Task.CLASSIFICATION:
        return (record["pred"] == record["target"]).astype(np.float64)
    return -np.abs(record["output"].astype(np.float64) - record["target"].astype(np.float64))


def _pack(scores: np.ndarray, task: Task) -> str:
    if task == Task.CLASSIFICATION:
        return base64.b64encode(np.packbits(scores.astype(bool)).tobytes()).decode()
    return base64.b64encode(scores.astype("<f4").tobytes()).decode()


def _unpack(text: str, n: int, task: Task) -> np.ndarray:
    raw = base64.b64decode(text.encode())
    if task == Task.CLASSIFICATION:
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
    dataset = manifest.dataset
    return {
        "protocol": {"name": manifest.protocol.name, "hash": manifest.protocol.hash},
        "dataset": {"name": dataset.name, "sha256": dataset.fingerprint, "modalities": sorted(dataset.modalities)},
        "task": str(dataset.task),
        "rng": manifest.rng,
        # None: a migrated version-1 run written before the field existed, whose plug-ins are unknown
        "plugins": None if manifest.plugins is None else sorted(
            ({k: p[k] for k in _PLUGIN_KEYS} for p in manifest.plugins), key=lambda p: (p["name"], p["source"])
        ),
    }


def _refuse_limited(run: Run, use: str) -> None:
    """A smoke run (`rbmm eval --limit N`) saw only part of the data: no gate or baseline from it."""
    if run.manifest.limit is not None:
        raise InputError(
            f"run {run.path} was evaluated with --limit {run.manifest.limit} (only the first {run.manifest.limit} samples "
            f"of each cell, a smoke run); {use} needs the full evaluation: run `rbmm eval` again without --limit"
        )


def make_baseline(run: Run) -> dict:
    """The JSON-able baseline of a run: what a later gate needs, nothing more."""
    _refuse_limited(run, "a baseline")
    facts = _fingerprint(run)
    if not run.manifest.complete:
        raise InputError(
            f"run {run.path} is not marked complete in its manifest; finish it (run the same `rbmm eval` "
            "command again) before recording it as a baseline"
        )
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
    text = json.dumps(make_baseline(run), indent=1) + "\n"
    _write_text(out, text)
    return out


def _write_text(path: Path, text: str) -> None:
    """Write an output file whole or not at all (`results.atomic_write`: parents created, a
    temporary file renamed into place); OSError -> one-line InputError naming the path."""
    atomic_write(Path(path), text.encode("utf-8"))


def load_baseline(path: str | Path) -> dict:
    """Read and validate a baseline file, with one-line errors naming the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"baseline {path}: no such file (create one with `rbmm baseline RUN -o {path}`)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise InputError(f"baseline {path}: not readable JSON ({type(e).__name__}: {e})") from None
    where = f"baseline {path}"
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise InputError(f"{where}: field 'schema' must be {BASELINE_SCHEMA!r}")
    if data.get("version") not in READABLE_VERSIONS:
        raise InputError(
            f"{where}: field 'version' must be one of {', '.join(map(str, READABLE_VERSIONS))}, got {data.get('version')!r}"
        )
    check_schema(data, "baseline", where)
    _check_scores(data, where)
    return data


def _check_scores(data: dict, where: str) -> None:
    """What the schema cannot say: ids fit int64 and are distinct, and each cell's packed scores
    hold one score per id."""
    ids = data["ids"]
    if not all(-(2**63) <= i < 2**63 for i in ids):
        raise InputError(f"{where}: field 'ids': sample ids must fit a 64-bit integer")
    if len(set(ids)) != len(ids):
        raise InputError(f"{where}: field 'ids': {len(ids) - len(set(ids))} sample id(s) appear twice")
    n, task = len(ids), Task(data["task"])
    size = -(-n // 8) if task == Task.CLASSIFICATION else 4 * n
    for i, cell in enumerate(data["cells"]):
        try:
            raw = base64.b64decode(cell["scores"].encode(), validate=True)
        except ValueError:
            raise InputError(f"{where}: field 'cells[{i}].scores' is not base64") from None
        if len(raw) != size:
            raise InputError(
                f"{where}: field 'cells[{i}].scores' holds {len(raw)} bytes, expected {size} for {n} samples ({task}); "
                "the file is truncated or edited, record the baseline again"
            )


def _plugin_differences(base: list[dict], run: list[dict]) -> tuple[list[str], list[str]]:
    """(differences that change what was computed, differences of source path alone)."""
    def by_name(plugins: list[dict]) -> dict[str, dict]:
        return {p["name"]: p for p in plugins}

    b, r = by_name(base), by_name(run)
    changed, moved = [], []
    for name in sorted(set(b) | set(r)):
        if name not in r:
            changed.append(f"{name!r} ({b[name]['source']}) is in the baseline, not in the run")
        elif name not in b:
            changed.append(f"{name!r} ({r[name]['source']}) is in the run, not in the baseline")
        elif b[name]["sha256"] != r[name]["sha256"]:
            changed.append(
                f"{name!r} has other code (sha256 {r[name]['sha256'][:12]} from {r[name]['source']}, "
                f"baseline {b[name]['sha256'][:12]} from {b[name]['source']})"
            )
        elif b[name]["source"] != r[name]["source"]:
            moved.append(f"plug-in {name!r} loaded from {r[name]['source']}, the baseline's from {b[name]['source']} (same code)")
    return changed, moved


def _check_comparable(baseline: dict, facts: dict, source: str) -> list[str]:
    """Refuse a run that was not computed like the baseline; returns notes on harmless differences."""
    notes: list[str] = []
    if baseline.get("plugins") is not None and facts["plugins"] is not None:
        changed, notes = _plugin_differences(baseline["plugins"], facts["plugins"])
        if changed:
            raise InputError(
                f"{source}: plug-ins differ from the baseline's: {'; '.join(changed)}; gate with the baseline's "
                "plug-ins (./corruptions/ or --plugins) or record a new baseline"
            )
    if baseline["rng"] != facts["rng"]:
        raise InputError(
            f"{source}: corruptions were drawn with random-number generator {facts['rng']!r}, the baseline's with "
            f"{baseline['rng']!r}; record a new baseline with this version"
        )
    if baseline["protocol"]["hash"] != facts["protocol"]["hash"]:
        raise InputError(
            f"{source}: protocol {facts['protocol']['name']!r} (hash {facts['protocol']['hash'][:12]}) differs from "
            f"the baseline's {baseline['protocol']['name']!r} (hash {baseline['protocol']['hash'][:12]}); "
            "gate with the baseline's protocol or record a new baseline for it"
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
    return notes


def _cell_table(cells: list[dict]) -> pd.DataFrame:
    """The cells' family, name and modalities as a table indexed by position (for the domain helpers)."""
    return pd.DataFrame({k: [c[k] for c in cells] for k in ("family", "name", "modalities")})


def _summaries(acc: np.ndarray, cells: list[dict]) -> dict[str, np.ndarray]:
    """Summary checks from per-cell mean scores `acc` (..., n_cells); all higher-is-better.

    clean, mean corrupted score and each removal subset (mean over its fills and rates); mCE,
    lower-is-better, is added by `gate` for classification.
    """
    table = _cell_table(cells)
    out: dict[str, np.ndarray] = {}
    clean = clean_cells(table).index.to_numpy()
    if len(clean):
        out["clean"] = acc[..., clean].mean(axis=-1)
    corrupted = select_cells(table, Family.CORRUPTION).index.to_numpy()
    if len(corrupted):
        out["mean corrupted"] = acc[..., corrupted].mean(axis=-1)
    removal = select_cells(table, Family.REMOVAL)
    for subset in sorted(set(removal["modalities"])):
        out[f"removal {subset}"] = acc[..., removal[removal["modalities"] == subset].index.to_numpy()].mean(axis=-1)
    return out


def _mce(acc_new: np.ndarray, acc_base: np.ndarray, cells: list[dict]) -> np.ndarray:
    """ImageNet-C mCE of the new run against the baseline: mean_c sum_s E_new / sum_s E_base."""
    corrupted = select_cells(_cell_table(cells), Family.CORRUPTION)
    ratios = []
    for _, group in sorted(corrupted.groupby(["name", "modalities"], sort=False), key=lambda kv: kv[0]):
        columns = group.index.to_numpy()
        err_base = (1.0 - acc_base[..., columns]).sum(axis=-1)
        err_new = (1.0 - acc_new[..., columns]).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(err_base > 0, err_new / err_base, np.where(err_new > 0, np.inf, 1.0)))
    return np.mean(ratios, axis=0)


def _names(models: list[str]) -> str:
    return ", ".join(repr(m) for m in models) or "(none)"


def match_models(run_models: list[str], base_models: list[str], match: dict[str, str] | None, source: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Pair run models (candidates) with baseline models: ([(candidate, baseline)], notes).

    One model on each side and no explicit mapping: compared directly, whatever the names.
    Otherwise `match` ({candidate: baseline}) first, then equal names. Every baseline model needs
    a candidate (else InputError naming both sides); a run model without a baseline is noted.
    """
    match = dict(match or {})
    for cand, base in match.items():
        if cand not in run_models:
            raise InputError(f"--match {cand}={base}: the run has no model {cand!r}; its models: {_names(run_models)}")
        if base not in base_models:
            raise InputError(f"--match {cand}={base}: the baseline has no model {base!r}; its models: {_names(base_models)}")
    targets = list(match.values())
    if len(set(targets)) != len(targets):
        twice = next(b for b in targets if targets.count(b) > 1)
        raise InputError(f"--match: baseline model {twice!r} is named for two candidates; pair each with one")
    if not match and len(run_models) == 1 and len(base_models) == 1:
        pairs = [(run_models[0], base_models[0])]
    else:
        pairs = list(match.items())
        taken_run, taken_base = set(match), set(targets)
        for base in base_models:
            if base not in taken_base and base in run_models and base not in taken_run:
                pairs.append((base, base))
                taken_run.add(base)
                taken_base.add(base)
        lost = [b for b in base_models if b not in taken_base]
        if lost:
            spare = [r for r in run_models if r not in taken_run]
            raise InputError(
                f"{source}: baseline model(s) {_names(lost)} have no candidate in the run; run models without a "
                f"baseline: {_names(spare)}; pair them with --match CANDIDATE=BASELINE"
            )
    notes = [f"comparing candidate {c!r} with baseline model {b!r}" for c, b in pairs if c != b]
    ungated = [r for r in run_models if r not in {c for c, _ in pairs}]
    if ungated:
        notes.append(f"not gated (no baseline model): {_names(ungated)}")
    order = {b: i for i, b in enumerate(base_models)}
    return sorted(pairs, key=lambda p: order[p[1]]), notes


def _run_models(run: Run) -> list[str]:
    """Models of a run, in evaluation order: the manifest's list, then any others in cells.csv."""
    names = [m.name for m in run.manifest.models]
    return list(dict.fromkeys(names + [str(m) for m in run.cells["model"]] if "model" in run.cells else names))


def _check_complete(run: Run, pairs: list[tuple[str, str]], baseline: dict, current_cells: set[tuple[str, str]]) -> None:
    """A run missing baseline cells, or not marked complete, is not gated: exit 2 with the count."""
    wanted = [(cand, c["cell"]) for cand, base in pairs for c in baseline["cells"] if c["model"] == base]
    missing = [key for key in wanted if key not in current_cells]
    unfinished = not run.manifest.complete
    if missing or unfinished:
        example = f" (e.g. model {missing[0][0]!r}, cell {missing[0][1]!r})" if missing else ""
        why = "; its manifest is not marked complete" if unfinished else ""
        raise IncompleteRun(
            f"run {run.path} is incomplete: {len(missing)} of {len(wanted)} baseline cells missing{example}{why}; "
            "finish it (run the same `rbmm eval` command again) before gating",
            missing,
        )


def _check_baseline_covers_run(pairs: list[tuple[str, str]], baseline: dict, run_cells: set[tuple[str, str]]) -> None:
    """A baseline with fewer cells than the run's protocol defines (for the seeds it holds) would
    gate only part of the run and pass the rest unchecked: exit 2 with the counts."""
    for cand, base in pairs:
        held = {c["cell"] for c in baseline["cells"] if c["model"] == base}
        seeds = {label.split(" ", 1)[0] for label in held}
        defined = {label for model, label in run_cells if model == cand and label.split(" ", 1)[0] in seeds}
        if not defined <= held:
            example = sorted(defined - held)[0]
            raise InputError(
                f"baseline holds {len(held & defined)} of the {len(defined)} cells the run's protocol defines for model "
                f"{base!r} (e.g. {example!r} is missing); a gate checks every cell: record the baseline again from a complete run"
            )


def gate(
    run: Run,
    baseline: dict,
    tolerance: float,
    *,
    match: dict[str, str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateResult:
    """Compare `run` with `baseline`: one Check per cell and per summary, for every baseline model.

    match : {candidate model: baseline model}, needed only when the names differ and either side
        holds several models (see `match_models`).
    """
    if not 0.0 <= tolerance < 1.0:
        raise InputError(f"--tolerance must be in [0, 1), got {tolerance}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"--confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise InputError(f"--resamples must be >= 1, got {n_resamples}")
    _refuse_limited(run, "the gate")
    facts = _fingerprint(run)
    notes = _check_comparable(baseline, facts, f"run {run.path}")
    base_models = list(dict.fromkeys(c["model"] for c in baseline["cells"]))
    pairs, match_notes = match_models(_run_models(run), base_models, match, f"run {run.path}")
    notes += match_notes
    task = parse_task(baseline["task"], "baseline field 'task'")
    run_cells = {(str(r["model"]), _cell_label(r)) for _, r in run.cells.iterrows()}
    _check_baseline_covers_run(pairs, baseline, run_cells)
    _check_complete(run, pairs, baseline, run_cells)
    ids, current = _run_scores(run)
    base_ids = np.asarray(baseline["ids"], dtype=np.int64)
    if not np.array_equal(ids, base_ids):
        raise InputError(f"run {run.path}: evaluates {len(ids)} samples, the baseline {len(base_ids)} other ones")

    counts = bootstrap_counts(len(ids), n_resamples, seed)  # (R, n) multiplicities
    alpha = 1.0 - confidence
    checks: list[Check] = []
    for model, base_model in pairs:
        base_cells = [c for c in baseline["cells"] if c["model"] == base_model]
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
        lower_is_better = set()
        if task == Task.CLASSIFICATION and len(select_cells(_cell_table(base_cells), Family.CORRUPTION)):
            # mCE with the baseline as reference: the baseline's own value is 1 by definition
            point[MCE] = (1.0, float(_mce(point_new, point_base, base_cells)))
            boot[MCE] = (np.ones(n_resamples), _mce(boot_new, boot_base, base_cells))
            lower_is_better.add(MCE)

        for name, (b, c) in point.items():
            sign = -1.0 if name in lower_is_better else 1.0  # a drop is a loss in either direction
            drops = sign * (boot[name][0] - boot[name][1])
            low, high = np.quantile(drops, [alpha / 2, 1 - alpha / 2])
            checks.append(Check(model, name, float(b), float(c), float(sign * (b - c)), float(low), float(high), tolerance,
                                base_model, higher_is_better=sign > 0))
    return GateResult(checks=checks, tolerance=tolerance, confidence=confidence, notes=tuple(notes))


def format_table(result: GateResult, only_regressions: bool = True) -> str:
    rows = result.regressions if only_regressions else result.checks
    notes = "".join(f"note: {n}\n" for n in result.notes)
    if not rows:
        return notes + f"gate passed: {len(result.checks)} checks, none dropped more than {result.tolerance:g} beyond noise"
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
    return notes + head + "\n" + "\n".join(lines)


def _junit_suite(tests: int, failures: int, errors: int, seconds: float) -> ET.Element:
    """A <testsuite> with the attributes Jenkins xUnit's junit-10.xsd requires (name, tests,
    failures, errors) and its optional `time` (SUREFIRE_TIME: plain decimal seconds) and
    `timestamp` (github:jenkinsci/xunit-plugin, src/main/resources/org/jenkinsci/plugins/xunit/
    types/model/xsd/junit-10.xsd, element `testsuite`)."""
    return ET.Element(
        "testsuite",
        name="robustbench-mm gate",
        tests=str(tests),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{max(seconds, 0.0):.3f}",
        timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )


def _write_suite(suite: ET.Element, path: str | Path) -> None:
    ET.indent(suite)
    _write_text(Path(path), '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n")


def write_junit(result: GateResult, path: str | Path, seconds: float = 0.0) -> None:
    """One <testcase> per check, a <failure> for each regression, for any CI system's test view.

    seconds : wall time of the whole gate, written as the suite's `time`; the checks come out of
        one joint bootstrap, so no check has a time of its own and test cases carry none.
    """
    suite = _junit_suite(len(result.checks), len(result.regressions), 0, seconds)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=c.model, name=c.name)
        if c.regressed:
            failure = ET.SubElement(
                case,
                "failure",
                type="RobustnessRegression",
                message=f"dropped {c.drop:.4f} (CI {c.drop_low:.4f}..{c.drop_high:.4f}) > tolerance {c.tolerance:g}",
            )
            failure.text = f"baseline {c.baseline:.4f}, current {c.current:.4f}"
    _write_suite(suite, path)


def write_junit_error(error: InputError, path: str | Path, seconds: float = 0.0) -> None:
    """The JUnit report of a gate that could not run (exit 2), so CI still shows why.

    An incomplete run gets one <error> test case per missing baseline cell (classname the
    candidate model, name the cell); any other unusable input one <error> case holding the message.
    """
    missing = getattr(error, "missing", None) or []
    suite = _junit_suite(max(len(missing), 1), 0, max(len(missing), 1), seconds)
    if missing:
        for model, cell in missing:
            case = ET.SubElement(suite, "testcase", classname=model, name=cell)
            ET.SubElement(case, "error", type="MissingCell", message="cell missing from the run").text = str(error)
    else:
        case = ET.SubElement(suite, "testcase", classname="robustbench-mm gate", name="gate input")
        ET.SubElement(case, "error", type=type(error).__name__, message=str(error))
    _write_suite(suite, path)


def write_summary(result: GateResult, path: str | Path) -> None:
    """Markdown for a CI step summary: verdict, then the regressed checks (or the worst drops)."""
    verdict = "❌ robustness regression" if not result.passed else "✅ no robustness regression"
    rows = result.regressions or sorted(result.checks, key=lambda c: -c.drop)[:10]
    lines = [
        f"## robustbench-mm gate: {verdict}",
        "",
        f"{len(result.checks)} checks, tolerance {result.tolerance:g}, {result.confidence:.0%} paired bootstrap intervals.",
        "",
        *[f"- {md_cell(n)}" for n in result.notes],
        *([""] if result.notes else []),
        "| model | check | baseline | current | drop | CI of drop | regressed |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for c in rows:
        lines.append(
            f"| {md_cell(c.model)} | {md_cell(c.name)} | {c.baseline:.4f} | {c.current:.4f} | {c.drop:+.4f} "
            f"| [{c.drop_low:+.4f}, {c.drop_high:+.4f}] | {'yes' if c.regressed else 'no'} |"
        )
    _write_text(Path(path), "\n".join(lines) + "\n")


def smaller_is_better_path(path: str | Path) -> Path:
    """Where `write_benchmark_json` puts the lower-is-better entries: NAME.smaller.json beside NAME.json."""
    path = Path(path)
    return path.with_name(f"{path.stem}.smaller{path.suffix}")


def benchmark_name(c: Check) -> str:
    """A check's series name for github-action-benchmark, without '|'.

    The action writes each name into a Markdown table row unescaped (src/write/buildComment.ts
    and buildAlertComment.ts, the first cell of each row: backtick, name, backtick), and GitHub splits a row at every
    '|', even inside backticks, so condition keys (`clean|clean|-|l=0`) would push the Current,
    Previous and Ratio columns out of the table. Their parts are joined with '/' instead.
    """
    return f"{c.baseline_model or c.model} {c.name}".replace("|", "/")


def write_benchmark_json(result: GateResult, path: str | Path) -> list[Path]:
    """github-action-benchmark's custom format: a list of {name, unit, value, range, extra}.

    The action reads one direction per file (its `tool`, customBiggerIsBetter or
    customSmallerIsBetter, applies to the whole file, and it alerts when prev/current, or
    current/prev, exceeds the threshold), so a negative value such as -mCE would alert on an
    improvement. Scores go to `path` (customBiggerIsBetter) and lower-is-better checks (mCE,
    the baseline's = 1) to `smaller_is_better_path(path)` (customSmallerIsBetter), written only
    when there are any. A non-finite value (mCE when the baseline made no error) is left out: the
    action's JSON.parse rejects Infinity and NaN; the gate's verdict still counts it.
    Entries are named by the baseline model, so a series stays one series while candidate
    checkpoints change names from run to run. Returns the files written.
    """
    def entry(c: Check) -> dict:
        return {
            "name": benchmark_name(c),
            "unit": "score" if c.higher_is_better else "ratio to the baseline",
            "value": round(c.current, 6),
            "range": f"±{(c.drop_high - c.drop_low) / 2:.4f}",
            "extra": f"baseline {c.baseline:.4f}",
        }

    finite = [c for c in result.checks if np.isfinite(c.current)]
    files = {Path(path): [entry(c) for c in finite if c.higher_is_better]}
    smaller = [entry(c) for c in finite if not c.higher_is_better]
    if smaller:
        files[smaller_is_better_path(path)] = smaller
    for out, entries in files.items():
        _write_text(out, json.dumps(entries, indent=1, allow_nan=False) + "\n")
    return list(files)
