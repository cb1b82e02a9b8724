"""`udml`: UDML's fusion and training as its released code does them, for M modalities.

Follows shicaiwei123/UDML at d78331e: `models/basic_model.py`, `AVClassifier_AUXI_UDML.forward`
(the `pe` branch, which both released scripts `cramed_auxi.sh` and `ks_auxi.sh` run with
`--pe 1`), `models/fusion_modules.py`, `ConcatFusion_AUXI.forward`, and
`main_auxi_weight_udml.py`, `train_epoch` / `main`, with the noise of `dataset/CramedDataset.py`.

What the code does (two modalities a, v) and what we do:
- noise levels: `CramedDataset.__init__` draws v ~ randint(1, 12), i.e. {1..11}, per sample and
  modality, then sets both modalities of a random half of the samples to 1 (level 1 is "no
  noise"; `AddGaussianNoise`: 2..10 add noise of std v**2 on 0-255 pixels, std v on the
  log-spectrogram, 11 replaces the input with noise). We draw the same law per batch (exactly
  half of each batch clean); the code draws each sample's levels once and keeps them all run.
  Our noise is modality-agnostic: std = noise_scale * (v**2 / 100) * data std for v in 2..10
  (UDML's image law, scaled so level 10 is noise_scale data stds), level 11 replaces the input
  with mean + noise_scale * std * N(0, 1); tokens are replaced with probability (v - 1) / 10.
- schedule (`main`, `train_epoch`): epochs < cylcle_epoch (50 of 100) train on clean data
  (level labels 1), later epochs on the noisy data; the fusion weights' noise term is held at
  1 while epoch < cylcle_epoch + 10; a checkpoint is kept only when epoch > cylcle_epoch. We
  scale the schedule to our epoch budget: clean for the first `udml_clean_fraction` (0.5) of
  the epochs, noise term held at 1 until `udml_warmup_fraction` (0.6), early stopping only
  after the clean phase. In eval mode the noise term is always on, as in the code's `else`.
- noise regressor (`visual_variance_estimator`): Linear(d, d/2) - Dropout(0.1) - Linear(d/2, 1)
  (no nonlinearity), on *detached* pooled features (`.detach()` in `forward`; under `pe` they are
  the std branch of its probabilistic embedding), sigma = exp(0.5 f); loss 0.1 * MSE(sigma, v)
  on the raw level, computed on the same noisy input the classifier trains on.
- fusion weights (pe branch): t_a = 2 s_v^2 / (s_a^2 + s_v^2), t_v = 2 s_a^2 / (...), held at 1
  in the warm-up; w_m = t_m / dep_m, then renormalised w_a, w_v = 2 w_a / (w_a + w_v), ...
  The division by the dependency applies in the warm-up too (so the weights are *not* 1 there;
  only the non-`pe` branch, which no script runs, holds them at 1 and never divides). For M
  modalities: t_m = n s_m^-2 / sum_k s_k^-2 (equal to the code's t for M = 2) and
  w_m = n (t_m / dep_m) / sum_k (t_k / dep_k), sums over the n present modalities (absent
  ones get weight 0: the code has no absent modality). The weights are not detached in the
  code, so after the warm-up the classification loss also trains the regressor through them.
- dependency (`train_epoch`): dep_m = batch mean over samples of sum over classes of
  |unimodal logits_m|, detached, set after each step and used by the next; the checkpoint
  stores the last value and evaluation uses it (so a sample's output never depends on its
  test batch). The code starts from the argparse defaults 32 (audio) and 10 (visual); we start
  at 1 for every modality (the first step overwrites it).
- head (`ConcatFusion_AUXI`): one linear layer on the concatenated (1 + w_m) f_m; the unimodal
  logits are that layer with the other modalities' features zeroed (bias included).
- loss: CE(joint) + gamma * sum_m CE(unimodal_m) + 0.1 * sum_m MSE(sigma_m, v_m); gamma = 4.0
  (`cramed_auxi.sh`; 2.5 in `ks_auxi.sh`).
As released, the audio backbone (`models/backbone.py`, `ResNet.forward`, pe branch) reads
`args.max`, which `main_auxi_weight_udml.py` never defines; we read the rest as intended.
Not reproduced: the probabilistic embedding of `pe` (mu/logvar branches in `backbone.py`) and its
KL term (beta = 1e-5 on CREMA-D, 0 on KS), SGD with its schedule and gradient clipping (every
method here trains with the suite's one recipe so that they compare), classification only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..datasets.batch import PAD_ID, UNK_ID
from .encoders import pool
from ..domain import Task
from .fusion import FusionModel, _zero_absent, backbone

LEVELS = 11  # UDML's levels 1..11: 1 = clean, 11 = the input replaced by noise


def presence_mask(present: dict[str, torch.Tensor], names: list[str], like: torch.Tensor) -> torch.Tensor:
    """(B, M) float presence; a sample with nothing present counts every modality (its features are zero)."""
    mask = torch.stack([present[m] for m in names], dim=1).to(like.dtype)
    return torch.where(mask.sum(1, keepdim=True) > 0, mask, torch.ones_like(mask))


def udml_weights(sigma: torch.Tensor, dependency: torch.Tensor, mask: torch.Tensor, noise_term: bool = True) -> torch.Tensor:
    """(B, M) fusion weights w_m (sum n = present count), UDML's pe-branch formula for M modalities.

    sigma : (B, M) predicted noise levels; dependency : (M,) dep_m; mask : (B, M) presence.
    noise_term False holds t_m at 1 (UDML's warm-up); the dependency still divides.
    """
    n = mask.sum(1, keepdim=True)
    if noise_term:
        inv = mask / sigma.pow(2)
        t = n * inv / inv.sum(1, keepdim=True)
    else:
        t = mask
    w = t / dependency
    return n * w / w.sum(1, keepdim=True)


@backbone(
    "udml",
    description="UDML (Unbiased Dynamic Multimodal Learning) as its released code does it (udml.py).",
    tasks=(Task.CLASSIFICATION,),
)
class UDMLFusion(FusionModel):
    """UDML (Unbiased Dynamic Multimodal Learning) as its released code does it (udml.py)."""

    OPTIONS = {
        "noise_scale": 2.0,  # noise std at level 10, in data stds (levels 2..10 scale as v**2)
        "udml_gamma": 4.0,  # weight of the unimodal losses (cramed_auxi.sh --gamma 4.0)
        "udml_regressor_weight": 0.1,  # weight of the noise regressor's MSE (train_epoch)
        "udml_clean_fraction": 0.5,  # clean epochs: cylcle_epoch 50 of 100
        "udml_warmup_fraction": 0.6,  # noise term held at 1 until here: cylcle_epoch + 10 of 100
    }

    def __init__(self, config: dict):
        super().__init__(config)
        dim = int(config["dim"])
        m = len(self.modalities)
        self.head = nn.Linear(dim * m, self.num_outputs)
        self.regressors = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim // 2), nn.Dropout(0.1), nn.Linear(dim // 2, 1)) for _ in self.modalities
        )
        self.register_buffer("dependency", torch.ones(m))
        self.noisy_phase = False  # training schedule (set by start_epoch; eval mode ignores it)
        self.noise_term = True

    def start_epoch(self, epoch: int, epochs: int, n_train: int) -> None:
        self.noisy_phase = epoch > int(float(self.config["udml_clean_fraction"]) * epochs)
        self.noise_term = epoch > int(float(self.config["udml_warmup_fraction"]) * epochs)

    def selection_start(self, epochs: int) -> int:
        return int(float(self.config["udml_clean_fraction"]) * epochs) + 1

    def predicted_level(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M) sigma_m = exp(0.5 f_m) from the detached pooled features."""
        return torch.cat(
            [(0.5 * self.regressors[i](pool(features[m]).detach())).exp() for i, m in enumerate(self.modalities)], dim=1
        )

    def _blocks(self, features, present) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, M, dim) features scaled by 1 + w, (B, M) predicted levels)."""
        sigma = self.predicted_level(features)
        mask = presence_mask(present, self.modalities, sigma)
        w = udml_weights(sigma, self.dependency.clone(), mask, noise_term=self.noise_term or not self.training)
        f = torch.stack([pool(features[m]) for m in self.modalities], dim=1)
        return f * (1.0 + w).unsqueeze(-1), sigma

    def unimodal_logits(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, M, C): the joint linear head with every other modality's block zeroed (ConcatFusion_AUXI)."""
        b, m, d = blocks.shape
        weight = self.head.weight.view(-1, m, d)  # (C, M, dim)
        return torch.einsum("bmd,cmd->bmc", blocks, weight) + self.head.bias

    def fuse_features(self, features, present):
        blocks, _ = self._blocks(features, present)
        return self.head(blocks.flatten(1))

    def noisy(self, inputs: dict[str, torch.Tensor], levels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Inputs with UDML-law noise of integer level levels[:, m] in 1..11 (1 = unchanged)."""
        out = {}
        for i, (m, spec) in enumerate(zip(self.modalities, self.specs)):
            x, v = inputs[m], levels[:, i].to(inputs[m].device)
            shape = (-1, *([1] * (x.dim() - 1)))
            if spec.kind == "tokens":
                hit = torch.rand(x.shape, generator=generator).to(x.device) < ((v - 1) / (LEVELS - 1)).view(shape)
                ids = torch.randint(UNK_ID + 1, max(int(spec.vocab_size), UNK_ID + 2), x.shape, generator=generator)
                out[m] = torch.where(hit & (x != PAD_ID), ids.to(x.device, x.dtype), x)
                continue
            norm = self.encoders[self._index[m]].norm
            scale = float(self.config["noise_scale"]) * norm.std
            noise = torch.randn(x.shape, generator=generator).to(x.device)
            added = x + (v.pow(2) / 100.0 * (v > 1)).view(shape) * scale * noise
            out[m] = torch.where((v == LEVELS).view(shape), norm.mean + scale * noise, added)
        return out

    def draw_levels(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B, M) levels: each in {1..11} uniformly, then every modality of half the samples set to 1."""
        levels = torch.randint(1, LEVELS + 1, (batch, len(self.modalities)), generator=generator).float()
        clean = torch.randperm(batch, generator=generator)[: batch // 2]
        levels[clean] = 1.0
        return levels

    def training_loss(self, inputs, present, labels, generator, index=None):
        b = labels.shape[0]
        if self.noisy_phase:
            levels = self.draw_levels(b, generator)
            inputs = self.noisy(inputs, levels, generator)
        else:
            levels = torch.ones(b, len(self.modalities))
        levels = levels.to(labels.device)
        features, present = self.calibrated_features(inputs, present)
        features = {m: _zero_absent(features[m], present[m]) for m in self.modalities}
        blocks, sigma = self._blocks(features, present)
        mask = presence_mask(present, self.modalities, sigma)
        unimodal = self.unimodal_logits(blocks)
        per = F.cross_entropy(unimodal.flatten(0, 1), labels.repeat_interleave(len(self.modalities)), reduction="none")
        unimodal_loss = (per.view(b, -1) * mask).sum(0) / mask.sum(0).clamp(min=1.0)  # (M,) one CE per modality
        regress = ((sigma - levels).pow(2) * mask).sum(0) / mask.sum(0).clamp(min=1.0)  # (M,) one MSE per modality
        loss = (
            F.cross_entropy(self.head(blocks.flatten(1)), labels)
            + float(self.config["udml_gamma"]) * unimodal_loss.sum()
            + float(self.config["udml_regressor_weight"]) * regress.sum()
        )
        with torch.no_grad():  # train_epoch: torch.mean(torch.abs(out_a), 0).sum(), used from the next step on
            self.dependency.copy_(unimodal.abs().mean(0).sum(-1))
        return loss
