"""Training recipe: Adam, early stopping on validation accuracy, optional modality dropout.

One recipe for every fusion, so methods compare; a method's own schedule enters through its
`start_epoch` / `selection_start` hooks and its auxiliary terms through `training_loss`.

Deterministic under `seed`: initial weights, shuffling, modality dropout and the baselines'
noise injection all draw from generators seeded with it (global RNG state is restored after).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..version import __version__
from ..datasets.batch import PAD_ID, MultimodalData
from ..errors import InputError
from ..atomic import atomic_write
from ..domain import Task
from .checkpoint import save_checkpoint
from .checks import check_inputs, check_tensors
from .fusion import build_model

TRAIN_DEFAULTS = {"epochs": 60, "batch_size": 64, "lr": 2e-3, "patience": 10, "weight_decay": 1e-4}


def _fill(config: dict, train: MultimodalData) -> dict:
    """The model config with specs, task, class count and class names taken from the training split."""
    cfg = dict(config)
    cfg.setdefault("specs", [s.to_dict() for s in train.specs.values()])
    cfg.setdefault("task", train.task)
    if train.task == Task.CLASSIFICATION:
        cfg.setdefault("num_classes", train.num_classes or int(train.labels.max()) + 1)
        if train.class_names:  # evaluation refuses data whose class names or order differ
            cfg.setdefault("class_names", list(train.class_names))
    return cfg


def _to(data: MultimodalData, device: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {k: v.to(device) for k, v in data.inputs.items()}, data.labels.to(device)


def _drop_modalities(
    model, inputs: dict[str, torch.Tensor], rate: float, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Remove each modality of each sample with probability `rate` (at least one stays).

    Removed inputs are mean-filled (pad for tokens) and marked absent, as in the removal protocol.
    """
    names = model.modalities
    b = next(iter(inputs.values())).shape[0]
    drop = torch.rand(b, len(names), generator=generator) < rate
    keep_one = torch.randint(len(names), (b,), generator=generator)
    all_dropped = drop.all(1)
    drop[all_dropped, keep_one[all_dropped]] = False
    out, present = {}, {}
    for i, (m, spec) in enumerate(zip(names, model.specs)):
        gone = drop[:, i].to(inputs[m].device)
        x = inputs[m]
        if spec.kind == "tokens":
            fill = torch.full_like(x, PAD_ID)
        elif spec.mean is not None:
            fill = spec.mean.to(x.device, x.dtype).expand_as(x)
        else:
            fill = torch.zeros_like(x)
        out[m] = torch.where(gone.view(-1, *([1] * (x.dim() - 1))), fill, x)
        present[m] = ~gone
    return out, present


@torch.no_grad()
def evaluate_clean(model, data: MultimodalData, batch_size: int = 256, device: str = "cpu") -> dict[str, float]:
    """Clean metrics of `model` on `data`: accuracy and mean cross-entropy (or RMSE/MAE), and n."""
    model.eval()
    outputs = []
    for batch in data.batches(batch_size, device):
        outputs.append(model(batch.inputs).float().cpu())
    out = torch.cat(outputs)
    target = data.labels
    if data.task == Task.REGRESSION:
        err = out.reshape(-1) - target.float()
        return {"rmse": float(err.pow(2).mean().sqrt()), "mae": float(err.abs().mean()), "loss": float(err.pow(2).mean()), "n": len(data)}
    return {
        "accuracy": int((out.argmax(1) == target).sum()) / len(data),
        "loss": float(F.cross_entropy(out, target)),
        "n": len(data),
    }


def _score(metrics: dict[str, float]) -> tuple[float, float]:
    """Higher is better: validation accuracy, ties broken by lower loss (regression: lower MSE)."""
    return (metrics.get("accuracy", 0.0), -metrics["loss"])


def _fit(cfg: dict, splits: dict[str, MultimodalData], hp: dict, seed: int, modality_dropout: float, progress: bool, device: str):
    """The optimisation loop; returns (best model in eval mode, epochs run, best epoch)."""
    train, val = splits["train"], splits["val"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
        model.to(device)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        inputs, labels = _to(train, device)
        n = len(train)
        first = model.selection_start(hp["epochs"])
        best, best_state, best_epoch, waited = None, None, 0, 0
        show = progress and sys.stderr.isatty()
        bar = tqdm(range(1, hp["epochs"] + 1), desc=f"train {cfg['fusion']}", disable=not show, leave=False)
        for epoch in bar:
            model.train()
            model.start_epoch(epoch, hp["epochs"], n)
            order = torch.randperm(n, generator=generator)
            for lo in range(0, n, hp["batch_size"]):
                idx = order[lo : lo + hp["batch_size"]].to(device)
                x = {k: v[idx] for k, v in inputs.items()}
                present = None
                if modality_dropout > 0:
                    x, present = _drop_modalities(model, x, modality_dropout, generator)
                loss = model.training_loss(x, present, labels[idx], generator, index=idx)
                if getattr(model, "calibrate", None) is not None:  # evidence cues' own heads (0 otherwise)
                    loss = loss + model.calibrate.auxiliary_loss(labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if epoch < first:  # a phase whose weights the method never keeps (UDML's clean epochs)
                continue
            scores = evaluate_clean(model, val, device=device)
            bar.set_postfix({k: f"{v:.4f}" for k, v in scores.items() if k != "n"})
            if best is None or _score(scores) > best:
                best, best_state, best_epoch, waited = _score(scores), copy.deepcopy(model.state_dict()), epoch, 0
            else:
                waited += 1
                if waited >= hp["patience"]:
                    break
        bar.close()
        model.load_state_dict(best_state)
    return model.eval(), epoch, best_epoch


def train_model(
    config: dict,
    splits: dict[str, MultimodalData],
    *,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    modality_dropout: float = 0.0,
    progress: bool = True,
    device: str = "cpu",
    out: str | Path | None = None,
    threads: int | None = 1,
):
    """Train a fusion model on splits["train"], early-stopping on splits["val"]; returns (model, metrics).

    config : build config (fusion, calibration, optional sizes such as dim/hidden); specs, task and
        num_classes default to those of the training split.
    metrics : {"val": {...}, "test": {...} (when a test split is given), "seconds", "epochs_run",
        "best_epoch", "seed", "modality_dropout", epochs, batch_size, lr, patience, weight_decay},
        computed on clean data with the restored best weights.
    out : when given, the checkpoint is written there (see `save_checkpoint`).
    threads : CPU threads while training (restored after). One is fastest for these small models
        and immune to oversubscription when several jobs share the cores; None keeps torch's setting.
    """
    for split in ("train", "val"):
        if split not in splits:
            raise InputError(f"training needs a {split!r} split; got {', '.join(splits) or 'none'}")
    train, val = splits["train"], splits["val"]
    if not 0.0 <= modality_dropout < 1.0:
        raise InputError(f"modality dropout must be in [0, 1), got {modality_dropout}")
    hp = dict(TRAIN_DEFAULTS)
    hp.update({k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience).items() if v is not None})
    if hp["epochs"] < 1 or hp["batch_size"] < 1 or hp["lr"] <= 0 or hp["patience"] < 1:
        raise InputError(
            f"epochs, batch size and patience must be >= 1 and lr > 0; got {hp['epochs']}, {hp['batch_size']}, "
            f"{hp['patience']}, {hp['lr']}"
        )
    cfg = _fill(config, train)
    for split, data in splits.items():
        where = f"dataset {data.name!r} ({split} split)"
        check_inputs(cfg["specs"], data.specs, data=where)
        check_tensors(cfg["specs"], data.inputs, data=where)
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if threads and str(device).startswith("cpu"):
        torch.set_num_threads(threads)
    try:
        model, epochs_run, best_epoch = _fit(cfg, splits, hp, seed, modality_dropout, progress, device)
        metrics = {"val": evaluate_clean(model, val, device=device)}
        if "test" in splits:
            metrics["test"] = evaluate_clean(model, splits["test"], device=device)
    finally:
        torch.set_num_threads(previous_threads)
    metrics.update(
        seconds=time.perf_counter() - start,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        seed=seed,
        modality_dropout=modality_dropout,
        **hp,
    )
    if out is not None:
        meta = {
            "dataset": train.name,
            "source": train.source,
            "seed": seed,
            "version": __version__,
            "training": {**hp, "modality_dropout": modality_dropout},
        }
        meta.update({k: v for k, v in config.items() if k in ("split_seed", "dataset")})
        save_checkpoint(model, out, meta, metrics)
    return model, metrics


def train_and_save(
    *,
    fusion: str,
    calibration: bool,
    splits: dict[str, MultimodalData],
    seed: int,
    out: str | Path,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    modality_dropout: float = 0.0,
    device: str = "cpu",
    progress: bool = True,
    split_seed: int | None = None,
    model_options: dict | None = None,
    modality: str | None = None,
) -> dict:
    """`rbmm train`: train one model, write its checkpoint to `out` and its metrics to `out`.json.

    model_options : extra build config (e.g. {"dim": 32}) on top of the fusion defaults.
    modality : the one modality of `fusion="unimodal"` (it still accepts the others and ignores them).
    """
    config = {"fusion": fusion, "calibration": bool(calibration), **(model_options or {})}
    if modality is not None:
        config["modality"] = modality
    if split_seed is not None:
        config["split_seed"] = int(split_seed)
    _, metrics = train_model(
        config,
        splits,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        modality_dropout=modality_dropout,
        progress=progress,
        device=device,
        out=out,
    )
    out = Path(out)
    atomic_write(out.with_suffix(".json"), (json.dumps({"checkpoint": out.name, **metrics}, indent=2) + "\n").encode())
    return metrics
