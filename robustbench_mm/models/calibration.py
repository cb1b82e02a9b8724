"""Pre-fusion calibration (after arXiv 2606.02679): gate each modality by its cross-modal support.

The paper ("Before Fusion, Ask What to Keep: Contextual Calibration of Multimodal Signals"; only
its abstract is available to us, arxiv.org/abs/2606.02679) says: compare each modality with the
others *at the summary level*, extract cues of cross-source support and conflict, turn them into
instance-wise and dimension-wise modulation of the *original* modality features, as a plug-in
that leaves the backbone and its head unchanged. Every formula below is our reading.

Between the encoders and an unchanged fusion backbone. For every modality m, two cue designs
(model option `calibration_cues`):

`summary` (the default; every checkpoint written before the option existed uses it):
   s_m = unit-normalised projection of its pooled features (B, r); cues: s_m and, against the
   other *present* modalities n != m (averaged over them), cos(s_m, s_n) (B, 1), s_m * s_n (B, r),
   |s_m - s_n| (B, r), plus the fraction of other modalities present (B, 1). The projections live
   in separate spaces that only the gate's gradient relates, so "support" is not comparable
   across modalities (docs/gate-study.md, "Do the calibration gates see conflict?", has the evidence).

`evidence` (the cues live in one space: the classes):
   p_m = softmax of a small per-modality evidence head on the *detached* pooled features (B, C),
   trained only by its own cross-entropy (`auxiliary_loss`; the gates' loss does not reach it, and
   the backbone's features are not changed by it); against the present others,
   support_m  = mean_n sum_c p_m,c p_n,c        (probability that m and n name the same class)
   conflict_m = mean_n JS(p_m, p_n) / log 2     (Jensen-Shannon divergence, in [0, 1])
   plus m's own confidence 1 - H(p_m)/log C, the others' mean confidence and the fraction of
   others present: 5 numbers per modality that mean the same thing for every modality.

Then (both designs) a small shared network with a learned modality embedding maps the cues to an
instance-wise gate g_m (B, 1) and a dimension-wise gate d_m (B, dim), both 1 + tanh(.), and the
ORIGINAL features are rescaled: f_m * g_m * d_m (the same gate for every token). The last layer
starts at zero, so at initialisation every gate is exactly 1 and the model computes exactly what
the same backbone without calibration computes.

Two opt-in departures (model options `calibration_conflict`, `calibration_relative`; off by
default): feature-swap conflict augmentation during training, and instance gates divided by their
mean over the present modalities (no common scale).

Each forward keeps the gates it applied (`last_gates`, detached), so the engine can write them
into the per-sample records and a study can see whether they fall on conflicting inputs.
"""

from __future__ import annotations

from math import log, nan

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError, one_of
from .encoders import pool

CUES = ("summary", "evidence")


def evidence_cues(p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M, 5) [support, conflict, own confidence, others' confidence, fraction of others present].

    p : (B, M, C) class probabilities of each modality; mask : (B, M) float, 1 where present.
    Averages run over the present n != m; with none present support/conflict are 0.
    """
    b, m, c = p.shape
    others = mask.unsqueeze(1) * (1.0 - torch.eye(m, dtype=p.dtype, device=p.device))  # (B, M, M)
    count = others.sum(-1)  # (B, M)
    weight = others / count.clamp(min=1.0).unsqueeze(-1)
    support = torch.einsum("bmn,bmn->bm", weight, p @ p.transpose(1, 2))
    mid = 0.5 * (p.unsqueeze(2) + p.unsqueeze(1))  # (B, M, M, C)
    logp, logmid = p.clamp(min=1e-12).log(), mid.clamp(min=1e-12).log()
    kl_m = (p.unsqueeze(2) * (logp.unsqueeze(2) - logmid)).sum(-1)  # KL(p_m || mid_mn)
    js = 0.5 * (kl_m + kl_m.transpose(1, 2)) / log(2.0)
    conflict = torch.einsum("bmn,bmn->bm", weight, js)
    confidence = 1.0 - (-(p * logp).sum(-1)) / log(c)  # (B, M)
    others_confidence = torch.einsum("bmn,bn->bm", weight, confidence)
    frac = count / max(m - 1, 1)
    return torch.stack([support, conflict, confidence, others_confidence, frac], dim=-1)


class PreFusionCalibration(nn.Module):
    """Instance- and dimension-wise gates from cross-modal agreement/conflict cues."""

    def __init__(self, modalities: list[str], dim: int, summary: int | None = None, hidden: int | None = None,
                 conflict: float = 0.0, relative: bool = False, cues: str = "summary", classes: int | None = None):
        super().__init__()
        if not 0.0 <= float(conflict) < 1.0:
            raise InputError(f"model option calibration_conflict must be in [0, 1), got {conflict}")
        if cues not in CUES:
            raise one_of("model option calibration_cues", cues, CUES)
        if cues == "evidence" and not (classes and int(classes) >= 2):
            raise InputError("model option calibration_cues='evidence' needs a classification task (class evidence); "
                             "use calibration_cues='summary' for regression")
        self.cue_kind = cues
        self.relative = bool(relative)  # instance gates divided by their mean over present modalities
        self.modalities = list(modalities)
        self.conflict = float(conflict)  # training-time swap fraction (see `swap_for_training`)
        r = summary or max(4, dim // 8)
        h = hidden or max(8, dim // 4)
        self.dim = dim
        if cues == "summary":
            self.project = nn.ModuleList(nn.Linear(dim, r) for _ in self.modalities)
            width = 3 * r + 2
        else:
            self.evidence = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, h), nn.GELU(), nn.Linear(h, int(classes))) for _ in self.modalities
            )
            width = 5
        self.modality_embedding = nn.Parameter(torch.zeros(len(self.modalities), h))
        self.cues_net = nn.Linear(width, h)
        self.gates = nn.Linear(h, 1 + dim)
        nn.init.zeros_(self.gates.weight)
        nn.init.zeros_(self.gates.bias)
        self.last_gates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # m -> (instance, mean dim), (B,)
        self._training_evidence: tuple[torch.Tensor, torch.Tensor] | None = None  # (logits, mask) of the last training forward

    def evidence_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, C) each modality's class logits from its detached pooled features (`evidence` cues)."""
        return torch.stack(
            [self.evidence[i](pool(features[m]).detach()) for i, m in enumerate(self.modalities)], dim=1
        )

    def cues(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
             logits: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M, width): the cue vector of every modality (see the module docstring).

        features[m] : (B, dim) or (B, T, dim); present[m] : bool (B,). Only present other
        modalities enter the averages; with none present the comparison cues are zero.
        logits : the evidence logits when already computed (`evidence` cues only).
        """
        names = self.modalities
        first = features[names[0]]
        mask = torch.stack([present[m] for m in names], dim=1).to(first.dtype)  # (B, M)
        if self.cue_kind == "evidence":
            logits = self.evidence_logits(features) if logits is None else logits
            return evidence_cues(logits.detach().softmax(-1), mask)
        s = torch.stack(
            [F.normalize(self.project[i](pool(features[m])), dim=-1) for i, m in enumerate(names)], dim=1
        )  # (B, M, r)
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
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor], logits: torch.Tensor | None = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """m -> (instance gate (B,), dimension gate (B, dim)), each in (0, 2)."""
        hidden = F.gelu(self.cues_net(self.cues(features, present, logits)) + self.modality_embedding)
        gates = 1.0 + torch.tanh(self.gates(hidden))  # (B, M, 1 + dim)
        instance = gates[..., 0]
        if self.relative:  # no common scale: a gate can only favour one modality over another
            mask = torch.stack([present[m] for m in self.modalities], dim=1).to(instance.dtype)
            mean = (instance * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1.0)
            instance = instance / mean.clamp(min=1e-6)
        return {m: (instance[:, i], gates[:, i, 1:]) for i, m in enumerate(self.modalities)}

    def swap_for_training(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Conflict augmentation: in a `conflict` fraction of the batch, one modality (uniform among the
        present ones) gets the features of another sample of the batch, the label staying the
        sample's own. Without it a training set with no conflicting pairs never rewards a gate for
        falling on one. Features only (our encoders are per modality, so this equals swapping inputs).
        Drawn from torch's global generator, which `train_model` seeds.
        Returns the features and the (B, M) bool mask of swapped entries."""
        names = self.modalities
        first = features[names[0]]
        b = first.shape[0]
        swapped = torch.zeros(b, len(names), dtype=torch.bool, device=first.device)
        if b < 2:
            return features, swapped
        mask = torch.stack([present[m] for m in names], dim=1).to(first.device)  # (B, M)
        hit = torch.rand(b, device=first.device) < self.conflict
        score = torch.rand(b, len(names), device=first.device).masked_fill(~mask, -1.0)
        which = score.argmax(dim=1)  # a present modality, uniformly
        donor = (torch.arange(b, device=first.device) + torch.randint(1, b, (b,), device=first.device)) % b
        out = {}
        for i, m in enumerate(names):
            swap = hit & (which == i) & mask[:, i] & present[m][donor].to(first.device)
            swapped[:, i] = swap
            f = features[m]
            out[m] = torch.where(swap.view(-1, *([1] * (f.dim() - 1))), f[donor], f)
        return out, swapped

    def auxiliary_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """The evidence heads' cross-entropy on the last training forward (present, unswapped
        entries only; mean over them); 0 for `summary` cues, which have no such term."""
        if self.cue_kind != "evidence" or self._training_evidence is None:
            return torch.zeros((), device=labels.device)
        logits, keep = self._training_evidence
        self._training_evidence = None
        per = F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]), reduction="none")
        w = keep.flatten().to(per.dtype)
        return (per * w).sum() / w.sum().clamp(min=1.0)

    def forward(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The original features rescaled by their gates (token features: same gate per token)."""
        swapped = None
        if self.training and self.conflict > 0:
            features, swapped = self.swap_for_training(features, present)
        logits = None
        if self.cue_kind == "evidence":
            logits = self.evidence_logits(features)
            if self.training:
                keep = torch.stack([present[m] for m in self.modalities], dim=1)
                self._training_evidence = (logits, keep if swapped is None else keep & ~swapped)
        out = {}
        gates = self.compute_gates(features, present, logits)
        self.last_gates = {  # NaN where m is absent: its features are zeroed after the gate anyway
            m: (g.detach().float().masked_fill(~present[m], nan), d.detach().float().mean(-1).masked_fill(~present[m], nan))
            for m, (g, d) in gates.items()
        }
        for m, (instance, channel) in gates.items():
            scale = instance.unsqueeze(-1) * channel
            f = features[m]
            out[m] = f * (scale.unsqueeze(1) if f.dim() == 3 else scale)
        return out
