"""The run folder: atomic writes, the manifest, the tidy cell table and per-sample records.

    results/NAME/
      manifest.json          versions, device, protocol name + hash, model SHA-256s, dataset
                             fingerprint, seeds, start/end time, wall seconds per cell;
                             `complete` (false from the start, true once the last cell is
                             written), `plugins` [{name, source, sha256}] that shaped the protocol
      cells.csv              one row per model x seed x condition: the condition's fields, n,
                             the per-cell metrics, their jackknife standard errors (`<metric>_se`,
                             metrics.cell_standard_errors), seconds
      samples/<cell_id>.npz  per-sample records (numpy alone loads them):
                             classification: ids, target, pred, conf, p_true, sq_prob, entropy, affected
                             (+ probs, float32 (n, K), with keep_probabilities)
                             regression: ids, target, output, affected
                             (+ `nonfinite`, True where the model output NaN/Inf, and the
                             cells.csv column of its count, in a run that counts them as wrong;
                             pred is then -1 and the probabilities uniform)

Every file is written to a temporary name in the same folder and moved into place with
`os.replace`, so a crashed or killed process (Ctrl-C, kill -9) leaves either the old file or the
new one, never half of one. Files are not fsync'ed (a 5% cost per cell on small datasets); a
record file damaged by a power loss is detected on resume and that cell evaluated again. The
`.npz` files are byte-deterministic (fixed zip timestamps), so a resumed run is bit-identical
to an uninterrupted one.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

CONDITION_COLUMNS = ["cell_id", "model", "seed", "condition", "family", "name", "modalities", "level", "param", "rate", "group", "n"]
# Written only by a run that counts NaN/Inf outputs as wrong (`nonfinite="wrong"`): how many samples
# of the cell had them. Not a metric; it follows `n`.
COUNT_COLUMNS = ["nonfinite"]
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _disk_error(e: OSError, path: Path, kept: str) -> InputError:
    if e.errno == errno.ENOSPC:
        return InputError(f"disk full while writing {path}; {kept}; free space and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write {path}: permission denied; choose a writable --out")
    return InputError(f"cannot write {path}: {e.strerror or e}; {kept}")


def atomic_write(path: Path, data: bytes, kept: str = "nothing else was changed") -> None:
    """Write `data` to `path` via a temporary file and os.replace; OSError -> InputError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _disk_error(e, path, kept) from None


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
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=CONDITION_COLUMNS + ["seconds"])
    counts = [c for c in COUNT_COLUMNS if c in frame.columns]
    metric_cols = [c for c in frame.columns if c not in CONDITION_COLUMNS and c not in counts and c != "seconds"]
    return frame[CONDITION_COLUMNS + counts + metric_cols + ["seconds"]]


def csv_bytes(rows: list[dict]) -> bytes:
    return cells_frame(rows).to_csv(index=False, lineterminator="\n").encode()


class Run:
    """One run folder, read back: `.manifest` (dict), `.cells` (DataFrame), `.samples(cell_id)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{self.path} is not a run folder: no manifest.json (expected the --out of `rbmm eval`)")
        try:
            self.manifest = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{manifest}: not valid JSON ({e})") from None
        if not isinstance(self.manifest, dict):
            raise InputError(f"{manifest}: holds a JSON {type(self.manifest).__name__}; expected a run manifest (a JSON object)")
        cells = self.path / "cells.csv"
        self.cells = (
            pd.read_csv(cells, keep_default_na=True, dtype={"modalities": str, "group": str})
            if cells.is_file()
            else cells_frame([])
        )
        if "modalities" in self.cells:
            self.cells["modalities"] = self.cells["modalities"].fillna("")

    def samples(self, cell_id: str) -> dict[str, np.ndarray]:
        """Per-sample records of one cell (see the module docstring for the arrays)."""
        path = self.path / "samples" / f"{cell_id}.npz"
        if not path.is_file():
            raise InputError(f"run {self.path}: no samples for cell {cell_id!r}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def complete(self) -> bool:
        """Whether the run wrote its last cell: the manifest's `complete` (older runs: `status`)."""
        return bool(self.manifest.get("complete", self.manifest.get("status") == "complete"))

    def summary(self) -> str:
        """A few lines for the terminal: where the run is, cells, and each model's clean/mean metric."""
        lines = [f"{self.path}: {len(self.cells)} cells, protocol {self.manifest.get('protocol', {}).get('name')}"]
        metric = "accuracy" if "accuracy" in self.cells else next(
            (c for c in self.cells.columns if c not in CONDITION_COLUMNS + COUNT_COLUMNS and c != "seconds"), None
        )
        if metric is not None and not self.cells.empty:
            for model, g in self.cells.groupby("model", sort=False):
                clean = g.loc[g["family"] == "clean", metric].mean()
                rest = g.loc[g["family"] != "clean", metric].mean()
                lines.append(f"  {model:<24} clean {metric} {clean:.4f}   mean over perturbed cells {rest:.4f}")
                if "nonfinite" in g and g["nonfinite"].sum():
                    lines.append(f"  {'':<24} NaN/Inf outputs counted as wrong: {int(g['nonfinite'].sum())} sample-cells")
        if self.manifest.get("identity", {}).get("dataset", {}).get("split") == "all":
            lines.append("  the dataset has no 'split' array: all of its samples were evaluated (split: all)")
        return "\n".join(lines)


class Runs:
    """Several runs as one table (`.cells` has a `run` column); `.samples(run, cell_id)`."""

    def __init__(self, runs: dict[str, Run]):
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
