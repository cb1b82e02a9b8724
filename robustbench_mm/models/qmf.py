"""`qmf`: Quality-aware Multimodal Fusion (Zhang et al., ICML 2023) as its released code does it.

Follows QingyangZhang/QMF at fe6c4c6, text-image-classification:
`src/models/late_fusion.py`, `MultimodalLateFusionClf.forward` (with `--df`, default True),
`train_qmf.py`, `model_forward` and `rank_loss`, and `src/utils/utils.py`, `History`:
- one classifier per modality; energy E_m = -logsumexp(logits_m) and confidence
  c_m = -E_m / 10 = logsumexp(logits_m) / 10;
- fused logits = sum_m c_m.detach() * logits_m (the confidences are detached in the fusion);
- loss = sum_m CE(logits_m) + CE(fused) + sum_m rank_m (the ranking terms weigh 1);
- `History`: per training sample and modality, the running *sum* of that sample's CE loss
  (`correctness_update` adds the loss, despite its name), updated for the batch *before* the
  ranking term is computed;
- rank_m (`rank_loss`, `History.get_target_margin`): pair each sample with the next in the batch
  (`torch.roll(-1)`); h = history min-max normalised over the whole training set; target =
  sign(h_1 - h_2), margin = |h_1 - h_2|; MarginRankingLoss(margin 0)(c_1, c_2 + margin / t, -t)
  with t = target where target != 0 else 1, i.e. mean over pairs of
  max(0, target * (c_1 - c_2 - margin / t)): a sample with the larger loss history is pushed
  to the lower confidence.
Departures: where the whole history is constant (max = min, e.g. a first batch of identical
losses) the code divides 0 by 0 and its loss is NaN; we give those pairs target 0 (no ranking
term). Absent modalities are left out of the fusion sum, the unimodal losses and the pairs.
The classifier is one linear layer per modality (`--hidden` defaults to []) on our encoders.
The RGB-D code (`RGBD-scene-recognition/models/QMF.py`, `train_QMF_nyud2.py`) differs: there
the confidences are not detached in the fusion, the ranking terms weigh `--lamb` 0.1 and the
history is updated after the ranking term; we follow the text-image code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .encoders import pool
from ..domain import Task
from .fusion import FusionModel, backbone
from .udml import presence_mask


def qmf_confidence(logits: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """(..., C) logits -> (...) confidence -energy / temperature = logsumexp / temperature."""
    return torch.logsumexp(logits, dim=-1) / temperature


def rank_targets(history: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, margin), each (B,), for the pairs (sample i, sample i+1 of the batch), `History.get_target_margin`."""
    low, high = history.min(), history.max()
    if high <= low:
        zero = torch.zeros(index.shape[0], dtype=torch.float32, device=index.device)
        return zero, zero
    h = (history[index] - low) / (high - low)
    h2 = torch.roll(h, -1)
    target = torch.sign(h - h2).float()
    return target, (h - h2).abs().float()


def rank_loss(confidence: torch.Tensor, target: torch.Tensor, margin: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of max(0, t (c1 - c2 - margin / t')), t' = t or 1 where t = 0; `weight` (B,) selects pairs."""
    c2 = torch.roll(confidence, -1) + margin / torch.where(target == 0, torch.ones_like(target), target)
    per = F.relu(target * (confidence - c2))
    return (per * weight).sum() / weight.sum().clamp(min=1.0)


@backbone(
    "qmf",
    description="QMF (quality-aware multimodal fusion): energy-confidence-weighted late fusion + ranking (qmf.py).",
    tasks=(Task.CLASSIFICATION,),
)
class QMFFusion(FusionModel):
    """QMF (quality-aware multimodal fusion): energy-confidence-weighted late fusion + ranking (qmf.py)."""

    OPTIONS = {"qmf_temperature": 10.0, "qmf_rank_weight": 1.0}

    def __init__(self, config: dict):
        super().__init__(config)
        dim = int(config["dim"])
        self.classifiers = nn.ModuleList(nn.Linear(dim, self.num_outputs) for _ in self.modalities)
        self.history: torch.Tensor | None = None  # (M, n_train) loss sums; training-only, not saved

    def start_epoch(self, epoch: int, epochs: int, n_train: int) -> None:
        if epoch == 1:
            self.history = torch.zeros(len(self.modalities), n_train, dtype=torch.float64)

    def unimodal_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.classifiers[i](pool(features[m])) for i, m in enumerate(self.modalities)], dim=1)

    def _fused(self, logits: torch.Tensor, present) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conf = qmf_confidence(logits, float(self.config["qmf_temperature"]))  # (B, M)
        mask = presence_mask(present, self.modalities, conf)
        fused = (mask * conf.detach()).unsqueeze(-1).mul(logits).sum(1)
        return fused, conf, mask

    def fuse_features(self, features, present):
        return self._fused(self.unimodal_logits(features), present)[0]

    def training_loss(self, inputs, present, labels, generator, index=None):
        if index is None or self.history is None:
            raise InputError("qmf training needs the samples' positions in the training split (train_model passes them)")
        features, present = self.calibrated_features(inputs, present)
        logits = self.unimodal_logits(features)
        fused, conf, mask = self._fused(logits, present)
        b, m = mask.shape
        per = F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(m), reduction="none").view(b, m)
        loss = ((per * mask).sum(0) / mask.sum(0).clamp(min=1.0)).sum() + F.cross_entropy(fused, labels)
        idx = index.cpu()
        ranking = []
        for i in range(m):
            self.history[i].index_add_(0, idx, (per[:, i].detach() * mask[:, i]).double().cpu())
            target, margin = rank_targets(self.history[i], idx)
            pair = mask[:, i] * torch.roll(mask[:, i], -1)
            ranking.append(rank_loss(conf[:, i], target.to(conf.device), margin.to(conf.device), pair))
        return loss + float(self.config["qmf_rank_weight"]) * torch.stack(ranking).sum()
