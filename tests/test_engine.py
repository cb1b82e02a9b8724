"""The evaluation engine: every sample in every cell, encoder reuse, resume, bad input.

The models here are small real torch modules (encode/fuse/forward), and the data are real
`MultimodalData` built from seeded random tensors, so the tests run in seconds.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mm.corruptions import apply_condition
from robustbench_mm.datasets.batch import ModalitySpec, MultimodalData
from robustbench_mm.engine import cell_id, evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import parse_protocol
from robustbench_mm.results import load_run, load_runs

N, CLASSES = 37, 3

PROTOCOL = """
name = "tiny"
description = "noise on each modality, leave-one-out removal, conflict"
seed = 7
metrics = ["accuracy"]

[[corruption]]
corruptions = ["gaussian_noise"]
targets = "each"
levels = [2, 5]
rates = [1.0, 0.5]

[[removal]]
subsets = "leave-one-out"
fills = ["zero", "mask"]
rates = [0.5]

[[conflict]]
targets = ["img"]
rates = [0.5]
"""


class TinyFusion(nn.Module):
    """Per-modality linear encoders, features of absent modalities zeroed, a linear head."""

    def __init__(self, specs: dict[str, ModalitySpec], classes: int = CLASSES, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.specs = dict(specs)
        self.encoders = nn.ModuleDict(
            {m: nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(s.shape)), 8), nn.Tanh()) for m, s in specs.items()}
        )
        self.head = nn.Linear(8 * len(specs), classes)

    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.encoders[name](x)

    def fuse(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        parts = []
        for m in self.encoders:
            f = features[m]
            if present is not None:
                f = f * present[m][:, None].to(f.dtype)
            parts.append(f)
        return self.head(torch.cat(parts, dim=1))

    def forward(self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.fuse({m: self.encode(m, inputs[m]) for m in self.encoders}, present)


class BlackBox(nn.Module):
    """A foreign model: forward(inputs) only, no encode/fuse."""

    def __init__(self, inner: TinyFusion):
        super().__init__()
        self.inner = inner

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner(inputs)


def tiny_data(n: int = N, seed: int = 0) -> MultimodalData:
    g = torch.Generator().manual_seed(seed)
    specs = {
        "img": ModalitySpec("img", "image", (1, 4, 4), value_range=(0.0, 1.0), mean=torch.full((1, 4, 4), 0.5), std=torch.full((1, 4, 4), 0.2)),
        "vec": ModalitySpec("vec", "vector", (6,), mean=torch.zeros(6), std=torch.ones(6)),
        "aux": ModalitySpec("aux", "vector", (5,), mean=torch.zeros(5), std=torch.ones(5)),
    }
    labels = torch.arange(n) % CLASSES
    inputs = {
        "img": torch.rand(n, 1, 4, 4, generator=g),
        "vec": torch.randn(n, 6, generator=g) + labels[:, None].float(),
        "aux": torch.randn(n, 5, generator=g),
    }
    return MultimodalData(
        name="tiny", split="test", specs=specs, inputs=inputs, labels=labels,
        ids=torch.arange(1000, 1000 + n, dtype=torch.int64), num_classes=CLASSES, source="test",
    )


def tiny_models(data: MultimodalData) -> list[nn.Module]:
    a, b = TinyFusion(data.specs, seed=1), TinyFusion(data.specs, seed=2)
    return [a, BlackBox(b)]


def run_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((path / "samples").glob("*.npz"))}


def cells_without_seconds(path: Path):
    return load_run(path).cells.drop(columns=["seconds"])


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(PROTOCOL, source="tiny.toml")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, protocol):
    """One uninterrupted run with batch size 8 (37 samples: a remainder batch of 5)."""
    data = tiny_data()
    out = tmp_path_factory.mktemp("ref") / "run"
    run = evaluate(tiny_models(data), data, protocol, out=out, device="cpu", batch_size=8, progress=False)
    return out, run


def test_every_sample_in_every_cell(reference, protocol):
    out, run = reference
    data = tiny_data()
    conditions = protocol.expand(data.specs)
    assert len(run.cells) == 2 * len(conditions)
    assert (run.cells["n"] == N).all()
    for cid in run.cells["cell_id"]:
        ids = run.samples(cid)["ids"]
        assert np.array_equal(ids, data.ids.numpy())


def test_records_match_an_independent_forward_pass(reference, protocol):
    out, run = reference
    data = tiny_data()
    model = tiny_models(data)[0]
    condition = next(c for c in protocol.expand(data.specs) if c.family == "corruption" and c.rate == 0.5)
    whole = next(data.batches(N))
    with torch.no_grad():
        logits = model(apply_condition(whole, condition, data.specs, seed=protocol.seed).inputs).double()
    p = torch.softmax(logits, -1).numpy()
    rec = run.samples(cell_id("tinyfusion", 0, condition))
    target = data.labels.numpy()
    assert np.array_equal(rec["pred"], p.argmax(1))
    np.testing.assert_allclose(rec["conf"], p.max(1), rtol=1e-5)
    np.testing.assert_allclose(rec["p_true"], p[np.arange(N), target], rtol=1e-5)
    np.testing.assert_allclose(rec["sq_prob"], (p**2).sum(1), rtol=1e-5)
    np.testing.assert_allclose(rec["entropy"], -(p * np.log(p)).sum(1), rtol=1e-5)
    assert 0 < rec["affected"].sum() < N  # rate 0.5
    row = run.cells.set_index("cell_id").loc[cell_id("tinyfusion", 0, condition)]
    assert row["accuracy"] == pytest.approx((p.argmax(1) == target).mean())


def test_brier_and_confidence_match_float64_references(reference, protocol):
    """Brier against sklearn's brier_score_loss and the entropy confidence against its definition,
    both on float64 softmax of the logits: the per-sample fields they average are float64, so the
    cell values agree to rounding (from float32 fields they were 8e-9 off)."""
    from sklearn.metrics import brier_score_loss

    out, run = reference
    data = tiny_data()
    model = tiny_models(data)[0]
    condition = next(c for c in protocol.expand(data.specs) if c.family == "corruption")
    with torch.no_grad():
        logits = model(apply_condition(next(data.batches(N)), condition, data.specs, seed=protocol.seed).inputs).double()
    p = torch.softmax(logits, -1).numpy()
    k = p.shape[1]
    target = data.labels.numpy()
    rec = run.samples(cell_id("tinyfusion", 0, condition))
    assert {rec[f].dtype for f in ("p_true", "sq_prob", "entropy")} == {np.dtype(np.float64)}
    row = run.cells.set_index("cell_id").loc[cell_id("tinyfusion", 0, condition)]
    assert row["brier"] == pytest.approx(brier_score_loss(target, p, labels=list(range(k))), rel=1e-12, abs=1e-14)
    confidence = 1.0 - (-(p * np.log(p)).sum(1)) / np.log(k)
    assert row["confidence"] == pytest.approx(confidence.mean(), rel=1e-12, abs=1e-14)


def test_clean_cell_unaffected_and_perturbation_changes_predictions(reference):
    out, run = reference
    clean = run.samples(run.cells.query("family == 'clean' and model == 'tinyfusion'")["cell_id"].iloc[0])
    assert not clean["affected"].any()
    noisy = run.cells.query("name == 'gaussian_noise' and modalities == 'vec' and level == 5 and rate == 1 and model == 'tinyfusion'")
    rec = run.samples(noisy["cell_id"].iloc[0])
    assert rec["affected"].all()
    assert not np.array_equal(rec["conf"], clean["conf"])


def test_encoder_reuse_gives_identical_records(tmp_path, reference, protocol):
    out, _ = reference
    data = tiny_data()
    full = evaluate(tiny_models(data), data, protocol, out=tmp_path / "full", device="cpu", batch_size=8,
                    progress=False, reuse_encoders=False)
    assert run_files(tmp_path / "full") == run_files(out)
    assert full.cells.drop(columns=["seconds"]).equals(cells_without_seconds(out))


def test_batch_size_does_not_change_records(tmp_path, reference, protocol):
    out, _ = reference
    data = tiny_data()
    evaluate(tiny_models(data), data, protocol, out=tmp_path / "b5", device="cpu", batch_size=5, progress=False)
    a, b = load_run(out), load_run(tmp_path / "b5")
    for cid in a.cells["cell_id"]:
        ra, rb = a.samples(cid), b.samples(cid)
        assert np.array_equal(ra["pred"], rb["pred"]) and np.array_equal(ra["affected"], rb["affected"])
        np.testing.assert_allclose(ra["conf"], rb["conf"], rtol=1e-6)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identical(tmp_path, reference, protocol):
    out, _ = reference
    data = tiny_data()
    seen: list[str] = []

    def stop_after_five(cid: str) -> None:
        seen.append(cid)
        if len(seen) == 5:
            raise Interrupt

    # a tiny buffer forces several chunks (passes), so the interruption falls between chunks
    kwargs = dict(device="cpu", batch_size=8, progress=False, buffer_mb=0.01)
    with pytest.raises(Interrupt):
        evaluate(tiny_models(data), data, protocol, out=tmp_path / "r", on_cell=stop_after_five, **kwargs)
    assert len(run_files(tmp_path / "r")) == 5
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["complete"] is False
    damaged = tmp_path / "r" / "samples" / f"{seen[0]}.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])  # as a power loss could leave it
    resumed: list[str] = []
    run = evaluate(tiny_models(data), data, protocol, out=tmp_path / "r", on_cell=resumed.append, **kwargs)
    # the damaged cell and those whose time the interrupted chunk never wrote are evaluated again
    assert set(resumed) & set(seen) == {seen[0]} | (set(seen) - set(manifest["cell_seconds"]))
    assert run.cells["seconds"].notna().all()
    assert run.complete
    assert run_files(tmp_path / "r") == run_files(out)
    assert cells_without_seconds(tmp_path / "r").equals(cells_without_seconds(out))
    assert (tmp_path / "r" / "cells.csv").read_text().count("\n") == len(run.cells) + 1


def test_changed_protocol_or_model_is_refused_and_overwrite_starts_over(tmp_path, protocol):
    data = tiny_data()
    out = tmp_path / "run"
    evaluate(tiny_models(data), data, protocol, out=out, device="cpu", batch_size=16, progress=False)
    other = parse_protocol(PROTOCOL.replace("seed = 7", "seed = 8"), source="tiny.toml")
    with pytest.raises(InputError, match=r"holds a different run \(changed: protocol\).*--overwrite"):
        evaluate(tiny_models(data), data, other, out=out, device="cpu", progress=False)
    models = tiny_models(data)
    models[0] = TinyFusion(data.specs, seed=99)
    with pytest.raises(InputError, match=r"changed: models"):
        evaluate(models, data, protocol, out=out, device="cpu", progress=False)
    before = run_files(out)
    run = evaluate(tiny_models(data), data, other, out=out, device="cpu", progress=False, overwrite=True)
    assert run.manifest.protocol.hash == other.hash
    assert run_files(out).keys() == before.keys() and run_files(out) != before


def test_out_folder_that_is_not_a_run_or_not_writable(tmp_path, protocol):
    data = tiny_data()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("mine")
    with pytest.raises(InputError, match="not empty and holds no run"):
        evaluate(tiny_models(data), data, protocol, out=tmp_path / "busy", device="cpu", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create output folder"):
        evaluate(tiny_models(data), data, protocol, out=tmp_path / "file" / "run", device="cpu", progress=False)


def test_full_disk_keeps_finished_cells_and_resumes(tmp_path, reference, protocol, monkeypatch):
    """A write failing with ENOSPC becomes an InputError that says what was kept; resuming completes."""
    import robustbench_mm.results as results

    out, _ = reference
    data = tiny_data()
    real_replace = results.os.replace
    calls = {"n": 0}

    def replace_until_full(src, dst):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", replace_until_full)
    with pytest.raises(InputError, match=r"disk full .* finished cells .* are kept"):
        evaluate(tiny_models(data), data, protocol, out=tmp_path / "r", device="cpu", batch_size=8, progress=False)
    monkeypatch.setattr(results.os, "replace", real_replace)
    kept = run_files(tmp_path / "r")
    assert kept and all(out_bytes == run_files(out)[k] for k, out_bytes in kept.items())
    assert not list((tmp_path / "r" / "samples").glob(".*tmp*"))
    evaluate(tiny_models(data), data, protocol, out=tmp_path / "r", device="cpu", batch_size=8, progress=False)
    assert run_files(tmp_path / "r") == run_files(out)


def test_model_data_mismatch_names_model_and_modality(tmp_path, protocol):
    data = tiny_data()
    wrong = dict(data.specs)
    wrong["vec"] = ModalitySpec("vec", "vector", (7,))
    with pytest.raises(InputError, match=r"model 'tinyfusion'.*modality 'vec' has shape \(6,\).*expects \(7,\)"):
        evaluate([TinyFusion(wrong)], data, protocol, out=tmp_path / "a", device="cpu", progress=False)
    fewer = {k: v for k, v in data.specs.items() if k != "aux"}
    with pytest.raises(InputError, match=r"'aux'.*does not use"):
        evaluate([TinyFusion(fewer)], data, protocol, out=tmp_path / "b", device="cpu", progress=False)
    with pytest.raises(InputError, match=r"model 'blackbox' failed on dataset 'tiny'"):
        evaluate([BlackBox(TinyFusion(data.specs))], _shape_changed(data), protocol, out=tmp_path / "c",
                 device="cpu", progress=False)
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").rglob("*.npz"))


def _shape_changed(data: MultimodalData) -> MultimodalData:
    """The same data with one more feature in `vec`: a black box built for 6 features fails on it."""
    specs = dict(data.specs)
    specs["vec"] = ModalitySpec("vec", "vector", (7,), mean=torch.zeros(7), std=torch.ones(7))
    inputs = dict(data.inputs)
    inputs["vec"] = torch.cat([inputs["vec"], torch.zeros(len(data), 1)], 1)
    return MultimodalData(name="tiny", split="test", specs=specs, inputs=inputs, labels=data.labels, ids=data.ids, num_classes=CLASSES)


def test_unknown_modality_in_protocol(tmp_path):
    data = tiny_data()
    bad = parse_protocol(PROTOCOL.replace('targets = ["img"]', 'targets = ["depth"]'), source="bad.toml")
    with pytest.raises(InputError, match=r"bad.toml: key 'conflict\[0\].targets': modality 'depth' is not in the data"):
        evaluate(tiny_models(data), data, bad, out=tmp_path / "x", device="cpu", progress=False)


def test_seeds_repeat_the_randomness(tmp_path, protocol):
    data = tiny_data()
    run = evaluate([TinyFusion(data.specs, seed=1)], data, protocol, out=tmp_path / "s", device="cpu",
                   seeds=[0, 1], progress=False)
    assert sorted(run.cells["seed"].unique()) == [0, 1]
    cells = run.cells.set_index(["seed", "condition"])
    clean0, clean1 = (run.samples(cells.loc[(s, "clean|clean|-|l=0|r=1"), "cell_id"]) for s in (0, 1))
    assert np.array_equal(clean0["conf"], clean1["conf"])
    key = "corruption|gaussian_noise|vec|l=5|r=1"
    n0, n1 = (run.samples(cells.loc[(s, key), "cell_id"]) for s in (0, 1))
    assert not np.array_equal(n0["conf"], n1["conf"])


def test_progress_bar_only_when_asked(tmp_path, protocol, capsys):
    data = tiny_data(n=10)
    evaluate(tiny_models(data), data, protocol, out=tmp_path / "q", device="cpu", progress=False)
    assert capsys.readouterr().err == ""
    evaluate(tiny_models(data), data, protocol, out=tmp_path / "p", device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "tiny" in err and "cells" in err
    evaluate(tiny_models(data), data, protocol, out=tmp_path / "t", device="cpu")  # stderr is not a TTY here
    assert capsys.readouterr().err == ""


def test_manifest_and_combined_runs(reference, tmp_path, protocol):
    out, run = reference
    m = run.manifest
    assert m.complete is True
    assert m.version == 2 and m.protocol.hash == protocol.hash
    assert m.dataset.fingerprint == tiny_data().fingerprint()
    assert {d.name for d in m.models} == {"tinyfusion", "blackbox"}
    assert set(m.cell_seconds) == set(run.cells["cell_id"])
    assert {"torch", "robustbench_mm"} <= set(m.package)
    data = tiny_data()
    evaluate([TinyFusion(data.specs, seed=5)], data, protocol, out=tmp_path / "seed5", device="cpu", progress=False)
    both = load_runs([out, tmp_path / "seed5"])
    assert set(both.cells["run"]) == {"run", "seed5"}
    assert len(both.cells) == len(run.cells) + len(run.cells) // 2
    cid = both.cells.query("run == 'seed5'")["cell_id"].iloc[0]
    assert both.samples("seed5", cid)["ids"].shape == (N,)


def test_regression_records_raw_outputs(tmp_path, protocol):
    base = tiny_data()
    data = MultimodalData(
        name="tiny-reg", split="test", specs=base.specs, inputs=base.inputs, labels=base.labels.float() * 0.5,
        ids=base.ids, task="regression",
    )
    model = TinyFusion(data.specs, classes=1, seed=3)
    run = evaluate([model], data, protocol, out=tmp_path / "reg", device="cpu", batch_size=8, progress=False)
    assert (run.cells["n"] == N).all()
    rec = run.samples(run.cells["cell_id"].iloc[0])
    assert sorted(rec) == ["affected", "ids", "output", "target"]
    with torch.no_grad():
        expected = model(data.inputs)[:, 0].numpy()
    np.testing.assert_allclose(rec["output"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rec["target"], data.labels.numpy())


KILLER = """
import os, signal, sys, torch
sys.path[:0] = [{tests!r}, {root!r}]
torch.set_num_threads(1)
from test_engine import PROTOCOL, tiny_data, tiny_models
from robustbench_mm.engine import evaluate
from robustbench_mm.protocols import parse_protocol
done = []
def kill_after_three(cid):
    done.append(cid)
    if len(done) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
data = tiny_data()
evaluate(tiny_models(data), data, parse_protocol(PROTOCOL, source="tiny.toml"), out={out!r}, device="cpu", batch_size=8,
         progress=False, buffer_mb=0.01, on_cell=kill_after_three)
"""


def test_kill_9_then_resume_is_bit_identical(tmp_path, reference, protocol):
    import subprocess
    import sys

    out, _ = reference
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "killed.py"
    script.write_text(KILLER.format(tests=str(root / "tests"), root=str(root), out=str(tmp_path / "k")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert len(run_files(tmp_path / "k")) == 3
    data = tiny_data()
    run = evaluate(tiny_models(data), data, protocol, out=tmp_path / "k", device="cpu", batch_size=8, progress=False)
    assert run.complete
    assert run_files(tmp_path / "k") == run_files(out)
    assert cells_without_seconds(tmp_path / "k").equals(cells_without_seconds(out))


# --------------------------------------------------------------------------- fault cases (issue 11)

ONE_CELL = parse_protocol(
    'name = "one"\ndescription = "noise on vec"\nseed = 3\n[[corruption]]\ncorruptions = ["gaussian_noise"]\n'
    'targets = ["vec"]\nlevels = [3]\n',
    source="one.toml",
)


class Poisoned(nn.Module):
    """TinyFusion whose logits are `value` for the samples whose row in the batch is >= `from_row`
    (so a batch of 2, the engine's probe, is clean when from_row >= 2) and whose id is in `ids`."""

    def __init__(self, inner: nn.Module, value: float, from_row: int = 0, ids: set[int] | None = None):
        super().__init__()
        self.inner, self.value, self.from_row, self.ids = inner, value, from_row, ids

    def forward(self, inputs):
        out = self.inner(inputs)
        rows = torch.arange(out.shape[0]) >= self.from_row
        if self.ids is not None:
            rows &= torch.isin(self._ids, torch.tensor(sorted(self.ids)))
        return torch.where(rows[:, None], torch.full_like(out, self.value), out)


class _IdsFromInput(Poisoned):
    """Poisoned by sample id: the ids are recovered from the `aux` modality (tagged by the test)."""

    def forward(self, inputs):
        self._ids = inputs["aux"][:, 0].round().long()
        return super().forward(inputs)


@pytest.mark.parametrize("value,from_row", [(float("nan"), 0), (float("inf"), 3), (float("-inf"), 3)])
def test_nonfinite_logits_stop_with_model_cell_and_ids(tmp_path, value, from_row):
    data = tiny_data()
    model = Poisoned(TinyFusion(data.specs), value, from_row)
    with pytest.raises(InputError) as e:
        evaluate([model], data, ONE_CELL, out=tmp_path / "r", device="cpu", batch_size=8, progress=False)
    msg = str(e.value)
    assert "'poisoned'" in msg and "cell poisoned__s0__clean" in msg and "NaN/Inf" in msg
    first = 1000 + from_row  # the first poisoned sample of the first batch
    assert f"ids {first}, {first + 1}, {first + 2}, ..." in msg and "--nonfinite wrong" in msg
    assert "\n" not in msg


def test_nonfinite_wrong_counts_the_samples_as_wrong(tmp_path):
    data = tiny_data()
    tagged = dict(data.inputs, aux=data.inputs["aux"].clone())
    tagged["aux"][:, 0] = data.ids.float()  # the model can see each sample's id
    data = MultimodalData(**{**data.__dict__, "inputs": tagged})
    bad = {1003, 1010, 1011, 1030}
    inner = TinyFusion(data.specs)
    model = _IdsFromInput(inner, float("nan"), ids=bad)
    run = evaluate([model], data, ONE_CELL, out=tmp_path / "r", device="cpu", batch_size=8, progress=False, nonfinite="wrong")
    # independent: the clean model's predictions, with the poisoned samples wrong
    with torch.no_grad():
        pred = inner(data.inputs).argmax(1)
    hit = (pred == data.labels) & ~torch.isin(data.ids, torch.tensor(sorted(bad)))
    clean = run.cells[run.cells["family"] == "clean"].iloc[0]
    assert clean["nonfinite"] == len(bad)
    assert clean["accuracy"] == pytest.approx(hit.double().mean().item(), abs=1e-12)
    assert np.isfinite(run.cells[["accuracy", "nll", "ece", "brier", "macro_f1", "confidence"]].to_numpy()).all()
    assert list(run.cells.columns[:13]) == [*run.cells.columns[:12], "nonfinite"]  # the count follows n
    record = run.samples(clean["cell_id"])
    assert sorted(record["ids"][record["nonfinite"]].tolist()) == sorted(bad)
    assert run.manifest.nonfinite == "wrong"
    assert "NaN/Inf outputs counted as wrong: 8 sample-cells" in run.summary()  # 4 samples x 2 cells


def test_default_run_files_carry_no_nonfinite_traces(reference):
    out, run = reference
    assert "nonfinite" not in run.cells and run.manifest.nonfinite == "error"
    assert all("nonfinite" not in run.samples(c) for c in run.cells["cell_id"])


class IntegerLogits(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, inputs):
        return self.inner(inputs).round().long()


class Wrapped(nn.Module):
    """Returns the logits inside a tuple, a dict with `logits`, or an ambiguous dict."""

    def __init__(self, inner, how: str):
        super().__init__()
        self.inner, self.how = inner, how

    def forward(self, inputs):
        out = self.inner(inputs)
        if self.how == "tuple":
            return out, out.softmax(1)
        if self.how == "dict":
            return {"probs": out.softmax(1), "logits": out}
        return {"a": out, "b": out}


def test_integer_logits_refused(tmp_path):
    data = tiny_data()
    with pytest.raises(InputError, match=r"'integerlogits' returned torch.int64 outputs .*expected floating-point logits"):
        evaluate([IntegerLogits(TinyFusion(data.specs))], data, ONE_CELL, out=tmp_path / "r", device="cpu", progress=False)


@pytest.mark.parametrize("how", ["tuple", "dict"])
def test_tuple_or_dict_outputs_use_the_logits(tmp_path, how):
    data = tiny_data()
    inner = TinyFusion(data.specs)
    plain = evaluate([inner], data, ONE_CELL, out=tmp_path / "a", device="cpu", progress=False)
    wrapped = evaluate([Wrapped(inner, how)], data, ONE_CELL, out=tmp_path / "b", device="cpu", progress=False)
    assert wrapped.cells["accuracy"].tolist() == plain.cells["accuracy"].tolist()


def test_ambiguous_dict_output_is_a_clear_error(tmp_path):
    data = tiny_data()
    with pytest.raises(InputError, match=r"returned a dict with keys 'a', 'b' and no 'logits' tensor"):
        evaluate([Wrapped(TinyFusion(data.specs), "both")], data, ONE_CELL, out=tmp_path / "r", device="cpu", progress=False)


class ShapeOnBigBatches(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, inputs):
        out = self.inner(inputs)
        return out if out.shape[0] <= 2 else out[:, :2]


class FailsOnBigBatches(ShapeOnBigBatches):
    def forward(self, inputs):
        if inputs["vec"].shape[0] > 2:
            raise KeyError("'hidden' missing in a batch of more than two")
        return self.inner(inputs)


def test_wrong_shape_or_failure_only_on_larger_batches(tmp_path):
    data = tiny_data()
    with pytest.raises(InputError, match=r"'shapeonbigbatches': output shape \(8, 2\) in cell shapeonbigbatches__s0__clean.* expected \(8, 3\)"):
        evaluate([ShapeOnBigBatches(TinyFusion(data.specs))], data, ONE_CELL, out=tmp_path / "a", device="cpu", batch_size=8, progress=False)
    with pytest.raises(InputError, match=r"'failsonbigbatches' failed in cell .*KeyError: .*'hidden' missing"):
        evaluate([FailsOnBigBatches(TinyFusion(data.specs))], data, ONE_CELL, out=tmp_path / "b", device="cpu", batch_size=8, progress=False)


def _relabelled(data: MultimodalData, labels: torch.Tensor) -> MultimodalData:
    return MultimodalData(**{**data.__dict__, "labels": labels, "num_classes": int(labels.max()) + 1})


def test_class_count_is_the_model_output_width(tmp_path):
    data = tiny_data()
    model = TinyFusion(data.specs, classes=6)
    some = _relabelled(data, torch.tensor([0, 2, 5])[torch.arange(N) % 3])  # labels {0, 2, 5} of 6 classes
    run = evaluate([model], some, ONE_CELL, out=tmp_path / "a", device="cpu", progress=False)
    assert run.manifest.dataset.num_classes == 6
    with torch.no_grad():
        expected = (model(some.inputs).argmax(1) == some.labels).double().mean().item()
    assert run.cells.loc[0, "accuracy"] == pytest.approx(expected, abs=1e-12)
    all_but_last = _relabelled(data, torch.arange(N) % 5)  # every class but 5
    assert evaluate([model], all_but_last, ONE_CELL, out=tmp_path / "b", device="cpu", progress=False).complete
    too_high = _relabelled(data, torch.arange(N) % 7)
    with pytest.raises(InputError, match=r"has label 6, but model 'tinyfusion' has 6 outputs"):
        evaluate([model], too_high, ONE_CELL, out=tmp_path / "c", device="cpu", progress=False)


def test_overwrite_deletes_only_what_a_run_of_ours_wrote(tmp_path):
    data = tiny_data()
    models = [TinyFusion(data.specs)]
    mine = tmp_path / "mine"
    (mine / "samples").mkdir(parents=True)
    (mine / "samples" / "my_experiment.npz").write_bytes(b"the user's own file")
    for overwrite in (False, True):
        with pytest.raises(InputError, match=r"holds no run .*samples/my_experiment.npz"):
            evaluate(models, data, ONE_CELL, out=mine, device="cpu", progress=False, overwrite=overwrite)
    assert (mine / "samples" / "my_experiment.npz").read_bytes() == b"the user's own file"

    out = tmp_path / "run"
    evaluate(models, data, ONE_CELL, out=out, device="cpu", progress=False)
    ours = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "samples" / "notes.npz").write_bytes(b"mine")
    with pytest.raises(InputError, match=r"--overwrite would delete .*samples/notes.npz, which the run .* did not write"):
        evaluate(models, data, ONE_CELL, out=out, device="cpu", progress=False, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted([*ours, Path("samples/notes.npz")])
    (out / "samples" / "notes.npz").unlink()
    # a run killed after writing a cell but before the manifest named it: that cell is still ours
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["cell_seconds"] = {}
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert evaluate(models, data, ONE_CELL, out=out, device="cpu", progress=False, overwrite=True).complete


def test_manifest_complete_is_false_until_the_last_cell(tmp_path):
    data = tiny_data()
    seen = []

    def look(cid):
        seen.append(json.loads((tmp_path / "r" / "manifest.json").read_text())["complete"])

    run = evaluate([TinyFusion(data.specs)], data, ONE_CELL, out=tmp_path / "r", device="cpu", progress=False, on_cell=look)
    assert seen == [False, False] and run.manifest.complete is True and run.manifest.plugins == ()


@pytest.mark.parametrize("text,why", [("[1, 2]", "holds a JSON list"), ('{"identity": {}}', "field 'dataset' is NoneType"),
                                      ('{"identity": 3, "cell_seconds": {}}', "version 1 without an 'identity' object"),
                                      ('{"version": 7}', "manifest version 7; this robustbench-mm reads versions 1 and 2")])
def test_out_folder_with_a_foreign_manifest(tmp_path, text, why):
    data = tiny_data()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.json").write_text(text)
    for overwrite in (False, True):
        with pytest.raises(InputError, match=why):
            evaluate([TinyFusion(data.specs)], data, ONE_CELL, out=tmp_path / "r", device="cpu", progress=False, overwrite=overwrite)
    assert (tmp_path / "r" / "manifest.json").read_text() == text


def test_regression_report_uses_regression_wording(tmp_path, protocol):
    from robustbench_mm.report import write_report

    base = tiny_data()
    data = MultimodalData(
        name="tiny-reg", split="test", specs=base.specs, inputs=base.inputs, labels=base.labels.float() * 0.5,
        ids=base.ids, task="regression",
    )
    models = [TinyFusion(data.specs, classes=1, seed=3), BlackBox(TinyFusion(data.specs, classes=1, seed=4))]
    run = evaluate(models, data, protocol, out=tmp_path / "reg", device="cpu", batch_size=8, progress=False)
    md = (write_report(run, tmp_path / "report").parent / "report.md").read_text()  # a Run, not a path
    assert "1 − accuracy" not in md and "mCE (ref." not in md
    assert "with the highest mae (lower is better)" in md


@pytest.mark.parametrize("name", ["reverb", "pink_noise", "brown_noise", "lowpass"])
def test_a_run_begun_with_an_earlier_kernel_revision_is_refused_on_resume(tmp_path, monkeypatch, name):
    """A built-in kernel whose bits changed on purpose (in issue 23, revision 2: reverb's float32
    FFTs; a lone clip's bits in pink, brown and lowpass) must not mix cells of both definitions in
    one run folder: a protocol that can select it hashes its revision, so the run's identity
    differs and resuming is refused."""
    from dataclasses import replace

    from robustbench_mm.corruptions.registry import CORRUPTIONS

    text = (f'name = "r"\ndescription = "{name} where it applies"\nseed = 3\n[[corruption]]\n'
            f'corruptions = ["gaussian_noise", "{name}"]\nlevels = [2]\n')
    data = tiny_data()
    out = tmp_path / "run"
    entry = CORRUPTIONS._entries[name]
    assert entry.obj.revision == 2
    monkeypatch.setitem(CORRUPTIONS._entries, name, replace(entry, obj=replace(entry.obj, revision=1)))
    earlier = parse_protocol(text, source="r.toml")
    evaluate(tiny_models(data), data, earlier, out=out, device="cpu", progress=False)
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"holds a different run \(changed: protocol\)"):
        evaluate(tiny_models(data), data, parse_protocol(text, source="r.toml"), out=out, device="cpu", progress=False)


@pytest.mark.parametrize("name", ["elastic_transform", "tiny-imagenet-c/elastic_transform", "imagenet-c/snow", "tiny-imagenet-c/snow"])
def test_a_run_begun_with_an_imagenet_c_kernel_s_revision_1_is_refused_on_resume(tmp_path, monkeypatch, name):
    """ImageNet-C's elastic transform and snow (both suites) moved bits in issue 23 (revision 2:
    banded smoothing; the zoom of the centre crop alone): a run begun with revision 1 must not be
    resumed with revision 2."""
    from dataclasses import replace

    from robustbench_mm.corruptions.registry import SUITE_CORRUPTIONS, get_corruption

    text = f'name = "e"\ndescription = "one ImageNet-C kernel"\nseed = 3\n[[corruption]]\ncorruptions = ["{name}"]\nlevels = [2]\n'
    data = tiny_data()
    out = tmp_path / "run"
    spec = get_corruption(name)
    assert spec.revision == 2
    monkeypatch.setitem(SUITE_CORRUPTIONS, spec.name, replace(spec, revision=1))
    earlier = parse_protocol(text, source="e.toml")
    evaluate(tiny_models(data), data, earlier, out=out, device="cpu", progress=False)
    monkeypatch.undo()
    now = parse_protocol(text, source="e.toml")
    assert now.hash != earlier.hash
    with pytest.raises(InputError, match=r"holds a different run \(changed: protocol\)"):
        evaluate(tiny_models(data), data, now, out=out, device="cpu", progress=False)
