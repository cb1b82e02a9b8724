"""Format independence: the same uint8 images, 16-bit waveforms and labels reach a model as the
same tensors, and give the same clean cell, whether they come from a .npz, an .npy folder, a media
folder (PNG + WAV files) or Hugging Face Parquet."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mm.datasets import load_dataset
from robustbench_mm.datasets.contract import parse_value_ranges, with_value_ranges
from robustbench_mm.engine import evaluate

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")
from scipy.io import wavfile  # noqa: E402

N, SIDE, LENGTH = 10, 6, 40
PROTOCOL = """name = "clean-and-zero"
description = "the clean cell and each modality removed with zeros"
seed = 0
metrics = ["accuracy"]

[[removal]]
group = "leave-one-out"
subsets = "leave-one-out"
fills = ["zero"]
"""


def _originals():
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (N, SIDE, SIDE), dtype=np.uint8)
    waves = rng.integers(-32768, 32767, (N, LENGTH), dtype=np.int16)
    labels = rng.integers(0, 3, N)
    return images, waves, labels


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _wav(wave) -> bytes:
    buffer = io.BytesIO()
    wavfile.write(buffer, 8000, wave)
    return buffer.getvalue()


def _write_all(root):
    """The same samples in four formats; each source with the options it needs."""
    images, waves, labels = _originals()
    np.savez(root / "data.npz", image=images[:, None], audio=waves, labels=labels)
    folder = root / "npy"
    (folder / "image").mkdir(parents=True)
    (folder / "audio").mkdir()
    np.save(folder / "image" / "test_data.npy", images.reshape(N, -1))  # MultiBench's flat rows
    np.save(folder / "audio" / "test_data.npy", waves)
    np.save(folder / "test_labels.npy", labels)
    media = root / "media"
    media.mkdir()
    with open(media / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "audio", "label"])
        for i in range(N):
            (media / f"{i}.png").write_bytes(_png(images[i]))
            (media / f"{i}.wav").write_bytes(_wav(waves[i]))
            writer.writerow([f"{i}.png", f"{i}.wav", int(labels[i])])
    features = datasets.Features({"image": datasets.Image(), "audio": datasets.Audio(), "label": datasets.ClassLabel(num_classes=3)})
    rows = {
        "image": [{"bytes": _png(p), "path": None} for p in images],
        "audio": [{"bytes": _wav(w), "path": None} for w in waves],
        "label": labels.tolist(),
    }
    datasets.Dataset.from_dict(rows).cast(features).to_parquet(root / "hf.parquet")
    return {
        "npz": (str(root / "data.npz"), {"audio": "audio"}),
        "npy-folder": (str(folder), {"audio": "audio"}),
        "media": (str(media), None),
        "parquet": (str(root / "hf.parquet"), None),
    }


class _Probe(nn.Module):
    """A fixed linear model on the raw inputs (pixels / 255 and the waveform)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(SIDE * SIDE + LENGTH, 3)

    def forward(self, inputs):
        x = torch.cat([inputs["image"].flatten(1) / 255, inputs["audio"]], dim=1)
        return self.head(x)


def test_the_same_samples_give_the_same_inputs_and_clean_cell_in_every_format(tmp_path):
    sources = _write_all(tmp_path)
    images, waves, labels = _originals()
    expected_image = torch.from_numpy(images[:, None]).float()
    expected_audio = torch.from_numpy(waves.astype(np.float32) / 32768)
    clean = {}
    for fmt, (path, kinds) in sources.items():
        data = load_dataset(path, kinds=kinds)
        batch = next(data.batches(N))
        assert torch.equal(batch.inputs["image"], expected_image), fmt
        assert torch.equal(batch.inputs["audio"], expected_audio), fmt
        assert batch.labels.tolist() == labels.tolist(), fmt
        assert (data.specs["image"].value_range, data.specs["audio"].value_range) == ((0.0, 255.0), (-1.0, 1.0)), fmt
        unit = with_value_ranges(data, parse_value_ranges(["0,1"]))  # streamed media map each decoded batch
        assert torch.equal(next(unit.batches(N)).inputs["image"], expected_image / 255), fmt
        protocol = tmp_path / "protocol.toml"
        protocol.write_text(PROTOCOL)
        run = evaluate([_Probe()], data, str(protocol), out=tmp_path / f"run-{fmt}", device="cpu", progress=False)
        cell = run.cells[run.cells["family"] == "clean"].iloc[0]
        record = run.samples(cell["cell_id"])
        clean[fmt] = (float(cell["accuracy"]), record["pred"].tolist())
    assert len(set(map(str, clean.values()))) == 1, clean
