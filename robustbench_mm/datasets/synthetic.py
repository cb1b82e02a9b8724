"""A seeded synthetic dataset for the modality kinds mfeat lacks: sequence, audio and tokens.

Each sample has a class y. Each modality m sees a latent z_m (LATENT dims) that mixes a part
shared by all modalities and a part of its own:

    z_m = info_m * (sqrt(shared) * P[y] + sqrt(1 - shared) * Q_m[y]) + sqrt(shared) * e + sqrt(1 - shared) * e_m

P, Q_m are class prototypes, e is noise common to all modalities of the sample and e_m noise of
its own. `info_m` sets how informative a modality is (0 = not at all); `shared` near 1 makes the
modalities redundant (they err together), near 0 complementary. In a `conflict` fraction of the
samples one modality (chosen at random) is drawn from another class: it deliberately misleads.
Each latent is then rendered:

- sequence (T x D frames): z_m weights fixed smooth temporal patterns, plus frame noise;
- audio (N samples in [-1, 1], 8 kHz): LATENT tones/chirps whose loudness follows z_m, random
  phases, in white background noise;
- tokens (L ids, vocab V, 0 = pad, 1 = unknown): words drawn from softmax(z_m W), variable
  length, padded with 0, a few replaced by the unknown id.

Everything is float64 numpy from `np.random.default_rng` with an explicit seed, rounded to
float32 at the end, so the same seed gives the same data on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import InputError, one_of
from .batch import PAD_ID, UNK_ID, MultimodalData
from .splits import build_splits, stratified_split

LATENT = 8
SAMPLE_RATE = 8000
MODALITIES = ("sequence", "audio", "tokens")
UNK_RATE = 0.03


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters; every field can be set as "synthetic:key=value,..."."""

    classes: int = 4
    samples: int = 1500
    seed: int = 0
    steps: int = 16  # T, frames per sequence
    dim: int = 8  # D, features per frame
    audio_len: int = 1024  # N, waveform samples
    length: int = 24  # L, max tokens
    vocab: int = 64  # V, including pad (0) and unknown (1)
    info_sequence: float = 0.6
    info_audio: float = 0.6
    info_tokens: float = 0.6
    shared: float = 0.5
    conflict: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("classes", self.classes >= 2, ">= 2"),
            ("samples", self.samples >= 5 * self.classes, f">= 5 x classes ({5 * self.classes})"),
            ("steps", self.steps >= 1, ">= 1"),
            ("dim", self.dim >= 1, ">= 1"),
            ("audio_len", self.audio_len >= 16, ">= 16"),
            ("length", self.length >= 2, ">= 2"),
            ("vocab", self.vocab >= 4, ">= 4"),
            ("info_sequence", self.info_sequence >= 0, ">= 0"),
            ("info_audio", self.info_audio >= 0, ">= 0"),
            ("info_tokens", self.info_tokens >= 0, ">= 0"),
            ("shared", 0 <= self.shared <= 1, "in [0, 1]"),
            ("conflict", 0 <= self.conflict <= 1, "in [0, 1]"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise InputError(f"dataset 'synthetic': {key}={getattr(self, key)!r}; expected {expected}")

    @classmethod
    def from_options(cls, options: dict[str, str], seed: int = 0) -> "SyntheticConfig":
        """From "key=value" strings; `info=x` sets all three info_* at once; `seed` defaults to `seed`."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {"seed": seed}
        for key, text in options.items():
            targets = ["info_sequence", "info_audio", "info_tokens"] if key == "info" else [key]
            if targets[0] not in types:
                raise one_of("option of dataset 'synthetic'", key, list(types) + ["info"])
            for target in targets:
                caster = int if types[target] in (int, "int") else float
                try:
                    values[target] = caster(text)
                except ValueError:
                    raise InputError(f"dataset 'synthetic': {key}={text!r} is not {'an integer' if caster is int else 'a number'}") from None
        return cls(**values)

    def source(self) -> str:
        """The source string that regenerates exactly this data."""
        return "synthetic:" + ",".join(f"{k}={v}" for k, v in asdict(self).items())


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to root-mean-square 1, so `info` means the same for every prototype."""
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True))


def generate_synthetic(config: SyntheticConfig) -> dict[str, np.ndarray]:
    """sequence (n,T,D) float32, audio (n,N) float32, tokens (n,L) int64, labels (n,) int64 and
    conflict (n,) int8: index into MODALITIES of the misleading modality, -1 for none."""
    c, n, k = config.classes, config.samples, LATENT
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5E17]))
    labels = rng.permutation(np.arange(n) % c).astype(np.int64)

    shared_proto = _unit_rows(rng.normal(size=(c, k)))
    own_proto = _unit_rows(rng.normal(size=(len(MODALITIES), c, k)))
    shared_noise = rng.normal(size=(n, k))
    own_noise = rng.normal(size=(len(MODALITIES), n, k))

    drawn = np.repeat(labels[None], len(MODALITIES), axis=0)
    conflict = np.full(n, -1, dtype=np.int8)
    victims = rng.choice(n, size=int(round(config.conflict * n)), replace=False)
    which = rng.integers(len(MODALITIES), size=len(victims))
    conflict[victims] = which
    drawn[which, victims] = (labels[victims] + rng.integers(1, c, size=len(victims))) % c

    a, b = np.sqrt(config.shared), np.sqrt(1 - config.shared)
    info = (config.info_sequence, config.info_audio, config.info_tokens)
    z = [
        info[m] * (a * shared_proto[drawn[m]] + b * own_proto[m, drawn[m]]) + a * shared_noise + b * own_noise[m]
        for m in range(len(MODALITIES))
    ]
    return {
        "sequence": _render_sequence(z[0], config, rng),
        "audio": _render_audio(z[1], config, rng),
        "tokens": _render_tokens(z[2], config, rng),
        "labels": labels,
        "conflict": conflict,
    }


def _render_sequence(z: np.ndarray, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Each latent dim drives a fixed smooth temporal pattern over the T x D frame grid."""
    t = np.arange(config.steps)[None, :, None] / config.steps
    freq = rng.uniform(0.5, 2.0, size=(LATENT, 1, config.dim))
    phase = rng.uniform(0, 2 * np.pi, size=(LATENT, 1, config.dim))
    gain = rng.normal(size=(LATENT, 1, config.dim))
    patterns = gain * np.sin(2 * np.pi * freq * t + phase)  # (K, T, D)
    patterns /= np.sqrt((patterns**2).mean(axis=(1, 2), keepdims=True))
    x = np.einsum("nk,ktd->ntd", z, patterns) / np.sqrt(LATENT)
    x += 0.5 * rng.normal(size=x.shape)
    return x.astype(np.float32)


def _render_audio(z: np.ndarray, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """LATENT tones (even dims) and upward chirps (odd dims), loudness sigmoid(z), in noise."""
    n = len(z)
    t = np.arange(config.audio_len) / SAMPLE_RATE
    duration = config.audio_len / SAMPLE_RATE
    f0 = np.geomspace(300.0, 3000.0, LATENT)
    sweep = np.where(np.arange(LATENT) % 2 == 1, 0.5 * f0, 0.0)  # chirps rise by half their frequency
    base_phase = 2 * np.pi * (f0[:, None] * t + 0.5 * (sweep[:, None] / duration) * t**2)  # (K, N)
    loud = 1 / (1 + np.exp(-z))  # (n, K)
    wave = np.zeros((n, config.audio_len))
    offsets = rng.uniform(0, 2 * np.pi, size=(n, LATENT))
    for j in range(LATENT):
        wave += loud[:, j : j + 1] * np.sin(base_phase[j][None] + offsets[:, j : j + 1])
    wave = 0.25 * wave / np.sqrt(LATENT) + 0.05 * rng.normal(size=wave.shape)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _render_tokens(z: np.ndarray, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Words 2..V-1 drawn from softmax(z W); lengths L/2..L; pad 0; a few unknown (1)."""
    n, words = len(z), config.vocab - 2
    weights = rng.normal(size=(LATENT, words))
    logits = z @ weights / np.sqrt(LATENT)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    u = rng.random((n, config.length))
    ids = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), words - 1) + 2
    ids[rng.random((n, config.length)) < UNK_RATE] = UNK_ID
    lengths = rng.integers(max(1, config.length // 2), config.length + 1, size=n)
    ids[np.arange(config.length)[None, :] >= lengths[:, None]] = PAD_ID
    return ids.astype(np.int64)


def synthetic_splits(options: dict[str, str] | None = None, *, seed: int = 0) -> dict[str, MultimodalData]:
    """train/val/test (60/20/20 per class) of the synthetic set; `seed` unless options set one."""
    config = SyntheticConfig.from_options(options or {}, seed=seed)
    data = generate_synthetic(config)
    rows = stratified_split(data["labels"], config.seed)
    return build_splits(
        "synthetic",
        config.source(),
        {m: data[m] for m in MODALITIES},
        {m: m for m in MODALITIES},
        data["labels"],
        np.arange(config.samples, dtype=np.int64),
        rows,
        stats_rows=rows["train"],
        value_ranges={"audio": (-1.0, 1.0)},
        vocab_sizes={"tokens": config.vocab},
        num_classes=config.classes,
        class_names=[f"class{i}" for i in range(config.classes)],
    )
