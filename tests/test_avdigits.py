"""avdigits: the embedded file, its build script, pairing, splits, and the log-mel audio encoder.

Tests that need the FSDD recordings themselves (byte-for-byte rebuild, waveform against the WAV)
look in $RBMM_FSDD, then in the build script's default (../shared/fsdd), and skip if neither exists.
"""

from __future__ import annotations

import hashlib
import os
import sys
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mm.datasets import load_splits
from robustbench_mm.datasets.avdigits import (
    AUDIO_LENGTH,
    AVDIGITS_FILE,
    AVDIGITS_SHA256,
    SPEAKERS,
    avdigits_pairing,
    mu_law_decode,
)
from robustbench_mm.datasets.loader import describe_sources
from robustbench_mm.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import build_avdigits  # noqa: E402

FSDD = next(
    (p for p in (os.environ.get("RBMM_FSDD"), build_avdigits.DEFAULT_FSDD) if p and (Path(p) / "recordings").is_dir()),
    None,
)
needs_fsdd = pytest.mark.skipif(FSDD is None, reason="FSDD recordings not found (set RBMM_FSDD)")


@pytest.fixture(scope="module")
def random_splits():
    return load_splits("avdigits")


@pytest.fixture(scope="module")
def speaker_splits():
    return load_splits("avdigits:split=speaker")


# --------------------------------------------------------------------------- the file


def test_embedded_file_has_the_pinned_hash_and_fits_the_size_limit():
    raw = AVDIGITS_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == AVDIGITS_SHA256
    assert len(raw) <= 8 * 1024 * 1024
    assert (AVDIGITS_FILE.parent / "avdigits-LICENSE.md").is_file()


@needs_fsdd
def test_build_script_rebuilds_the_file_byte_for_byte(tmp_path):
    out = tmp_path / "avdigits.npz"
    assert build_avdigits.main(["--fsdd", str(FSDD), "--out", str(out)]) == 0
    assert out.read_bytes() == AVDIGITS_FILE.read_bytes()


@needs_fsdd
def test_audio_is_the_recordings_waveform(random_splits):
    """Sample waveforms against the WAV files read with the standard library (mu-law tolerance)."""
    pairing = avdigits_pairing()
    test = random_splits["test"]
    for row in (0, 57, 399):
        sample = int(test.ids[row])
        with wave.open(str(Path(FSDD) / "recordings" / pairing["recording"][sample]), "rb") as w:
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
        x = x[:AUDIO_LENGTH]
        got = test.inputs["audio"][row].numpy().astype(np.float64)
        snr = 10 * np.log10((x**2).sum() / ((got[: len(x)] - x) ** 2).sum())
        assert snr > 25  # mu-law 8 bit: ~38 dB on speech
        assert np.all(got[len(x) :] == 0.0)


def test_mu_law_round_trip():
    """Encode (build script) then decode (package): 0 stays 0, full scale stays full scale, and a
    -20 dBFS tone keeps an SNR near mu-law's theoretical ~38 dB."""
    assert mu_law_decode(build_avdigits.mu_law_encode(np.array([0.0, 1.0, -1.0]))).tolist() == [0.0, 1.0, -1.0]
    t = np.arange(8000) / 8000
    x = 0.1 * np.sin(2 * np.pi * 440 * t)
    back = mu_law_decode(build_avdigits.mu_law_encode(x)).astype(np.float64)
    snr = 10 * np.log10((x**2).sum() / ((back - x) ** 2).sum())
    assert 33 < snr < 45


# --------------------------------------------------------------------------- bad input to the build


def _write_wav(path: Path, rate: int = 8000, samples: int = 800, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = (3000 * np.sin(np.arange(samples * channels) * 0.2)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone.tobytes())


FIRST = build_avdigits.recording_names()[0]


@pytest.mark.parametrize(
    "make,fragment",
    [
        (None, "missing; expected the FSDD recording"),
        (lambda p: p.write_bytes(b"not a wav file at all"), "does not decode as a WAV file"),
        (lambda p: _write_wav(p, rate=16000), "sample rate 16000 Hz; expected 8000 Hz"),
        (lambda p: _write_wav(p, channels=2), "expected mono 16-bit PCM"),
        (lambda p: _write_wav(p), "SHA-256"),  # a valid 8 kHz WAV, but not FSDD's bytes
    ],
)
def test_build_bad_input_is_one_line_naming_the_file_exit_2(tmp_path, capsys, make, fragment):
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    if make is not None:
        make(tmp_path / "fsdd" / "recordings" / FIRST)
    code = build_avdigits.main(["--fsdd", str(tmp_path / "fsdd"), "--out", str(tmp_path / "out.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and FIRST in err and fragment in err
    assert not (tmp_path / "out.npz").exists()


def test_build_without_a_recordings_folder_exits_2(tmp_path, capsys):
    assert build_avdigits.main(["--fsdd", str(tmp_path), "--out", str(tmp_path / "o.npz")]) == 2
    assert "recordings: missing" in capsys.readouterr().err


def test_manifest_lists_every_kept_recording_once():
    manifest = build_avdigits.read_manifest()
    names = build_avdigits.recording_names()
    assert len(names) == 2400 and sorted(manifest) == sorted(names)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in manifest.values())


# --------------------------------------------------------------------------- shapes and splits


def test_shapes_kinds_ranges(random_splits):
    assert {s: len(d) for s, d in random_splits.items()} == {"train": 1200, "val": 400, "test": 400}
    specs = random_splits["train"].specs
    assert (specs["image"].kind, specs["image"].shape, specs["image"].value_range) == ("image", (1, 16, 15), (0.0, 6.0))
    assert (specs["audio"].kind, specs["audio"].shape, specs["audio"].value_range) == ("audio", (8000,), (-1.0, 1.0))
    audio = torch.cat([d.inputs["audio"] for d in random_splits.values()])
    assert audio.dtype == torch.float32 and float(audio.abs().max()) <= 1.0
    # 1 s holds all but 17 of the 2,400 kept recordings: most rows end in zero padding
    assert float((audio[:, -400:] == 0).all(1).float().mean()) > 0.9
    assert load_splits("avdigits-all")["test"].modalities == ["image", "audio", "fou", "fac", "kar", "zer", "mor"]
    assert load_splits("avdigits", modalities=["audio"])["val"].modalities == ["audio"]


def test_images_and_split_are_mfeats(random_splits):
    mfeat = load_splits("mfeat", modalities=["pix"])
    for split in ("train", "val", "test"):
        assert torch.equal(random_splits[split].ids, mfeat[split].ids)
        assert torch.equal(random_splits[split].inputs["image"], mfeat[split].inputs["pix"])


@pytest.mark.parametrize("source", ["avdigits", "avdigits:split=speaker"])
def test_splits_are_stratified(source):
    splits = load_splits(source)
    for split, per_class in (("train", 120), ("val", 40), ("test", 40)):
        assert Counter(splits[split].labels.tolist()) == {c: per_class for c in range(10)}


@pytest.mark.parametrize("options", [{}, {"split": "speaker"}, {"split": "speaker", "holdout": "theo"}])
def test_pairing_matches_digits_and_uses_each_recording_once(options):
    p = avdigits_pairing(options)
    spoken = np.array([int(name.split("_")[0]) for name in p["recording"]])
    assert np.array_equal(spoken, p["labels"])
    assert len(set(p["recording"])) == 2000
    takes = np.array([int(name.split("_")[2].removesuffix(".wav")) for name in p["recording"]])
    assert takes.min() >= 0 and takes.max() <= 39


def test_pairing_is_deterministic_from_the_seed():
    a, b = avdigits_pairing(seed=3), avdigits_pairing(seed=3)
    assert np.array_equal(a["recording"], b["recording"])
    assert np.array_equal(a["recording"], avdigits_pairing({"seed": "3"}, seed=0)["recording"])
    assert (a["recording"] != avdigits_pairing(seed=4)["recording"]).mean() > 0.5
    assert torch.equal(load_splits("avdigits:seed=3")["test"].inputs["audio"], load_splits("avdigits", seed=3)["test"].inputs["audio"])


@pytest.mark.parametrize("holdout", ["george", "theo"])
def test_speaker_split_holds_one_speaker_out(holdout):
    options = {"split": "speaker"} if holdout == "george" else {"split": "speaker", "holdout": holdout}
    p = avdigits_pairing(options)
    test = p["split"] == "test"
    assert set(p["speaker"][test]) == {holdout}
    assert holdout not in set(p["speaker"][~test])
    assert set(p["speaker"][~test]) == set(SPEAKERS) - {holdout}


def test_speaker_split_changes_only_the_audio(random_splits, speaker_splits):
    for split in ("train", "test"):
        assert torch.equal(random_splits[split].inputs["image"], speaker_splits[split].inputs["image"])
    assert speaker_splits["test"].source == "avdigits:seed=0,split=speaker,holdout=george"


@pytest.mark.parametrize(
    "source,fragment",
    [
        ("avdigits:split=sideways", "split of dataset 'avdigits'"),
        ("avdigits:holdout=theo", "add split=speaker"),
        ("avdigits:split=speaker,holdout=bob", "'bob'"),
        ("avdigits:speed=2", "'speed'"),
        ("avdigits:seed=x", "not an integer"),
    ],
)
def test_bad_options_are_one_line(source, fragment):
    with pytest.raises(InputError) as err:
        load_splits(source)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_modality_is_one_line():
    with pytest.raises(InputError, match="avdigits has no modality 'video'; available: image, audio"):
        load_splits("avdigits", modalities=["video"])


def test_listed_as_a_dataset():
    assert {"avdigits", "avdigits-all"} <= set(describe_sources())


# --------------------------------------------------------------------------- the audio encoder


def test_log_mel_peaks_in_the_band_of_a_tone():
    """A 1 kHz tone: the loudest band's centre lies within one band of 1 kHz on the mel scale
    (2595 log10(1 + f/700): 1 kHz is mel 1000, 4 kHz is mel 2146 over 41 steps of ~52 mel)."""
    from robustbench_mm.datasets.batch import ModalitySpec
    from robustbench_mm.models.encoders import AudioEncoder

    enc = AudioEncoder(ModalitySpec("a", "audio", (8000,), mean=torch.tensor(0.0), std=torch.tensor(1.0)), 16, 16, 0.0)
    t = torch.arange(8000) / 8000
    bands = enc.log_mel(torch.sin(2 * np.pi * 1000 * t).unsqueeze(0))[0].mean(1)
    assert bands.shape == (40,)
    step = 2595 * np.log10(1 + 4000 / 700) / 41
    centre_mel = (int(bands.argmax()) + 1) * step
    assert abs(centre_mel - 2595 * np.log10(1 + 1000 / 700)) <= step
    assert enc(torch.zeros(3, 8000)).shape == (3, 8, 16)


@pytest.mark.slow
def test_avdigits_quality_bar():
    """The issue's bar: >= 90% clean test accuracy on avdigits, <= 60 s to train."""
    from robustbench_mm.models.training import train_model

    _, metrics = train_model({"fusion": "concat"}, load_splits("avdigits"), seed=0, progress=False)
    assert metrics["test"]["accuracy"] >= 0.90
    assert metrics["seconds"] <= 60
