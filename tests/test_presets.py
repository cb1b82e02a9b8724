"""The paper presets (qmf, qmf-salt, qmf-rgbd, udml, udml-salt) against re-implementations of the
originals' noise code, written here from the cited functions (numpy, as the originals), compared
array for array on natural images (scikit-image's bundled photographs); and the joint conditions,
per-part rates and raw-pixel / spectrogram units they are built on.

Originals (read at QingyangZhang/QMF fe6c4c6 and shicaiwei123/UDML c65e380):
- QMF text-image: src/data/dataset.py AddGaussianNoise.__call__, AddSaltPepperNoise.__call__,
  JsonlDataset.__getitem__ (words), src/data/helpers.py get_GaussianNoisetransforms /
  get_SaltNoisetransforms (RandomApply p=0.5, variance = 10 * level; density 0.1, p = level/100);
- QMF RGB-D: RGBD-scene-recognition/data/additional_transform.py AddGaussianNoise, test.py test();
- UDML: audio-visual-classification/dataset/CramedDataset.py add_gaussian_visual,
  add_gaussian_audio, add_salt_visual, add_salt_audio, CramedDataset.__getitem__ (test.py).
Fixed fields (np.random.seed(0) / RandomState(0)) are compared exactly; what the originals draw
from numpy's running global stream (salt masks, coins) is compared as a distribution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as images
from torch import nn

from robustbench_mm.cli import main
from robustbench_mm.corruptions import Condition, SampleRandom, affected_mask, apply_condition, get_corruption
from robustbench_mm.corruptions.apply import modality_masks
from robustbench_mm.datasets.batch import PAD_ID, UNK_ID, Batch, ModalitySpec, MultimodalData
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import load_protocol, parse_protocol

QMF_MEAN = (0.46777044, 0.44531429, 0.40661017)  # QMF helpers.py get_transforms
QMF_STD = (0.12221994, 0.12145835, 0.14380469)
with np.errstate(invalid="ignore"):
    X86_WRAP = bool(np.array([-77.6]).astype("uint8")[0] == 179)  # how this platform casts negatives to uint8
needs_wrap = pytest.mark.skipif(not X86_WRAP, reason="this platform's numpy saturates negative floats on the uint8 cast")


# ------------------------------------------------------------------ the originals, re-implemented


def qmf_gaussian(img: np.ndarray, variance: float) -> np.ndarray:
    """QMF AddGaussianNoise.__call__ (text-image dataset.py, RGB-D additional_transform.py): seed 0
    on every call, one (h, w, 1) field repeated over the channels, clip above 255 only, uint8 cast."""
    h, w, c = img.shape
    np.random.seed(0)
    n = 1.0 * np.random.normal(loc=0.0, scale=variance, size=(h, w, 1))
    n = np.repeat(n, c, axis=2)
    out = n + img
    out[out > 255] = 255
    with np.errstate(invalid="ignore"):
        return out.astype("uint8")


def udml_gaussian_visual(img: np.ndarray, level: float) -> np.ndarray:
    """UDML CramedDataset.py add_gaussian_visual: RandomState(0), sigma = level * 10, (h, w, 1)."""
    h, w, c = img.shape
    n = np.repeat(np.random.RandomState(0).normal(loc=0.0, scale=float(level) * 10.0, size=(h, w, 1)), c, axis=2)
    out = n + img.astype(np.float64)
    out[out > 255] = 255
    with np.errstate(invalid="ignore"):
        return out.astype(np.uint8)


def udml_gaussian_audio(mag: np.ndarray, level: float) -> np.ndarray:
    """UDML CramedDataset.py add_gaussian_audio (+ _audio_to_uint8 / _audio_from_uint8) on a (F, T)
    float32 magnitude, then the np.log(np.maximum(s, 0) + 1e-7) of __getitem__."""
    source = np.asarray(mag, dtype=np.float32)
    lo, hi = float(np.min(source)), float(np.max(source))
    span = hi - lo
    view = np.clip((source - lo) / span * 255.0, 0.0, 255.0).astype(np.uint8)
    noisy = np.random.RandomState(0).normal(loc=0.0, scale=float(level) * 10.0, size=view.shape) + view.astype(np.float64)
    noisy[noisy > 255] = 255
    with np.errstate(invalid="ignore"):
        back = noisy.astype(np.uint8).astype(np.float32) / 255.0 * span + lo
    return np.log(np.maximum(back, 0.0) + 1e-7)


def qmf_salt(img: np.ndarray, rs: np.random.RandomState, density: float = 0.1) -> np.ndarray:
    """QMF AddSaltPepperNoise.__call__ once its p-gate passed (UDML add_salt_visual is the same)."""
    h, w, c = img.shape
    mask = np.repeat(rs.choice((0, 1, 2), size=(h, w, 1), p=[density / 2.0, density / 2.0, 1 - density]), c, axis=2)
    out = img.copy()
    out[mask == 0] = 0
    out[mask == 1] = 255
    return out


def qmf_blank_words(text: str, level: float, rs: np.random.RandomState) -> str:
    """QMF JsonlDataset.__getitem__ on a noised sample: each ' '-split word '_' w.p. 0.1 * level."""
    p = 0.1 * level
    return " ".join("_" if rs.choice([0, 1], p=[1 - p, p]) else w for w in text.split(" "))


def natural(h: int, w: int) -> np.ndarray:
    """Crops of scikit-image's photographs, (4, h, w, 3) uint8: a face, coffee, a cat, a rocket."""
    photos = [images.astronaut(), images.coffee(), images.chelsea(), images.rocket()]
    return np.stack([p[:h, :w] for p in photos])


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two samples of 0-255 values over 8 bins of 32."""
    ha = np.histogram(a, bins=8, range=(0, 256))[0] / a.size
    hb = np.histogram(b, bins=8, range=(0, 256))[0] / b.size
    return float(np.abs(ha - hb).sum() / 2)


# ------------------------------------------------------------------ ours


TXT = ModalitySpec("txt", "tokens", (40,), vocab_size=1000)


def _image(name: str, h: int, w: int) -> ModalitySpec:
    return ModalitySpec(name, "image", (3, h, w), value_range=(0.0, 255.0))


def _batch(inputs: dict[str, torch.Tensor], n: int) -> Batch:
    return Batch(inputs=inputs, labels=torch.zeros(n, dtype=torch.int64), ids=torch.arange(n, dtype=torch.int64))


def _chw(photos: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(photos).permute(0, 3, 1, 2).float()


def _words(n: int) -> torch.Tensor:
    return torch.randint(2, 1000, (n, 40), generator=torch.Generator().manual_seed(0))


def _condition(protocol, specs: dict[str, ModalitySpec], level: float) -> Condition:
    protocol = load_protocol(protocol) if isinstance(protocol, str) else protocol
    return next(c for c in protocol.expand(specs) if c.level == level and c.parts)


def _noised(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (out != x).flatten(1).any(1)


# ------------------------------------------------------------------ gaussian: bit for bit


@needs_wrap
@pytest.mark.parametrize("level", [5, 10])
@pytest.mark.parametrize("h,w", [(256, 256), (256, 341)])  # QMF's Resize(256): square and 4:3 photos
def test_qmf_image_noise_is_bit_identical_to_the_original_on_photographs(level, h, w):
    photos = np.concatenate([natural(h, w)] * 4)  # 16 samples: about 8 noised
    specs = {"rgb": _image("rgb", h, w), "txt": TXT}
    x = _chw(photos)
    out = apply_condition(_batch({"rgb": x, "txt": _words(16)}, 16), _condition("qmf", specs, level), specs, seed=0).inputs["rgb"]
    hit = modality_masks(torch.arange(16), _condition("qmf", specs, level), 0)["rgb"]
    assert 0 < int(hit.sum()) < 16
    for i in range(16):
        theirs = qmf_gaussian(photos[i], 10 * level) if hit[i] else photos[i]
        assert np.array_equal(out[i].permute(1, 2, 0).numpy().astype(np.uint8), theirs)
        assert np.array_equal(out[i].numpy(), out[i].numpy().round())  # integers, as the uint8 image


@needs_wrap
def test_qmf_rgbd_gives_rgb_and_depth_the_original_field_bit_for_bit():
    photos = natural(224, 224)
    depth = np.repeat(photos.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)  # a grey "depth" image
    specs = {"rgb": _image("rgb", 224, 224), "depth": _image("depth", 224, 224)}
    n = 16
    rgb, dep = _chw(np.concatenate([photos] * 4)), _chw(np.concatenate([depth] * 4))
    cond = _condition("qmf-rgbd", specs, 10)
    out = apply_condition(_batch({"rgb": rgb, "depth": dep}, n), cond, specs, seed=0)
    masks = modality_masks(torch.arange(n), cond, 0)
    assert bool((masks["rgb"] & masks["depth"]).any()) and not torch.equal(masks["rgb"], masks["depth"])
    for m, raw in (("rgb", np.concatenate([photos] * 4)), ("depth", np.concatenate([depth] * 4))):
        for i in range(n):
            theirs = qmf_gaussian(raw[i], 10) if masks[m][i] else raw[i]
            assert np.array_equal(out.inputs[m][i].permute(1, 2, 0).numpy().astype(np.uint8), theirs)


@needs_wrap
@pytest.mark.parametrize("level", [5, 10])
def test_udml_image_noise_is_bit_identical_to_add_gaussian_visual(level):
    photos = np.concatenate([natural(224, 224)] * 4)
    spectra = ModalitySpec("spec", "sequence", (12, 9))
    specs = {"rgb": _image("rgb", 224, 224), "spec": spectra}
    protocol = load_protocol("udml").with_spectrogram("natural-log")
    cond = _condition(protocol, specs, level)
    logs = torch.log(torch.rand(16, 12, 9, generator=torch.Generator().manual_seed(1)) * 4 + 1e-7)
    out = apply_condition(_batch({"rgb": _chw(photos), "spec": logs}, 16), cond, specs, seed=0).inputs["rgb"]
    hit = modality_masks(torch.arange(16), cond, 0)["rgb"]
    for i in range(16):
        theirs = udml_gaussian_visual(photos[i], level) if hit[i] else photos[i]
        assert np.array_equal(out[i].permute(1, 2, 0).numpy().astype(np.uint8), theirs)


@pytest.mark.parametrize("level", [5, 10])
def test_udml_audio_noise_is_add_gaussian_audio_on_the_recovered_magnitude(level):
    """The original works on |STFT| and logs after; ours recovers |STFT| = exp(x) - 1e-7 from the
    log spectrogram, so the comparison feeds the original that same magnitude. The uint8 view and
    the field are then exact; the logs agree to float32 rounding."""
    t, f = 40, 33  # time-major, as a `sequence` modality (T, F); the original's array is (F, T)
    mag = torch.rand(3, t, f, generator=torch.Generator().manual_seed(2)) ** 4 * 5
    x = torch.log(mag + 1e-7)
    spec = ModalitySpec("spec", "sequence", (t, f))
    kernel = get_corruption("spectrogram_noise").fn
    ours = kernel(x, 10.0 * level, SampleRandom(torch.arange(3), 0, "k"), spec, overflow="wrap", pattern="numpy-seed-0")
    recovered = (x.exp() - 1e-7).clamp(min=0.0).numpy()
    for i in range(3):
        theirs = udml_gaussian_audio(recovered[i].T, level).T
        np.testing.assert_allclose(ours[i].numpy(), theirs, rtol=2e-6, atol=2e-6)
    assert float((ours - x).abs().mean()) > 0.5  # a real change: the uint8 view alone quantises hard


def test_udml_audio_part_needs_the_stated_natural_log_scale_and_refuses_other_scales():
    specs = {"rgb": _image("rgb", 8, 8), "spec": ModalitySpec("spec", "sequence", (10, 6))}
    with pytest.raises(InputError, match=r"joint\[0\]\.part\.spectrogram.*--spectrogram natural-log"):
        load_protocol("udml").expand(specs)
    cond = _condition(load_protocol("udml").with_spectrogram("natural-log"), specs, 5)
    decibels = torch.full((4, 10, 6), -80.0)  # 20 log10 of small magnitudes: not log(|S| + 1e-7)
    batch = _batch({"rgb": torch.full((4, 3, 8, 8), 128.0), "spec": decibels}, 4)
    with pytest.raises(InputError, match=r"spectrogram_noise on 'spec': a value -80 is below log\(1e-7\)"):
        apply_condition(batch, Condition(family="corruption", name="spectrogram_noise", modalities=("spec",), level=5, param=50.0), specs, seed=0)
    assert cond.parts[1].corruption == "spectrogram_noise"


def test_the_faithful_suffix_is_refused_with_the_new_names_and_clipped_is_the_cleaned_variant():
    with pytest.raises(InputError, match=r"'qmf:faithful': 'qmf' reproduces the original code by default now; expected 'qmf' \(or 'qmf:clipped'"):
        load_protocol("qmf:faithful")
    assert main(["show", "protocol", "qmf:faithful"]) == 2
    specs = {"rgb": _image("rgb", 64, 64), "txt": TXT}
    x = _chw(natural(64, 64)[:1].repeat(8, axis=0))  # one photo, 8 samples
    batch = _batch({"rgb": x, "txt": _words(8)}, 8)
    faithful = apply_condition(batch, _condition("qmf", specs, 10), specs, seed=0).inputs["rgb"]
    clipped = apply_condition(batch, _condition("qmf:clipped", specs, 10), specs, seed=0).inputs["rgb"]
    hit = _noised(faithful, x)
    assert int(hit.sum()) >= 2 and torch.equal(hit, _noised(clipped, x))  # the same 50% gate
    assert all(torch.equal(faithful[hit][0], f) for f in faithful[hit])  # one fixed field
    assert not torch.equal(clipped[hit][0], clipped[hit][1])  # a field per sample
    assert float(clipped.min()) >= 0 and float((faithful[hit] > x[hit] + 150).float().mean()) > 0.01  # wrapped to bright
    assert load_protocol("qmf:clipped").hash != load_protocol("qmf").hash
    with pytest.raises(InputError, match="has no clipped variant"):
        load_protocol("quick:clipped")


@needs_wrap
def test_the_wrap_fractions_stated_for_photographs_are_the_originals():
    """docs/presets.md states the share of pixels the original's uint8 cast wraps on these photos."""
    photos = natural(256, 256)
    for sigma, stated in ((5, 0.0078), (10, 0.0163), (50, 0.1058), (100, 0.2031)):
        with np.errstate(invalid="ignore"):
            wrapped = np.mean([(np.float64(p) + np.repeat(np.random.RandomState(0).normal(0, sigma, (256, 256, 1)), 3, axis=2) <= -1).mean() for p in photos])
        assert wrapped == pytest.approx(stated, abs=0.0005)


# ------------------------------------------------------------------ masks, rates, text


def test_qmf_perturbs_image_and_text_together_each_on_its_own_half():
    n = 4000
    specs = {"rgb": _image("rgb", 4, 4), "txt": TXT}
    x, words = torch.full((n, 3, 4, 4), 128.0), _words(n)
    cond = _condition("qmf", specs, 5)
    out = apply_condition(_batch({"rgb": x, "txt": words}, n), cond, specs, seed=0)
    image, text = _noised(out.inputs["rgb"], x), (out.inputs["txt"] != words).any(1)
    tol = 4 * np.sqrt(0.25 / n)
    assert float(image.float().mean()) == pytest.approx(0.5, abs=tol)
    assert float(text.float().mean()) == pytest.approx(0.5, abs=tol)
    assert float((image & text).float().mean()) == pytest.approx(0.25, abs=tol)  # independent masks
    assert torch.equal(affected_mask(torch.arange(n), cond, 0), image | text)
    blanked = float((out.inputs["txt"][text] == UNK_ID).float().mean())
    rs = np.random.RandomState(0)
    theirs = np.mean([w == "_" for _ in range(200) for w in qmf_blank_words(" ".join(f"w{i}" for i in range(40)), 5, rs).split(" ")])
    assert blanked == pytest.approx(theirs, abs=0.015)


def test_blank_per_word_turns_a_whole_word_into_one_blank_token_as_qmf_before_tokenising(tmp_path):
    """QMF replaces the word, then tokenises: a word of three pieces becomes the one token '_'."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "_", "rob", "##ust", "##ness", "test", "##s", "of", "models"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab), encoding="utf-8")
    pieces = {"robustness": ["rob", "##ust", "##ness"], "tests": ["test", "##s"], "of": ["of"], "models": ["models"]}
    text = ["robustness", "tests", "of", "models", "robustness"]

    def tokenise(words: list[str]) -> list[int]:
        return [vocab.index("[CLS]")] + [vocab.index(p) for w in words for p in pieces.get(w, ["_"])]

    ids = tokenise(text)
    n, length = 500, 16
    x = torch.tensor([ids + [PAD_ID] * (length - len(ids))] * n)
    spec = ModalitySpec("txt", "tokens", (length,), vocab_size=len(vocab))
    y = get_corruption("blank").fn(x, 0.5, SampleRandom(torch.arange(n), 0, "words"), spec, vocab=str(path))
    counts = []
    for row in y.tolist():
        row = [t for t in row if t != PAD_ID]
        # which words were blanked: walk the original words against the output
        i, blanked = 1, []
        for w in text:
            k = len(pieces[w])
            hit = row[i] == vocab.index("_")
            blanked.append(hit)
            i += 1 if hit else k
        assert row == tokenise(["_" if b else w for w, b in zip(text, blanked)])
        counts.append(np.mean(blanked))
    assert float(np.mean(counts)) == pytest.approx(0.5, abs=0.05)
    assert bool((y[:, 0] == vocab.index("[CLS]")).all())  # added after QMF's blanking: never blanked


def test_qmf_salt_rates_per_part_and_one_mask_for_the_three_channels():
    n = 8000
    specs = {"rgb": _image("rgb", 16, 16), "txt": TXT}
    x, words = torch.full((n, 3, 16, 16), 128.0), _words(n)
    for level, image_rate in ((5, 0.025), (10, 0.05)):
        cond = _condition("qmf-salt", specs, level)
        out = apply_condition(_batch({"rgb": x, "txt": words}, n), cond, specs, seed=0)
        y = out.inputs["rgb"]
        image, text = _noised(y, x), (out.inputs["txt"] != words).any(1)
        assert float(image.float().mean()) == pytest.approx(image_rate, abs=4 * np.sqrt(image_rate / n))
        assert float(text.float().mean()) == pytest.approx(0.5, abs=0.025)
        assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])  # np.repeat of one (h, w, 1) mask
        # the density and the salt/pepper split, against the original's choice((0, 1, 2), p=[.05, .05, .9])
        theirs = np.stack([qmf_salt(np.full((16, 16, 3), 128, np.uint8), np.random.RandomState(i)) for i in range(400)])
        ours = y[image][:, 0].numpy()
        for value in (0, 255):
            assert float((ours == value).mean()) == pytest.approx(float((theirs == value).mean()), abs=0.006)
            assert float((ours == value).mean()) == pytest.approx(0.05, abs=0.006)
    # nested rates: the images salted at level 5 are also salted at level 10 (one uniform per sample)
    masks5 = modality_masks(torch.arange(n), _condition("qmf-salt", specs, 5), 0)["rgb"]
    masks10 = modality_masks(torch.arange(n), _condition("qmf-salt", specs, 10), 0)["rgb"]
    assert bool((masks5 <= masks10).all())


def test_udml_salt_gates_each_modality_at_its_own_nested_rate():
    n = 8000
    spectra = ModalitySpec("spec", "sequence", (8, 5))
    specs = {"rgb": _image("rgb", 8, 8), "spec": spectra}
    cond = _condition(load_protocol("udml-salt").with_spectrogram("natural-log"), specs, 10)
    x = torch.full((n, 3, 8, 8), 128.0)
    s = torch.log(torch.rand(n, 8, 5, generator=torch.Generator().manual_seed(0)) + 1e-7)
    out = apply_condition(_batch({"rgb": x, "spec": s}, n), cond, specs, seed=0)
    image, audio = _noised(out.inputs["rgb"], x), _noised(out.inputs["spec"], s)
    for m in (image, audio):
        assert float(m.float().mean()) == pytest.approx(0.05, abs=0.01)
    assert float((image & audio).float().mean()) < 0.01  # independent: about 0.0025
    salted = out.inputs["spec"][audio]
    lo, hi = s[audio].flatten(1).min(1).values, s[audio].flatten(1).max(1).values
    at_ends = ((salted - lo[:, None, None]).abs() < 1e-5) | ((salted - hi[:, None, None]).abs() < 1e-4)
    assert float(at_ends.float().mean()) >= 0.1  # salt and pepper (10%) plus what the uint8 view floors


def test_a_part_rate_is_validated_one_per_level():
    bad = JOINT.replace('targets = "vec"', 'targets = "vec"\nrates = [0.5]')
    with pytest.raises(InputError, match=r"joint\[0\]\.part\[1\]\.rates.*a list of 2 fractions in \(0, 1\]"):
        parse_protocol(bad)


# ------------------------------------------------------------------ raw pixel units


def test_a_raw_pixel_preset_refuses_images_without_a_known_range():
    normalised = ModalitySpec("img", "image", (3, 8, 8))
    with pytest.raises(InputError, match=r"no known value range.*--value-range LO,HI.*--normalization"):
        load_protocol("qmf").expand({"img": normalised})
    vec = ModalitySpec("v", "vector", (3,))
    assert len(load_protocol("quick").expand({"img": normalised, "v": vec})) > 1  # protocols in our own units do not care


def test_normalised_images_get_the_raw_sigma_through_the_given_normalisation():
    spec = ModalitySpec("img", "image", (3, 64, 64))
    mean, std = torch.tensor(QMF_MEAN)[:, None, None], torch.tensor(QMF_STD)[:, None, None]
    n = 32
    x = ((torch.full((n, 3, 64, 64), 128.0) / 255 - mean) / std)
    protocol = load_protocol("qmf").with_normalization(QMF_MEAN, QMF_STD)
    assert protocol.hash != load_protocol("qmf").hash
    cond = next(c for c in protocol.expand({"img": spec}) if c.level == 5)
    y = apply_condition(_batch({"img": x}, n), cond, {"img": spec}, seed=0).inputs["img"]
    raw = (y * std + mean) * 255
    hit = (y != x).flatten(1).any(1)
    assert float((raw[hit] - 128).std()) == pytest.approx(50.0, rel=0.03)  # sigma 50 raw, as QMF's level 5
    assert float(raw.min()) > -1e-3 and float(raw.max()) < 255 + 1e-3  # clipped in raw units
    lines = protocol.units({"img": spec})
    assert len(lines) == 1 and "normalization" in lines[0] and "0.46777044" in lines[0]


def test_cli_refuses_a_normalised_float_file_and_accepts_the_mapping(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "normalised.npz"
    np.savez(path, img=rng.normal(size=(6, 3, 8, 8)).astype(np.float32), labels=np.arange(6) % 2)
    assert main(["show", "protocol", "qmf", "--data", str(path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rbmm: error")]  # notes may precede it
    assert len(errors) == 1 and "--value-range" in errors[0]
    assert main(["show", "protocol", "qmf", "--data", str(path), "--normalization", ",".join(map(str, QMF_MEAN + QMF_STD))]) == 0
    assert "units: joint[0] gaussian_noise on 'img': raw pixels [0, 255] = (x * std + mean) * 255" in capsys.readouterr().out
    assert main(["show", "protocol", "qmf", "--data", str(path), "--value-range=-3,3"]) == 0
    assert "from the value range (-3, 3)" in capsys.readouterr().out
    assert main(["show", "protocol", "qmf", "--data", str(path), "--normalization", "0.5"]) == 2


def test_cli_refuses_udml_until_the_spectrogram_scale_is_stated(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "av.npz"
    np.savez(path, img=rng.integers(0, 256, (6, 3, 8, 8)).astype(np.uint8),
             spec=np.log(rng.random((6, 10, 5)) + 1e-7).astype(np.float32), labels=np.arange(6) % 2)
    assert main(["show", "protocol", "udml", "--data", str(path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rbmm: error")]
    assert len(errors) == 1 and "--spectrogram natural-log" in errors[0]
    assert main(["show", "protocol", "udml", "--data", str(path), "--spectrogram", "natural-log"]) == 0
    assert "units: joint[0] spectrogram_noise on 'spec': natural-log magnitude spectrogram, as stated" in capsys.readouterr().out


# ------------------------------------------------------------------ joint conditions in the engine


JOINT = """
name = "j"
description = "image and vector noise together"
seed = 5
[[joint]]
levels = [1, 2]
rates = [0.5]
[[joint.part]]
corruption = "gaussian_noise"
targets = "img"
params = [0.1, 0.3]
[[joint.part]]
corruption = "gaussian_noise"
targets = "vec"
params = [0.5, 1.5]
"""


class _Tiny(nn.Module):
    """Linear encoders per modality and a linear head; encode/fuse let the engine re-encode."""

    def __init__(self, specs: dict[str, ModalitySpec]):
        super().__init__()
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict({m: nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(s.shape)), 4)) for m, s in specs.items()})
        self.head = nn.Linear(4 * len(specs), 2)

    def encode(self, name, x):
        return self.encoders[name](x)

    def fuse(self, features, present=None):
        return self.head(torch.cat([features[m] for m in self.encoders], dim=1))

    def forward(self, inputs, present=None):
        return self.fuse({m: self.encode(m, inputs[m]) for m in self.encoders})


def test_joint_condition_equals_its_single_modality_conditions_and_the_engine_reencodes_both(tmp_path):
    specs = {
        "img": ModalitySpec("img", "image", (1, 4, 4), value_range=(0.0, 1.0)),
        "vec": ModalitySpec("vec", "vector", (6,), std=torch.ones(6)),
        "aux": ModalitySpec("aux", "vector", (3,), std=torch.ones(3)),
    }
    n = 40
    g = torch.Generator().manual_seed(0)
    inputs = {"img": torch.rand(n, 1, 4, 4, generator=g), "vec": torch.randn(n, 6, generator=g), "aux": torch.randn(n, 3, generator=g)}
    protocol = parse_protocol(JOINT)
    joint = protocol.expand(specs)[2]
    batch = _batch(inputs, n)
    out = apply_condition(batch, joint, specs, seed=5)
    for m, p in (("img", 0.3), ("vec", 1.5)):
        single = Condition(family="corruption", name="gaussian_noise", modalities=(m,), level=2, param=p, rate=0.5)
        assert torch.equal(out.inputs[m], apply_condition(batch, single, specs, seed=5).inputs[m])
    masks = modality_masks(batch.ids, joint, 5)
    assert not torch.equal(masks["img"], masks["vec"])
    data = MultimodalData(name="t", split="test", specs=specs, inputs=inputs, labels=torch.arange(n) % 2,
                          ids=torch.arange(n, dtype=torch.int64), num_classes=2, source="test")
    model = _Tiny(specs)
    a = evaluate([model], data, protocol, out=tmp_path / "a", device="cpu", batch_size=16, progress=False)
    b = evaluate([model], data, protocol, out=tmp_path / "b", device="cpu", batch_size=7, progress=False, reuse_encoders=False)
    for cid in a.cells["cell_id"]:
        ra, rb = a.samples(cid), b.samples(cid)
        assert np.array_equal(ra["pred"], rb["pred"]) and np.array_equal(ra["affected"], rb["affected"])
        np.testing.assert_allclose(ra["conf"], rb["conf"], rtol=1e-5)
    cid = a.cells[a.cells["level"] == 2]["cell_id"].iloc[0]
    assert np.array_equal(a.samples(cid)["affected"], (masks["img"] | masks["vec"]).numpy())
    assert a.cells[a.cells["level"] == 2]["modalities"].iloc[0] == "img+vec"


def test_joint_table_validation_names_the_key():
    bad = JOINT.replace("params = [0.5, 1.5]", "params = [0.5]")
    with pytest.raises(InputError, match=r"joint\[0\]\.part\[1\]\.params.*a list of 2 finite numbers"):
        parse_protocol(bad)
    with pytest.raises(InputError, match=r"options\.colour.*an option of 'gaussian_noise' \(channels, overflow, unit, pattern\)"):
        parse_protocol(JOINT.replace('targets = "vec"', 'targets = "vec"\noptions = { colour = "red" }'))
    with pytest.raises(InputError, match="masks"):
        parse_protocol(JOINT.replace("rates = [0.5]", 'rates = [0.5]\nmasks = "some"'))
    with pytest.raises(InputError, match="selected by two parts"):
        parse_protocol(JOINT.replace('targets = "vec"', 'targets = "img"')).expand(
            {"img": ModalitySpec("img", "image", (1, 4, 4), value_range=(0.0, 1.0))}
        )


def test_gaussian_noise_options_are_checked():
    g = get_corruption("gaussian_noise").fn
    from robustbench_mm.corruptions import SampleRandom

    rng = SampleRandom(torch.arange(2), 0, "t")
    with pytest.raises(InputError, match=r"overflow 'wrap'.*\(0, 255\)"):
        g(torch.zeros(2, 1, 4, 4), 0.1, rng, ModalitySpec("i", "image", (1, 4, 4), value_range=(0.0, 1.0)), overflow="wrap")
    with pytest.raises(InputError, match="needs an image"):
        g(torch.zeros(2, 5), 0.1, rng, ModalitySpec("v", "vector", (5,)), channels="shared")
    with pytest.raises(InputError, match="pattern 'fixed'; expected one of: per-sample, numpy-seed-0"):
        g(torch.zeros(2, 5), 0.1, rng, ModalitySpec("v", "vector", (5,)), pattern="fixed")
    # the seed-0 field in numpy's own order for arrays that are not (C, H, W) images
    v = g(torch.zeros(2, 5), 1.0, rng, ModalitySpec("v", "vector", (5,)), pattern="numpy-seed-0", unit="data")
    assert np.array_equal(v[1].double().numpy(), np.random.RandomState(0).standard_normal(5).astype(np.float32))


def test_the_manifest_records_the_units_a_raw_pixel_preset_applied(tmp_path):
    import json

    specs = {"img": ModalitySpec("img", "image", (3, 4, 4), value_range=(0.0, 1.0)), "v": ModalitySpec("v", "vector", (2,))}
    n = 8
    g = torch.Generator().manual_seed(0)
    data = MultimodalData(name="t", split="test", specs=specs, inputs={"img": torch.rand(n, 3, 4, 4, generator=g), "v": torch.randn(n, 2, generator=g)},
                          labels=torch.arange(n) % 2, ids=torch.arange(n, dtype=torch.int64), num_classes=2, source="test")
    evaluate([_Tiny(specs)], data, "qmf", out=tmp_path / "run", device="cpu", seeds=[0], progress=False)
    units = json.loads((tmp_path / "run" / "manifest.json").read_text())["protocol"]["units"]
    assert units == ["joint[0] gaussian_noise on 'img': raw pixels [0, 255] = (x - 0) * 255 / 1, from the value range (0, 1)"]
    evaluate([_Tiny(specs)], data, "noise-sweep", out=tmp_path / "sweep", device="cpu", progress=False)
    assert json.loads((tmp_path / "sweep" / "manifest.json").read_text())["protocol"]["units"] == []


def test_udml_runs_in_the_engine_batch_independent_and_records_the_stated_units(tmp_path):
    import json

    specs = {"img": ModalitySpec("img", "image", (3, 8, 8), value_range=(0.0, 255.0)), "spec": ModalitySpec("spec", "sequence", (10, 5))}
    n = 24
    g = torch.Generator().manual_seed(0)
    inputs = {"img": torch.randint(0, 256, (n, 3, 8, 8), generator=g).float(), "spec": torch.log(torch.rand(n, 10, 5, generator=g) * 3 + 1e-7)}
    data = MultimodalData(name="av", split="test", specs=specs, inputs=inputs, labels=torch.arange(n) % 2,
                          ids=torch.arange(n, dtype=torch.int64), num_classes=2, source="test")
    protocol = load_protocol("udml").with_spectrogram("natural-log")
    a = evaluate([_Tiny(specs)], data, protocol, out=tmp_path / "a", device="cpu", batch_size=24, progress=False)
    b = evaluate([_Tiny(specs)], data, protocol, out=tmp_path / "b", device="cpu", batch_size=5, progress=False)
    for cid in a.cells["cell_id"]:
        assert np.array_equal(a.samples(cid)["pred"], b.samples(cid)["pred"])
        np.testing.assert_allclose(a.samples(cid)["conf"], b.samples(cid)["conf"], rtol=1e-5)
    affected = a.samples(a.cells[a.cells["level"] == 10]["cell_id"].iloc[0])["affected"]
    assert 0 < affected.sum() < n  # two 50% gates
    units = json.loads((tmp_path / "a" / "manifest.json").read_text())["protocol"]["units"]
    assert units[1] == "joint[0] spectrogram_noise on 'spec': natural-log magnitude spectrogram, as stated"


def test_a_stated_vocabulary_makes_the_qmf_text_part_blank_whole_words(tmp_path, capsys):
    vocab = ["[PAD]", "[UNK]", "_", "rob", "##ust", "of", "models"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab), encoding="utf-8")
    specs = {"rgb": _image("rgb", 4, 4), "txt": ModalitySpec("txt", "tokens", (8,), vocab_size=len(vocab))}
    protocol = load_protocol("qmf").with_vocab(path)
    assert protocol.hash != load_protocol("qmf").hash
    cond = _condition(protocol, specs, 10)  # every word of a noised text blanked
    assert dict(cond.parts[1].options) == {"vocab": str(path)}
    n = 50
    words = torch.tensor([[3, 4, 5, 6, 3, 4, 0, 0]] * n)
    out = apply_condition(_batch({"rgb": torch.full((n, 3, 4, 4), 128.0), "txt": words}, n), cond, specs, seed=0).inputs["txt"]
    hit = (out != words).any(1)
    assert bool(hit.any())
    assert torch.equal(out[hit], torch.tensor([[2, 2, 2, 2, 0, 0, 0, 0]]).expand(int(hit.sum()), 8))  # 4 words, 4 '_'
    np.savez(tmp_path / "d.npz", rgb=np.zeros((4, 3, 4, 4), np.uint8), txt=np.ones((4, 8), np.int64), labels=np.arange(4) % 2)
    assert main(["show", "protocol", "qmf", "--data", str(tmp_path / "d.npz"), "--vocab", str(path)]) == 0
    assert f"vocab={path}" in capsys.readouterr().out
    assert main(["show", "protocol", "qmf", "--data", str(tmp_path / "d.npz"), "--vocab", str(tmp_path / "none.txt")]) == 2


def test_the_spectrogram_kernels_are_left_out_of_all_and_kind_selections():
    """They read natural-log magnitudes, which only a spectrogram preset states: `standard` on a
    sequence modality keeps the grid it had before they were registered."""
    specs = {"s": ModalitySpec("s", "sequence", (10, 4)), "v": ModalitySpec("v", "vector", (3,))}
    names = {c.name for c in load_protocol("standard").expand(specs)}
    assert "gaussian_noise" in names and not names & {"spectrogram_noise", "spectrogram_impulse_noise"}
    by_kind = parse_protocol('name = "k"\ndescription = "d"\n[[corruption]]\ncorruptions = "kind:sequence"\nlevels = [1]\n')
    assert not {c.name for c in by_kind.expand(specs)} & {"spectrogram_noise", "spectrogram_impulse_noise"}
    named = parse_protocol('name = "n"\ndescription = "d"\n[[corruption]]\ncorruptions = ["spectrogram_noise"]\nlevels = [1]\n')
    assert {c.name for c in named.expand(specs)} == {"clean", "spectrogram_noise"}


def test_the_originals_text_coin_falls_far_below_half_when_images_are_square():
    """docs/presets.md: QMF asks for a 50% text coin, but each noised image reseeds numpy
    (AddGaussianNoise.__call__) and the next sample's coin comes from that state. Run
    JsonlDataset.__getitem__'s numpy calls in order (one process), every image 256 x 256."""
    words = np.random.default_rng(0).integers(5, 25, 300)
    image_coin = np.random.default_rng(1).random(300) < 0.5  # RandomApply's torch coin, a stand-in
    fractions = []
    for seed in range(1, 6):
        np.random.seed(seed)  # set_seed(args.seed)
        noised = 0
        for i in range(300):
            if np.random.choice([0, 1], p=[0.5, 0.5]):
                noised += 1
                for _ in range(words[i]):
                    np.random.choice([0, 1], p=[0.5, 0.5])
            if image_coin[i]:
                np.random.seed(0)
                np.random.normal(loc=0.0, scale=50.0, size=(256, 256, 1))
        fractions.append(noised / 300)
    assert max(fractions) < 0.1  # against the 0.5 the code asks for, and our preset draws
