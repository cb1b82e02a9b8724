"""Fusion models: the encode/fuse split, presence masks, raw-unit inputs, heads, config and input checks."""

from __future__ import annotations

import pytest
import torch

from robustbench_mm.datasets.batch import ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.models import BACKBONES, build_model, check_inputs, check_tensors
from robustbench_mm.models.fusion import PredictionHead

B = 6


def all_kind_specs() -> list[ModalitySpec]:
    """One modality of every kind, small shapes, non-trivial train statistics."""
    g = torch.Generator().manual_seed(1)
    return [
        ModalitySpec("img", "image", (1, 8, 7), mean=torch.rand(1, 8, 7, generator=g), std=torch.rand(1, 8, 7, generator=g) + 0.5),
        ModalitySpec("vec", "vector", (10,), mean=torch.randn(10, generator=g), std=torch.rand(10, generator=g) + 0.5),
        ModalitySpec("seq", "sequence", (12, 3), mean=torch.zeros(3), std=torch.ones(3)),
        ModalitySpec("aud", "audio", (200,), mean=torch.tensor(0.0), std=torch.tensor(2.0)),
        ModalitySpec("tok", "tokens", (9,), vocab_size=20),
    ]


def random_inputs(specs: list[ModalitySpec], n: int = B, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in specs:
        if s.kind == "tokens":
            out[s.name] = torch.randint(0, s.vocab_size, (n, *s.shape), generator=g)
        else:
            out[s.name] = torch.randn((n, *s.shape), generator=g)
    return out


def tiny(fusion: str, specs, calibration: bool = False, task: str = "classification", seed: int = 0, **options):
    """A small model; `unimodal` uses the first modality, and calibration is off where a fusion has none."""
    torch.manual_seed(seed)
    config = {
        "fusion": fusion, "calibration": calibration and fusion != "unimodal", "specs": [s.to_dict() for s in specs],
        "num_classes": 4, "task": task, "dim": 16, "width": 16, "hidden": 16, **options,
    }
    if fusion == "unimodal":
        config.setdefault("modality", specs[0].name)
    return build_model(config).eval()


REGRESSION_FUSIONS = ("concat", "transformer", "conv", "late", "uncertainty-late", "unimodal")


@pytest.mark.parametrize("fusion", BACKBONES.names())
@pytest.mark.parametrize("calibration", [False, True])
def test_forward_is_fuse_of_encodes_exactly(fusion, calibration):
    specs = all_kind_specs()
    model = tiny(fusion, specs, calibration)
    x = random_inputs(specs)
    present = {"vec": torch.tensor([True, False, True, True, False, True])}
    with torch.no_grad():
        features = {m: model.encode(m, x[m]) for m in model.modalities}
        assert torch.equal(model(x), model.fuse(features))
        assert torch.equal(model(x, present), model.fuse(features, present))
    assert model(x).shape == (B, 4)


@pytest.mark.parametrize("fusion", REGRESSION_FUSIONS)
def test_regression_output_is_one_value_per_sample(fusion):
    specs = all_kind_specs()[:2]
    model = tiny(fusion, specs, task="regression")
    out = model(random_inputs(specs))
    assert out.shape == (B,)
    loss = model.loss(out, torch.randn(B))
    assert torch.isfinite(loss)


def test_sequence_and_audio_encoders_return_token_features():
    specs = all_kind_specs()
    model = tiny("concat", specs)
    x = random_inputs(specs)
    shapes = {m: tuple(model.encode(m, x[m]).shape) for m in model.modalities}
    assert shapes["vec"] == (B, 16) and shapes["img"] == (B, 16) and shapes["tok"] == (B, 16)
    assert len(shapes["seq"]) == 3 and shapes["seq"][0] == B and shapes["seq"][2] == 16
    assert len(shapes["aud"]) == 3 and shapes["aud"][0] == B and shapes["aud"][2] == 16


@pytest.mark.parametrize("fusion", BACKBONES.names())
@pytest.mark.parametrize("calibration", [False, True])
def test_absent_modality_values_do_not_reach_the_output(fusion, calibration):
    specs = all_kind_specs()
    model = tiny(fusion, specs, calibration)
    x = random_inputs(specs)
    absent = torch.tensor([True, False, True, False, True, False])
    present = {"img": ~absent, "tok": ~absent}
    changed = dict(x, img=x["img"] + 100.0 * torch.randn_like(x["img"]), tok=torch.randint(2, 20, x["tok"].shape))
    with torch.no_grad():
        a, b = model(x, present), model(changed, present)
        full_a, full_b = model(x), model(changed)
    assert torch.allclose(a[absent], b[absent], atol=1e-5)
    assert not torch.allclose(full_a[absent], full_b[absent], atol=1e-3)  # the inputs do matter when present


@pytest.mark.parametrize("fusion", BACKBONES.names())
def test_no_modality_present_still_gives_finite_outputs(fusion):
    specs = all_kind_specs()[:3]
    model = tiny(fusion, specs, calibration=True)
    present = {s.name: torch.zeros(B, dtype=torch.bool) for s in specs}
    assert torch.isfinite(model(random_inputs(specs), present)).all()


@pytest.mark.parametrize("fusion", BACKBONES.names())
def test_models_take_raw_units_through_the_spec_statistics(fusion):
    """A model with train statistics (mu, sigma) on x equals one with (0, 1) on (x - mu) / sigma."""
    g = torch.Generator().manual_seed(3)
    mu, sigma = torch.randn(10, generator=g) * 50, torch.rand(10, generator=g) * 20 + 1
    raw = [ModalitySpec("a", "vector", (10,), mean=mu, std=sigma), ModalitySpec("b", "image", (1, 4, 4))]
    unit = [ModalitySpec("a", "vector", (10,), mean=torch.zeros(10), std=torch.ones(10)), raw[1]]
    x = random_inputs(raw)
    x_raw = dict(x, a=x["a"] * sigma + mu)
    with torch.no_grad():
        assert torch.allclose(tiny(fusion, raw)(x_raw), tiny(fusion, unit)(x), atol=1e-5)


def test_the_three_backbones_share_one_head_with_and_without_calibration():
    specs = all_kind_specs()
    shapes = set()
    for fusion in ("concat", "transformer", "conv"):
        for calibration in (False, True):
            head = tiny(fusion, specs, calibration).head
            assert type(head) is PredictionHead
            shapes.add(tuple((k, tuple(v.shape)) for k, v in head.state_dict().items()))
    assert len(shapes) == 1


def test_out_of_vocabulary_token_ids_read_as_unknown():
    specs = [ModalitySpec("tok", "tokens", (5,), vocab_size=10), ModalitySpec("v", "vector", (3,))]
    model = tiny("concat", specs)
    x = {"tok": torch.tensor([[3, 4, 57, 0, 0]]), "v": torch.zeros(1, 3)}
    unk = {"tok": torch.tensor([[3, 4, 1, 0, 0]]), "v": torch.zeros(1, 3)}
    assert torch.equal(model(x), model(unk))


def test_training_loss_reaches_every_parameter():
    specs = all_kind_specs()
    for fusion in BACKBONES.names():
        model = tiny(fusion, specs, calibration=True).train()
        model.start_epoch(1, 1, B)
        x = random_inputs(specs)
        present = {m: torch.ones(B, dtype=torch.bool) for m in model.modalities}
        model.training_loss(x, present, torch.arange(B) % 4, torch.Generator().manual_seed(0), index=torch.arange(B)).backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, (fusion, no_grad)


def test_uncertainty_late_weights_follow_presence_and_sum_to_one():
    specs = all_kind_specs()[:3]
    model = tiny("uncertainty-late", specs)
    x = random_inputs(specs)
    present = {"img": torch.tensor([True, False, True, True, False, True])}
    features = {m: model.encode(m, x[m]) for m in model.modalities}
    w = model.fusion_weights(features, model.presence(features, present))
    assert torch.allclose(w.sum(1), torch.ones(B))
    assert torch.all(w[~present["img"], 0] == 0)
    assert torch.all(w[present["img"]] > 0)


def test_uncertainty_late_learns_to_estimate_injected_noise_and_reliance():
    """After a short training, predicted noise is higher for a noisy input and reliance is measured."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 128
    labels = torch.randint(0, 4, (n,), generator=g)
    centers = torch.randn(4, 8, generator=g) * 3
    x = {"a": centers[labels] + torch.randn(n, 8, generator=g), "b": torch.randn(n, 8, generator=g) + 0.3 * centers[labels]}
    specs = [ModalitySpec(m, "vector", (8,), mean=v.mean(0), std=v.std(0)) for m, v in x.items()]
    model = tiny("uncertainty-late", specs).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    present = {m: torch.ones(n, dtype=torch.bool) for m in x}
    for _ in range(60):
        opt.zero_grad()
        model.training_loss(x, present, labels, g).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        noisy = dict(x, a=x["a"] + 2.0 * specs[0].std * torch.randn(n, 8, generator=g))
        clean_u = model.predicted_noise({m: model.encode(m, x[m]) for m in x})
        noisy_u = model.predicted_noise({m: model.encode(m, noisy[m]) for m in x})
    assert noisy_u[:, 0].mean() > clean_u[:, 0].mean() + 0.12
    assert torch.allclose(noisy_u[:, 1], clean_u[:, 1])  # b's estimate only sees b
    # modality a carries most of the signal, so dropping it costs more: higher reliance
    assert model.reliance[0] > model.reliance[1]


def test_build_model_rejects_bad_configs_with_one_line_errors():
    specs = [s.to_dict() for s in all_kind_specs()[:2]]
    with pytest.raises(
        InputError,
        match="unknown fusion 'lstm'; expected one of: cal, concat, conv, late, qmf, transformer, udml, uncertainty-late, unimodal",
    ):
        build_model({"fusion": "lstm", "specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="fusion 'unimodal' needs the modality it uses .*one of: img, vec"):
        build_model({"fusion": "unimodal", "specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="unknown modality 'audio'; expected one of: img, vec"):
        build_model({"fusion": "unimodal", "modality": "audio", "specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="only applies to --fusion unimodal"):
        build_model({"fusion": "concat", "modality": "img", "specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="'unimodal' has no pre-fusion calibration"):
        build_model({"fusion": "unimodal", "modality": "img", "calibration": True, "specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="fusion 'qmf' supports the task.* classification, not 'regression'"):
        build_model({"fusion": "qmf", "specs": specs, "task": "regression"})
    with pytest.raises(InputError, match="'cal' .*needs >= 2"):
        build_model({"fusion": "cal", "specs": specs[:1], "num_classes": 3})
    with pytest.raises(InputError, match="needs 'specs'"):
        build_model({"fusion": "concat", "num_classes": 3})
    with pytest.raises(InputError, match="num_classes >= 2"):
        build_model({"fusion": "concat", "specs": specs})
    with pytest.raises(InputError, match="needs 'fusion'"):
        build_model({"specs": specs, "num_classes": 3})
    with pytest.raises(InputError, match="unknown task"):
        build_model({"fusion": "concat", "specs": specs, "num_classes": 3, "task": "ranking"})


def test_encode_and_forward_name_missing_modalities():
    specs = all_kind_specs()[:2]
    model = tiny("concat", specs)
    with pytest.raises(InputError, match="unknown modality 'audio'"):
        model.encode("audio", torch.zeros(2, 3))
    with pytest.raises(InputError, match="needs modality 'vec'"):
        model({"img": torch.zeros(2, 1, 8, 7)})


def test_check_inputs_names_the_mismatch():
    model_specs = all_kind_specs()[:2]
    check_inputs(model_specs, {s.name: s for s in model_specs})
    with pytest.raises(InputError, match="needs modality 'vec'"):
        check_inputs(model_specs, [model_specs[0]])
    with pytest.raises(InputError, match="modality 'extra'.*does not use"):
        check_inputs(model_specs, model_specs + [ModalitySpec("extra", "vector", (2,))])
    with pytest.raises(InputError, match=r"'vec' has shape \(11,\) but the model expects \(10,\)"):
        check_inputs(model_specs, [model_specs[0], ModalitySpec("vec", "vector", (11,))])
    with pytest.raises(InputError, match="'vec' has kind 'audio' but the model expects 'vector'"):
        check_inputs(model_specs, [model_specs[0], ModalitySpec("vec", "audio", (10,))])


def test_check_tensors_rejects_wrong_dtypes_and_non_finite_values():
    specs = [ModalitySpec("v", "vector", (3,)), ModalitySpec("t", "tokens", (4,), vocab_size=9)]
    good = {"v": torch.zeros(2, 3), "t": torch.ones(2, 4, dtype=torch.long)}
    check_tensors(specs, good)
    with pytest.raises(InputError, match="'t': token ids must be integers, got torch.float32"):
        check_tensors(specs, dict(good, t=torch.ones(2, 4)))
    with pytest.raises(InputError, match="'v' .*expected floating point values, got torch.int64"):
        check_tensors(specs, dict(good, v=torch.zeros(2, 3, dtype=torch.long)))
    bad = torch.zeros(2, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(InputError, match="'v' contains NaN/Inf values in 1 sample"):
        check_tensors(specs, dict(good, v=bad))
    with pytest.raises(InputError, match="lacks modality 't'"):
        check_tensors(specs, {"v": good["v"]})
