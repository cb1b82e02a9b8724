"""The paper presets (qmf, qmf-rgbd, udml) measured against small re-implementations of the
originals' noise code, written here from the cited functions; and the joint conditions and
raw-pixel units they are built on.

Originals (read at QingyangZhang/QMF fe6c4c6 and shicaiwei123/UDML d78331e):
- QMF text-image: src/data/dataset.py AddGaussianNoise.__call__, JsonlDataset.__getitem__ (words),
  src/data/helpers.py get_GaussianNoisetransforms (RandomApply p=0.5, variance = 10 * level);
- QMF RGB-D: RGBD-scene-recognition/data/additional_transform.py AddGaussianNoise, test.py test();
- UDML: dataset/CramedDataset.py AddGaussianNoise / AddGaussianNoise_spec (the same in KSDataset.py).
The originals draw from numpy's global stream and ours from counter-based random numbers, so
values are compared as distributions (and exactly where the original is deterministic).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mm.cli import main
from robustbench_mm.corruptions import Condition, affected_mask, apply_condition, get_corruption
from robustbench_mm.corruptions.apply import modality_masks
from robustbench_mm.datasets.batch import UNK_ID, Batch, ModalitySpec, MultimodalData
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import load_protocol, parse_protocol

QMF_MEAN = (0.46777044, 0.44531429, 0.40661017)  # QMF helpers.py get_transforms
QMF_STD = (0.12221994, 0.12145835, 0.14380469)
with np.errstate(invalid="ignore"):
    X86_WRAP = bool(np.array([-77.6]).astype("uint8")[0] == 179)  # how this platform casts negatives to uint8


# ------------------------------------------------------------------ the originals, re-implemented


def qmf_gaussian(img: np.ndarray, variance: float) -> np.ndarray:
    """QMF AddGaussianNoise.__call__: seed 0 on every call, one (h, w, 1) field repeated over the
    channels, clip above 255 only, then the uint8 cast."""
    h, w, c = img.shape
    np.random.seed(0)
    n = np.repeat(np.random.normal(loc=0.0, scale=variance, size=(h, w, 1)), c, axis=2)
    out = n + img
    out[out > 255] = 255
    with np.errstate(invalid="ignore"):
        return out.astype("uint8")


def udml_gaussian(img: np.ndarray, variance: float, rs: np.random.RandomState) -> np.ndarray:
    """UDML AddGaussianNoise.__call__ (no reseeding: its np.random.seed(0) is commented out)."""
    h, w, c = img.shape
    n = np.repeat(rs.normal(loc=0.0, scale=variance**2, size=(h, w, 1)), c, axis=2)
    if variance > 10:
        out = (n / 10) * 255.0
    elif variance == 1:
        out = img.astype(np.float64)
    else:
        out = n + img
    out[out > 255] = 255
    with np.errstate(invalid="ignore"):
        return out.astype("uint8")


def udml_gaussian_spec(spec: np.ndarray, variance: float) -> np.ndarray:
    """UDML AddGaussianNoise_spec.__call__: seed 0 on every call, sigma = variance (not squared)."""
    np.random.seed(0)
    n = np.random.normal(loc=0.0, scale=variance, size=spec.shape)
    out = (n / 10) * 255.0 if variance > 10 else spec if variance == 1 else n + spec
    out = np.array(out, dtype=np.float64)
    out[out > 255] = 255
    return out


def qmf_blank(words: list[str], level: float, rs: np.random.RandomState) -> list[str]:
    """QMF JsonlDataset.__getitem__ on a noised sample: each word '_' with probability 0.1 * level."""
    p = 0.1 * level
    return ["_" if rs.choice([0, 1], p=[1 - p, p]) else w for w in words]


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two samples of 0-255 values over 8 bins of 32."""
    ha = np.histogram(a, bins=8, range=(0, 256))[0] / a.size
    hb = np.histogram(b, bins=8, range=(0, 256))[0] / b.size
    return float(np.abs(ha - hb).sum() / 2)


# ------------------------------------------------------------------ ours


RGB = ModalitySpec("rgb", "image", (3, 64, 64), value_range=(0.0, 255.0))
DEPTH = ModalitySpec("depth", "image", (3, 64, 64), value_range=(0.0, 255.0))
TXT = ModalitySpec("txt", "tokens", (40,), vocab_size=1000)
SPEC = ModalitySpec("spec", "sequence", (32, 16))


def _batch(inputs: dict[str, torch.Tensor], n: int) -> Batch:
    return Batch(inputs=inputs, labels=torch.zeros(n, dtype=torch.int64), ids=torch.arange(n, dtype=torch.int64))


def _grey(n: int, value: float = 128.0, spec: ModalitySpec = RGB) -> torch.Tensor:
    return torch.full((n,) + spec.shape, value)


def _words(n: int) -> torch.Tensor:
    return torch.randint(2, 1000, (n, 40), generator=torch.Generator().manual_seed(0))


def _condition(protocol: str, specs: dict[str, ModalitySpec], level: float) -> Condition:
    return next(c for c in load_protocol(protocol).expand(specs) if c.level == level and c.parts)


# ------------------------------------------------------------------ qmf


@pytest.mark.parametrize("level", [5, 10])
def test_qmf_image_noise_matches_the_original_in_faithful_mode_and_clips_by_default(level):
    sigma = 10 * level
    big = ModalitySpec("rgb", "image", (3, 256, 256), value_range=(0.0, 255.0))  # 256 x 256, as QMF's Resize(256)
    specs = {"rgb": big, "txt": TXT}
    batch = _batch({"rgb": _grey(12, spec=big), "txt": _words(12)}, 12)
    faithful = apply_condition(batch, _condition("qmf:faithful", specs, level), specs, seed=0).inputs["rgb"]
    default = apply_condition(batch, _condition("qmf", specs, level), specs, seed=0).inputs["rgb"]
    hit = (faithful != 128).flatten(1).any(1)  # the original leaves a sample exact 128 only if not noised
    ours = faithful[hit][0].permute(1, 2, 0).numpy()
    theirs = qmf_gaussian(np.full((256, 256, 3), 128, np.uint8), sigma)
    # channel sharing: one field copied to every channel, in both
    assert np.array_equal(ours[..., 0], ours[..., 2]) and np.array_equal(theirs[..., 0], theirs[..., 2])
    # the fixed pattern: every noised sample the same field, at every seed, as np.random.seed(0) gives
    assert all(torch.equal(faithful[hit][0], f) for f in faithful[hit])
    other_seed = apply_condition(batch, _condition("qmf:faithful", specs, level), specs, seed=3).inputs["rgb"]
    assert torch.equal(other_seed[(other_seed != 128).flatten(1).any(1)][0], faithful[hit][0])
    assert np.array_equal(qmf_gaussian(np.full((8, 8, 3), 128, np.uint8), sigma), qmf_gaussian(np.full((8, 8, 3), 128, np.uint8), sigma))
    assert not torch.equal(default[hit][0], default[hit][1])  # ours by default: a field per sample
    # raw sigma, wrap and truncation: the same distribution of output values
    assert np.std(ours[..., 0].astype(float)) == pytest.approx(np.std(theirs[..., 0].astype(float)), rel=0.03)
    if X86_WRAP:
        assert histogram_distance(ours[..., 0], theirs[..., 0]) < 0.02
    ours_default = default[hit][:, 0].numpy()
    assert ours_default.min() >= 0.0 and ours_default.max() <= 255.0
    if sigma == 100:  # P(128 + 100 z < 0) = 10.0%: clipped to 0 here, wrapped in the original
        assert float((ours_default == 0).mean()) == pytest.approx(0.1003, abs=0.01)
        assert histogram_distance(ours_default[0], theirs[..., 0]) > 0.05


def test_qmf_wrap_fraction_on_mid_grey_is_as_the_preset_states():
    """The preset text says 0.51% at sigma 50 and 9.9% at sigma 100; the original's cast, counted."""
    if not X86_WRAP:
        pytest.skip("this platform's numpy saturates negative floats on the uint8 cast")
    for sigma, stated, text in ((50, 0.0051, "0.51% wrap at\nsigma 50"), (100, 0.099, "9.9% at sigma 100")):
        np.random.seed(0)
        field = np.random.normal(0.0, sigma, size=(1024, 1024, 1))
        theirs = qmf_gaussian(np.full((1024, 1024, 1), 128, np.uint8), sigma).astype(float)
        wrapped = float((theirs != np.clip(np.trunc(128 + field), 0, 255)).mean())
        assert wrapped == pytest.approx(stated, rel=0.05)
        assert text in load_protocol("qmf").description


def test_qmf_perturbs_image_and_text_together_each_on_its_own_half():
    n = 4000
    specs = {"rgb": RGB, "txt": TXT}
    x, words = _grey(n), _words(n)
    cond = _condition("qmf", specs, 5)
    out = apply_condition(_batch({"rgb": x, "txt": words}, n), cond, specs, seed=0)
    image = (out.inputs["rgb"] != x).flatten(1).any(1)
    text = (out.inputs["txt"] != words).any(1)
    # the original: RandomApply(p=0.5) draws torch.rand per image, np.random.choice per text: independent
    g, rs = torch.Generator().manual_seed(1), np.random.RandomState(1)
    orig_image = np.array([0.5 >= torch.rand(1, generator=g).item() for _ in range(n)])
    orig_text = np.array([bool(rs.choice([0, 1], p=[0.5, 0.5])) for _ in range(n)])
    tol = 4 * np.sqrt(0.25 / n)
    for ours, theirs in ((image, orig_image), (text, orig_text), (image & text, orig_image & orig_text)):
        assert float(ours.float().mean()) == pytest.approx(float(theirs.mean()), abs=2 * tol)
    assert float((image & text).float().mean()) == pytest.approx(0.25, abs=tol)  # independent masks
    # the engine's per-sample `affected`: perturbed in at least one modality
    assert torch.equal(affected_mask(torch.arange(n), cond, 0), image | text)
    # words: blanked with probability 0.1 * level within a noised sample, as the original's draw
    blanked = float((out.inputs["txt"][text] == UNK_ID).float().mean())
    rs = np.random.RandomState(0)
    theirs = np.mean([w == "_" for _ in range(200) for w in qmf_blank([f"w{i}" for i in range(40)], 5, rs)])
    assert blanked == pytest.approx(theirs, abs=0.01) and blanked == pytest.approx(0.5, abs=0.01)
    level10 = apply_condition(_batch({"rgb": x, "txt": words}, n), _condition("qmf", specs, 10), specs, seed=0)
    assert bool((level10.inputs["txt"][text] == UNK_ID).all())
    assert set(qmf_blank(["a", "b"], 10, np.random.RandomState(0))) == {"_"}


# ------------------------------------------------------------------ qmf-rgbd


def test_qmf_rgbd_gives_rgb_and_depth_the_identical_field_with_independent_masks():
    n = 2000
    small_rgb = ModalitySpec("rgb", "image", (3, 8, 8), value_range=(0.0, 1.0))
    small_depth = ModalitySpec("depth", "image", (3, 8, 8), value_range=(0.0, 1.0))
    specs = {"rgb": small_rgb, "depth": small_depth}
    x = torch.full((n, 3, 8, 8), 0.5)
    cond = _condition("qmf-rgbd", specs, 10)
    out = apply_condition(_batch({"rgb": x, "depth": x.clone()}, n), cond, specs, seed=0)
    d_rgb, d_depth = out.inputs["rgb"] - x, out.inputs["depth"] - x
    rgb, depth = d_rgb.flatten(1).ne(0).any(1), d_depth.flatten(1).ne(0).any(1)
    both = rgb & depth
    assert torch.equal(d_rgb[both], d_depth[both])  # one field for both modalities
    assert float(both.float().mean()) == pytest.approx(0.25, abs=0.045)  # two p = 0.5 draws
    assert torch.equal(d_rgb[:, 0], d_rgb[:, 1])  # shared over channels
    assert float((d_rgb[rgb] * 255).std()) == pytest.approx(10.0, rel=0.03)  # sigma = severity, raw
    # the original: one Compose for rgb_transform and depth_transform, seed 0 on every call
    img = np.full((8, 8, 3), 128, np.uint8)
    assert np.array_equal(qmf_gaussian(img, 10), qmf_gaussian(img, 10))
    assert float((qmf_gaussian(np.full((512, 512, 1), 128, np.uint8), 10).astype(float) - 128).std()) == pytest.approx(10.0, rel=0.03)


# ------------------------------------------------------------------ udml


def test_udml_runs_the_training_law_on_image_and_audio_at_levels_2_to_10():
    specs = {"rgb": RGB, "spec": SPEC}
    conditions = load_protocol("udml").expand(specs)[1:]
    assert [c.level for c in conditions] == list(range(2, 11))
    assert all(c.rate == 1.0 and c.masks == "shared" and c.modalities == ("rgb", "spec") for c in conditions)
    img = np.full((64, 64, 3), 128, np.uint8)
    rs = np.random.RandomState(0)
    assert np.array_equal(udml_gaussian(img, 1, rs), img)  # level 1: the identity, i.e. the clean cell
    assert np.unique(udml_gaussian(img, 11, rs)).size > 100  # level 11: pure noise, not run
    n = 16
    x, s = _grey(n), torch.randn(n, 32, 16, generator=torch.Generator().manual_seed(0)) - 8.0
    for c in conditions:
        v = c.level
        out = apply_condition(_batch({"rgb": x, "spec": s}, n), c, specs, seed=0)
        ours_img = out.inputs["rgb"].numpy()
        theirs_img = np.stack([udml_gaussian(np.full((64, 64, 3), 128, np.uint8), v, rs) for _ in range(n)])
        if v <= 5:  # no clipping or wrap: sigma = v^2 directly
            assert float((ours_img - 128).std()) == pytest.approx(v**2, rel=0.03)
            assert float((theirs_img.astype(float) - 128).std()) == pytest.approx(v**2, rel=0.06)  # + truncation
        assert np.array_equal(ours_img[:, 0], ours_img[:, 1])
        d_spec = (out.inputs["spec"] - s).numpy()
        assert float(d_spec.std()) == pytest.approx(v, rel=0.05)  # sigma = v in the data's units
        assert float((udml_gaussian_spec(s[0].numpy(), v) - s[0].numpy()).std()) == pytest.approx(v, rel=0.15)


def test_udml_faithful_wraps_the_image_and_fixes_the_audio_pattern():
    specs = {"rgb": RGB, "spec": SPEC}
    n = 16
    x, s = _grey(n), torch.zeros(n, 32, 16)
    out = apply_condition(_batch({"rgb": x, "spec": s}, n), _condition("udml:faithful", specs, 10), specs, seed=0)
    d_spec = out.inputs["spec"] - s
    assert all(torch.equal(d_spec[0], d) for d in d_spec)  # np.random.seed(0) in AddGaussianNoise_spec
    ours = out.inputs["rgb"][:, 0].numpy()
    theirs = np.stack([udml_gaussian(np.full((64, 64, 3), 128, np.uint8), 10, np.random.RandomState(i))[..., 0] for i in range(n)])
    assert not np.array_equal(ours[0], ours[1])  # image noise is not fixed in UDML
    if X86_WRAP:
        assert histogram_distance(ours, theirs) < 0.02
    default = apply_condition(_batch({"rgb": x, "spec": s}, n), _condition("udml", specs, 10), specs, seed=0).inputs["rgb"][:, 0].numpy()
    assert histogram_distance(default, theirs) > 0.05  # the wrap moves ~10% of the mass
    assert float((default == 0).mean()) == pytest.approx(0.099, abs=0.01)


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
    with pytest.raises(InputError, match=r"options\.colour.*an option of 'gaussian_noise' \(channels, overflow, unit\)"):
        parse_protocol(JOINT.replace('targets = "vec"', 'targets = "vec"\noptions = { colour = "red" }'))
    with pytest.raises(InputError, match="masks"):
        parse_protocol(JOINT.replace("rates = [0.5]", 'rates = [0.5]\nmasks = "some"'))
    with pytest.raises(InputError, match="has no faithful variant"):
        load_protocol("quick:faithful")
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
