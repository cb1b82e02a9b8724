"""Training recipe: learns, is deterministic under its seed, stops early on the best epoch, saves."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_mm.datasets.batch import ModalitySpec, MultimodalData
from robustbench_mm.errors import InputError
from robustbench_mm.models import BACKBONES, load_model, train_and_save, train_model
from robustbench_mm.models.training import _drop_modalities, evaluate_clean

SMALL = {"dim": 8, "width": 16, "hidden": 16}


def _toy_splits(task: str = "classification", kinds: tuple[str, ...] = ("vector", "image"), seed: int = 0):
    """Three classes, each modality carries the class in its mean; separable but noisy."""
    g = torch.Generator().manual_seed(seed)
    sizes = {"train": 90, "val": 45, "test": 45}
    n = sum(sizes.values())
    y = torch.arange(n) % 3
    inputs, specs = {}, {}
    for kind in kinds:
        if kind == "vector":
            x = torch.randn(n, 6, generator=g) + 2.0 * torch.nn.functional.one_hot(y, 6).float()
            specs["vec"] = ModalitySpec("vec", "vector", (6,), mean=x.mean(0), std=x.std(0))
            inputs["vec"] = x
        elif kind == "image":
            x = torch.randn(n, 1, 6, 5, generator=g)
            x[:, 0, :, :] += y.view(-1, 1, 1).float()
            specs["img"] = ModalitySpec("img", "image", (1, 6, 5), mean=x.mean(0), std=x.std(0))
            inputs["img"] = x
        elif kind == "sequence":
            x = torch.randn(n, 10, 3, generator=g) + y.view(-1, 1, 1).float()
            specs["seq"] = ModalitySpec("seq", "sequence", (10, 3), mean=x.mean((0, 1)), std=x.std((0, 1)))
            inputs["seq"] = x
        elif kind == "audio":
            t = torch.arange(64).float()
            x = torch.sin(0.3 * (y.view(-1, 1) + 1).float() * t) + 0.3 * torch.randn(n, 64, generator=g)
            specs["aud"] = ModalitySpec("aud", "audio", (64,), mean=x.mean(), std=x.std())
            inputs["aud"] = x
        elif kind == "tokens":
            x = torch.randint(2, 12, (n, 9), generator=g)
            x[:, :3] = 12 + y.view(-1, 1)
            x[:, -2:] = 0  # padding
            specs["tok"] = ModalitySpec("tok", "tokens", (9,), vocab_size=16)
            inputs["tok"] = x
    labels = y if task == "classification" else y.float() + 0.1 * torch.randn(n, generator=g)
    ids = torch.arange(n, dtype=torch.int64)
    out, lo = {}, 0
    for split, size in sizes.items():
        idx = torch.arange(lo, lo + size)
        lo += size
        out[split] = MultimodalData(
            name="toy",
            split=split,
            specs=specs,
            inputs={k: v[idx] for k, v in inputs.items()},
            labels=labels[idx],
            ids=ids[idx],
            task=task,
            num_classes=3 if task == "classification" else None,
        )
    return out


@pytest.fixture(scope="module")
def splits():
    return _toy_splits()


def _train(splits, **kw):
    args = dict(seed=0, epochs=6, batch_size=16, lr=5e-3, patience=3, progress=False)
    args.update(kw)
    config = {"fusion": args.pop("fusion", "concat"), "calibration": args.pop("calibration", False), **SMALL}
    if config["fusion"] == "unimodal":  # one modality, nothing to calibrate
        config.update(modality=next(iter(splits["train"].specs)), calibration=False)
    return train_model(config, splits, **args)


def test_learns_a_separable_problem(splits):
    model, metrics = _train(splits, epochs=15, patience=15)
    assert metrics["val"]["accuracy"] >= 0.9 and metrics["test"]["accuracy"] >= 0.9
    assert metrics["test"] == evaluate_clean(model, splits["test"])


def test_same_seed_same_model_other_seed_other_model(splits):
    a, ma = _train(splits, seed=3)
    b, mb = _train(splits, seed=3)
    c, _ = _train(splits, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["val"] == mb["val"] and ma["test"] == mb["test"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_global_rng_and_threads_untouched(splits):
    before, threads = torch.random.get_rng_state(), torch.get_num_threads()
    _train(splits, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_early_stopping_keeps_the_best_epoch(splits):
    _, metrics = _train(splits, epochs=40, patience=2, lr=5e-2)
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= metrics["best_epoch"] + 2


@pytest.mark.parametrize("fusion", BACKBONES.names())
def test_every_fusion_trains_on_every_kind(fusion):
    splits = _toy_splits(kinds=("vector", "sequence", "audio", "tokens"))
    model, metrics = _train(splits, fusion=fusion, calibration=True, epochs=2, modality_dropout=0.3)
    assert 0.0 <= metrics["val"]["accuracy"] <= 1.0 and torch.isfinite(torch.tensor(metrics["val"]["loss"]))
    assert metrics["test"]["n"] == 45


def test_regression(splits):
    reg = _toy_splits(task="regression")
    model, metrics = _train(reg, epochs=8, patience=8)
    target = reg["test"].labels
    baseline_rmse = float((target - target.mean()).pow(2).mean().sqrt())
    assert metrics["test"]["rmse"] < baseline_rmse
    assert model(reg["test"].inputs).shape == (45,)


def test_modality_dropout_keeps_one_modality_and_mean_fills(splits):
    model, _ = _train(splits, epochs=1)
    x = {k: v[:40] for k, v in splits["train"].inputs.items()}
    g = torch.Generator().manual_seed(0)
    out, present = _drop_modalities(model, x, 0.6, g)
    kept = torch.stack([present[m] for m in model.modalities], 1)
    assert kept.any(1).all() and not kept.all()
    for i, m in enumerate(model.modalities):
        gone = ~present[m]
        mean = splits["train"].specs[m].mean
        assert torch.equal(out[m][gone], mean.expand_as(x[m])[gone])
        assert torch.equal(out[m][~gone], x[m][~gone])


def test_train_and_save_writes_checkpoint_and_metrics(tmp_path, splits):
    out = tmp_path / "zoo" / "m.pt"
    metrics = train_and_save(
        fusion="conv", calibration=True, splits=splits, seed=2, out=out, epochs=2, batch_size=16,
        progress=False, split_seed=5, model_options=SMALL,
    )  # fmt: skip
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["test"] == metrics["test"] and saved["checkpoint"] == "m.pt"
    loaded = load_model(out)
    cfg = loaded.config
    assert (cfg["fusion"], cfg["calibration"], cfg["seed"], cfg["split_seed"], cfg["dataset"]) == ("conv", True, 2, 5, "toy")
    assert evaluate_clean(loaded.module, splits["test"]) == metrics["test"]


def test_bad_training_input(splits):
    with pytest.raises(InputError, match="'val' split"):
        _train({"train": splits["train"]})
    with pytest.raises(InputError, match="modality dropout"):
        _train(splits, modality_dropout=1.0)
    with pytest.raises(InputError, match="batch size"):
        _train(splits, batch_size=0)
    wrong = [ModalitySpec("vec", "vector", (7,)).to_dict(), splits["train"].specs["img"].to_dict()]
    with pytest.raises(InputError, match="vec"):
        train_model({"fusion": "concat", "specs": wrong, "num_classes": 3, **SMALL}, splits, seed=0, epochs=1, progress=False)
    with pytest.raises(InputError, match="fusion"):
        train_model({"fusion": "nope"}, splits, seed=0, epochs=1, progress=False)
    broken = dict(splits)
    bad = splits["val"].inputs["vec"].clone()
    bad[3, 2] = float("nan")
    broken["val"] = MultimodalData(**{**splits["val"].__dict__, "inputs": {**splits["val"].inputs, "vec": bad}})
    with pytest.raises(InputError, match="val split.*NaN"):
        _train(broken)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fusion,calibration",
    [(f, c) for f in ("concat", "transformer", "conv") for c in (False, True)]
    + [(f, False) for f in ("late", "uncertainty-late", "udml", "qmf", "cal")],
)
def test_mfeat_quality_bar(fusion, calibration):
    """The issue's bar: >= 95% clean test accuracy on mfeat (3 views), <= 60 s per model."""
    from robustbench_mm.datasets import load_splits

    _, metrics = train_model({"fusion": fusion, "calibration": calibration}, load_splits("mfeat"), seed=0, progress=False)
    assert metrics["test"]["accuracy"] >= 0.95
    assert metrics["seconds"] <= 60


NEW_METHODS = ("udml", "qmf", "cal", "unimodal")


@pytest.mark.parametrize("fusion", NEW_METHODS)
def test_methods_are_deterministic_under_their_seed(splits, fusion):
    a, ma = _train(splits, fusion=fusion, seed=3, epochs=4)
    b, mb = _train(splits, fusion=fusion, seed=3, epochs=4)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["val"] == mb["val"] and ma["test"] == mb["test"]


@pytest.mark.parametrize("fusion", NEW_METHODS)
def test_methods_round_trip_through_checkpoints_and_the_engine(tmp_path, splits, fusion):
    """Saved, loaded, evaluated by the engine with and without encoder reuse: the same predictions."""
    from robustbench_mm.engine import evaluate
    from robustbench_mm.protocols import parse_protocol

    out = tmp_path / f"{fusion}.pt"
    modality = "img" if fusion == "unimodal" else None
    metrics = train_and_save(
        fusion=fusion, calibration=False, splits=splits, seed=1, out=out, epochs=3, batch_size=16,
        progress=False, model_options=SMALL, modality=modality,
    )  # fmt: skip
    loaded = load_model(out)
    assert loaded.reencodable and loaded.config["fusion"] == fusion
    assert evaluate_clean(loaded.module, splits["test"]) == metrics["test"]
    protocol = parse_protocol(
        'name = "t"\ndescription = "test"\nseed = 0\n[[corruption]]\ngroup = "noise"\ncorruptions = ["gaussian_noise"]\ntargets = "each"\n'
        'levels = [3]\n[[removal]]\ngroup = "loo"\nsubsets = "leave-one-out"\nfills = ["mean"]\n',
        source="t.toml",
    )
    runs = [
        evaluate([loaded], splits["test"], protocol, out=tmp_path / f"r{reuse}", progress=False, batch_size=7,
                 reuse_encoders=reuse)
        for reuse in (True, False)
    ]  # fmt: skip
    a, b = runs
    assert len(a.cells) > 2
    for cid in a.cells["cell_id"]:
        assert (a.samples(cid)["pred"] == b.samples(cid)["pred"]).all()
    clean = a.cells[a.cells["family"] == "clean"]["accuracy"].iloc[0]
    assert clean == metrics["test"]["accuracy"]
