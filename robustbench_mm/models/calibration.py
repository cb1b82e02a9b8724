"""Pre-fusion calibration (after arXiv 2606.02679): gate each modality by its cross-modal support.

Between the encoders and an unchanged fusion backbone. For every modality m:

1. summary s_m = unit-normalised projection of its pooled features (B, r);
2. cues: the summary s_m itself (B, r) and, against the other *present* modalities n != m
   (averaged over them):
   agreement  = cos(s_m, s_n)                (B, 1)   support
   products   = s_m * s_n                    (B, r)   which directions agree
   conflicts  = |s_m - s_n|                  (B, r)   which directions disagree
   plus the fraction of other modalities present (B, 1);
3. a small shared network (with a learned modality embedding) maps the cues to an
   instance-wise gate g_m (B, 1) and a dimension-wise gate d_m (B, dim), both 1 + tanh(.);
4. the ORIGINAL features are rescaled: f_m * g_m * d_m (the same gate for every token).

The last layer starts at zero, so at initialisation every gate is exactly 1 and the model
computes exactly what the same backbone without calibration computes.

Two opt-in departures (model options `calibration_conflict`, `calibration_relative`; off by default,
README "Do the calibration gates see conflict?" has the evidence, they did not make the gates fall):
feature-swap conflict augmentation during training, and instance gates divided by their mean over
the present modalities (no common scale).

Each forward keeps the gates it applied (`last_gates`, detached), so the engine can write them
into the per-sample records and a study can see whether they fall on conflicting inputs.
"""

from __future__ import annotations

from math import nan

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .encoders import pool


class PreFusionCalibration(nn.Module):
    """Instance- and dimension-wise gates from cross-modal agreement/conflict cues."""

    def __init__(self, modalities: list[str], dim: int, summary: int | None = None, hidden: int | None = None,
                 conflict: float = 0.0, relative: bool = False):
        super().__init__()
        if not 0.0 <= float(conflict) < 1.0:
            raise InputError(f"model option calibration_conflict must be in [0, 1), got {conflict}")
        self.relative = bool(relative)  # instance gates divided by their mean over present modalities
        self.modalities = list(modalities)
        self.conflict = float(conflict)  # training-time swap fraction (see `swap_for_training`)
        r = summary or max(4, dim // 8)
        h = hidden or max(8, dim // 4)
        self.dim = dim
        self.project = nn.ModuleList(nn.Linear(dim, r) for _ in self.modalities)
        self.modality_embedding = nn.Parameter(torch.zeros(len(self.modalities), h))
        self.cues_net = nn.Linear(3 * r + 2, h)
        self.gates = nn.Linear(h, 1 + dim)
        nn.init.zeros_(self.gates.weight)
        nn.init.zeros_(self.gates.bias)
        self.last_gates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # m -> (instance, mean dim), (B,)

    def cues(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, 3r + 2): [summary, agreement, products, conflicts, fraction of others present].

        features[m] : (B, dim) or (B, T, dim); present[m] : bool (B,). Only present other
        modalities enter the averages; with none present the comparison cues are zero.
        """
        names = self.modalities
        s = torch.stack(
            [F.normalize(self.project[i](pool(features[m])), dim=-1) for i, m in enumerate(names)], dim=1
        )  # (B, M, r)
        mask = torch.stack([present[m] for m in names], dim=1).to(s.dtype)  # (B, M)
        others = mask.unsqueeze(1) * (1.0 - torch.eye(len(names), dtype=s.dtype, device=s.device))  # (B, M, M)
        count = others.sum(-1, keepdim=True)  # (B, M, 1)
        weight = others / count.clamp(min=1.0)
        prod = s.unsqueeze(2) * s.unsqueeze(1)  # (B, M, M, r)
        agree = torch.einsum("bmn,bmn->bm", weight, prod.sum(-1)).unsqueeze(-1)
        products = torch.einsum("bmn,bmnr->bmr", weight, prod)
        conflicts = torch.einsum("bmn,bmnr->bmr", weight, (s.unsqueeze(2) - s.unsqueeze(1)).abs())
        frac = count / max(len(names) - 1, 1)
        return torch.cat([s, agree, products, conflicts, frac], dim=-1)

    def compute_gates(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """m -> (instance gate (B,), dimension gate (B, dim)), each in (0, 2)."""
        hidden = F.gelu(self.cues_net(self.cues(features, present)) + self.modality_embedding)
        gates = 1.0 + torch.tanh(self.gates(hidden))  # (B, M, 1 + dim)
        instance = gates[..., 0]
        if self.relative:  # no common scale: a gate can only favour one modality over another
            mask = torch.stack([present[m] for m in self.modalities], dim=1).to(instance.dtype)
            mean = (instance * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1.0)
            instance = instance / mean.clamp(min=1e-6)
        return {m: (instance[:, i], gates[:, i, 1:]) for i, m in enumerate(self.modalities)}

    def swap_for_training(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Conflict augmentation: in a `conflict` fraction of the batch, one modality (uniform among the
        present ones) gets the features of another sample of the batch, the label staying the
        sample's own. Without it a training set with no conflicting pairs never rewards a gate for
        falling on one. Features only (our encoders are per modality, so this equals swapping inputs).
        Drawn from torch's global generator, which `train_model` seeds."""
        names = self.modalities
        first = features[names[0]]
        b = first.shape[0]
        if b < 2:
            return features
        mask = torch.stack([present[m] for m in names], dim=1).to(first.device)  # (B, M)
        hit = torch.rand(b, device=first.device) < self.conflict
        score = torch.rand(b, len(names), device=first.device).masked_fill(~mask, -1.0)
        which = score.argmax(dim=1)  # a present modality, uniformly
        donor = (torch.arange(b, device=first.device) + torch.randint(1, b, (b,), device=first.device)) % b
        out = {}
        for i, m in enumerate(names):
            swap = hit & (which == i) & mask[:, i] & present[m][donor].to(first.device)
            f = features[m]
            out[m] = torch.where(swap.view(-1, *([1] * (f.dim() - 1))), f[donor], f)
        return out

    def forward(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The original features rescaled by their gates (token features: same gate per token)."""
        if self.training and self.conflict > 0:
            features = self.swap_for_training(features, present)
        out = {}
        gates = self.compute_gates(features, present)
        self.last_gates = {  # NaN where m is absent: its features are zeroed after the gate anyway
            m: (g.detach().float().masked_fill(~present[m], nan), d.detach().float().mean(-1).masked_fill(~present[m], nan))
            for m, (g, d) in gates.items()
        }
        for m, (instance, channel) in gates.items():
            scale = instance.unsqueeze(-1) * channel
            f = features[m]
            out[m] = f * (scale.unsqueeze(1) if f.dim() == 3 else scale)
        return out
