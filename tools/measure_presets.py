"""Measures the paper presets (qmf, qmf-rgbd, udml) on mid-grey images: conditions, fraction perturbed, raw sigma,
channel correlation, clipping, and a normalised float image. Run from any checkout:
`cd /tmp && PYTHONPATH=CHECKOUT python CHECKOUT/tools/measure_presets.py` (protocols/README.md, before/after)."""
import numpy as np
import torch

from robustbench_mm.corruptions import apply_condition
from robustbench_mm.datasets.batch import Batch, ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import load_protocol



def batch(inputs, n):
    return Batch(inputs=inputs, labels=torch.zeros(n, dtype=torch.int64), ids=torch.arange(n))


n = 400
rgb = ModalitySpec("rgb", "image", (3, 32, 32), value_range=(0.0, 255.0))
txt = ModalitySpec("txt", "tokens", (20,), vocab_size=100)
words = torch.randint(2, 100, (n, 20), generator=torch.Generator().manual_seed(0))
for name, specs, level in (("qmf", {"rgb": rgb, "txt": txt}, 10), ("qmf-rgbd", {"rgb": rgb, "depth": ModalitySpec("depth", "image", (3, 32, 32), value_range=(0.0, 255.0))}, 10), ("udml", {"rgb": rgb, "spec": ModalitySpec("spec", "sequence", (16, 8))}, 10)):
    p = load_protocol(name)
    conds = [c for c in p.expand(specs) if c.family != "clean"]
    print(f"== {name}: {len(conds)} conditions, levels {sorted({c.level for c in conds})}; per level: " + "; ".join(f"{c.name} on {'+'.join(c.modalities)} r={c.rate:g}" for c in conds if c.level == level))
    inputs = {m: (torch.full((n,) + s.shape, 128.0) if s.kind == "image" else words if s.kind == "tokens" else torch.zeros((n,) + s.shape)) for m, s in specs.items()}
    hit = {m: torch.zeros(n, dtype=torch.bool) for m in specs}
    outs = {}
    for c in conds:
        if c.level != level:
            continue
        y = apply_condition(batch(inputs, n), c, specs, seed=0)
        for m in c.modalities:
            d = (y.inputs[m] != inputs[m]).flatten(1).any(1)
            hit[m] |= d
            outs.setdefault(m, []).append((y.inputs[m], d, c))
    for m, lst in outs.items():
        for y, d, c in lst:
            s = specs[m]
            line = f"  {m}: fraction {d.float().mean():.3f}"
            if s.kind == "image":
                diff = (y - inputs[m])[d]
                line += f", sigma raw {diff.std():.1f} (after clip), channel corr {np.corrcoef(diff[:, 0].flatten(), diff[:, 1].flatten())[0, 1]:.2f}, min {y.min():.0f}, zeros {(y[d] == 0).float().mean():.3f}"
            elif s.kind == "sequence":
                line += f", sigma {(y - inputs[m])[d].std():.2f}"
            print(line)
    if len(hit) > 1:
        ms = list(hit)
        print(f"  both {ms[0]} and {ms[1]} perturbed (in one cell, or across this level's cells) in {(hit[ms[0]] & hit[ms[1]]).float().mean():.3f} of samples")
# normalised float image
mean, std = torch.tensor([0.46777044, 0.44531429, 0.40661017])[:, None, None], torch.tensor([0.12221994, 0.12145835, 0.14380469])[:, None, None]
norm = ModalitySpec("img", "image", (3, 32, 32), mean=mean.expand(3, 32, 32).clone(), std=torch.full((3, 32, 32), 0.25))
x = (torch.full((n, 3, 32, 32), 128.0) / 255 - mean) / std
try:
    c = next(c for c in load_protocol("qmf").expand({"img": norm}) if c.level == 5)
    y = apply_condition(batch({"img": x}, n), c, {"img": norm}, seed=0).inputs["img"]
    d = (y != x).flatten(1).any(1)
    print(f"qmf level 5 on a normalised float image (train std 0.25): sigma {(y - x)[d].std():.3f} normalised units (QMF: 50/255/std = {50 / 255 / std.mean():.2f})")
except InputError as e:
    print(f"qmf level 5 on a normalised float image: refused: {e}")
