"""Peak memory of `rbmm eval` on media folders of growing size: it must not grow with the data.

Writes class folders of random PNG images (3 x 112 x 112, incompressible noise, ~38 kB) and WAV
files (48,000 int16 samples, 96 kB) under --root, one folder per size in GB, trains a tiny concat
model on a small folder of the same shapes, then runs `rbmm eval` on each folder in a child
process and reads that child's peak resident set size from the kernel (os.wait4 rusage). The
generated files are deleted at the end unless --keep.

    python benchmarks/media_rss.py [--root /tmp/rbmm-media-rss] [--sizes 1 5] [--batch-size 64] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile

HERE = Path(__file__).resolve().parent
SIDE, AUDIO_LEN, RATE = 112, 48_000, 16_000
CLASSES = ("a", "b")


def write_folder(root: Path, n: int, seed: int, splits: tuple[str, ...] = ()) -> None:
    """n samples (image + audio), alternating classes; with `splits`, a split folder level on top."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        split = f"{splits[i % len(splits)]}/" if splits else ""
        folder = root / f"{split}{CLASSES[i % 2]}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
        pixels[:, : SIDE // 2] //= 2 if i % 2 else 1  # a learnable class difference
        Image.fromarray(pixels).save(folder / f"{i:07d}.png", compress_level=1)
        wavfile.write(folder / f"{i:07d}.wav", RATE, rng.integers(-20000, 20000, size=AUDIO_LEN).astype(np.int16))


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def run_child(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one child process."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), OMP_NUM_THREADS="2")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "robustbench_mm", *argv], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/rbmm-media-rss")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1.0, 5.0], help="folder sizes in GB (10^9 bytes)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = ap.parse_args()
    root = Path(args.root)
    per_sample = None
    try:
        train = root / "train-small"
        if not train.exists():
            write_folder(train, 300, seed=1, splits=("train", "val", "test"))
        per_sample = folder_bytes(train) / 300
        ckpt = root / "concat.pt"
        if not ckpt.exists():
            wall, rss, rc = run_child(["train", "--data", str(train), "--fusion", "concat", "--epochs", "1", "--out", str(ckpt), "--quiet"])
            assert rc == 0, "training failed"
        rows = []
        for gb in args.sizes:
            folder = root / f"media-{gb:g}GB"
            n = int(gb * 1e9 / per_sample)
            if not folder.exists():
                t0 = time.perf_counter()
                write_folder(folder, n, seed=2)
                print(f"wrote {folder} ({n} samples) in {time.perf_counter() - t0:.0f} s", flush=True)
            size = folder_bytes(folder)
            out = root / f"run-{gb:g}GB"
            wall, rss, rc = run_child([
                "eval", str(ckpt), "--data", str(folder), "--protocol", str(HERE / "media_rss.toml"), "--out", str(out),
                "--device", "cpu", "--batch-size", str(args.batch_size), "--quiet", "--overwrite",
            ])
            assert rc == 0, f"eval on {folder} failed"
            decoded = n * (3 * SIDE * SIDE + AUDIO_LEN) * 4 / 2**30
            rows.append((size / 1e9, n, decoded, wall, rss))
            print(f"{size / 1e9:.2f} GB on disk, {n} samples ({decoded:.1f} GiB as float32): eval {wall:.0f} s, peak RSS {rss:.0f} MiB", flush=True)
        print("\n| on disk | samples | decoded float32 | eval wall | peak RSS |\n|---|---|---|---|---|")
        for size, n, decoded, wall, rss in rows:
            print(f"| {size:.2f} GB | {n} | {decoded:.1f} GiB | {wall:.0f} s | {rss:.0f} MiB |")
        if len(rows) > 1:  # flat memory means a ratio near 1 while the data grows by the size ratio
            (s0, *_, r0), (s1, *_, r1) = rows[0], rows[-1]
            print(f"\ndata {s1 / s0:.2f}x larger, peak RSS {r1 / r0:.2f}x ({r0:.0f} -> {r1:.0f} MiB)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
