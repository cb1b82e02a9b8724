"""MultiBench parity: our readers give the samples, in the order and with the values, that
MultiBench's own loaders give. The loaders are re-implemented here from their documented logic
(pliang279/MultiBench): datasets/affect/get_data.py `drop_entry` + `Affectdataset.__init__`, and
datasets/avmnist/get_data.py `get_dataloader`."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import torch

from robustbench_mm.cli import main
from robustbench_mm.datasets import load_splits
from robustbench_mm.datasets.contract import parse_value_ranges, with_value_ranges

# ------------------------------------------------------------------ affect pickles (MOSI, MOSEI...)


def _affect_pickle(sizes={"train": 9, "valid": 5, "test": 6}, t=4):
    """MultiBench's layout; some segments have no text (all zeros), one has text that starts late."""
    rng = np.random.default_rng(7)
    out = {}
    for split, n in sizes.items():
        text = rng.normal(size=(n, t, 3)).astype(np.float32)
        text[1] = 0.0
        text[n - 1] = 0.0
        text[2, :2] = 0.0  # front padding: kept (its sum is not zero)
        audio = rng.normal(size=(n, t, 2))
        audio[3, 0, 1] = -np.inf
        out[split] = {
            "vision": rng.normal(size=(n, t, 2)).astype(np.float32),
            "audio": audio,
            "text": text,
            "labels": rng.uniform(-3, 3, size=(n, 1, 1)),
            "id": np.array([[f"video{split}{i}", str(i)] for i in range(n)]),
        }
    return out


def _multibench_affect(split: dict) -> dict:
    """drop_entry then Affectdataset.__init__, as get_dataloader applies them to one split."""
    drop = [i for i, k in enumerate(split["text"]) if k.sum() == 0]
    kept = {key: np.delete(value, drop, 0) for key, value in split.items()}
    kept["audio"][kept["audio"] == -np.inf] = 0.0
    return kept


def test_affect_reader_drops_textless_segments_as_multibench_and_keeps_their_ids(tmp_path):
    written = _affect_pickle()
    path = tmp_path / "mosi.pkl"
    path.write_bytes(pickle.dumps(written))
    ours = load_splits(str(path), trust=True)
    for split, stored in (("train", "train"), ("val", "valid"), ("test", "test")):
        theirs = _multibench_affect({k: v.copy() for k, v in written[stored].items()})
        data = ours[split]
        assert len(data) == len(written[stored]["labels"]) - 2
        for m in ("vision", "audio", "text"):
            assert torch.equal(data.inputs[m], torch.from_numpy(theirs[m]).float()), (split, m)
        assert torch.equal(data.labels, torch.from_numpy(theirs["labels"].reshape(-1)).float())
        expected_ids = [
            int.from_bytes(hashlib.sha256("|".join(row).encode()).digest()[:8], "big") >> 1 for row in theirs["id"].tolist()
        ]
        assert data.ids.tolist() == expected_ids
    kept = load_splits(str(path), trust=True, keep_empty_text=True)
    assert [len(kept[s]) for s in ("train", "val", "test")] == [9, 5, 6]
    dropped_id = int.from_bytes(hashlib.sha256(b"videotest1|1").digest()[:8], "big") >> 1
    assert dropped_id in kept["test"].ids.tolist() and dropped_id not in ours["test"].ids.tolist()
    common = [i for i in kept["test"].ids.tolist() if i in ours["test"].ids.tolist()]
    assert common == ours["test"].ids.tolist(), "a segment keeps its id whatever is dropped around it"


def test_keep_empty_text_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "mosi.pkl"
    path.write_bytes(pickle.dumps(_affect_pickle()))
    assert main(["show", "inputs", "--data", str(path), "--trust-data"]) == 0
    assert "(test, 4 samples)" in capsys.readouterr().out
    assert main(["show", "inputs", "--data", str(path), "--trust-data", "--keep-empty-text"]) == 0
    assert "(test, 6 samples)" in capsys.readouterr().out


# ------------------------------------------------------------------ AV-MNIST .npy folders

TRAIN, TEST = 5012, 7  # 5,000 validation rows, as MultiBench's 55000:60000 of 60,000, and 12 left to train on


def _avmnist(root):
    """MultiBench's files: image rows (N, 784) and audio spectrograms (N, H, W), float 0..255; no valid files."""
    rng = np.random.default_rng(3)
    (root / "image").mkdir(parents=True)
    (root / "audio").mkdir()
    written = {}
    for split, n in (("train", TRAIN), ("test", TEST)):
        image = rng.integers(0, 256, size=(n, 784)).astype(np.float32)
        audio = rng.integers(0, 256, size=(n, 6, 5)).astype(np.float32)
        labels = rng.integers(0, 10, size=n).astype(np.float64)
        np.save(root / "image" / f"{split}_data.npy", image)
        np.save(root / "audio" / f"{split}_data.npy", audio)
        np.save(root / f"{split}_labels.npy", labels)
        written[split] = [image, audio, labels]
    return written


def _multibench_avmnist(written) -> dict[str, list[np.ndarray]]:
    """get_dataloader with its defaults (normalize image and audio, unflattened image, unsqueezed
    channels): valid = the last 5,000 training rows, train = the rows before."""
    out = {}
    for split in ("train", "test"):
        image, audio, labels = (a.copy() for a in written[split])
        image /= 255.0
        audio = audio / 255.0
        image = np.expand_dims(image.reshape(len(image), 28, 28), 1)
        audio = np.expand_dims(audio, 1)
        out[split] = [image, audio, labels.astype(int)]
    n = len(out["train"][2])
    out["val"] = [a[n - 5000 : n] for a in out["train"]]
    out["train"] = [a[: n - 5000] for a in out["train"]]
    return out


def test_avmnist_reader_derives_validation_and_feeds_audio_as_an_image_as_multibench(tmp_path):
    written = _avmnist(tmp_path / "avmnist")
    theirs = _multibench_avmnist(written)
    splits = load_splits(str(tmp_path / "avmnist"))
    assert {s: len(d) for s, d in splits.items()} == {"train": TRAIN - 5000, "val": 5000, "test": TEST}
    for split, data in splits.items():
        assert data.specs["audio"].kind == "image" and data.specs["audio"].shape == (1, 6, 5)
        assert data.specs["image"].value_range == (0.0, 255.0) == data.specs["audio"].value_range
        data = with_value_ranges(data, parse_value_ranges(["0,1", "audio=0,1"]))
        image, audio, labels = theirs[split]
        assert torch.equal(data.inputs["image"], torch.from_numpy(image)), split
        assert torch.equal(data.inputs["audio"], torch.from_numpy(audio)), split
        assert data.labels.tolist() == labels.tolist(), split
    train_ids, val_ids = set(splits["train"].ids.tolist()), set(splits["val"].ids.tolist())
    assert not train_ids & val_ids
    # statistics come from MultiBench's train rows only, not from its validation rows
    np.testing.assert_allclose(splits["test"].specs["image"].mean.numpy().reshape(-1), written["train"][0][: TRAIN - 5000].mean(0), rtol=1e-5)
