"""Measures the paper presets against the originals' noise code on natural photographs
(scikit-image's bundled images), for protocols/README.md and docs/presets.md:

1. per preset and level: sigma of (output - input) over the noised images, share of pixels the
   uint8 cast wraps, share of pixels changed; the original (its formula re-implemented in numpy,
   as in tests/test_presets.py), ours by default and ours `:clipped`;
2. the accuracy effect on a model: a small CNN trained here to tell 32 x 32 crops of six
   photographs apart, evaluated clean and under each condition (every image noised, so the
   effect is not diluted by the presets' 50% gates);
3. QMF's text coin: the share of samples whose text the original blanks, simulated by running
   JsonlDataset.__getitem__'s numpy calls in its order on MVSA_Single's test texts (pass the path
   of QMF's text-image-classification/datasets/MVSA_Single/test.jsonl), with square and mixed
   image shapes, in one process and in 16 DataLoader workers.

Run from the checkout: `PYTHONPATH=. python tools/measure_presets.py [--mvsa test.jsonl]`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from skimage import data as images
from torch import nn

from robustbench_mm.corruptions import SampleRandom, get_corruption
from robustbench_mm.datasets.batch import ModalitySpec

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photos(h: int, w: int) -> np.ndarray:
    """(6, h, w, 3) uint8 top-left crops of the photographs."""
    return np.stack([getattr(images, name)()[:h, :w] for name in PHOTOS])


def original_gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """QMF AddGaussianNoise.__call__ / UDML add_gaussian_visual: the seed-0 (h, w, 1) field, clip
    above 255, uint8 cast (wraps negatives on x86)."""
    h, w, c = img.shape
    out = np.repeat(np.random.RandomState(0).normal(0.0, sigma, (h, w, 1)), c, axis=2) + img
    out[out > 255] = 255
    with np.errstate(invalid="ignore"):
        return out.astype(np.uint8)


def original_salt(img: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """QMF AddSaltPepperNoise.__call__ / UDML add_salt_visual at density 0.1, once its gate passed."""
    h, w, c = img.shape
    mask = np.repeat(rs.choice((0, 1, 2), size=(h, w, 1), p=[0.05, 0.05, 0.9]), c, axis=2)
    out = img.copy()
    out[mask == 0], out[mask == 1] = 0, 255
    return out


def ours(batch: np.ndarray, name: str, param: float, **options) -> np.ndarray:
    """One of our kernels on raw (B, h, w, 3) uint8 pixels, every sample noised."""
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    spec = ModalitySpec("img", "image", tuple(x.shape[1:]), value_range=(0.0, 255.0))
    y = get_corruption(name).fn(x, param, SampleRandom(torch.arange(len(x)), 0, "measure"), spec, **options)
    return y.permute(0, 2, 3, 1).numpy().astype(np.uint8)


FAITHFUL = {"channels": "shared", "overflow": "wrap", "pattern": "numpy-seed-0"}
CLIPPED = {"channels": "shared", "overflow": "clip", "pattern": "per-sample"}


def variants(preset: str, level: float):
    """(label, function of a (B, h, w, 3) uint8 batch) for the original, ours and ours clipped."""
    if preset.endswith("salt"):
        rs = np.random.RandomState(0)
        return [("original", lambda b: np.stack([original_salt(i, rs) for i in b])),
                ("ours", lambda b: ours(b, "impulse_noise", 0.1, channels="shared"))]
    sigma = {"qmf": 10 * level, "qmf-rgbd": level, "udml": 10 * level}[preset]
    return [("original", lambda b: np.stack([original_gaussian(i, sigma) for i in b])),
            ("ours", lambda b: ours(b, "gaussian_noise", sigma / 255, **FAITHFUL)),
            ("ours :clipped", lambda b: ours(b, "gaussian_noise", sigma / 255, **CLIPPED))]


def pixel_table(size: dict[str, int]) -> None:
    print("| preset | level | image | sigma of output - input | wrapped pixels | changed pixels |")
    print("|---|---|---|---|---|---|")
    for preset, levels in (("qmf", (5, 10)), ("qmf-rgbd", (5, 10)), ("udml", (5, 10)), ("qmf-salt", (5, 10)), ("udml-salt", (5, 10))):
        side = size[preset]
        clean = photos(side, side)
        for level in levels:
            for label, noise in variants(preset, level):
                noisy = noise(clean)
                diff = noisy.astype(np.float64) - clean
                if preset.endswith("salt"):
                    wrapped = 0.0
                else:
                    sigma = {"qmf": 10 * level, "qmf-rgbd": level, "udml": 10 * level}[preset]
                    field = np.repeat(np.random.RandomState(0).normal(0.0, sigma, (side, side, 1)), 3, axis=2)
                    wrapped = float(np.mean([(c + field <= -1).mean() for c in clean.astype(np.float64)])) if label != "ours :clipped" else 0.0
                print(f"| {preset} | {level} | {side} px | {label}: {diff.std():.1f} | {wrapped:.2%} | {(diff != 0).mean():.1%} |")


class SmallCNN(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 8 * 8, classes),
        )

    def forward(self, x):
        return self.net(x)


def crops(n: int, rng: np.random.Generator, sources: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """n random 32 x 32 crops and the index of the photograph each came from."""
    labels = rng.integers(len(sources), size=n)
    out = np.empty((n, 32, 32, 3), np.uint8)
    for i, k in enumerate(labels):
        h, w = sources[k].shape[:2]
        r, c = rng.integers(h - 32), rng.integers(w - 32)
        out[i] = sources[k][r:r + 32, c:c + 32]
    return out, labels


def to_input(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0


def accuracy_table() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sources = [getattr(images, name)() for name in PHOTOS]
    train_x, train_y = crops(6000, rng, sources)
    test_x, test_y = crops(1200, rng, sources)
    model = SmallCNN(len(PHOTOS))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = to_input(train_x), torch.from_numpy(train_y)
    for epoch in range(4):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    def acc(batch: np.ndarray) -> float:
        with torch.no_grad():
            return float((model(to_input(batch)).argmax(1).numpy() == test_y).mean())

    print(f"\nsmall CNN, 6 photographs, 32 x 32 crops, 1200 test crops: clean accuracy {acc(test_x):.3f}")
    print("| preset | level | original | ours | ours :clipped |")
    print("|---|---|---|---|---|")
    for preset in ("qmf", "qmf-rgbd", "udml", "qmf-salt", "udml-salt"):
        for level in (5, 10):
            cells = [f"{acc(noise(test_x)):.3f}" for _, noise in variants(preset, level)]
            cells += ["-"] * (3 - len(cells))
            print(f"| {preset} | {level} | " + " | ".join(cells) + " |")


def qmf_text_fraction(words: list[int], shapes: list[tuple[int, int]], level: float, seed: int, workers: int, batch: int = 16) -> float:
    """Share of samples whose text QMF's JsonlDataset.__getitem__ blanks, running its numpy calls
    in order: the text coin np.random.choice([0, 1], p=[.5, .5]), one choice per word when it
    comes up 1, then (RandomApply, torch's coin, p = 0.5) AddGaussianNoise's np.random.seed(0) and
    (h, w, 1) normals, which set the state the next sample's coin is drawn from. With workers,
    each worker runs whole batches w, w + workers, ... from its own numpy seed (torch >= 1.9
    seeds numpy per worker); the stand-ins for those seeds and for torch's coins are seeded here."""
    q = 0.1 * level
    image_coin = np.random.default_rng(1000 + seed).random(len(words)) < 0.5
    n_batches = -(-len(words) // batch)
    streams = [list(range(len(words)))] if workers == 0 else [
        [i for b in range(w, n_batches, workers) for i in range(b * batch, min(len(words), (b + 1) * batch))] for w in range(workers)
    ]
    noised = 0
    for w, order in enumerate(streams):
        state = np.random.RandomState(seed * 100 + w)
        for i in order:
            if state.choice([0, 1], p=[0.5, 0.5]):
                noised += 1
                for _ in range(words[i]):
                    state.choice([0, 1], p=[1 - q, q])
            if image_coin[i]:
                h, wd = shapes[i]
                state.seed(0)
                state.normal(loc=0.0, scale=10 * level, size=(h, wd, 1))
    return noised / len(words)


def text_table(path: str) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    words = [len(r["text"].split(" ")) for r in rows]
    ratios = np.random.default_rng(0).choice([(1, 1), (4, 3), (3, 4), (16, 9), (9, 16)], size=len(rows))
    mixed = [(256, int(256 * a / b)) if a >= b else (int(256 * b / a), 256) for a, b in ratios]  # Resize(256): short side 256
    square = [(256, 256)] * len(rows)
    print(f"\nQMF text coin on MVSA_Single test ({len(rows)} texts), share of samples whose text is blanked, seeds 1-5 (mean, min-max):")
    print("| images | workers | level 5 | level 10 |")
    print("|---|---|---|---|")
    for label, shapes in (("all 256 x 256", square), ("mixed aspect ratios", mixed)):
        for workers in (0, 16):
            cells = []
            for level in (5, 10):
                f = [qmf_text_fraction(words, shapes, level, seed, workers) for seed in range(1, 6)]
                cells.append(f"{np.mean(f):.1%} ({min(f):.1%}-{max(f):.1%})")
            print(f"| {label} | {workers} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvsa", help="QMF's datasets/MVSA_Single/test.jsonl (for the text coin)")
    args = parser.parse_args()
    pixel_table({"qmf": 256, "qmf-rgbd": 224, "udml": 224, "qmf-salt": 256, "udml-salt": 224})
    accuracy_table()
    if args.mvsa:
        text_table(args.mvsa)
