"""Hugging Face `datasets` data as the library itself writes it: Parquet with Image()/Audio()/
ClassLabel features, `save_to_disk` Arrow folders (Dataset and DatasetDict) and, in the Python
API, `datasets.Dataset` objects; each read back to the pixels, samples and class names written."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
soundfile = pytest.importorskip("soundfile")
Image = pytest.importorskip("PIL.Image")

from robustbench_mm.cli import main  # noqa: E402
from robustbench_mm.datasets import load_dataset, load_splits  # noqa: E402
from robustbench_mm.errors import InputError  # noqa: E402

N = 8
NAMES = ["cat", "dog", "owl"]


def _originals(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N, 8, 8), dtype=np.uint8)
    waves = rng.integers(-30000, 30000, (N, 120), dtype=np.int16)
    labels = np.arange(N) % 2  # only 2 of the 3 named classes occur
    return images, waves, labels


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _audio_file(wave: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, 8000, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def _hf_dataset(fmt: str = "WAV"):
    """A Dataset with Image(), Audio() and ClassLabel features, as the Hub stores them: the files'
    bytes in struct<bytes, path> columns (cast from their storage, which needs no audio codec)."""
    images, waves, labels = _originals()
    features = datasets.Features({"image": datasets.Image(), "audio": datasets.Audio(), "label": datasets.ClassLabel(names=NAMES)})
    rows = {
        "image": [{"bytes": _png(p), "path": None} for p in images],
        "audio": [{"bytes": _audio_file(w, fmt), "path": f"clip{i}.{fmt.lower()}"} for i, w in enumerate(waves)],
        "label": labels.tolist(),
    }
    return datasets.Dataset.from_dict(rows).cast(features)


def _check(data):
    images, waves, labels = _originals()
    assert data.specs["image"].kind == "image" and data.specs["image"].shape == (1, 8, 8)
    assert torch.equal(data.inputs["image"], torch.from_numpy(images[:, None]).float())
    assert data.specs["image"].value_range == (0.0, 255.0)
    assert data.specs["audio"].kind == "audio" and data.specs["audio"].value_range == (-1.0, 1.0)
    assert torch.equal(data.inputs["audio"], torch.from_numpy(waves.astype(np.float32) / 32768))
    assert data.labels.tolist() == labels.tolist()
    assert data.class_names == NAMES and data.num_classes == 3


def test_hub_parquet_with_image_audio_and_classlabel_reads_back_what_was_written(tmp_path):
    _hf_dataset().to_parquet(tmp_path / "train.parquet")
    _check(load_dataset(str(tmp_path / "train.parquet")))


def test_audio_that_is_not_wav_is_decoded_with_soundfile_to_the_same_samples(tmp_path):
    _hf_dataset("FLAC").to_parquet(tmp_path / "flac.parquet")
    data = load_dataset(str(tmp_path / "flac.parquet"))
    _check(data)
    assert "soundfile" in data.specs["audio"].scaling


def test_save_to_disk_folders_read_as_the_parquet_does(tmp_path):
    ds = _hf_dataset()
    ds.save_to_disk(str(tmp_path / "one"))
    _check(load_dataset(str(tmp_path / "one")))
    datasets.DatasetDict({"train": ds, "validation": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    splits = load_splits(str(tmp_path / "dict"))
    for split in ("train", "val", "test"):
        _check(splits[split])
    assert len({int(i) for s in splits.values() for i in s.ids}) == 3 * N, "ids are unique across splits"


def test_a_dataset_object_is_read_in_the_python_api(tmp_path):
    ds = _hf_dataset()
    _check(load_dataset(ds))
    picked = load_dataset(ds.select([5, 1]))
    assert torch.equal(picked.inputs["image"], torch.from_numpy(_originals()[0][[5, 1], None]).float())
    splits = load_splits(datasets.DatasetDict({"train": ds, "valid": ds, "test": ds}))
    _check(splits["val"])


def test_a_path_only_row_reads_its_file_beside_the_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `datasets` sizes the files at their paths while writing
    images, _, labels = _originals()
    for i, p in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(_png(p))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    rows = {"image": [{"bytes": None, "path": f"{i}.png"} for i in range(N)], "label": labels.tolist()}
    path = tmp_path / "paths.parquet"
    datasets.Dataset.from_dict(rows).cast(features).to_parquet(path)
    assert torch.equal(load_dataset(str(path)).inputs["image"], torch.from_numpy(images[:, None]).float())
    (tmp_path / "3.png").unlink()
    with pytest.raises(InputError, match=r"column 'image' row 3 has no bytes and its path '3.png' is not a file"):
        load_dataset(str(path))


def test_flat_square_rows_in_parquet_are_declarable_images(tmp_path, capsys):
    images, _, labels = _originals()
    path = tmp_path / "flat.parquet"
    datasets.Dataset.from_dict({"image": images.reshape(N, 64).tolist(), "label": labels.tolist()}).to_parquet(path)
    assert load_dataset(str(path)).specs["image"].kind == "tokens"  # 2-D integers, unless declared
    data = load_dataset(str(path), kinds={"image": "image"})
    assert torch.equal(data.inputs["image"], torch.from_numpy(images[:, None]).float())
    assert main(["show", "inputs", "--data", str(path)]) == 0
    assert "--kind image=image" in capsys.readouterr().err
    assert main(["show", "inputs", "--data", str(path), "--kind", "image=image"]) == 0
    assert "per sample (1, 8, 8)" in capsys.readouterr().out


def test_a_struct_column_that_is_not_media_is_one_line(tmp_path):
    path = tmp_path / "odd.parquet"
    datasets.Dataset.from_dict({"x": [{"a": 1}] * 4, "label": [0, 1, 0, 1]}).to_parquet(path)
    assert main(["show", "inputs", "--data", str(path)]) == 2
