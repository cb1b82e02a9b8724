"""`avdigits`: real handwritten digits (mfeat) paired by class with real spoken digits (FSDD).

The construction of AV-MNIST (images and spoken digits paired by class), with data we can ship:
each of the 2,000 mfeat samples (200 per digit) gets one recording of the same digit from the Free
Spoken Digit Dataset ("Free Spoken Digit Dataset (FSDD)", the contributors of
Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0; `data/avdigits.npz` is derived from it and
carries the same licence, see `data/avdigits-LICENSE.md`). `tools/build_avdigits.py` writes that file
(takes 0..39 of each of the 6 speakers and 10 digits: 2,400 recordings as 8-bit mu-law codes)
and this module checks its SHA-256 before use.

Modalities: `image` = mfeat `pix` (1x16x15, values 0..6); `audio` = the waveform, 8 kHz, the
first AUDIO_LENGTH = 8,000 samples (1 s; 99.33% of the FSDD recordings are no longer), zero-padded,
in [-1, 1]. `avdigits-all` adds the mfeat vector views fou, fac, kar, zer, mor. Sample ids are the
mfeat row indices; the train/val/test split of the images is mfeat's (60/20/20 per class, `seed`).

Options ("avdigits:key=value,..."):
- seed=N : split seed and pairing seed (default: the caller's seed, 0);
- split=random (default): each digit's 200 images get 200 of its 240 recordings, drawn by seed;
- split=speaker : one speaker's recordings are the test split's audio (its 40 takes per digit go
  to the 40 test images of that digit), train and val get 160 of the other speakers' 200 per digit;
- holdout=NAME : the held-out speaker with split=speaker (default george; one of SPEAKERS).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError, one_of
from .batch import MultimodalData
from .embedded import read_embedded, select_modalities
from .splits import build_splits, stratified_split
from .mfeat import ALL_VIEWS, CLASS_NAMES, PIX_RANGE, PIX_SHAPE
from .mfeat import read_mfeat

AVDIGITS_FILE = Path(__file__).parent / "data" / "avdigits.npz"
AVDIGITS_SHA256 = "1b9409ad42512a933d7487f78c514e1fbf427f0ba0ed7eae090077cfbef58bd6"
SAMPLE_RATE = 8000
AUDIO_LENGTH = 8000
MU = 255
CODE_MAX = 127
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
SPLIT_CHOICES = ("random", "speaker")
DEFAULT_HOLDOUT = "george"
VECTOR_VIEWS = tuple(v for v in ALL_VIEWS if v != "pix")
DEFAULT_MODALITIES = ("image", "audio")
ALL_MODALITIES = DEFAULT_MODALITIES + VECTOR_VIEWS
OPTIONS = ("seed", "split", "holdout")
PAIRING_STREAM = 0xA7D1  # the pairing draws from its own stream, not the split's


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    """int8 mu-law codes (-127..127) -> float32 waveform in [-1, 1] (code 0 is exactly 0).

    x = sign(q) * ((1 + mu) ** (|q| / 127) - 1) / mu, evaluated in float64 through a 255-entry
    table, so every machine decodes the same float32 values.
    """
    y = np.arange(-CODE_MAX, CODE_MAX + 1, dtype=np.float64) / CODE_MAX
    table = (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)
    return table[codes.astype(np.int64) + CODE_MAX]


@lru_cache(maxsize=1)
def _read() -> dict[str, np.ndarray]:
    """The recordings as a (2400, AUDIO_LENGTH) float32 matrix plus their digit/speaker/take."""
    arrays = read_embedded(AVDIGITS_FILE, AVDIGITS_SHA256, "tools/build_avdigits.py")
    lengths = arrays["lengths"].astype(np.int64)
    ends = np.cumsum(lengths)
    waves = np.zeros((len(lengths), AUDIO_LENGTH), dtype=np.float32)
    decoded = mu_law_decode(arrays["audio"])
    for i, (end, n) in enumerate(zip(ends, lengths)):
        waves[i, :n] = decoded[end - n : end]
    return {
        "waves": waves,
        "digits": arrays["digits"].astype(np.int64),
        "speakers": arrays["speakers"].astype(np.int64),
        "takes": arrays["takes"].astype(np.int64),
        "original_lengths": arrays["original_lengths"].astype(np.int64),
    }


def _parse(options: dict[str, str], seed: int) -> tuple[int, str, str | None]:
    """(seed, split, held-out speaker or None) from the source options, checked."""
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        raise one_of("option of dataset 'avdigits'", unknown[0], OPTIONS)
    if "seed" in options:
        try:
            seed = int(options["seed"])
        except ValueError:
            raise InputError(f"dataset 'avdigits': seed={options['seed']!r} is not an integer") from None
    split = options.get("split", "random")
    if split not in SPLIT_CHOICES:
        raise one_of("split of dataset 'avdigits'", split, SPLIT_CHOICES)
    if split == "random":
        if "holdout" in options:
            raise InputError("dataset 'avdigits': holdout= names the test speaker of split=speaker; add split=speaker")
        return seed, split, None
    holdout = options.get("holdout", DEFAULT_HOLDOUT)
    if holdout not in SPEAKERS:
        raise one_of("holdout speaker of dataset 'avdigits'", holdout, SPEAKERS)
    return seed, split, holdout


def pair_recordings(labels: np.ndarray, test_rows: np.ndarray, seed: int, holdout: str | None) -> np.ndarray:
    """Index (into the stored recordings) of the recording paired with each image.

    labels : (N,) digit of each image; test_rows : the images of the test split. Digits in
    increasing order, each draws from one generator seeded with (seed, PAIRING_STREAM). Without
    `holdout`, a digit's images (in id order) get a random 200 of its 240 recordings; with it, its
    test images get the held-out speaker's recordings, the others a random part of the rest.
    """
    stored = _read()
    digits, speakers = stored["digits"], stored["speakers"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, PAIRING_STREAM]))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_rows] = True
    paired = np.full(len(labels), -1, dtype=np.int64)
    for digit in np.unique(labels):
        images = np.flatnonzero(labels == digit)
        recordings = np.flatnonzero(digits == digit)
        if holdout is None:
            paired[images] = recordings[rng.permutation(len(recordings))[: len(images)]]
            continue
        held = speakers[recordings] == SPEAKERS.index(holdout)
        for chosen, pool in ((images[is_test[images]], recordings[held]), (images[~is_test[images]], recordings[~held])):
            paired[chosen] = pool[rng.permutation(len(pool))[: len(chosen)]]
    return paired


def avdigits_pairing(options: dict[str, str] | None = None, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Which recording each sample uses: ids, labels, split ("train"/"val"/"test"), speaker,
    recording (FSDD file name); for documentation and checks."""
    seed, _, holdout = _parse(options or {}, seed)
    labels = read_mfeat()["labels"]
    rows = stratified_split(labels, seed)
    paired = pair_recordings(labels, rows["test"], seed, holdout)
    stored = _read()
    split = np.empty(len(labels), dtype="<U5")
    for name, r in rows.items():
        split[r] = name
    speaker = np.array(SPEAKERS)[stored["speakers"][paired]]
    recording = np.array(
        [f"{d}_{s}_{t}.wav" for d, s, t in zip(stored["digits"][paired], speaker, stored["takes"][paired])]
    )
    return {"ids": np.arange(len(labels)), "labels": labels, "split": split, "speaker": speaker, "recording": recording}


def avdigits_splits(
    options: dict[str, str] | None = None,
    modalities: list[str] | tuple[str, ...] | None = None,
    *,
    seed: int = 0,
    all_views: bool = False,
) -> dict[str, MultimodalData]:
    """train/val/test of avdigits (image + audio; with `all_views` also the mfeat vector views)."""
    seed, split, holdout = _parse(options or {}, seed)
    names = select_modalities("avdigits", modalities, ALL_MODALITIES if all_views else DEFAULT_MODALITIES, ALL_MODALITIES)
    mfeat = read_mfeat()
    labels = mfeat["labels"]
    rows = stratified_split(labels, seed)
    paired = pair_recordings(labels, rows["test"], seed, holdout)
    arrays = {}
    for m in names:
        if m == "image":
            arrays[m] = mfeat["pix"].reshape(len(labels), *PIX_SHAPE)
        elif m == "audio":
            arrays[m] = _read()["waves"][paired]
        else:
            arrays[m] = mfeat[m]
    kinds = {m: m if m in DEFAULT_MODALITIES else "vector" for m in names}
    name = "avdigits-all" if all_views and not modalities else "avdigits"
    source = f"{name}:seed={seed},split={split}" + (f",holdout={holdout}" if holdout else "")
    return build_splits(
        name,
        source,
        arrays,
        kinds,
        labels,
        np.arange(len(labels), dtype=np.int64),
        rows,
        stats_rows=rows["train"],
        value_ranges={"image": PIX_RANGE, "audio": (-1.0, 1.0)},
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
    )
