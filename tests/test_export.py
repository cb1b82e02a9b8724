"""Result formats (RobustBench, lm-evaluation-harness), standard errors in cells.csv, kept probabilities.

A small real run (seeded data, a small torch model) is evaluated once; every expected number is
recomputed here from the per-sample records, not taken from the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_mm.cli import main
from robustbench_mm.datasets.batch import ModalitySpec, MultimodalData
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.export import export_run
from robustbench_mm.protocols import parse_protocol
from robustbench_mm.results import load_run

N, CLASSES = 60, 4

PROTOCOL = """
name = "tiny-c"
description = "two ImageNet-C corruptions by their names, and Gaussian noise on the vector"
seed = 3
metrics = ["accuracy", "ece"]

[[corruption]]
corruptions = ["jpeg_compression", "gaussian_noise"]
targets = ["kind:image"]
levels = [1, 3]

[[corruption]]
corruptions = ["gaussian_noise"]
targets = ["vec"]
levels = [5]
rates = [0.5]
"""

# robustbench/utils.py ModelInfo, its fields in order (github:RobustBench/robustbench)
MODEL_INFO_FIELDS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                     "architecture", "eps", "clean_acc", "reported", "corruptions_acc", "corruptions_acc_3d",
                     "corruptions_mce", "corruptions_mce_3d", "autoattack_acc", "footnote"]


class Small(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.img = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.Tanh())
        self.vec = nn.Linear(5, 6)
        self.head = nn.Linear(12, CLASSES)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.img(inputs["img"]), self.vec(inputs["vec"])], dim=1))


def small_data() -> MultimodalData:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N) % CLASSES
    specs = {
        "img": ModalitySpec("img", "image", (3, 8, 8), value_range=(0.0, 1.0)),
        "vec": ModalitySpec("vec", "vector", (5,), mean=torch.zeros(5), std=torch.ones(5)),
    }
    img = (torch.rand(N, 3, 8, 8, generator=g) * 0.5 + labels[:, None, None, None] / (2 * CLASSES)).clamp(0, 1)
    vec = torch.randn(N, 5, generator=g) + labels[:, None].float()
    return MultimodalData(name="small", split="test", specs=specs, inputs={"img": img, "vec": vec}, labels=labels,
                          ids=torch.arange(N, dtype=torch.int64), num_classes=CLASSES, source="test")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "run"
    models = [SimpleNamespace(module=Small(1), name="first"), SimpleNamespace(module=Small(2), name="second")]
    evaluate(models, small_data(), parse_protocol(PROTOCOL, "tiny"), out=folder, device="cpu", batch_size=16,
             progress=False, keep_probabilities=True)
    return load_run(folder)


def _accuracy(run, cell_id: str) -> float:
    s = run.samples(cell_id)
    return float((s["pred"] == s["target"]).mean())


def test_robustbench_json_has_model_info_fields_and_percent_strings(run, tmp_path):
    export_run(run, tmp_path, "robustbench", other_protocol=True)
    cells = run.cells
    for model in ("first", "second"):
        info = json.loads((tmp_path / f"{model}.json").read_text())
        assert list(info) == MODEL_INFO_FIELDS
        own = cells[cells["model"] == model]
        clean = _accuracy(run, own.loc[own["family"] == "clean", "cell_id"].item())
        picked = own[(own["family"] == "corruption") & (own["rate"] == 1.0)]
        assert len(picked) == 4  # two corruptions x two levels on the image; the vector cell has rate 0.5
        mean = np.mean([_accuracy(run, c) for c in picked["cell_id"]])
        assert info["clean_acc"] == str(round(clean * 100, 2))
        assert info["corruptions_acc"] == str(round(mean * 100, 2))
        assert info["dataset"] == "small" and info["name"] == model
        assert info["footnote"].startswith("NOT ImageNet-C: protocol 'tiny-c'; corruptions_acc is the mean over its own 4")


def test_robustbench_refuses_a_protocol_that_is_not_imagenet_c(run, tmp_path, capsys):
    with pytest.raises(InputError, match="protocol 'tiny-c' is not ImageNet-C"):
        export_run(run, tmp_path / "rb", "robustbench")
    assert not (tmp_path / "rb").exists() or not any((tmp_path / "rb").iterdir())
    assert main(["export", str(run.path), "--format", "robustbench", "-o", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--other-protocol" in err


def test_robustbench_csv_reads_back_as_robustbench_reads_it(run, tmp_path):
    export_run(run, tmp_path, "robustbench", other_protocol=True)
    # robustbench/eval.py corruptions_evaluation: pd.read_csv(path, header=[0, 1], index_col=0)
    table = pd.read_csv(tmp_path / "unaggregated_results.csv", header=[0, 1], index_col=0)
    assert list(table.index) == ["first", "second"]
    # RobustBench's column order (gaussian_noise before jpeg_compression) and ImageNet-C's name for jpeg
    assert list(table.columns) == [("gaussian_noise", "1"), ("gaussian_noise", "3"), ("jpeg_compression", "1"), ("jpeg_compression", "3")]
    cells = run.cells
    row = cells[(cells["model"] == "second") & (cells["name"] == "imagenet-c/jpeg_compression") & (cells["level"] == 3)]
    assert table.loc["second", ("jpeg_compression", "3")] == pytest.approx(_accuracy(run, row["cell_id"].item()))


def test_lm_eval_results_layout_metrics_and_stderr(run, tmp_path):
    export_run(run, tmp_path, "lm-eval")
    (path,) = (tmp_path / "first").iterdir()
    doc = json.loads(path.read_text())
    for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "git_hash", "date"):
        assert key in doc, key
    assert doc["git_hash"] == run.manifest.package["git"]
    own = run.cells[run.cells["model"] == "first"]
    assert set(doc["results"]) == set(own["condition"])
    for _, row in own.iterrows():
        entry = doc["results"][row["condition"]]
        p, n = _accuracy(run, row["cell_id"]), int(row["n"])
        assert entry["accuracy,none"] == pytest.approx(p)
        assert entry["accuracy_stderr,none"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))  # binomial, n - 1
        assert doc["n-samples"][row["condition"]] == {"original": N, "effective": n}
    task = own["condition"].iloc[0]
    assert doc["higher_is_better"][task]["accuracy"] is True and doc["higher_is_better"][task]["nll"] is False
    assert doc["config"]["model"] == "first"


def _get_results_filenames(filenames: list[str]) -> list[str]:
    """lm-evaluation-harness lm_eval/utils.py get_results_filenames: the aggregated results files."""
    return [f for f in filenames if "/results_" in f and ".json" in f]


def _get_file_datetime(filename: str) -> str:
    """lm-evaluation-harness lm_eval/utils.py get_file_datetime: the time stamp after the last '_'."""
    return filename[filename.rfind("_") + 1:].replace(".jsonl", "")


def test_lm_eval_reads_our_file_name_and_float_date(run, tmp_path):
    export_run(run, tmp_path, "lm-eval")
    files = [str(p) for p in (tmp_path / "second").iterdir()]
    (found,) = _get_results_filenames(files)
    doc = json.loads(open(found).read())
    assert isinstance(doc["date"], float)  # lm-eval's evaluator writes time.time()
    started = datetime.fromisoformat(run.manifest.started)
    assert doc["date"] == pytest.approx(started.timestamp())
    # the name carries the same moment as lm-eval's tracker writes it: ISO time with ':' -> '-'
    stamp = _get_file_datetime(found).removesuffix(".json")
    assert datetime.fromisoformat(stamp[:10] + stamp[10:].replace("-", ":")).replace(tzinfo=timezone.utc) == started


def test_cells_csv_has_a_standard_error_per_metric(run):
    cells = run.cells
    metrics = ["accuracy", "macro_f1", "nll", "ece", "brier", "confidence"]
    assert all(m + "_se" in cells for m in metrics)
    row = cells.iloc[0]
    s = run.samples(row["cell_id"])
    nll = -np.log(np.clip(s["p_true"].astype(np.float64), 1e-12, 1.0))
    assert row["nll_se"] == pytest.approx(nll.std(ddof=1) / math.sqrt(len(nll)))  # jackknife of a mean = s / sqrt(n)


def _ece(probs: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    """Guo et al. (2017) ECE, written out independently: equal-width bins (lo, hi] of the top probability."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == target
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_kept_probabilities_recompute_ece_of_every_cell(run):
    for _, row in run.cells.iterrows():
        s = run.samples(row["cell_id"])
        probs = s["probs"].astype(np.float64)
        assert probs.shape == (row["n"], CLASSES)
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert np.array_equal(probs.argmax(axis=1), s["pred"])
        assert _ece(probs, s["target"]) == pytest.approx(row["ece"], abs=1e-6)


def test_probabilities_are_not_kept_by_default_and_need_classification(tmp_path):
    model = SimpleNamespace(module=Small(1), name="first")
    evaluate([model], small_data(), parse_protocol(PROTOCOL, "tiny"), out=tmp_path / "plain", device="cpu", progress=False)
    plain = load_run(tmp_path / "plain")
    assert "probs" not in plain.samples(plain.cells["cell_id"].iloc[0])
    data = small_data()
    regression = MultimodalData(name="r", split="test", specs=data.specs, inputs=data.inputs, labels=data.labels.float(),
                                ids=data.ids, num_classes=None, source="test", task="regression")
    with pytest.raises(InputError, match="--keep-probabilities needs a classification dataset"):
        evaluate([model], regression, parse_protocol(PROTOCOL, "tiny"), out=tmp_path / "r", device="cpu",
                 progress=False, keep_probabilities=True)


def test_export_errors_are_one_line(run, tmp_path):
    with pytest.raises(InputError, match="unknown export format 'csv'; expected one of: lm-eval, robustbench"):
        export_run(run, tmp_path, "csv")
    with pytest.raises(InputError, match="not a run folder"):
        export_run(tmp_path, tmp_path / "out", "lm-eval")


def test_cli_export_writes_both_formats(run, tmp_path, capsys):
    assert main(["export", str(run.path), "--format", "robustbench", "--other-protocol", "-o", str(tmp_path / "rb")]) == 0
    assert (tmp_path / "rb" / "unaggregated_results.csv").is_file()
    assert main(["export", str(run.path), "--format", "lm-eval", "-o", str(tmp_path / "lm")]) == 0
    assert [p.name for p in (tmp_path / "lm" / "second").glob("results_*.json")]
    capsys.readouterr()
    assert main(["export", str(run.path), "--format", "nope", "-o", str(tmp_path / "x")]) == 2  # one line naming the formats
    assert "unknown export format 'nope'; expected one of: lm-eval, robustbench" in capsys.readouterr().err
