"""Severity is monotone for a model, not just for a distance: reference accuracy falls with the level.

For every registered corruption (built-ins and the example plug-ins) of every modality kind in the
embedded data, a small unimodal reference classifier trained here on the embedded train split is
evaluated on the test split at levels 0..5 through `apply_condition`. The contract (issue 3) asks:

- accuracy at level 5 is below clean accuracy;
- accuracy is (weakly) non-increasing across levels 1..5, up to sampling noise.

The tolerance is two paired standard errors of the accuracy difference between two levels,
computed from the per-sample correctness on the n test samples. Paired, because common random
numbers give each test sample the same noise draw at every level (only scaled), so the two
accuracies are measured on the same samples and their difference has the standard error of the
mean of d_i = correct_j,i - correct_i,i. A corruption can only beat the tolerance by flipping
clearly more samples to correct than to wrong when the severity goes up.

Reference models (fixed torch seed, full-batch training for a fraction of a second each):
vector, image and sequence inputs standardised with the spec's train mean/std and flattened;
audio as the log-magnitude spectrum (torch.fft.rfft) of the standardised waveform; tokens as a
bag of token counts (pad excluded). Each feature set is standardised with train statistics and fed
to multinomial logistic regression: convex, so the verdict is a property of the data and the
kernel rather than of an initialisation (a one-hidden-layer MLP moves the marginal cases, see
KNOWN_VIOLATIONS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from robustbench_mm.corruptions import Condition, apply_condition, get_corruption, list_corruptions
from robustbench_mm.corruptions.plugins import load_plugins
from robustbench_mm.datasets import Batch, MultimodalData, ModalitySpec, load_splits
from robustbench_mm.datasets.batch import PAD_ID

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "corruptions"
load_plugins([str(PLUGIN_DIR)], entry_points=False)

# modality -> (embedded dataset, kind); the kinds cover every kind the embedded data has.
MODALITIES = {
    "pix": ("mfeat", "image"),
    "fou": ("mfeat", "vector"),
    "fac": ("mfeat", "vector"),
    "sequence": ("synthetic", "sequence"),
    "audio": ("synthetic", "audio"),
    "tokens": ("synthetic", "tokens"),
}
LEVELS = (0, 1, 2, 3, 4, 5)
SEED = 0
Z = 2.0  # standard errors of slack allowed for an accuracy rise between two levels

# Corruptions a reference model cannot see by construction. Skipped only when the measurement
# agrees (predictions identical to clean at every level); otherwise the test runs as usual.
INVARIANT_WHY = {
    ("swap", "tokens"): "the bag-of-tokens reference model ignores token order, and the synthetic "
    "tokens are drawn i.i.d. given the class, so order carries no label information to lose",
}


@dataclass
class Reference:
    """A trained reference classifier for one modality and the test split it is evaluated on."""

    featurize: Callable[[torch.Tensor], torch.Tensor]
    linear: torch.nn.Linear
    test: MultimodalData

    @torch.no_grad()
    def correct(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the reference prediction on inputs x is the test label."""
        return self.linear(self.featurize(x)).argmax(1) == self.test.labels


def _raw_features(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """Per-kind features before the final standardisation (see the module docstring)."""
    if spec.kind == "tokens":
        counts = torch.zeros(x.shape[0], spec.vocab_size, dtype=torch.float32)
        counts.scatter_add_(1, x, torch.ones_like(x, dtype=torch.float32))
        counts[:, PAD_ID] = 0.0
        return counts
    z = ((x - spec.mean) / spec.std).flatten(1)
    if spec.kind == "audio":
        return torch.log(torch.fft.rfft(z, dim=1).abs() + 1e-3)
    return z


def _train_reference(splits: dict[str, MultimodalData], modality: str) -> Reference:
    """Multinomial logistic regression on standardised features, full batch, fixed seed."""
    train, test = splits["train"], splits["test"]
    spec = train.specs[modality]
    feats = _raw_features(train.inputs[modality], spec)
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)

    def featurize(x: torch.Tensor) -> torch.Tensor:
        return (_raw_features(x, spec) - mu) / sd

    f = featurize(train.inputs[modality])
    torch.manual_seed(SEED)
    linear = torch.nn.Linear(f.shape[1], train.num_classes)
    opt = torch.optim.Adam(linear.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear(f), train.labels).backward()
        opt.step()
    return Reference(featurize, linear, test)


@pytest.fixture(scope="module")
def references() -> dict[str, Reference]:
    splits = {source: load_splits(source) for source in {s for s, _ in MODALITIES.values()}}
    return {m: _train_reference(splits[source], m) for m, (source, _) in MODALITIES.items()}


def accuracy_by_level(ref: Reference, name: str, modality: str) -> torch.Tensor:
    """(levels, n) bool per-sample correctness at levels 0..5 of corruption `name` on `modality`."""
    test = ref.test
    batch = Batch(inputs={modality: test.inputs[modality]}, labels=test.labels, ids=test.ids)
    rows = []
    for level in LEVELS:
        condition = Condition("corruption", name, (modality,), level=float(level))
        rows.append(ref.correct(apply_condition(batch, condition, test.specs, SEED).inputs[modality]))
    return torch.stack(rows)


def paired_se(correct_a: torch.Tensor, correct_b: torch.Tensor) -> float:
    """Standard error of mean(correct_b) - mean(correct_a) on the same n samples."""
    d = correct_b.double() - correct_a.double()
    return float(d.std(unbiased=True) / math.sqrt(d.numel()))


def severity_violation(correct: torch.Tensor) -> str | None:
    """Why per-sample correctness (levels 0..5, n) breaks the severity contract, or None."""
    acc = correct.double().mean(1)
    if not acc[5] < acc[0]:
        return "level 5 does not lose accuracy"
    for i in range(1, 5):
        for j in range(i + 1, 6):
            slack = Z * paired_se(correct[i], correct[j])
            if acc[j] > acc[i] + slack:
                return f"accuracy rises from level {i} to {j} by {acc[j] - acc[i]:.3f} > {Z:g} paired SE = {slack:.3f}"
    return None


def test_severity_check_flags_rises_beyond_noise_only():
    n = 400
    base = torch.arange(n) < 300  # 75% correct
    falling = torch.stack([torch.arange(n) < k for k in (360, 300, 280, 260, 240, 200)])
    assert severity_violation(falling) is None
    flat_l5 = falling.clone()
    flat_l5[5] = falling[0]
    assert "level 5" in severity_violation(flat_l5)
    noisy = falling.clone()
    noisy[3] = torch.arange(n) < 262  # 2 samples up from level 2: within noise
    assert severity_violation(noisy) is None
    rising = falling.clone()
    rising[4] = base  # 40 more samples right at level 4 than at level 3: beyond 2 paired SE
    assert "to 4 by" in severity_violation(rising)


def test_paired_se_matches_a_hand_computation():
    a = torch.tensor([True, True, False, False, True])
    b = torch.tensor([False, True, True, False, False])
    d = [-1, 0, 1, 0, -1]
    mean = sum(d) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / 4)
    assert paired_se(a, b) == pytest.approx(sd / math.sqrt(5))


# Measured violations, left failing (strict xfail) for the corruption owner to fix or explain;
# accuracies are levels 0..5 of this file's reference models (SEED 0).
KNOWN_VIOLATIONS = {
    ("jpeg", "pix"): "level 5 does not lose accuracy: 0.953, 0.953, 0.953, 0.953, 0.960, 0.958; the "
    "8x8-block quantisation of a 16x15 image keeps the low frequencies a pixel template relies on",
    ("lowpass", "audio"): "at chance from level 1: 0.583, 0.260, 0.300, 0.250, 0.250, 0.250 (rise L1->L2 "
    "= 3.0 paired SE); any cutoff (even 2% of the band: 0.343) zeroes spectrum bins the log-spectrum "
    "model standardises, so levels 1-5 are indistinguishable",
}

CASES = [
    pytest.param(
        spec.name,
        modality,
        id=f"{spec.name}-{modality}",
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS[spec.name, modality])]
        if (spec.name, modality) in KNOWN_VIOLATIONS
        else [],
    )
    for modality, (_, kind) in MODALITIES.items()
    for spec in list_corruptions(kind)
]


def test_every_kind_of_the_embedded_data_is_covered(references):
    kinds = {ref.test.specs[m].kind for m, ref in references.items()}
    assert kinds == {kind for _, kind in MODALITIES.values()}
    for m, ref in references.items():
        assert ref.test.specs[m].kind == MODALITIES[m][1]


def test_reference_models_beat_chance_clearly(references):
    """A model near chance could not lose accuracy; the severity tests below need a real signal."""
    for m, ref in references.items():
        acc = ref.correct(ref.test.inputs[m]).double().mean().item()
        assert acc > 2.0 / ref.test.num_classes, f"{m}: clean accuracy {acc:.3f}"


@pytest.mark.parametrize("name,modality", CASES)
def test_reference_accuracy_falls_with_severity(references, name, modality):
    ref = references[modality]
    why = get_corruption(name).supports(ref.test.specs[modality])
    if why:
        pytest.skip(why)
    correct = accuracy_by_level(ref, name, modality)
    acc = correct.double().mean(1)
    table = ", ".join(f"L{lv}={a:.3f}" for lv, a in zip(LEVELS, acc.tolist()))
    if (name, modality) in INVARIANT_WHY and all(torch.equal(correct[0], row) for row in correct[1:]):
        pytest.skip(f"{name} on {modality}: predictions identical at every level (measured); {INVARIANT_WHY[name, modality]}")
    why = severity_violation(correct)
    assert why is None, f"{name} on {modality}: {why} ({table})"
