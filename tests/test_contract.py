"""The input contract: what a model receives per modality, shown by `rbmm show inputs`, recorded
in the manifest; decoded values scaled by one stated rule that `--value-range` changes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from robustbench_mm.cli import main
from robustbench_mm.corruptions.removal import FILLS, fill
from robustbench_mm.corruptions.rng import SampleRandom
from robustbench_mm.datasets import ModalitySpec, load_dataset
from robustbench_mm.datasets.contract import REMOVED, input_contract, kind_warnings, parse_value_ranges, with_value_ranges
from robustbench_mm.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MFEAT_MODEL = ROOT / "results" / "baselines" / "mfeat-concat.pt"


def _npz(tmp_path, n=12, **extra):
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, (n, 1, 6, 6), dtype=np.uint8),
        "feat": rng.normal(size=(n, 4)).astype(np.float32),
        "labels": np.arange(n) % 2,
        **extra,
    }
    path = tmp_path / "own.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_every_fill_is_described_and_the_description_is_what_the_fill_puts_there():
    assert tuple(REMOVED) == FILLS
    spec = ModalitySpec("v", "vector", (3,), mean=torch.tensor([1.0, 2.0, 3.0]), std=torch.ones(3), value_range=(-5.0, 5.0))
    x = torch.randn(4, 3)
    rng = SampleRandom(torch.arange(4), 0, "removal")
    assert REMOVED["zero"] == "zeros" and torch.equal(fill(x, "zero", rng, spec), torch.zeros_like(x))
    assert REMOVED["mask"].startswith("zeros") and torch.equal(fill(x, "mask", rng, spec), torch.zeros_like(x))
    assert REMOVED["mean"] == "the train mean" and torch.equal(fill(x, "mean", rng, spec), spec.mean.expand(4, 3))
    noisy = fill(x, "noise", rng, spec)
    assert not torch.equal(noisy, spec.mean.expand(4, 3)) and noisy.abs().max() <= 5.0
    tokens = ModalitySpec("t", "tokens", (5,), vocab_size=9)
    assert torch.equal(fill(torch.full((2, 5), 7), "mean", rng, tokens), torch.zeros(2, 5, dtype=torch.long))


def test_the_contract_states_dtype_layout_range_and_rule_per_modality(tmp_path):
    path, _ = _npz(tmp_path, tokens=np.ones((12, 3), dtype=np.int64))
    contract = input_contract(load_dataset(str(path)), fills=["mean", "zero"], presence_mask={"m": True})
    doc = contract.to_json()
    image = doc["modalities"]["image"]
    assert (image["dtype"], image["shape"], image["value_range"]) == ("float32", [1, 6, 6], [0.0, 255.0])
    assert "uint8 pixels kept in pixel units 0..255" in image["scaling"]
    assert list(image["removed"]) == ["zero", "mean"]  # in the fills' own order
    assert doc["modalities"]["tokens"]["dtype"] == "int64" and doc["modalities"]["tokens"]["removed"]["mean"].startswith("pad ids")
    assert doc["modalities"]["feat"]["value_range"] is None
    assert doc["presence_mask"] == {"m": True}
    with pytest.raises(InputError, match="removal fill 'blur'"):
        input_contract(load_dataset(str(path)), fills=["blur"])


def test_value_range_rescales_a_known_range_and_declares_a_missing_one(tmp_path):
    path, arrays = _npz(tmp_path)
    data = load_dataset(str(path))
    scaled = with_value_ranges(data, parse_value_ranges(["0,1", "feat=-2,2"]))
    assert torch.equal(scaled.inputs["image"], torch.from_numpy(arrays["image"]).float() / 255)
    assert torch.allclose(scaled.specs["image"].mean, data.specs["image"].mean / 255)
    assert torch.allclose(scaled.specs["image"].std, data.specs["image"].std / 255)
    assert scaled.specs["image"].value_range == (0.0, 1.0) and "onto [0, 1]" in scaled.specs["image"].scaling
    assert torch.equal(scaled.inputs["feat"], data.inputs["feat"]) and scaled.specs["feat"].value_range == (-2.0, 2.0)
    assert data.specs["image"].value_range == (0.0, 255.0), "the original is not mutated"
    assert scaled.fingerprint() != data.fingerprint()
    for bad in (["1,0"], ["x=0,1"], ["=0,1"], ["a,b"]):
        with pytest.raises(InputError, match="--value-range"):
            with_value_ranges(data, parse_value_ranges(bad))


def test_integer_audio_in_a_feature_file_is_scaled_as_the_same_wav_file_is(tmp_path):
    wave = np.random.default_rng(1).integers(-20000, 20000, (12, 50), dtype=np.int16)
    path, _ = _npz(tmp_path, wave=wave)
    data = load_dataset(str(path), kinds={"wave": "audio"})
    buffer = io.BytesIO()
    wavfile.write(buffer, 8000, wave[3])
    from robustbench_mm.datasets.readers.media import decode_wav

    assert np.array_equal(data.inputs["wave"][3].numpy(), decode_wav(buffer.getvalue(), 50))
    assert data.specs["wave"].value_range == (-1.0, 1.0) and "int16 PCM" in data.specs["wave"].scaling


def test_a_name_that_says_audio_or_image_on_another_possible_kind_is_one_warning_naming_kind():
    specs = {
        "audio_feats": ModalitySpec("audio_feats", "vector", (4,)),
        "audio": ModalitySpec("audio", "audio", (4,)),
        "image_rows": ModalitySpec("image_rows", "vector", (16,)),
        "img_seq": ModalitySpec("img_seq", "sequence", (5, 6)),
        "image_odd": ModalitySpec("image_odd", "vector", (15,)),  # not square: --kind image cannot take it
        "audio_spec": ModalitySpec("audio_spec", "image", (1, 8, 8)),  # a spectrogram image, as MultiBench feeds it
        "text": ModalitySpec("text", "sequence", (5, 300)),  # word embeddings: a sequence by design
    }
    lines = kind_warnings(specs)
    assert [line.split("'")[1] for line in lines] == ["audio_feats", "image_rows", "img_seq"]
    assert "--kind audio_feats=audio" in lines[0] and "--kind image_rows=image" in lines[1]
    assert all("\n" not in line for line in lines)


def test_show_inputs_prints_the_contract_and_the_models_presence_mask(tmp_path, capsys):
    path, _ = _npz(tmp_path, audio_feats=np.zeros((12, 3), np.float32))
    assert main(["show", "inputs", "--data", str(path), "--value-range", "0,1"]) == 0
    captured = capsys.readouterr()
    assert "image: image, float32 (B, C, H, W) pixels, per sample (1, 6, 6)" in captured.out
    assert "value range: [0, 1]; uint8 pixels" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--kind audio_feats=audio" in warnings[0]
    assert main(["show", "inputs", "--data", "mfeat", str(MFEAT_MODEL)]) == 0
    assert "model mfeat-concat: forward(inputs, present)" in capsys.readouterr().out
    assert main(["show", "inputs", "--data", str(path), "--value-range", "nope=0,1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1].startswith("rbmm: error: --value-range names modality 'nope'")
    assert main(["show", "protocol", "--data", "mfeat"]) == 2


def test_the_manifest_records_the_contract_with_the_protocols_fills(tmp_path):
    import jsonschema

    assert main(["eval", str(MFEAT_MODEL), "--protocol", "missing", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "r" / "manifest.json").read_text())
    jsonschema.validate(doc, json.loads((ROOT / "robustbench_mm" / "schemas" / "manifest.schema.json").read_text()))
    pix = doc["inputs"]["modalities"]["pix"]
    assert pix["value_range"] == [0.0, 6.0] and set(pix["removed"]) <= set(FILLS) and pix["removed"]
    assert doc["inputs"]["presence_mask"] == {"mfeat-concat": True}


def test_train_warns_about_a_name_that_says_audio_too(tmp_path, capsys):
    rng = np.random.default_rng(2)
    path = tmp_path / "train.npz"
    np.savez(path, audio=rng.normal(size=(30, 16)).astype(np.float32), v=rng.normal(size=(30, 3)).astype(np.float32),
             labels=np.arange(30) % 2)
    assert main(["train", "--data", str(path), "--fusion", "concat", "--epochs", "1", "--out", str(tmp_path / "m.pt"), "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--kind audio=audio" in warnings[0]
