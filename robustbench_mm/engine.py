"""The evaluation loop: every model x seed x condition cell of a protocol, fast and resumable.

Batch outer, condition inner: a batch is moved to the device once, perturbed once per condition,
and every model sees the same perturbed tensors. Models that are `Reencodable` encode the clean
batch once and re-encode only the modalities a condition touches; other models run a full
forward pass per condition. Randomness comes only from common random numbers keyed on
(protocol seed + seed offset, condition, sample id), so results do not depend on the batch size,
on the order of cells or on the number of processes.

Cells are processed in chunks (a group of conditions whose per-sample records fit in
`buffer_mb`); each chunk is one pass over the data, and each finished cell is written atomically
before the next chunk starts. A restarted run skips the cells already on disk, so an
interrupted run ends bit-identical to an uninterrupted one. Under `torchrun` each rank evaluates
a contiguous shard of the samples and rank 0 gathers the records and writes them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .corruptions import RNG_VERSION, Condition, DonorPool, affected_mask, apply_condition, family_of
from .datasets.batch import Batch, SplitData
from .datasets.contract import input_contract
from .errors import InputError
from .models import FusionModel, Reencodable, check_inputs, check_tensors
from .models.adapter import receives_present, takes_present
from .protocols import Protocol, load_protocol
from .domain import Family, Task
from .results import (
    DatasetInfo, Manifest, ModelInfo, PlannedCell, ProtocolInfo, Run, RunWriter, cell_id, empty_record, package_versions,
)

_RECORD_BYTES = 48  # upper bound of one sample's record in one cell (ids..affected), for chunking
_MAX_CHUNK_COLUMNS = 64  # conditions per pass at most: bounds the work an interruption loses
NONFINITE_POLICIES = ("error", "wrong")  # what a NaN/Inf model output means: stop the run, or a wrong answer
_SHOWN_IDS = 3  # sample ids an error message lists


@dataclass
class _Model:
    """What the engine needs of a model, whatever it was loaded from."""

    name: str
    module: nn.Module
    sha256: str
    reencodable: bool
    takes_present: bool
    specs: object = None  # the modality specs the model was built for, when it says
    facts: dict = field(default_factory=dict)  # JSON-safe config facts for the manifest (fusion, calibration...)
    gate_fields: tuple[str, ...] = ()  # per-sample calibration gates our calibrated models record
    class_names: tuple[str, ...] | None = None  # the classes of the training data, in output order, when recorded


def _module_sha256(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for key, t in module.state_dict().items():
        a = t.detach().cpu().contiguous()
        h.update(key.encode() + str(a.dtype).encode() + str(tuple(a.shape)).encode())
        h.update(a.reshape(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def _as_model(m: object) -> _Model:
    """A LoadedModel (.module/.name/.sha256/.reencodable) or a bare nn.Module."""
    if isinstance(m, nn.Module):
        module, name, sha, reenc = m, type(m).__name__.lower(), _module_sha256(m), isinstance(m, Reencodable)
    elif hasattr(m, "module") and hasattr(m, "name"):
        module, name = m.module, str(m.name)
        sha = getattr(m, "sha256", None) or _module_sha256(module)
        reenc = bool(getattr(m, "reencodable", isinstance(module, Reencodable)))
    else:
        raise InputError(f"cannot evaluate {type(m).__name__!r}: expected a torch nn.Module or a loaded model (load_model)")
    config = getattr(m, "config", None) or {}
    specs = config.get("specs") if isinstance(config, dict) else None
    facts = {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool))} if isinstance(config, dict) else {}
    facts["kind"] = str(getattr(m, "kind", "module"))
    facts.update(getattr(m, "identity", None) or {})  # source hashes, a model card's fields
    return _Model(
        name=name, module=module, sha256=sha, reencodable=reenc, takes_present=takes_present(module),
        specs=specs or getattr(module, "specs", None), facts=facts,
        gate_fields=tuple(module.gate_fields()) if isinstance(module, FusionModel) else (),
        class_names=tuple(map(str, config["class_names"])) if isinstance(config, dict) and config.get("class_names") else None,
    )


def _resolve_device(device: str | torch.device, local_rank: int) -> torch.device:
    if str(device) == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return dev


class _Dist:
    """Rank, world size and the two collectives the engine needs (no-ops on one process)."""

    def __init__(self, backend_device: torch.device | None = None):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                use_nccl = torch.cuda.is_available() and os.environ.get("RBMM_DIST_BACKEND", "") != "gloo"
                dist.init_process_group("nccl" if use_nccl else "gloo")
                self.owned = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def broadcast(self, obj: object) -> object:
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: object) -> list[object] | None:
        """Objects from every rank, in rank order, on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _check_classes(models: list[_Model], data: SplitData) -> None:
    """A dataset whose class names differ from a model's, in names or order, would score every
    sample against shifted labels (a class folder missing shifts all after it): refused, saying
    what differs. A side that records no names (integer labels, foreign models) is not checked."""
    if data.task != Task.CLASSIFICATION or not data.class_names:
        return
    ours = tuple(map(str, data.class_names))
    for m in models:
        if m.class_names is None or m.class_names == ours:
            continue
        missing = [c for c in m.class_names if c not in ours]
        extra = [c for c in ours if c not in m.class_names]
        how = "; ".join(filter(None, [
            f"the dataset lacks {', '.join(map(repr, missing[:3]))}" if missing else "",
            f"the model does not know {', '.join(map(repr, extra[:3]))}" if extra else "",
        ])) or "same names, another order"
        raise InputError(
            f"dataset {data.name!r} has classes {list(ours)[:8]}, model {m.name!r} was trained on {list(m.class_names)[:8]} "
            f"({how}); its labels would not mean the model's classes: pass the model's classes with --classes "
            f"{','.join(m.class_names)}"
        )


def _check_compatible(models: list[_Model], data: SplitData, device: torch.device, amp: bool) -> int | None:
    """Modality names/kinds/shapes (when a model states them) and finite data, then one tiny real batch.

    Returns the class count of a classification run: the models' output width (the truth for a
    classifier, since a test set may hold only some of its classes); a label at or above it is the error.
    """
    if not data.streamed:  # streamed data checks dtype and finiteness as it decodes each batch
        check_tensors(data.specs, data.inputs, data=f"dataset {data.name!r}")
    for m in models:
        if m.specs:
            check_inputs(m.specs, data.specs, model=f"model {m.name!r}", data=f"for model {m.name!r}, dataset {data.name!r}")
    probe = next(data.subset(torch.arange(min(2, len(data)))).batches(2, device))
    widths: dict[str, int] = {}
    for m in models:
        try:
            with torch.inference_mode(), _autocast(device, amp):
                out = _forward_full(m, probe)
        except InputError:
            raise
        except Exception as e:  # a foreign model fails in its own way; say which model and data
            raise InputError(
                f"model {m.name!r} failed on dataset {data.name!r} ({', '.join(f'{k} {tuple(v.shape[1:])}' for k, v in probe.inputs.items())}): "
                f"{_error_text(e)}"
            ) from None
        b = len(probe)
        if data.task == Task.CLASSIFICATION and out.dim() == 2 and out.shape[0] == b and out.shape[1] >= 2:
            widths[m.name] = int(out.shape[1])
        elif data.task == Task.CLASSIFICATION:
            raise InputError(
                f"model {m.name!r}: output shape {tuple(out.shape)}, expected ({b}, C) logits with C >= 2 classes "
                f"for classification dataset {data.name!r}"
            )
        _check_output(m, out, b, data.task, widths.get(m.name), lambda: f"on dataset {data.name!r}")
    if data.task != Task.CLASSIFICATION:
        return None
    if len(set(widths.values())) > 1:
        raise InputError(
            "the models disagree on the number of classes: " + ", ".join(f"{k!r} has {v}" for k, v in widths.items())
        )
    width = next(iter(widths.values()))
    top = int(data.labels.max()) if len(data) else -1
    if top >= width:
        raise InputError(
            f"dataset {data.name!r} has label {top}, but model {models[0].name!r} has {width} outputs "
            f"(classes 0..{width - 1}); expected labels below the model's output width"
        )
    return width


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _forward_full(m: _Model, batch: Batch) -> torch.Tensor:
    out = m.module(batch.inputs, batch.present) if m.takes_present else m.module(batch.inputs)
    return _as_logits(m.name, out)


def _as_logits(name: str, out: object) -> torch.Tensor:
    """The output tensor of a foreign model: a tensor, the first tensor of a tuple/list whose tensors
    share one shape (logits and probabilities), or a dict's `logits` (its only tensor when it holds
    one); anything else, a tuple of differently shaped tensors included, is an error naming the
    model (an adapter's `output` picks one)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        tensors = [o for o in out if isinstance(o, torch.Tensor)]
        if not tensors:
            raise InputError(f"model {name!r} returned a {type(out).__name__} without a tensor; expected logits [B, C]")
        if len({tuple(t.shape) for t in tensors}) > 1:  # e.g. OGM-GE's (a, v, out): features first, logits last
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise InputError(
                f"model {name!r} returned a {type(out).__name__} of tensors shaped {shapes}; say which one is the logits "
                "(--output INDEX, or `output = INDEX` in its model card)"
            )
        return tensors[0]
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return out[tensors[0]]
        raise InputError(
            f"model {name!r} returned a dict with keys {', '.join(map(repr, out)) or '(none)'} and no 'logits' tensor; "
            "expected logits [B, C] (a tensor, or a dict with a 'logits' key)"
        )
    raise InputError(f"model {name!r} returned a {type(out).__name__}; expected a logits tensor [B, C]")


def _error_text(e: Exception) -> str:
    """One line of a foreign model's exception: the TorchScript interpreter's own last line
    (e.g. the missing key), not its 'The following operation failed' preamble."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if isinstance(e, torch.jit.Error) or lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1]
    return f"{type(e).__name__}: {lines[0]}"


def _condition_error(condition: Condition, specs: dict, e: Exception) -> InputError:
    """One line for a condition that raised while perturbing a batch: which corruption (and the file
    it came from), which modalities with their kind and value range, and the exception's own line.
    An image without a value range is the usual cause (standardised images: a plug-in that reads
    `spec.value_range` gets None), so that case names --value-range."""
    from .corruptions import get_corruption

    names = [p.corruption for p in condition.parts] if condition.parts else [condition.name]
    sources = []
    for name in names:
        try:
            sources.append(f"{name!r} from {get_corruption(name).source}")
        except InputError:  # not a corruption (a removal fill, a condition family)
            sources.append(repr(name))
    facts = ", ".join(f"{m!r} ({specs[m].kind}, value range {specs[m].value_range})" for m in condition.modalities)
    unbounded = [m for m in condition.modalities if specs[m].kind == "image" and specs[m].value_range is None]
    hint = (
        f"; image modality {unbounded[0]!r} has no value range (standardised images?): give it in the data's "
        "units with --value-range LO,HI" if unbounded else ""
    )
    return InputError(
        f"condition {condition.key} ({' + '.join(sources)}) failed on {facts}: {_error_text(e)}{hint}"
    )


def _check_output(m: _Model, out: torch.Tensor, b: int, task: str, width: int | None, where: Callable[[], str]) -> None:
    """The output of one batch has the shape and dtype the first batch had (checked on every batch:
    a model may break only on larger batches). `where` is built only for the message (no device sync)."""
    if not out.dtype.is_floating_point:
        raise InputError(f"model {m.name!r} returned {out.dtype} outputs {where()}; expected floating-point logits")
    if task == Task.CLASSIFICATION:
        if out.dim() != 2 or out.shape[0] != b or (width is not None and out.shape[1] != width):
            raise InputError(f"model {m.name!r}: output shape {tuple(out.shape)} {where()}, expected ({b}, {width if width else 'C'})")
    elif out.shape not in ((b,), (b, 1)):
        raise InputError(f"model {m.name!r}: output shape {tuple(out.shape)} {where()}, expected ({b},) for regression")


def _softmax64(out: torch.Tensor, nonfinite: torch.Tensor) -> torch.Tensor:
    """Class probabilities in float64, for the per-sample fields the Brier score, NLL and the
    entropy confidence average (`p_true`, `sq_prob`, `entropy`): from float32 probabilities those
    means were 1e-8 off a float64 reference (sklearn's brier_score_loss). `pred` and `conf` stay
    float32, so accuracy and ECE bin the same samples as before. MPS has no float64: there the
    logits go to the CPU first."""
    logits = out.detach().cpu() if out.device.type == "mps" else out
    p = torch.softmax(logits.to(torch.float64), dim=-1)
    return torch.where(nonfinite.to(p.device)[:, None], torch.full_like(p, 1.0 / p.shape[1]), p)


def _records(out: torch.Tensor, batch: Batch, affected: torch.Tensor, task: str,
             keep_probabilities: bool = False) -> dict[str, torch.Tensor]:
    """Per-sample record tensors of one batch (on the device), `probs` (B, K) too when kept, with a
    `nonfinite` mask of the samples whose output holds NaN/Inf. Their probabilities are set to uniform
    and their prediction to -1 (never a class), so that, if the run counts them as wrong, every metric
    is defined."""
    out = out.float()
    nonfinite = ~torch.isfinite(out.reshape(len(batch), -1)).all(dim=1)
    if task == Task.CLASSIFICATION:
        p = torch.softmax(out, dim=-1)
        p = torch.where(nonfinite[:, None], torch.full_like(p, 1.0 / p.shape[1]), p)
        conf, pred = p.max(dim=-1)
        pred = torch.where(nonfinite, torch.full_like(pred, -1), pred)
        target = batch.labels.long()
        p64 = _softmax64(out, nonfinite)
        kept = {"probs": p} if keep_probabilities else {}
        return {**kept,
            "ids": batch.ids,
            "target": target,
            "pred": pred,
            "conf": conf,
            "p_true": p64.gather(1, target[:, None].clamp(0, p64.shape[1] - 1).to(p64.device))[:, 0],
            "sq_prob": (p64 * p64).sum(-1),
            "entropy": torch.special.entr(p64).sum(-1),
            "affected": affected,
            "nonfinite": nonfinite,
        }
    return {"ids": batch.ids, "target": batch.labels.float(), "output": out.reshape(-1), "affected": affected, "nonfinite": nonfinite}


def _settle_nonfinite(records: dict[str, dict[str, np.ndarray]], models: list["_Model"], owner: dict[str, int],
                      task: str, policy: str) -> None:
    """Apply the NaN/Inf policy to a chunk's records: stop with the model, cell and sample ids, or
    keep the mask (the samples count as wrong; cells.csv gets their count). Without NaN/Inf under the
    default policy the mask is dropped, so the files are those of a run that never checked."""
    for cid, record in records.items():
        bad = record["nonfinite"]
        if bad.any() and (policy == "error" or task != Task.CLASSIFICATION):
            ids = ", ".join(str(i) for i in record["ids"][bad][:_SHOWN_IDS]) + (", ..." if bad.sum() > _SHOWN_IDS else "")
            remedy = (
                "fix the model, or pass --nonfinite wrong to count such samples as wrong"
                if task == Task.CLASSIFICATION else "fix the model (regression outputs cannot be counted as wrong)"
            )
            raise InputError(
                f"model {models[owner[cid]].name!r} returned NaN/Inf outputs in cell {cid} for {int(bad.sum())} "
                f"sample(s) (ids {ids}); {remedy}"
            )
        if policy == "error":
            del record["nonfinite"]


def _cell_metrics(record: dict[str, np.ndarray], task: str, num_classes: int | None) -> dict[str, float]:
    """Each metric of the cell, then each metric's standard error (`<metric>_se` columns of cells.csv)."""
    from .metrics import cell_metrics, cell_standard_errors

    return {**cell_metrics(record, task, num_classes), **cell_standard_errors(record, task, num_classes)}


@dataclass
class _Column:
    """One (seed, condition) of the grid and the model cells it still has to produce."""

    seed: int
    condition: Condition
    cells: dict[int, str]  # model position -> cell id (pending only)


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate, validated once here (none of it changes what a cell's records hold, except
    `nonfinite`, `keep_probabilities` and `limit`, which are part of the run's identity).

    device : "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N".
    batch_size : samples per forward pass; results do not depend on it.
    seeds : evaluation seed offsets (default: the protocol's `seeds`); cell randomness uses
        `protocol.seed + offset`.
    amp : autocast (float16 on CUDA, bfloat16 on CPU).
    progress : True/False forces the progress bar on/off; None shows it when stderr is a TTY.
    overwrite : replace a different run in `out` (deleting only files a run of ours wrote).
    reuse_encoders : re-encode only touched modalities for Reencodable models (same predictions),
        except in cells of a family that asks for a full forward pass (`ConditionFamily.full_forward`).
    buffer_mb : bound on the per-sample records held in memory before cells are written.
    on_cell : called with each cell id after that cell is safely on disk.
    nonfinite : "error" (default) stops at the first cell where a model outputs NaN/Inf, naming the
        model, the cell and sample ids; "wrong" counts those samples as wrong (classification only)
        and records their count per cell (cells.csv column `nonfinite`, per-sample `nonfinite` mask).
    keep_probabilities : also keep each sample's full probability vector (`probs`, float32 (n, K),
        classification only) in the per-sample records, so calibration and later metrics can be
        recomputed from the run without the models; K floats more per sample and cell on disk.

    limit : evaluate only the first `limit` samples of the data in every cell (a smoke run); the
        manifest states it and `rbmm gate` / `rbmm baseline` refuse such a run.
    """

    device: str | torch.device = "auto"
    batch_size: int = 256
    seeds: tuple[int, ...] | None = None
    amp: bool = False
    progress: bool | None = None
    overwrite: bool = False
    reuse_encoders: bool = True
    buffer_mb: float = 512.0
    on_cell: Callable[[str], None] | None = None
    nonfinite: str = "error"
    keep_probabilities: bool = False
    limit: int | None = None

    def __post_init__(self):
        if self.nonfinite not in NONFINITE_POLICIES:
            raise InputError(f"--nonfinite {self.nonfinite!r}: expected one of: {', '.join(NONFINITE_POLICIES)}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise InputError(f"--limit must be an integer >= 1 (samples per cell), got {self.limit!r}")
        if not self.buffer_mb > 0:
            raise InputError(f"buffer_mb must be > 0, got {self.buffer_mb}")
        if self.seeds is not None:
            object.__setattr__(self, "seeds", _distinct_seeds(self.seeds))


def _distinct_seeds(seeds) -> tuple[int, ...]:
    """Evaluation seed offsets: at least one, none repeated (given, or the protocol's)."""
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds must be distinct integers, got {list(seeds)}")
    return seeds


@dataclass(frozen=True)
class _Job:
    """What one evaluation runs: checked models, the data (class count settled), the protocol's
    conditions, the seeds and the device."""

    models: list[_Model]
    data: SplitData
    protocol: Protocol
    conditions: list[Condition]
    seeds: tuple[int, ...]
    device: torch.device
    width: int | None  # the classifiers' output width (None for regression)


def evaluate(
    models: Sequence[object] | object,
    data: SplitData,
    protocol: Protocol | str,
    *,
    out: str | Path,
    options: EvalOptions | None = None,
    **settings,
) -> Run | None:
    """Evaluate `models` on `data` under every condition of `protocol`; write and return the run.

    models : loaded models (`load_model`) or nn.Modules; all see the same perturbed inputs.
    options : an `EvalOptions`; keyword `settings` (its field names: batch_size=, seeds=, ...)
        override its fields or stand in for it.
    Returns the `Run` on rank 0 (None on other ranks under torchrun).
    """
    started = time.time()
    options = replace(options, **settings) if options is not None else EvalOptions(**settings)
    dist = _Dist()
    writer = None
    try:
        job = _prepare(models, data, protocol, options, dist)
        writer, pending = _plan(job, Path(out), options, dist)
        _run(job, writer, pending, options, dist)
        if dist.rank != 0:
            return None
        writer.write_tables(complete=True, wall_seconds=time.time() - started)
        return Run(out)
    finally:
        if writer is not None:
            writer.close()
        dist.close()


def _prepare(models, data: SplitData, protocol: Protocol | str, options: EvalOptions, dist: _Dist) -> _Job:
    """Load the protocol, check the models against the data, settle the class count."""
    if isinstance(protocol, (str, Path)):
        protocol = load_protocol(protocol)
    models = [_as_model(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    if not models:
        raise InputError("no model to evaluate")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"two models share the name {next(n for n in names if names.count(n) > 1)!r}; give each a distinct name")
    if options.keep_probabilities and data.task != Task.CLASSIFICATION:
        raise InputError(f"--keep-probabilities needs a classification dataset; {data.name!r} is {data.task}")
    seeds = _distinct_seeds(protocol.seeds) if options.seeds is None else options.seeds
    if options.limit is not None:
        data = data.rows(0, min(options.limit, len(data)))
    dev = _resolve_device(options.device, dist.local_rank)
    for m in models:
        m.module.to(dev).eval()
    conditions = protocol.expand(data.specs)
    _check_classes(models, data)
    width = _check_compatible(models, data, dev, options.amp)
    if data.task == Task.CLASSIFICATION:
        data = replace(data, num_classes=width)
    return _Job(models, data, protocol, conditions, seeds, dev, width)


def _manifest(job: _Job, options: EvalOptions, dist: _Dist) -> Manifest:
    """The manifest of a run that has not written a cell yet."""
    data, protocol, dev = job.data, job.protocol, job.device
    return Manifest(
        protocol=ProtocolInfo(protocol.name, protocol.hash, protocol.source, protocol.seed, tuple(protocol.metrics),
                              tuple(protocol.units(data.specs))),
        models=tuple(ModelInfo(m.name, m.sha256, m.facts) for m in job.models),
        dataset=DatasetInfo(
            name=data.name, split=data.split, source=data.source, fingerprint=data.fingerprint(), n=len(data),
            task=Task(data.task), num_classes=data.num_classes,
            modalities={k: {"kind": v.kind, "shape": list(v.shape)} for k, v in data.specs.items()},
            class_names=None if data.class_names is None else tuple(map(str, data.class_names)),
        ),
        inputs=input_contract(
            data, fills={c.name for c in job.conditions if c.family == Family.REMOVAL},
            presence_mask={m.name: receives_present(m.module) for m in job.models},
        ).to_json(),
        seeds=job.seeds, rng=RNG_VERSION, amp=bool(options.amp), keep_probabilities=bool(options.keep_probabilities),
        nonfinite=options.nonfinite, limit=options.limit, plugins=tuple(getattr(protocol, "plugins", ())),
        package=package_versions(),
        complete=False, started=datetime.now(timezone.utc).isoformat(timespec="seconds"), cell_seconds={},
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        batch_size=options.batch_size, world_size=dist.world_size,
    )


def _plan(job: _Job, out: Path, options: EvalOptions, dist: _Dist) -> tuple[RunWriter | None, list[_Column]]:
    """Which cells remain: rank 0 opens (or resumes) the run folder and tells every rank."""
    grid = [(s, c) for s in job.seeds for c in job.conditions]
    ids = [[cell_id(m.name, s, c) for m in job.models] for s, c in grid]  # per grid column, in model order
    cells = [PlannedCell(cid, m.name, s, c) for (s, c), row in zip(grid, ids) for m, cid in zip(job.models, row)]
    if len({c.id for c in cells}) != len(cells):
        raise InputError("model names collide after making them file-safe; use names of letters, digits, . _ -")
    writer = None
    plan: object = None
    if dist.rank == 0:
        try:
            metrics = functools.partial(_cell_metrics, task=job.data.task, num_classes=job.data.num_classes)
            writer = RunWriter(out, _manifest(job, options, dist), cells, metrics, options.overwrite)
            writer.write_tables(complete=False)
            done = writer.done
            plan = [_Column(s, c, {mi: cid for mi, cid in enumerate(row) if cid not in done}) for (s, c), row in zip(grid, ids)]
        except InputError as e:
            if writer is not None:
                writer.close()
                writer = None
            plan = e
    plan = dist.broadcast(plan)
    if isinstance(plan, InputError):
        raise plan
    return writer, [col for col in plan if col.cells]


def _run(job: _Job, writer: RunWriter | None, pending: list[_Column], options: EvalOptions, dist: _Dist) -> None:
    """Evaluate the pending cells chunk by chunk; rank 0 writes each finished cell."""
    data = job.data
    donors = DonorPool.from_data(data, job.device) if any(family_of(c).needs_donors for c in job.conditions) else None
    shard = _shard(data, options.batch_size, dist)
    n_local = len(shard)
    per_column = max(1, n_local * len(job.models) * (_RECORD_BYTES + (4 * data.num_classes if options.keep_probabilities else 0)))
    chunk_size = int(max(1, min(_MAX_CHUNK_COLUMNS, options.buffer_mb * 2**20 // per_column)))
    chunks = [pending[i : i + chunk_size] for i in range(0, len(pending), chunk_size)]

    show = (sys.stderr.isatty() if options.progress is None else options.progress) and dist.rank == 0
    from tqdm.auto import tqdm

    total_cells = sum(len(col.cells) for col in pending)
    bar = tqdm(total=len(pending) * n_local, unit="sample", disable=not show, desc=f"{job.protocol.name}", dynamic_ncols=True)
    cells_done = 0
    try:
        for chunk in chunks:
            records, seconds = _run_chunk(chunk, job, shard, donors, bar, options)
            owner = {cid: mi for col in chunk for mi, cid in col.cells.items()}
            _settle_nonfinite(records, job.models, owner, data.task, options.nonfinite)
            gathered = dist.gather(records)
            if dist.rank == 0:
                for col in chunk:
                    for cid in col.cells.values():
                        parts = [g[cid] for g in gathered]
                        writer.write_cell(cid, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, seconds[cid])
                        cells_done += 1
                        if options.on_cell is not None:
                            options.on_cell(cid)
                    bar.set_postfix_str(f"cells {cells_done}/{total_cells}")
                writer.write_tables(complete=False)
    finally:
        bar.close()


def _shard(data: SplitData, batch_size: int, dist: _Dist) -> SplitData:
    """This rank's samples: a contiguous block of whole batches of the one-process order.

    Sharding at batch boundaries means every rank sees exactly the batches one process would
    see, so model outputs (whose last bits can depend on the batch's composition) are identical.
    """
    if dist.world_size == 1:
        return data
    n_batches = -(-len(data) // batch_size)
    start = min(len(data), n_batches * dist.rank // dist.world_size * batch_size)
    stop = min(len(data), n_batches * (dist.rank + 1) // dist.world_size * batch_size)
    return data.rows(start, stop)


def _run_chunk(chunk: list[_Column], job: _Job, data: SplitData, donors: DonorPool | None, bar,
               options: EvalOptions) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """One pass over this rank's samples (`data`) for the chunk's conditions: records per cell (numpy)."""
    models, specs, dev, task = job.models, job.data.specs, job.device, job.data.task
    kept_classes = job.width if options.keep_probabilities else None
    buffers: dict[str, dict[str, torch.Tensor]] = {}  # cell -> field -> (n, ...), allocated at the first batch
    seconds: dict[str, float] = {cid: 0.0 for col in chunk for cid in col.cells.values()}
    done = 0  # samples of this pass already recorded
    reusing = [options.reuse_encoders and m.reencodable for m in models]
    reencode_touched = [not family_of(col.condition).full_forward for col in chunk]  # else the whole model runs
    with torch.inference_mode(), _autocast(dev, options.amp):
        for batch in data.batches(options.batch_size, dev):
            clean_features: dict[int, dict[str, torch.Tensor]] = {}
            for col, touched_only in zip(chunk, reencode_touched):
                t0 = time.perf_counter()
                seed = job.protocol.seed + col.seed
                try:
                    perturbed = apply_condition(batch, col.condition, specs, seed, donors)
                except InputError:
                    raise
                except Exception as e:  # a plug-in corruption failing on this data: one line, not its traceback
                    raise _condition_error(col.condition, specs, e) from None
                affected = affected_mask(batch.ids, col.condition, seed)
                share = (time.perf_counter() - t0) / len(col.cells)
                for mi, cid in col.cells.items():
                    t1 = time.perf_counter()
                    m = models[mi]
                    if reusing[mi] and touched_only:
                        if mi not in clean_features:
                            clean_features[mi] = {k: m.module.encode(k, v) for k, v in batch.inputs.items()}
                        features = dict(clean_features[mi])
                        for k in col.condition.touched:
                            features[k] = m.module.encode(k, perturbed.inputs[k])
                        output = m.module.fuse(features, perturbed.present)
                    else:
                        try:
                            output = _forward_full(m, perturbed)
                        except InputError:
                            raise
                        except Exception as e:  # a foreign model failing on one batch: name it and the cell
                            raise InputError(f"model {m.name!r} failed in cell {cid} (batch of {len(batch)}): {_error_text(e)}") from None
                    _check_output(m, output, len(batch), task, job.width,
                                  lambda: f"in cell {cid} (batch of {len(batch)} from sample id {int(batch.ids[0])})")
                    record = _records(output, batch, affected, task, kept_classes is not None)
                    if m.gate_fields:  # our calibrated models: gate_<instance|dim>_<modality>, (B,) each
                        record.update(m.module.gate_records())
                    _fill(buffers, cid, record, done, len(data))
                    seconds[cid] += share + time.perf_counter() - t1
                bar.update(len(batch))
            done += len(batch)
    owner = {cid: mi for col in chunk for mi, cid in col.cells.items()}
    records = {
        cid: {k: v.cpu().numpy() for k, v in buffers[cid].items()} if cid in buffers
        else empty_record(task, kept_classes, models[owner[cid]].gate_fields)
        for cid in seconds
    }
    return records, seconds


def _fill(buffers: dict[str, dict[str, torch.Tensor]], cid: str, record: dict[str, torch.Tensor], start: int, n: int) -> None:
    """Copy one batch's record into rows start.. of its cell's (n, ...) tensors, made at its first batch.

    Allocated once per pass, not as a few small tensors per batch kept to the end: those land in
    the holes the freed batch-sized blocks leave and fragment the heap, so that peak memory grew
    with the number of samples (benchmarks/media_rss.py; measured on a 1 GB media folder: peak
    RSS 1,191 MiB before, 753 MiB after).
    """
    if cid not in buffers:
        buffers[cid] = {k: torch.empty((n, *v.shape[1:]), dtype=v.dtype, device=v.device) for k, v in record.items()}
    for k, v in record.items():
        buffers[cid][k][start : start + len(v)] = v
