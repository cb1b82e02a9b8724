"""The literature's methods (udml, qmf, cal, unimodal): each defining formula against a small
re-computation written here from the cited code (or, for CAL, our stated reading of its abstract),
gradients reaching what they should and not what they should not, batch independence at eval."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from robustbench_mm.cli import build_parser, main
from robustbench_mm.datasets.batch import ModalitySpec
from robustbench_mm.summaries import shapley_values
from robustbench_mm.models import BACKBONES, build_model
from robustbench_mm.models.cal import contribution, scale_gradient, shapley, subset_values
from robustbench_mm.models.encoders import pool
from robustbench_mm.models.qmf import rank_loss, rank_targets
from robustbench_mm.models.udml import LEVELS, udml_weights

B = 8


def specs3() -> list[ModalitySpec]:
    g = torch.Generator().manual_seed(5)
    return [
        ModalitySpec("a", "vector", (6,), mean=torch.randn(6, generator=g), std=torch.rand(6, generator=g) + 0.5),
        ModalitySpec("v", "image", (1, 6, 5), mean=torch.zeros(1, 6, 5), std=torch.ones(1, 6, 5)),
        ModalitySpec("t", "tokens", (7,), vocab_size=15),
    ]


def inputs(specs, n=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        s.name: torch.randint(2, s.vocab_size, (n, *s.shape), generator=g) if s.kind == "tokens" else torch.randn((n, *s.shape), generator=g)
        for s in specs
    }


def model(fusion, specs=None, **options):
    torch.manual_seed(0)
    specs = specs or specs3()
    config = {"fusion": fusion, "specs": [s.to_dict() for s in specs], "num_classes": 4, "dim": 8, "width": 8,
              "hidden": 8, "dropout": 0.0, **options}  # fmt: skip
    return build_model(config)


# ---- UDML (shicaiwei123/UDML, models/basic_model.py, AVClassifier_AUXI_UDML.forward, pe branch) ----


def udml_code_weights(sa, sv, audio_depend, visual_depend, warm_up):
    """The two-modality lines of AVClassifier_AUXI_UDML.forward, transcribed."""
    if warm_up:
        ta, tv = 1.0, 1.0
    else:
        ta, tv = 2 * sv**2 / (sv**2 + sa**2), 2 * sa**2 / (sv**2 + sa**2)
    wa, wv = ta / audio_depend, tv / visual_depend
    return 2 * wa / (wa + wv), 2 * wv / (wa + wv)


@pytest.mark.parametrize("warm_up", [False, True])
def test_udml_weights_are_the_released_formula_for_two_modalities(warm_up):
    sigma = torch.tensor([[1.0, 3.0], [5.0, 1.5], [11.0, 11.0], [2.0, 7.0]])
    dep = torch.tensor([32.0, 10.0])
    got = udml_weights(sigma, dep, torch.ones(4, 2), noise_term=not warm_up)
    for i, (sa, sv) in enumerate(sigma.tolist()):
        wa, wv = udml_code_weights(sa, sv, 32.0, 10.0, warm_up)
        assert got[i].tolist() == pytest.approx([wa, wv], rel=1e-6)
    if warm_up:  # the dependency divides even in the warm-up: the weights are not 1 there
        assert not torch.allclose(got, torch.ones_like(got))


def test_udml_weights_for_three_modalities_sum_to_the_present_count_and_skip_absent():
    sigma = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    w = udml_weights(sigma, torch.tensor([1.0, 2.0, 0.5]), mask)
    # by hand: t ∝ sigma^-2 = (1, 1/4, 1/16) / dependency (1, 2, 0.5) = (1, 1/8, 1/8), scaled to sum 3
    assert w[0].tolist() == pytest.approx([3 * 1 / 1.25, 3 * 0.125 / 1.25, 3 * 0.125 / 1.25])
    # second row: modality 2 absent; (1, 1/16) / (1, 0.5) = (1, 1/8) scaled to sum 2
    assert w[1].tolist() == pytest.approx([2 / 1.125, 0.0, 2 * 0.125 / 1.125])


def test_udml_forward_is_one_joint_head_on_features_scaled_by_one_plus_w():
    specs = specs3()
    m = model("udml", specs).eval()
    m.dependency.copy_(torch.tensor([3.0, 1.0, 2.0]))
    x = inputs(specs)
    with torch.no_grad():
        f = [pool(m.encode(k, x[k])) for k in m.modalities]
        sigma = torch.cat([(0.5 * m.regressors[i](f[i])).exp() for i in range(3)], 1)
        inv = sigma.pow(-2)
        t = 3 * inv / inv.sum(1, keepdim=True)
        w = t / m.dependency
        w = 3 * w / w.sum(1, keepdim=True)
        expected = m.head(torch.cat([(1 + w[:, i : i + 1]) * f[i] for i in range(3)], 1))
        assert torch.allclose(m(x), expected, atol=1e-5)
        blocks = torch.stack([(1 + w[:, i : i + 1]) * f[i] for i in range(3)], 1)
        alone = m.head(torch.cat([blocks[:, 0], torch.zeros_like(blocks[:, 1]), torch.zeros_like(blocks[:, 2])], 1))
        assert torch.allclose(m.unimodal_logits(blocks)[:, 0], alone, atol=1e-5)


def test_udml_dependency_is_the_batch_mean_of_summed_absolute_unimodal_logits():
    specs = specs3()
    m = model("udml", specs).train()
    m.start_epoch(1, 10, B)  # clean phase, noise term held at 1
    x, y = inputs(specs), torch.arange(B) % 4
    with torch.no_grad():
        f = torch.stack([pool(m.encode(k, x[k])) for k in m.modalities], 1)
        blocks = 2.0 * f  # dependency 1 and t = 1: every w is 1
        expected = torch.stack(
            [m.head(torch.cat([blocks[:, j] if j == i else torch.zeros_like(blocks[:, j]) for j in range(3)], 1)).abs().sum(1).mean()
             for i in range(3)]
        )  # fmt: skip
    m.training_loss(x, None, y, torch.Generator().manual_seed(0))
    assert torch.allclose(m.dependency, expected, atol=1e-5)


def test_udml_regressor_reads_detached_features_and_learns_only_after_warm_up_from_the_classifier():
    specs = specs3()
    m = model("udml", specs).train()
    x = inputs(specs)
    features = {k: m.encode(k, x[k]) for k in m.modalities}
    sigma = m.predicted_level(features)
    encoder_grads = torch.autograd.grad(sigma.sum(), list(m.encoders.parameters()), allow_unused=True)
    assert all(g is None for g in encoder_grads)  # the MSE on sigma cannot reach an encoder
    regressor = list(m.regressors.parameters())
    for epoch, reaches in ((5, False), (7, True)):  # 10 epochs: warm-up ends after epoch 6
        m.start_epoch(epoch, 10, B)
        out = m.fuse({k: m.encode(k, x[k]) for k in m.modalities})
        grads = torch.autograd.grad(F.cross_entropy(out, torch.arange(B) % 4), regressor, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == reaches


def test_udml_levels_half_clean_and_noise_law():
    m = model("udml", [ModalitySpec("a", "vector", (4000,), mean=torch.full((4000,), 3.0), std=torch.full((4000,), 2.0)),
                       ModalitySpec("b", "vector", (3,))])  # fmt: skip
    g = torch.Generator().manual_seed(0)
    levels = m.draw_levels(40, g)
    assert set(levels.unique().tolist()) <= set(range(1, LEVELS + 1))
    assert int((levels == 1).all(1).sum()) >= 20 and levels.min() == 1
    x = {"a": torch.zeros(3, 4000), "b": torch.zeros(3, 3)}
    noisy = m.noisy(x, torch.tensor([[1.0, 1.0], [10.0, 1.0], [11.0, 1.0]]), g)["a"]
    assert torch.equal(noisy[0], x["a"][0])  # level 1 is no noise
    assert noisy[1].std().item() == pytest.approx(2.0 * 1.0 * 2.0, rel=0.05)  # noise_scale * 10**2/100 * std
    assert noisy[2].mean().item() == pytest.approx(3.0, abs=0.2)  # level 11: the input replaced around the mean
    assert noisy[2].std().item() == pytest.approx(4.0, rel=0.05)


@pytest.mark.slow
def test_udml_regressor_learns_the_raw_level_of_the_noise_it_trains_on():
    """After 150 noisy-phase steps on two informative vectors, sigma rises with the injected level."""
    g = torch.Generator().manual_seed(0)
    n = 256
    y = torch.randint(0, 4, (n,), generator=g)
    centers = torch.randn(4, 8, generator=g) * 3
    x = {"a": centers[y] + torch.randn(n, 8, generator=g), "b": centers[y] + torch.randn(n, 8, generator=g)}
    m = model("udml", [ModalitySpec(k, "vector", (8,), mean=v.mean(0), std=v.std(0)) for k, v in x.items()], dim=16, width=16)
    m.train().start_epoch(10, 10, n)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        m.training_loss(x, None, y, g).backward()
        opt.step()
    m.eval()
    sigma = []
    with torch.no_grad():
        for level in (1.0, 10.0):
            noisy = m.noisy(x, torch.tensor([[level, 1.0]]).expand(n, 2), g)
            sigma.append(m.predicted_level({k: m.encode(k, noisy[k]) for k in x}).mean(0))
    assert sigma[1][0] > sigma[0][0] + 0.5  # modality a's estimate sees a's noise
    assert torch.allclose(sigma[1][1], sigma[0][1])  # b's estimate only sees b, which stayed clean


# ---- QMF (QingyangZhang/QMF, text-image-classification: late_fusion.py, train_qmf.py, utils.History) ----


def test_qmf_fusion_weighs_each_modality_by_its_energy_confidence():
    specs = specs3()
    m = model("qmf", specs).eval()
    x = inputs(specs)
    with torch.no_grad():
        logits = [m.classifiers[i](pool(m.encode(k, x[k]))) for i, k in enumerate(m.modalities)]
        # MultimodalLateFusionClf.forward: conf = log(sum(exp(out))) / 10; fused = sum out * conf
        expected = sum(out * (torch.log(torch.exp(out).sum(1)) / 10).view(-1, 1) for out in logits)
        assert torch.allclose(m(x), expected, atol=1e-5)


def test_qmf_confidences_are_detached_in_the_fusion():
    """late_fusion.py: txt_out * txt_conf.detach(): d fused / d logits_m is c_m alone, no energy path."""
    m = model("qmf", specs3())
    logits = torch.randn(B, 3, 4, requires_grad=True)
    present = {k: torch.ones(B, dtype=torch.bool) for k in m.modalities}
    fused, conf, _ = m._fused(logits, present)
    fused.sum().backward()
    assert torch.allclose(logits.grad, (torch.logsumexp(logits.detach(), -1) / 10).unsqueeze(-1).expand(-1, -1, 4))


def code_rank_loss(conf, idx, correctness):
    """train_qmf.rank_loss with History.get_target_margin, transcribed (numpy history, torch loss)."""
    h1, h2 = correctness[idx.numpy()], correctness[np.roll(idx.numpy(), -1)]
    lo, hi = correctness.min(), correctness.max()
    h1, h2 = (h1 - lo) / (hi - lo), (h2 - lo) / (hi - lo)
    target = torch.from_numpy((h1 > h2).astype(float) - (h1 < h2).astype(float)).float()
    margin = torch.from_numpy(abs(h1 - h2)).float()
    nonzero = target.clone()
    nonzero[nonzero == 0] = 1
    return torch.nn.MarginRankingLoss(margin=0.0)(conf, torch.roll(conf, -1) + margin / nonzero, -target)


def test_qmf_rank_loss_is_the_released_margin_ranking_on_the_loss_history():
    rng = np.random.default_rng(0)
    history = rng.random(30) * 5
    history[[3, 4]] = history[7]  # ties give target 0
    idx = torch.tensor([3, 4, 7, 0, 12, 29, 5, 18])
    # confidences rising with the loss history, in the wrong order, so some pairs are penalised
    conf = torch.tensor(history[idx.numpy()] + 0.1 * rng.normal(size=8), dtype=torch.float32)
    target, margin = rank_targets(torch.from_numpy(history), idx)
    ours = rank_loss(conf, target, margin, torch.ones(8))
    assert ours.item() == pytest.approx(code_rank_loss(conf, idx, history).item(), rel=1e-5)
    assert (target == 0).any() and ours > 0


def test_qmf_history_adds_each_samples_unimodal_loss_before_ranking():
    specs = specs3()
    m = model("qmf", specs).train()
    m.start_epoch(1, 3, 20)
    x, y, idx = inputs(specs), torch.arange(B) % 4, torch.arange(5, 5 + B)
    with torch.no_grad():
        expected = torch.stack(
            [F.cross_entropy(m.classifiers[i](pool(m.encode(k, x[k]))), y, reduction="none") for i, k in enumerate(m.modalities)]
        )  # fmt: skip
    m.training_loss(x, None, y, torch.Generator(), index=idx)
    m.training_loss(x, None, y, torch.Generator(), index=idx)  # sums, as History.correctness_update does
    assert torch.allclose(m.history[:, 5 : 5 + B].float(), 2 * expected, atol=1e-4)
    assert (m.history[:, :5] == 0).all()


# ---- CAL (our reading of arXiv 2510.26289's abstract, stated in models/cal.py) ----


def test_cal_shapley_matches_the_metrics_module_and_the_two_player_closed_form():
    rng = np.random.default_rng(1)
    values = {frozenset(s): torch.tensor(float(rng.normal())) for k in range(4) for s in combinations(range(3), k)}
    ours = shapley(values, 3)
    reference = shapley_values({frozenset(str(i) for i in s): float(v) for s, v in values.items()}, ["0", "1", "2"])
    assert ours.tolist() == pytest.approx([reference[str(i)] for i in range(3)])
    v = {frozenset(): 0.1, frozenset({0}): 0.5, frozenset({1}): 0.3, frozenset({0, 1}): 0.9}
    phi = shapley({k: torch.tensor(x) for k, x in v.items()}, 2)
    assert phi[0].item() == pytest.approx(0.5 * ((0.5 - 0.1) + (0.9 - 0.3)))


def test_cal_subset_values_use_the_head_with_the_others_zeroed():
    contrib, bias, y = torch.randn(5, 2, 3), torch.randn(3), torch.tensor([0, 1, 2, 0, 1])
    values = subset_values(contrib, bias, y)
    assert values[frozenset()].item() == pytest.approx(-F.cross_entropy(bias.expand(5, 3), y).item())
    assert values[frozenset({1})].item() == pytest.approx(-F.cross_entropy(bias + contrib[:, 1], y).item())


def test_cal_contribution_is_a_softmax_of_normalised_information_plus_confidence():
    info, conf = torch.tensor([0.3, -0.1, 0.6]), torch.tensor([0.5, 0.2, 0.9])
    s = np.array([0.3, -0.1, 0.6]) / 1.0 + np.array([0.5, 0.2, 0.9])
    expected = np.exp(s / 2.0) / np.exp(s / 2.0).sum()
    assert contribution(info, conf, temperature=2.0).tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_cal_scale_gradient_keeps_values_and_multiplies_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    k = torch.tensor([1.0, 2.5, 1.2]).view(1, 3)
    y = scale_gradient(x, k)
    assert torch.equal(y, x)
    y.pow(2).sum().backward()
    assert torch.allclose(x.grad, 2 * x.detach() * k)


def test_cal_acceleration_multiplies_each_encoders_task_gradient_by_one_plus_its_contribution():
    specs = specs3()
    x, y = inputs(specs), torch.arange(B) % 4
    grads = {}
    for alpha in (0.0, 1.0):
        m = model("cal", specs, cal_acceleration=alpha, cal_bottleneck=0.0).train()
        m.training_loss(x, None, y, torch.Generator().manual_seed(0)).backward()
        grads[alpha] = [torch.cat([p.grad.flatten() for p in enc.parameters()]) for enc in m.encoders]
        weights = m.weights.clone()
    assert weights.sum().item() == pytest.approx(1.0) and (weights > 0).all()
    for i in range(3):
        assert torch.allclose(grads[1.0][i], (1 + weights[i]) * grads[0.0][i], rtol=1e-4, atol=1e-7)


def test_cal_bottleneck_weighs_each_kl_by_its_low_contribution():
    specs = specs3()
    x, y = inputs(specs), torch.arange(B) % 4
    losses, weights = {}, None
    for beta in (0.0, 0.5):
        m = model("cal", specs, cal_bottleneck=beta).train()
        losses[beta] = m.training_loss(x, None, y, torch.Generator().manual_seed(0)).item()
        weights = m.weights.clone()
    with torch.no_grad():
        kl = []
        for i, k in enumerate(m.modalities):
            f = pool(m.encode(k, x[k]))
            mu, logvar = m.mu[i](f), m.logvar[i](f)
            kl.append((0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(1).mean())
        beta_m = 0.5 * 3 * (1 - weights) / 2
    assert losses[0.5] - losses[0.0] == pytest.approx(float((beta_m * torch.stack(kl)).sum()), rel=1e-4)


# ---- unimodal ----


def test_unimodal_ignores_every_other_modality_and_has_only_its_encoder():
    specs = specs3()
    m = model("unimodal", specs, modality="v").eval()
    x = inputs(specs)
    other = dict(x, a=x["a"] + 100, t=torch.randint(2, 15, x["t"].shape))
    with torch.no_grad():
        assert torch.equal(m(x), m(other))
        assert not torch.equal(m(x), m(dict(x, v=x["v"] + 1)))
    assert len(m.encoders) == 1 and m.encode("a", x["a"]).shape == (B, 0)


# ---- all of them ----


@pytest.mark.parametrize("fusion", ["udml", "qmf", "cal", "unimodal"])
def test_a_samples_output_does_not_depend_on_its_batch(fusion):
    specs = specs3()
    m = model(fusion, specs, **({"modality": "a"} if fusion == "unimodal" else {})).eval()
    x = inputs(specs, n=12)
    with torch.no_grad():
        full = m(x)
        parts = torch.cat([m({k: v[i : i + 1] for k, v in x.items()}) for i in range(12)])
    assert torch.allclose(full, parts, atol=1e-5)


def test_every_fusion_is_listed_and_named_in_the_train_help(capsys):
    assert main(["list", "backbones"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(BACKBONES.names())
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert all(f in train.format_help() for f in BACKBONES.names())


@pytest.mark.slow
def test_mfeat_unimodal_image_reference():
    """The pix-only reference reaches >= 90% clean test accuracy on mfeat in <= 60 s (the fusion
    methods' 95% bar is in test_training.py::test_mfeat_quality_bar)."""
    from robustbench_mm.datasets import load_splits
    from robustbench_mm.models import train_model

    _, metrics = train_model({"fusion": "unimodal", "modality": "pix"}, load_splits("mfeat"), seed=0, progress=False)
    assert metrics["test"]["accuracy"] >= 0.90
    assert metrics["seconds"] <= 60


def test_train_refuses_a_wrong_modality_choice_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "m.pt")
    assert main(["train", "--fusion", "unimodal", "--modality", "nope", "--out", out, "--quiet"]) == 2
    assert "unknown modality 'nope'; expected one of: fac, fou, pix" in capsys.readouterr().err
    assert main(["train", "--fusion", "qmf", "--modality", "pix", "--out", out, "--quiet"]) == 2
    assert "only applies to --fusion unimodal" in capsys.readouterr().err
