"""The run folder and its contract: atomic writes, the manifest, the cell table, per-sample records.

    results/NAME/
      manifest.json          `Manifest` (version 2; schemas/manifest.schema.json): the run's
                             identity (protocol name + hash + seed + metrics, models with SHA-256s
                             and configs, dataset fingerprint, seeds, RNG version, amp and the
                             two record options), the plug-ins that shaped the protocol, package
                             versions and git commit, `limit` (null, or N of a smoke run
                             `--limit N` that saw only the first N samples), `complete` (false until the last cell is
                             written), start/end time, wall seconds per cell, the last session's
                             device and batch size
      cells.csv              one row per model x seed x condition (`cell_row`): the condition's
                             fields, n, the per-cell metrics, their jackknife standard errors
                             (`<metric>_se`), seconds
      samples/<cell_id>.npz  per-sample records (numpy alone loads them), `RECORD_FIELDS[task]`:
                             classification: ids, target, pred, conf, p_true, sq_prob, entropy, affected
                             regression: ids, target, output, affected
                             and optionally `nonfinite` (True where the model output NaN/Inf, in a
                             run that counts them as wrong; pred is then -1 and the probabilities
                             uniform), `probs` (float32 (n, K), with keep_probabilities) and the
                             calibration gates `gate_instance_<m>`, `gate_dim_<m>` of our models

Every file any command writes goes through `atomic_write`: a temporary name of the writing
process in the same folder, fsync, then `os.replace`, so a crashed or killed process (Ctrl-C,
kill -9, a full disk) leaves either the old file or the new one, never half of one. Per-sample
records are not fsync'ed (a 5% cost per cell on small datasets); a record damaged by a power loss
(0 bytes, a flipped byte, truncated) is detected on resume and that cell evaluated again. The
`.npz` files are byte-deterministic (fixed zip timestamps), so a resumed run is bit-identical
to an uninterrupted one.

One process writes a run folder at a time: `RunWriter` holds an advisory lock on `.rbmm.lock`
for the run's life, and a second writer is refused with the holder's PID.
"""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import platform
import re
import subprocess
import zipfile
import zlib
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .atomic import atomic_write, disk_error, remove_stale_temporaries
from .corruptions.condition import Condition
from .domain import Task, clean_cells, corrupted_cells, parse_task
from .errors import InputError
from .escape import csv_text, restore_csv_frame
from .version import __version__

if TYPE_CHECKING:  # pandas loads with the first table: the metric registry imports this module (rbmm list)
    import pandas as pd

CONDITION_COLUMNS = ["cell_id", "model", "seed", "condition", "family", "name", "modalities", "level", "param", "rate", "group", "n"]
# Written only by a run that counts NaN/Inf outputs as wrong (`nonfinite="wrong"`): how many samples
# of the cell had them. Not a metric; it follows `n`.
COUNT_COLUMNS = ["nonfinite"]
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz whose bytes depend only on the arrays (fixed timestamps, sorted names)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            z.writestr(info, arr.getvalue())
    return buf.getvalue()


def json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def cells_frame(rows: list[dict]) -> pd.DataFrame:
    """The tidy cell table, condition columns first (then the `nonfinite` count, when written),
    metric columns next, seconds last."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=CONDITION_COLUMNS + ["seconds"])
    counts = [c for c in COUNT_COLUMNS if c in frame.columns]
    metric_cols = [c for c in frame.columns if c not in CONDITION_COLUMNS and c not in counts and c != "seconds"]
    return frame[CONDITION_COLUMNS + counts + metric_cols + ["seconds"]]


def csv_bytes(rows: list[dict]) -> bytes:
    """cells.csv: text cells that begin like a spreadsheet formula are neutralised (`escape.csv_cell`)."""
    return csv_text(cells_frame(rows)).encode()


# ---------------------------------------------------------------------------------------------
# The per-sample record: one schema per task, the one place that knows a record's shape.

# field -> dtype of every record of a task, in the order the engine builds them
RECORD_FIELDS: dict[Task, dict[str, type]] = {
    Task.CLASSIFICATION: {
        "ids": np.int64, "target": np.int64, "pred": np.int64, "conf": np.float32, "p_true": np.float64,
        "sq_prob": np.float64, "entropy": np.float64, "affected": np.bool_,
    },
    Task.REGRESSION: {"ids": np.int64, "target": np.float32, "output": np.float32, "affected": np.bool_},
}
# fields a record holds only in some runs: the NaN/Inf mask (`nonfinite="wrong"`), the probability
# vectors (`keep_probabilities`, (n, K)), calibration gates (`gate_instance_<m>`, `gate_dim_<m>`)
NONFINITE_FIELD = "nonfinite"
PROBS_FIELD = "probs"
GATE_PREFIXES = ("gate_instance_", "gate_dim_")
# the field only a record of that task has, which tells the task of a record read back
_TASK_MARKER = {Task.CLASSIFICATION: "pred", Task.REGRESSION: "output"}


def empty_record(task: Task, kept_classes: int | None = None, extra_fields: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A record of no samples (a rank that holds none): the task's fields, the NaN/Inf mask, `probs`
    (0, K) when kept, and each extra float field (calibration gates)."""
    record = {name: np.zeros(0, dtype) for name, dtype in RECORD_FIELDS[Task(task)].items()}
    record[NONFINITE_FIELD] = np.zeros(0, np.bool_)
    if kept_classes is not None:
        record[PROBS_FIELD] = np.zeros((0, kept_classes), np.float32)
    record.update({name: np.zeros(0, np.float32) for name in extra_fields})
    return record


def task_of(record: dict[str, np.ndarray], where: str = "record") -> Task:
    """The task a record was written for, from the field only that task's records have."""
    for task, marker in _TASK_MARKER.items():
        if marker in record:
            return task
    raise InputError(f"{where}: holds neither {' nor '.join(map(repr, _TASK_MARKER.values()))}; not a per-sample record of rbmm")


# ---------------------------------------------------------------------------------------------
# The manifest: a versioned dataclass, every field written once.

MANIFEST_VERSION = 2
# Version 1 (no `version` field) held the identity under `identity` and again at the top level
# (models, dataset, seeds, rng, part of protocol) and a `status` string beside `complete`.


@dataclass(frozen=True)
class ProtocolInfo:
    """The protocol a run evaluated. units: one line per modality of a raw-pixel preset part, the
    mapping to raw units it applied (empty for other protocols)."""

    name: str
    hash: str
    source: str
    seed: int
    metrics: tuple[str, ...]
    units: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """One evaluated model: its display name, the SHA-256 of its weights, JSON-safe config facts
    (our models' build config; for every model its `kind`; for foreign ones the SHA-256 of the
    source files that built or feed it (`sources`), its `adapter` and model `card`)."""

    name: str
    sha256: str
    config: dict


@dataclass(frozen=True)
class DatasetInfo:
    """The evaluation set: where it came from and the fingerprint of its ids, labels and inputs."""

    name: str
    split: str
    source: str
    fingerprint: str
    n: int
    task: Task
    num_classes: int | None
    modalities: dict  # name -> {"kind": str, "shape": [int, ...]}
    class_names: tuple[str, ...] | None = None  # label i is class_names[i]; None: the labels are bare ids


@dataclass(frozen=True)
class Manifest:
    """manifest.json of a run folder. The identity fields (`IDENTITY`) decide whether a folder
    holds the same run (resume) or another one (refused without --overwrite); the rest describe
    this session of it. device, device_name, batch_size and world_size are those of the last
    session; finished and wall_seconds are null until `complete`."""

    protocol: ProtocolInfo
    models: tuple[ModelInfo, ...]
    dataset: DatasetInfo
    seeds: tuple[int, ...]
    rng: str
    amp: bool
    keep_probabilities: bool
    nonfinite: str
    plugins: tuple[dict, ...] | None  # None only for a migrated version-1 run that did not record them
    package: dict
    complete: bool
    started: str
    cell_seconds: dict
    device: str | None = None
    device_name: str | None = None
    batch_size: int | None = None
    world_size: int | None = None
    finished: str | None = None
    wall_seconds: float | None = None
    inputs: dict | None = None  # the input contract (datasets.contract); None in runs written before it
    limit: int | None = None  # `rbmm eval --limit N`: only the first N samples of each cell (a smoke run)
    version: int = MANIFEST_VERSION

    IDENTITY = ("protocol", "models", "dataset", "seeds", "rng", "amp", "keep_probabilities", "nonfinite", "limit")

    def identity(self) -> dict:
        """The identity fields as JSON values (what two sessions of one run must agree on)."""
        doc = self.to_json()
        return {k: doc[k] for k in self.IDENTITY}

    def model(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == name), None)

    def to_json(self) -> dict:
        """The manifest as JSON values (tuples as lists), as written to and read back from disk."""
        doc = asdict(self)
        doc["dataset"]["task"] = str(self.dataset.task)
        return json.loads(json.dumps(doc))

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest.json") -> "Manifest":
        """Parse a manifest, migrating version 1; any other shape is a one-line error naming `where`."""
        if not isinstance(doc, dict):
            raise InputError(f"{where}: holds a JSON {type(doc).__name__}; expected a run manifest (a JSON object)")
        version = doc.get("version", 1)
        if version == 1:
            doc = _migrate_v1(doc, where)
        elif version != MANIFEST_VERSION:
            raise InputError(
                f"{where}: manifest version {version!r}; this robustbench-mm reads versions 1 and {MANIFEST_VERSION} "
                "(a newer version needs a newer robustbench-mm)"
            )
        return _parse(doc, where)


def _field(doc: dict, key: str, kind: type | tuple[type, ...], where: str, optional: bool = False):
    if key not in doc:
        if optional:
            return None
        raise InputError(f"{where}: missing field {key!r}")
    value = doc[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: field {key!r} is {type(value).__name__}, expected {names}")
    return value


def _parse(doc: dict, where: str) -> Manifest:
    protocol = _field(doc, "protocol", dict, where)
    pw = f"{where}: protocol"
    dataset = _field(doc, "dataset", dict, where)
    dw = f"{where}: dataset"
    models = _field(doc, "models", list, where)
    for i, m in enumerate(models):
        if not isinstance(m, dict):
            raise InputError(f"{where}: models[{i}] is {type(m).__name__}, expected an object")
    plugins = _field(doc, "plugins", list, where, optional=True)
    for p in plugins or []:
        if not (isinstance(p, dict) and all(isinstance(p.get(k), str) for k in ("name", "source", "sha256"))):
            raise InputError(f"{where}: field 'plugins': expected a list of {{name, source, sha256}} strings")
    nonfinite = _field(doc, "nonfinite", str, where)
    return Manifest(
        protocol=ProtocolInfo(
            name=_field(protocol, "name", str, pw), hash=_field(protocol, "hash", str, pw),
            source=_field(protocol, "source", str, pw), seed=_field(protocol, "seed", int, pw),
            metrics=tuple(_field(protocol, "metrics", list, pw)), units=tuple(_field(protocol, "units", list, pw, optional=True) or ()),
        ),
        models=tuple(
            ModelInfo(_field(m, "name", str, f"{where}: models[{i}]"), _field(m, "sha256", str, f"{where}: models[{i}]"),
                      _field(m, "config", dict, f"{where}: models[{i}]"))
            for i, m in enumerate(models)
        ),
        dataset=DatasetInfo(
            name=_field(dataset, "name", str, dw), split=_field(dataset, "split", str, dw),
            source=_field(dataset, "source", str, dw), fingerprint=_field(dataset, "fingerprint", str, dw),
            n=_field(dataset, "n", int, dw), task=parse_task(_field(dataset, "task", str, dw), f"{dw}: field 'task'"),
            num_classes=_field(dataset, "num_classes", int, dw, optional=True),
            modalities=_field(dataset, "modalities", dict, dw),
            class_names=_class_names(dataset, dw),
        ),
        seeds=tuple(_field(doc, "seeds", list, where)),
        rng=_field(doc, "rng", str, where),
        amp=_field(doc, "amp", bool, where),
        keep_probabilities=_field(doc, "keep_probabilities", bool, where),
        nonfinite=nonfinite,
        plugins=None if plugins is None else tuple(plugins),
        package=_field(doc, "package", dict, where),
        complete=_field(doc, "complete", bool, where),
        started=_field(doc, "started", str, where),
        cell_seconds=_field(doc, "cell_seconds", dict, where),
        device=_field(doc, "device", str, where, optional=True),
        device_name=_field(doc, "device_name", str, where, optional=True),
        batch_size=_field(doc, "batch_size", int, where, optional=True),
        world_size=_field(doc, "world_size", int, where, optional=True),
        finished=_field(doc, "finished", str, where, optional=True),
        wall_seconds=_field(doc, "wall_seconds", (int, float), where, optional=True),
        inputs=_field(doc, "inputs", dict, where, optional=True),
        limit=_field(doc, "limit", int, where, optional=True),
    )


def _class_names(dataset: dict, where: str) -> tuple[str, ...] | None:
    names = _field(dataset, "class_names", list, where, optional=True)  # absent in runs before issue 24
    if names is not None and not all(isinstance(n, str) for n in names):
        raise InputError(f"{where}: field 'class_names': expected a list of strings")
    return None if names is None else tuple(names)


def _migrate_v1(doc: dict, where: str) -> dict:
    """A version-1 manifest (robustbench-mm 0.1.0 before the run contract) in version 2's layout."""
    identity = doc.get("identity")
    if not isinstance(identity, dict):
        raise InputError(f"{where}: manifest version 1 without an 'identity' object")
    top_protocol = doc.get("protocol") if isinstance(doc.get("protocol"), dict) else {}
    protocol = dict(identity.get("protocol") or {})
    protocol.update(seed=top_protocol.get("seed"), metrics=top_protocol.get("metrics"))
    complete = doc.get("complete", doc.get("status") == "complete")
    return {
        **{k: identity.get(k) for k in ("models", "dataset", "seeds", "rng")},
        "protocol": protocol,
        "amp": bool(identity.get("amp", False)),
        "keep_probabilities": bool(identity.get("keep_probabilities", False)),  # written only when on
        "nonfinite": identity.get("nonfinite", "error"),  # written only when not the default
        "plugins": doc.get("plugins"),  # absent in runs before plug-ins were recorded: unknown
        "package": doc.get("package", {}),
        "complete": bool(complete),
        "started": doc.get("started", ""),
        "cell_seconds": doc.get("cell_seconds", {}),
        **{k: doc.get(k) for k in ("device", "device_name", "batch_size", "world_size", "finished", "wall_seconds")},
        "version": MANIFEST_VERSION,
    }


def read_manifest(path: Path) -> Manifest:
    """manifest.json of a run folder, parsed (one-line errors naming the file)."""
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return Manifest.from_json(doc, str(path))


# ---------------------------------------------------------------------------------------------
# Reading runs back.


class Run:
    """One run folder, read back: `.manifest` (`Manifest`), `.cells` (DataFrame), `.samples(cell_id)`."""

    def __init__(self, path: str | Path):
        import pandas as pd

        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{self.path} is not a run folder: no manifest.json (expected the --out of `rbmm eval`)")
        self.manifest = read_manifest(manifest)
        cells = self.path / "cells.csv"
        self.cells = (
            restore_csv_frame(pd.read_csv(cells, keep_default_na=True, dtype={"modalities": str, "group": str}))
            if cells.is_file()
            else cells_frame([])
        )
        if "modalities" in self.cells:  # an all-empty column reads back as float NaN: text it is
            self.cells["modalities"] = self.cells["modalities"].astype(object).fillna("").astype(str)

    def samples(self, cell_id: str) -> dict[str, np.ndarray]:
        """Per-sample records of one cell (see the module docstring for the arrays)."""
        path = self.path / "samples" / f"{cell_id}.npz"
        if not path.is_file():
            raise InputError(f"run {self.path}: no samples for cell {cell_id!r}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def complete(self) -> bool:
        """Whether the run wrote its last cell."""
        return self.manifest.complete

    def summary(self) -> str:
        """A few lines for the terminal: where the run is, cells, and each model's clean/mean metric."""
        lines = [f"{self.path}: {len(self.cells)} cells, protocol {self.manifest.protocol.name}"]
        metric = "accuracy" if "accuracy" in self.cells else next(
            (c for c in self.cells.columns if c not in CONDITION_COLUMNS + COUNT_COLUMNS and c != "seconds"), None
        )
        if metric is not None and not self.cells.empty:
            for model, g in self.cells.groupby("model", sort=False):
                clean = clean_cells(g)[metric].mean()
                corrupted = corrupted_cells(g)
                text = f"  {model:<24} clean {metric} {clean:.4f}"
                if len(corrupted):  # the report's and the gate's "mean corrupted": corruption cells only
                    text += f"   mean corrupted {metric} {corrupted[metric].mean():.4f} ({len(corrupted)} corruption cells)"
                lines.append(text)
                if "nonfinite" in g and g["nonfinite"].sum():
                    lines.append(f"  {'':<24} NaN/Inf outputs counted as wrong: {int(g['nonfinite'].sum())} sample-cells")
        if self.manifest.dataset.split == "all":
            lines.append("  the dataset has no 'split' array: all of its samples were evaluated (split: all)")
        return "\n".join(lines)


class Runs:
    """Several runs as one table (`.cells` has a `run` column); `.samples(run, cell_id)`."""

    def __init__(self, runs: dict[str, Run]):
        import pandas as pd

        self.runs = runs
        frames = [r.cells.assign(run=name) for name, r in runs.items()]
        self.cells = pd.concat(frames, ignore_index=True) if frames else cells_frame([]).assign(run=[])
        self.manifests = {name: r.manifest for name, r in runs.items()}

    def samples(self, run: str, cell_id: str) -> dict[str, np.ndarray]:
        if run not in self.runs:
            raise InputError(f"unknown run {run!r}; expected one of: {', '.join(self.runs)}")
        return self.runs[run].samples(cell_id)


def load_run(path: str | Path) -> Run:
    return Run(path)


def load_runs(paths: list[str | Path]) -> Runs:
    """Runs named by their folder name (parent/name when two folders share a name)."""
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    return Runs({n: Run(p) for n, p in zip(names, paths)})


# ---------------------------------------------------------------------------------------------
# Cell ids, the cell table's rows and the run writer.


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", text)


def cell_id(model: str, seed: int, condition: Condition) -> str:
    """File-safe, human-readable, unique within a run (condition keys are unique in a protocol)."""
    parts = [model, f"s{seed}", condition.family, condition.name, "+".join(condition.modalities) or "-", f"l{condition.level:g}"]
    if condition.param is not None:
        parts.append(f"p{condition.param:g}")
    parts.append(f"r{condition.rate:g}")
    return _file_safe("__".join(parts))


def _cell_prefix(model: str, seed: int) -> str:
    """How every cell id of (model, seed) begins (see `cell_id`)."""
    return _file_safe(f"{model}__s{seed}__")


@dataclass(frozen=True)
class PlannedCell:
    """One model x seed x condition cell of a run, in grid order."""

    id: str
    model: str
    seed: int
    condition: Condition


def cell_row(cell: PlannedCell, record: dict[str, np.ndarray], metrics: dict[str, float]) -> dict:
    """The cells.csv row of a finished cell (without `seconds`, which the writer adds)."""
    c = cell.condition
    row = {
        "cell_id": cell.id, "model": cell.model, "seed": cell.seed, "condition": c.key,
        "family": c.family, "name": c.name, "modalities": "+".join(c.modalities), "level": c.level,
        "param": np.nan if c.param is None else c.param, "rate": c.rate, "group": c.group,
        "n": int(record["ids"].shape[0]),
    }
    if NONFINITE_FIELD in record:
        row[NONFINITE_FIELD] = int(record[NONFINITE_FIELD].sum())
    row.update(metrics)
    return row


LOCK_NAME = ".rbmm.lock"


def lock_folder(folder: Path) -> int:
    """Take the advisory lock of a run folder (flock on `.rbmm.lock`, which holds the holder's PID);
    returns its descriptor, which holds the lock until closed (or the process ends, even by kill -9).
    A folder another process holds is refused, naming that process."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(e, path, "nothing was changed") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InputError(
            f"{folder} is being written by another rbmm process (PID {holder}); wait for it to finish or use another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@functools.lru_cache(maxsize=1)
def _source_commit() -> str | None:
    """The git commit of the robustbench_mm source that ran (None outside a git checkout), as
    lm-evaluation-harness records `git_hash` (lm_eval/utils.py, get_git_commit_hash)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def package_versions() -> dict:
    """The versions a manifest records, and the git commit of the source when it is a checkout."""
    import torch

    return {"robustbench_mm": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "git": _source_commit()}


def _read_whole_record(path: Path, task: Task) -> dict[str, np.ndarray] | None:
    """The record in `path`, or None when it is damaged: unreadable, a CRC mismatch, a field of
    `task` missing, or arrays of differing sample counts."""
    try:
        with np.load(path, allow_pickle=False) as z:
            record = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if not set(RECORD_FIELDS[Task(task)]) <= set(record):
        return None
    n = len(record["ids"])
    if any(a.ndim == 0 or a.shape[0] != n for a in record.values()):
        return None
    return record


class RunWriter:
    """The run folder, written by rank 0: refuses a folder holding a different run or written by
    another process (`lock_folder`, held until `close`), resumes the same run from the cells on
    disk, and records each finished cell atomically.

    `--overwrite` deletes only what a run of ours wrote, as its manifest names it: manifest.json,
    cells.csv, our temporary files and samples/<cell>.npz of its models and seeds (cell ids begin
    with model and seed, so this includes cells a killed run wrote after its last manifest); a
    folder holding anything else is refused, with or without it, and nothing is deleted.

    metrics : record -> the cell's metric columns (metrics and their standard errors).
    """

    def __init__(self, out: Path, manifest: Manifest, cells: list[PlannedCell], metrics: Callable[[dict], dict],
                 overwrite: bool = False):
        self.out = Path(out)
        self.manifest = manifest
        self.cells = {c.id: c for c in cells}
        self.metrics = metrics
        self.samples = self.out / "samples"
        self.manifest_path = self.out / "manifest.json"
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, dict] = {}
        self._lock: int | None = None
        self._create_folder()
        self._lock = lock_folder(self.out)
        try:
            self._prepare_folder(overwrite)
            self._load_finished()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder's lock (another process may then write it)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- opening ------------------------------------------------------------------------------
    def _create_folder(self) -> None:
        out = self.out
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create output folder {out}: {e.strerror or e}; choose a writable --out") from None
        if not os.access(out, os.W_OK):
            raise InputError(f"output folder {out} is not writable; choose a writable --out")

    def _prepare_folder(self, overwrite: bool) -> None:
        out = self.out
        previous = self._previous() if self.manifest_path.is_file() else None
        if previous is None:
            foreign = self._foreign(set())
            if foreign:
                raise InputError(
                    f"output folder {out} is not empty and holds no run (no manifest.json; it holds {foreign[0]}); "
                    "use another --out"
                )
        if overwrite and previous is not None:
            prefixes = tuple(_cell_prefix(m.name, s) for m in previous.models for s in previous.seeds)
            ours = {Path("manifest.json"), Path("cells.csv")} | {Path("samples") / f"{c}.npz" for c in previous.cell_seconds}
            if self.samples.is_dir():
                ours |= {Path("samples") / p.name for p in self.samples.glob("*.npz") if prefixes and p.name.startswith(prefixes)}
            foreign = self._foreign(ours)
            if foreign:
                raise InputError(
                    f"--overwrite would delete {out / foreign[0]}, which the run in {out} did not write "
                    f"({len(foreign)} such file(s)); move them or use another --out"
                )
            for rel in sorted(ours):
                (out / rel).unlink(missing_ok=True)
        elif previous is not None:
            before, now = previous.identity(), self.manifest.identity()
            if previous.dataset.class_names is None:  # written before runs recorded class names: not a change
                before["dataset"]["class_names"] = now["dataset"]["class_names"]
            changed = [k for k in now if before[k] != now[k]]
            if changed:
                raise InputError(
                    f"{out} holds a different run (changed: {', '.join(changed)}); use --overwrite to replace it or another --out"
                )
            self.seconds = dict(previous.cell_seconds)
            self.manifest = replace(self.manifest, started=previous.started or self.manifest.started)
        # a killed run's half-written files, once: the lock keeps other writers out from here on
        # (the run's own writes skip the sweep)
        remove_stale_temporaries(out)
        remove_stale_temporaries(self.samples)
        try:
            self.samples.mkdir(exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create {self.samples}: {e.strerror or e}; choose a writable --out") from None

    def _previous(self) -> Manifest:
        """The manifest already in the folder, which must be one of ours."""
        try:
            return read_manifest(self.manifest_path)
        except InputError as e:
            raise InputError(f"{e}; not a manifest of an rbmm run, use another --out (or delete the folder yourself)") from None

    def _foreign(self, ours: set[Path]) -> list[Path]:
        """Files in the folder (relative, sorted) that are not in `ours`, leaving out hidden ones
        (our temporary files, .DS_Store...)."""
        found = []
        for p in sorted(self.out.rglob("*")):
            rel = p.relative_to(self.out)
            if p.is_dir() and not p.is_symlink() or rel in ours or any(part.startswith(".") for part in rel.parts):
                continue
            found.append(rel)
        return found

    def _load_finished(self) -> None:
        """Rows of the cells already on disk (a resumed run), from their records. A record that
        cannot be read whole (0 bytes, a flipped byte, truncated: zip CRCs are checked), lacks a
        field or holds arrays of differing lengths is deleted, and so is one whose time the manifest lost (killed between
        writing the record and the manifest): their cells are evaluated again."""
        on_disk = {p.name[: -len(".npz")] for p in self.samples.glob("*.npz")}
        for cid in sorted(on_disk & set(self.cells)):
            path = self.samples / f"{cid}.npz"
            record = _read_whole_record(path, self.manifest.dataset.task)
            if record is None or cid not in self.seconds:
                path.unlink()
                continue
            self.rows[cid] = cell_row(self.cells[cid], record, self.metrics(record))

    # -- writing ------------------------------------------------------------------------------
    @property
    def done(self) -> set[str]:
        return set(self.rows)

    def _kept(self) -> str:
        return f"the {len(self.rows)} finished cells in {self.out} are kept"

    def write_cell(self, cid: str, record: dict[str, np.ndarray], seconds: float) -> None:
        row = cell_row(self.cells[cid], record, self.metrics(record))
        atomic_write(self.samples / f"{cid}.npz", npz_bytes(record), self._kept(), durable=False, sweep=False)
        self.rows[cid] = row
        self.seconds[cid] = seconds

    def write_tables(self, *, complete: bool, wall_seconds: float | None = None) -> None:
        """cells.csv (grid order) and the manifest, both atomic."""
        rows = [dict(self.rows[cid], seconds=self.seconds.get(cid, np.nan)) for cid in self.cells if cid in self.rows]
        atomic_write(self.out / "cells.csv", csv_bytes(rows), self._kept(), sweep=False)
        self.manifest = replace(
            self.manifest, complete=bool(complete), cell_seconds={k: self.seconds[k] for k in sorted(self.seconds)},
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds") if complete else None,
            wall_seconds=wall_seconds if complete else None,
        )
        atomic_write(self.manifest_path, json_bytes(self.manifest.to_json()), self._kept(), sweep=False)
