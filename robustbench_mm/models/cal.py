"""`cal`: Contribution-guided Asymmetric Learning (Xu et al., arXiv 2510.26289), our reading of its abstract.

Only the abstract is known: "a modality contribution metric W^m combining the information
quantity I(m) and confidence D(m)", "an asymmetric gradient acceleration mechanism" that
"accelerates the gradient update of modalities" (v2: "reinforcing the gradients of
high-contribution modalities"; existing methods "suppress" dominant ones), and "a
contribution-aware Asymmetric Information Bottleneck (AIB)" that "dynamically compresses the
noise of low-contribution modalities"; summaries of the paper call the metric "Shapley-inspired"
with a "dynamic Softmax-based weighting". Every formula below is OUR READING, not the paper's:

- model: encoder f_m -> bottleneck mu_m = A_m f_m, log s_m^2 = B_m f_m; z_m = mu_m + s_m * eps
  in training, mu_m in evaluation; one linear head on [z_1, ..., z_M]; the logits of a subset S
  of modalities are that head with the others' z zeroed: l(S) = b + sum_{m in S} W_m z_m.
- I(m) (information quantity, "marginal performance"): the exact Shapley value of m in the game
  v(S) = -CE(l(S), y), batch mean, detached.
- D(m) (confidence): batch mean of 1 - H(softmax(l({m}))) / log C (the confidence term our
  `metrics.modality_shapley` reports beside the Shapley value).
- W^m = softmax_m((I(m) / sum_k |I(k)| + D(m)) / cal_temperature), per training step.
- acceleration: the gradient that reaches z_m (and so the bottleneck and encoder of m) from the
  task loss is multiplied by k_m = 1 + cal_acceleration * W^m (>= 1: every modality is sped up,
  the high-contribution ones most; none is suppressed). Forward values are unchanged.
- AIB: KL(N(mu_m, s_m^2) || N(0, I)) per modality (sum over dims, batch mean), weighted by
  beta_m = cal_bottleneck * M * (1 - W^m) / (M - 1) (mean beta over modalities = cal_bottleneck;
  the lower the contribution, the stronger the compression).
- loss = CE(l(all present)) + sum_m beta_m KL_m.
Evaluation uses mu_m only, so a sample's output does not depend on its batch. Absent modalities
have z_m = 0 (left out of every subset). Classification only.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from .encoders import pool
from ..domain import Task
from ..errors import InputError
from .fusion import FusionModel, _zero_absent, backbone


def subset_values(contrib: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor) -> dict[frozenset, torch.Tensor]:
    """v(S) = -mean CE(b + sum_{m in S} contrib[:, m], y) for every subset S of range(M); contrib (B, M, C)."""
    m = contrib.shape[1]
    values = {}
    for size in range(m + 1):
        for s in combinations(range(m), size):
            logits = bias + (contrib[:, list(s)].sum(1) if s else torch.zeros_like(contrib[:, 0]))
            values[frozenset(s)] = -F.cross_entropy(logits, labels)
    return values


def shapley(values: dict[frozenset, torch.Tensor], m: int) -> torch.Tensor:
    """(M,) exact Shapley values: phi_i = sum_S |S|! (M - |S| - 1)! / M! (v(S + i) - v(S))."""
    phi = []
    for i in range(m):
        others = [k for k in range(m) if k != i]
        total = torch.zeros_like(values[frozenset()])
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in combinations(others, size):
                total = total + weight * (values[frozenset(s) | {i}] - values[frozenset(s)])
        phi.append(total)
    return torch.stack(phi)


def contribution(info: torch.Tensor, confidence: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """W^m = softmax((I / sum|I| + D) / temperature) over modalities (our reading of CAL)."""
    scaled = info / info.abs().sum().clamp(min=1e-8)
    return torch.softmax((scaled + confidence) / temperature, dim=0)


def scale_gradient(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x in the forward pass; the gradient flowing back through it is multiplied by `factor`."""
    return x + (factor - 1.0) * (x - x.detach())


@backbone(
    "cal",
    description="CAL (contribution-guided asymmetric learning), our reading of arXiv 2510.26289's abstract (cal.py).",
    tasks=(Task.CLASSIFICATION,),
)
class CALFusion(FusionModel):
    """CAL (contribution-guided asymmetric learning), our reading of arXiv 2510.26289's abstract (cal.py)."""

    OPTIONS = {"cal_acceleration": 1.0, "cal_bottleneck": 1e-3, "cal_temperature": 1.0}

    @classmethod
    def check_config(cls, cfg: dict, modalities: list[str]) -> None:
        super().check_config(cfg, modalities)
        if len(modalities) < 2:
            raise InputError(f"fusion 'cal' weighs modalities against each other and needs >= 2; got {modalities}")

    def __init__(self, config: dict):
        super().__init__(config)
        dim = int(config["dim"])
        self.mu = nn.ModuleList(nn.Linear(dim, dim) for _ in self.modalities)
        self.logvar = nn.ModuleList(nn.Linear(dim, dim) for _ in self.modalities)
        self.head = nn.Linear(dim * len(self.modalities), self.num_outputs)
        # the last training step's W^m, kept for inspection (evaluation does not use it)
        self.register_buffer("weights", torch.full((len(self.modalities),), 1.0 / len(self.modalities)))

    def contributions(self, z: torch.Tensor) -> torch.Tensor:
        """(B, M, C): each modality's term W_m z_m of the head's logits."""
        b, m, d = z.shape
        return torch.einsum("bmd,cmd->bmc", z, self.head.weight.view(-1, m, d))

    def fuse_features(self, features, present):
        z = torch.stack([_zero_absent(self.mu[i](pool(features[m])), present[m]) for i, m in enumerate(self.modalities)], 1)
        return self.head(z.flatten(1))

    def training_loss(self, inputs, present, labels, generator, index=None):
        features, present = self.calibrated_features(inputs, present)
        keep = torch.stack([present[m] for m in self.modalities], 1).to(labels.device).float().unsqueeze(-1)
        pooled = [pool(features[m]) for m in self.modalities]
        mu = torch.stack([self.mu[i](f) for i, f in enumerate(pooled)], 1)  # (B, M, dim)
        logvar = torch.stack([self.logvar[i](f) for i, f in enumerate(pooled)], 1)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = (mu + (0.5 * logvar).exp() * eps) * keep
        m = len(self.modalities)
        with torch.no_grad():
            contrib = self.contributions(z)
            info = shapley(subset_values(contrib, self.head.bias, labels), m)
            alone = F.softmax(contrib + self.head.bias, dim=-1)
            entropy = -(alone * alone.clamp(min=1e-12).log()).sum(-1)  # (B, M)
            confidence = (1.0 - entropy / math.log(self.num_outputs)).mean(0)
            w = contribution(info, confidence, float(self.config["cal_temperature"]))
            self.weights.copy_(w)
        k = 1.0 + float(self.config["cal_acceleration"]) * w  # (M,)
        z_fast = scale_gradient(z, k.view(1, m, 1))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0) * keep
        kl = kl.sum(-1).mean(0)  # (M,)
        beta = float(self.config["cal_bottleneck"]) * m * (1.0 - w) / (m - 1)
        return F.cross_entropy(self.head(z_fast.flatten(1)), labels) + (beta * kl).sum()
