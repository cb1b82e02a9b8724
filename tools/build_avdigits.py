"""Rebuild robustbench_mm/datasets/data/avdigits.npz from the Free Spoken Digit Dataset.

FSDD ("Free Spoken Digit Dataset", the contributors of Jakobovski/free-spoken-digit-dataset,
CC BY-SA 4.0) holds 3,000 mono 16-bit 8 kHz WAV recordings {digit}_{speaker}_{take}.wav, 6 speakers
x 10 digits x 50 takes. `avdigits` pairs them with the 2,000 mfeat images (200 per digit), so this
script keeps takes 0..39 of every speaker and digit (2,400 recordings, 240 per digit: enough for any
seeded pairing and for holding out any one speaker's 40 takes per digit as the test split).

Each recording is cut to its first MAX_SAMPLES samples (1.0 s; 99.33% of the 3,000 recordings
are no longer) and stored unpadded as 8-bit mu-law codes (mu = 255, mid-tread: codes -127..127,
code 0 is exact silence), concatenated in the order (digit, speaker name, take); `lengths` says
where each one ends. Decoding: x = sign(q) * ((1 + mu) ** (|q| / 127) - 1) / mu, in [-1, 1] of full
scale. Measured on the 2,400 kept recordings: reconstruction SNR 37.7 dB pooled (median 37.5 dB,
worst recording 29.6 dB; 8-bit linear codes: 29.7 dB pooled, worst 2.7 dB), 6.6 MB with deflate;
16-bit PCM with deflate would take 12.3 MB.

Inputs are checked before use: every kept file must exist, decode as a mono 16-bit PCM WAV at
8,000 Hz, and have the SHA-256 listed in tools/build_avdigits.sha256 (sha256sum format; 2,400 lines,
kept beside this script rather than inside it). Any failure is one line naming the file and what
was expected, exit code 2. The zip is written with fixed timestamps, so the same inputs give the
same bytes; the output's SHA-256 is printed and must equal
`robustbench_mm.datasets.avdigits.AVDIGITS_SHA256`.

    python tools/build_avdigits.py [--fsdd PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np

from build_common import sha256_file, write_npz  # tools/ is on sys.path when a tool runs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FSDD = ROOT.parent / "shared" / "fsdd"
DEFAULT_OUT = ROOT / "robustbench_mm" / "datasets" / "data" / "avdigits.npz"
MANIFEST = Path(__file__).with_suffix(".sha256")
SAMPLE_RATE = 8000
MAX_SAMPLES = 8000
DIGITS = 10
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TAKES = 40
MU = 255
CODE_MAX = 127


class BuildError(Exception):
    """A bad input: the message names the file and what was expected (exit code 2)."""


def recording_names() -> list[str]:
    """The kept recordings, in storage order: digit, then speaker name, then take."""
    return [f"{d}_{s}_{t}.wav" for d in range(DIGITS) for s in SPEAKERS for t in range(TAKES)]


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """file name -> SHA-256 from a sha256sum-format file ("<hex>  recordings/<name>")."""
    out = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        out[Path(name).name] = digest
    return out


def read_recording(path: Path, expected_sha256: str) -> np.ndarray:
    """The samples of one FSDD WAV as float64 in [-1, 1), after every check on it."""
    if not path.is_file():
        raise BuildError(f"{path}: missing; expected the FSDD recording {path.name} (SHA-256 {expected_sha256})")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, OSError) as e:
        raise BuildError(f"{path}: does not decode as a WAV file ({e}); expected mono 16-bit PCM at {SAMPLE_RATE} Hz") from None
    if rate != SAMPLE_RATE:
        raise BuildError(f"{path}: sample rate {rate} Hz; expected {SAMPLE_RATE} Hz")
    if channels != 1 or width != 2:
        raise BuildError(f"{path}: {channels} channel(s) of {8 * width}-bit samples; expected mono 16-bit PCM")
    if frames == 0 or len(raw) != 2 * frames:
        raise BuildError(f"{path}: {len(raw) // 2} samples decoded of {frames} in its header; expected a complete, non-empty recording")
    digest = sha256_file(path)
    if digest != expected_sha256:
        raise BuildError(f"{path}: SHA-256 {digest}, expected {expected_sha256} (FSDD commit 26eb9aa)")
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


def mu_law_encode(x: np.ndarray) -> np.ndarray:
    """Waveform in [-1, 1] -> int8 codes in -127..127 (0 -> 0)."""
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.round(CODE_MAX * y).astype(np.int8)


def mu_law_decode(q: np.ndarray) -> np.ndarray:
    """int8 codes -> float64 waveform in [-1, 1]; the inverse of `mu_law_encode` up to rounding."""
    y = q.astype(np.float64) / CODE_MAX
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU


def read_inputs(fsdd: Path, manifest: dict[str, str]) -> dict[str, np.ndarray]:
    """The arrays of the data file, from the kept recordings under fsdd/recordings."""
    names = recording_names()
    absent = [n for n in names if n not in manifest]
    if absent:
        raise BuildError(f"{MANIFEST}: no SHA-256 for {absent[0]}; expected one line per kept recording")
    codes, lengths, original = [], [], []
    for name in names:
        x = read_recording(fsdd / "recordings" / name, manifest[name])
        original.append(len(x))
        x = x[:MAX_SAMPLES]
        codes.append(mu_law_encode(x))
        lengths.append(len(x))
    per_digit = len(SPEAKERS) * TAKES
    return {
        "audio": np.concatenate(codes),
        "lengths": np.array(lengths, dtype=np.int16),
        "original_lengths": np.array(original, dtype=np.int32),
        "digits": np.repeat(np.arange(DIGITS, dtype=np.int8), per_digit),
        "speakers": np.tile(np.repeat(np.arange(len(SPEAKERS), dtype=np.int8), TAKES), DIGITS),
        "takes": np.tile(np.arange(TAKES, dtype=np.int8), DIGITS * len(SPEAKERS)),
        "speaker_names": np.array(SPEAKERS, dtype="<U8"),
    }


def build(fsdd: Path, out: Path, manifest_path: Path = MANIFEST) -> str:
    """Check the inputs, write the npz, return its SHA-256."""
    if not (fsdd / "recordings").is_dir():
        raise BuildError(f"{fsdd / 'recordings'}: missing; expected the FSDD folder with recordings/*.wav (--fsdd PATH)")
    write_npz(out, read_inputs(fsdd, read_manifest(manifest_path)))
    return sha256_file(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="the FSDD folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        digest = build(args.fsdd, args.out)
    except BuildError as e:
        print(f"build_avdigits: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {args.out.stat().st_size} bytes, SHA-256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
