"""Media folders and Parquet: decoded values, statistics, lazy streaming, and the bad cases.

The files are written here with Pillow, scipy.io.wavfile and pyarrow; expected values come from
the arrays written, statistics from numpy over those arrays.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from robustbench_mm.datasets import load_dataset, load_splits
from robustbench_mm.datasets.readers import detect_format
from robustbench_mm.errors import InputError

RATE = 8000


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def _class_folders(root, classes=("cat", "dog"), per_class=5, splits=("train", "test"), size=(6, 4), length=40, seed=0):
    """root/<split>/<class>/<stem>.{png,wav,txt}; returns {(split, class, stem): (pixels, pcm, text)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits:
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(per_class):
                stem = f"{c}{i:02d}"
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                pcm = rng.integers(-30000, 30000, size=length).astype(np.int16)
                text = f"a {c} {'very ' * i}loud"
                Image.fromarray(pixels).save(folder / f"{stem}.png")
                wavfile.write(folder / f"{stem}.wav", RATE, pcm)
                (folder / f"{stem}.txt").write_text(text)
                written[(split, c, stem)] = (pixels, pcm, text)
    return written


def test_class_folders_decode_to_the_written_pixels_samples_and_words(tmp_path):
    written = _class_folders(tmp_path / "pets")
    assert detect_format(tmp_path / "pets") == "media"
    test = load_dataset(str(tmp_path / "pets"), "test")
    assert test.streamed and test.class_names == ["cat", "dog"] and len(test) == 10
    assert test.specs["image"].shape == (3, 4, 6) and test.specs["audio"].shape == (40,)
    batch = next(test.batches(10))
    keys = sorted(k for k in written if k[0] == "test")
    for row, key in enumerate(keys):
        pixels, pcm, text = written[key]
        np.testing.assert_array_equal(batch.inputs["image"][row].numpy(), pixels.transpose(2, 0, 1).astype(np.float32))
        np.testing.assert_allclose(batch.inputs["audio"][row].numpy(), pcm / 32768.0, rtol=0, atol=1e-7)
        assert batch.labels[row].item() == ["cat", "dog"].index(key[1])
    # statistics of the train split only: per-pixel image mean, one scalar for audio
    train = sorted(k for k in written if k[0] == "train")
    images = np.stack([written[k][0].transpose(2, 0, 1) for k in train]).astype(np.float64)
    audio = np.stack([written[k][1] / 32768.0 for k in train])
    np.testing.assert_allclose(test.specs["image"].mean.numpy(), images.mean(0), rtol=1e-5)
    np.testing.assert_allclose(test.specs["image"].std.numpy(), images.std(0), rtol=1e-5)
    np.testing.assert_allclose(test.specs["audio"].std.item(), audio.std(), rtol=1e-5)
    # whitespace vocabulary from train: "a", "loud" and "very" occur in every class, ids from 2 by frequency
    words = batch.inputs["text"][0].tolist()
    train_words = [w for k in train for w in written[k][2].split()]
    ranked = sorted(set(train_words), key=lambda w: (-train_words.count(w), w))
    assert words[: 3] == [2 + ranked.index("a"), 2 + ranked.index("cat"), 2 + ranked.index("loud")]
    assert test.specs["text"].vocab_size == 2 + len(ranked)


def test_streamed_data_is_decoded_only_when_its_batch_is_asked_for(tmp_path):
    """The property that bounds memory: loading reads headers and train statistics, not the test pixels."""
    _class_folders(tmp_path / "pets")
    test = load_dataset(str(tmp_path / "pets"), "test")
    last = sorted((tmp_path / "pets" / "test" / "dog").glob("*.png"))[-1]
    last.write_bytes(last.read_bytes()[:60])  # truncated after loading: header intact, pixels gone
    first = next(test.batches(4))
    assert len(first) == 4
    with pytest.raises(InputError, match="not a decodable image"):
        list(test.batches(4))


def test_streamed_evaluation_equals_the_same_data_in_memory(tmp_path):
    from robustbench_mm.engine import evaluate
    from robustbench_mm.models import build_model
    from robustbench_mm.results import Run

    _class_folders(tmp_path / "pets", per_class=6)
    streamed = load_dataset(str(tmp_path / "pets"), "test", modalities=["image", "audio"])
    in_memory = streamed.in_memory()
    torch.manual_seed(0)
    config = {"fusion": "concat", "specs": list(streamed.specs.values()), "num_classes": 2, "dim": 8, "hidden": 8}
    model = build_model(config).eval()
    evaluate(model, streamed, "quick", out=tmp_path / "a", device="cpu", batch_size=5, progress=False)
    evaluate(model, in_memory, "quick", out=tmp_path / "b", device="cpu", batch_size=5, progress=False)
    a, b = Run(tmp_path / "a"), Run(tmp_path / "b")
    assert len(a.cells) > 5 and list(a.cells["cell_id"]) == list(b.cells["cell_id"])
    for cell in a.cells["cell_id"]:
        ra, rb = a.samples(cell), b.samples(cell)
        for k in ra:
            np.testing.assert_array_equal(ra[k], rb[k])


def test_conflict_conditions_on_streamed_data_say_they_need_memory(tmp_path):
    from robustbench_mm.engine import evaluate
    from robustbench_mm.models import build_model

    _class_folders(tmp_path / "pets")
    streamed = load_dataset(str(tmp_path / "pets"), "test", modalities=["image", "audio"])
    model = build_model({"fusion": "concat", "specs": list(streamed.specs.values()), "num_classes": 2, "dim": 8, "hidden": 8}).eval()
    message = _error(evaluate, model, streamed, "conflict", out=tmp_path / "run", device="cpu", progress=False)
    assert "streamed from files" in message and "convert it to a .npz" in message


def test_media_bad_cases(tmp_path):
    _class_folders(tmp_path / "a")
    for stem in ("cat01", "cat03"):
        (tmp_path / "a" / "train" / "cat" / f"{stem}.wav").unlink()
    assert "2 samples have no audio file" in (m := _error(load_dataset, str(tmp_path / "a"))) and "'cat01', 'cat03'" in m
    _class_folders(tmp_path / "b")
    wavfile.write(tmp_path / "b" / "test" / "dog" / "dog02.wav", RATE, np.zeros(41, np.int16))
    assert "has 41 samples" in _error(load_dataset, str(tmp_path / "b"))
    _class_folders(tmp_path / "c")
    Image.fromarray(np.zeros((4, 7, 3), np.uint8)).save(tmp_path / "c" / "test" / "cat" / "cat00.png")
    assert "is 7x4" in _error(load_dataset, str(tmp_path / "c"))
    _class_folders(tmp_path / "d", splits=("val", "test"))
    assert "without 'train'" in _error(load_dataset, str(tmp_path / "d"))
    _class_folders(tmp_path / "e")
    (tmp_path / "e" / "train" / "dog" / "dog00.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert "not a readable WAV file" in _error(load_dataset, str(tmp_path / "e"))
    _class_folders(tmp_path / "f")
    (tmp_path / "f" / "test" / "dog" / "dog01.png").write_bytes(b"\x89PNG garbage")
    assert "not a readable image" in _error(load_dataset, str(tmp_path / "f"))


def test_index_csv_with_text_column_integer_ids_and_user_tokenizer(tmp_path, monkeypatch):
    root = tmp_path / "idx"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = ["id,label,split,photo,text"]
    pixels = {}
    for i in range(8):
        pixels[i] = rng.integers(0, 256, size=(3, 5), dtype=np.uint8)
        Image.fromarray(pixels[i], mode="L").save(root / "img" / f"{i}.png")
        rows.append(f"{100 + i},{i % 2},{'train' if i < 6 else 'test'},img/{i}.png,word{i % 3} shared")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    test = load_dataset(str(root), "test")
    assert test.ids.tolist() == [106, 107] and test.specs["photo"].shape == (1, 3, 5)
    np.testing.assert_array_equal(next(test.batches(2)).inputs["photo"][1, 0].numpy(), pixels[7])
    (tmp_path / "tok.py").write_text("def ids(text):\n    return [len(w) + 2 for w in text.split()]\n")
    monkeypatch.chdir(tmp_path)
    tokens = next(load_dataset(str(root), "test", tokenizer="tok:ids").batches(2)).inputs["text"]
    assert tokens.tolist() == [[7, 8], [7, 8]]  # "word0 shared", "word1 shared"
    (root / "index.jsonl").write_text("")  # the CSV is found first; a JSONL index alone:
    (root / "index.csv").unlink()
    (root / "index.jsonl").write_text("\n".join(json.dumps({"label": i % 2, "photo": f"img/{i}.png"}) for i in range(8)))
    assert len(load_dataset(str(root))) == 8
    (root / "index.jsonl").write_text(json.dumps({"label": 0, "photo": "img/0.png"}) + "\n" + json.dumps({"label": 1, "photo": "img/99.png"}))
    assert "1 files that do not exist: 'img/99.png'" in _error(load_dataset, str(root))
    (root / "index.jsonl").write_text('{"label": 0, "photo": "img/0.png"}\n{"label": 1, "ph')
    assert "not readable JSONL" in _error(load_dataset, str(root))


def test_training_loads_streamed_media_into_memory(tmp_path):
    _class_folders(tmp_path / "pets", splits=("train", "val", "test"))
    splits = load_splits(str(tmp_path / "pets"))
    assert not splits["train"].streamed and splits["train"].inputs["image"].shape == (10, 3, 4, 6)


# --------------------------------------------------------------------------- Parquet


pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _wav(pcm: np.ndarray) -> bytes:
    out = io.BytesIO()
    wavfile.write(out, RATE, pcm)
    return out.getvalue()


def test_parquet_lists_binary_media_and_text(tmp_path):
    rng = np.random.default_rng(2)
    n = 9
    vec = rng.normal(size=(n, 4)).astype(np.float32)
    pixels = rng.integers(0, 256, size=(n, 3, 2, 3), dtype=np.uint8)
    pcm = rng.integers(-100, 100, size=(n, 16)).astype(np.int16)
    table = pa.table({
        "label": np.arange(n) % 3,
        "split": ["train"] * 6 + ["test"] * 3,
        "vec": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), 4),
        "photo": [_png(p) for p in pixels],
        "voice": [_wav(p) for p in pcm],
        "text": [f"w{i % 2} x" for i in range(n)],
    })
    pq.write_table(table, tmp_path / "t.parquet")
    assert detect_format(tmp_path / "t.parquet") == "parquet"
    test = load_dataset(str(tmp_path / "t.parquet"), "test")
    np.testing.assert_array_equal(test.inputs["vec"].numpy(), vec[6:])
    np.testing.assert_array_equal(test.inputs["photo"].numpy(), pixels[6:].transpose(0, 3, 1, 2))
    assert test.specs["voice"].kind == "audio"
    np.testing.assert_allclose(test.inputs["voice"].numpy(), pcm[6:] / 32768.0, atol=1e-7)
    assert test.specs["text"].kind == "tokens" and test.inputs["text"].shape == (3, 2)
    np.testing.assert_allclose(test.specs["vec"].mean.numpy(), vec[:6].mean(0), rtol=1e-5)


def test_parquet_bad_cases(tmp_path):
    pq.write_table(pa.table({"label": [0, 1, 0], "seq": [[1.0, 2.0], [1.0], [3.0, 4.0]]}), tmp_path / "r.parquet")
    assert "is ragged" in _error(load_dataset, str(tmp_path / "r.parquet"))
    pq.write_table(pa.table({"label": [0, 1], "vec": [[1.0], [2.0]], "split": ["train", "val"]}), tmp_path / "s.parquet")
    assert "no 'test' samples" in _error(load_dataset, str(tmp_path / "s.parquet"))
    pq.write_table(pa.table({"vec": [[1.0], [2.0]]}), tmp_path / "l.parquet")
    assert "no 'label' column" in _error(load_dataset, str(tmp_path / "l.parquet"))
    (tmp_path / "c.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    assert "not a readable Parquet file" in _error(load_dataset, str(tmp_path / "c.parquet"))


def test_class_folders_without_split_folders_are_one_evaluation_set_named_all(tmp_path):
    """As a feature file without `split`: every sample is evaluated and the split is recorded as "all"."""
    _class_folders(tmp_path / "flat", splits=("",))
    data = load_dataset(str(tmp_path / "flat"), "test")
    assert data.split == "all" and len(data) == 10
