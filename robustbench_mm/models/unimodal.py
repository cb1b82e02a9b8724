"""`unimodal`: one modality's own model, the reference every robustness claim needs.

It takes the full multimodal input, so it can be evaluated in the same run and on the same
corrupted samples as the fusion models, and ignores every modality but `modality`: those have no
encoder (`encode` returns an empty (B, 0) feature), so no perturbation of theirs can reach the
output. Removing its own modality leaves the head's answer on zeroed features. No calibration
(there is nothing to calibrate against).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, one_of
from .encoders import pool
from .fusion import FusionModel, PredictionHead, backbone


@backbone(
    "unimodal",
    description="A single-modality model that accepts (and ignores) the other modalities (unimodal.py).",
    calibration=False,
)
class UnimodalModel(FusionModel):
    """A single-modality model that accepts (and ignores) the other modalities (unimodal.py)."""

    @classmethod
    def check_config(cls, cfg: dict, modalities: list[str]) -> None:
        if cfg.get("modality") is None:
            raise InputError(f"fusion 'unimodal' needs the modality it uses (--modality NAME), one of: {', '.join(modalities)}")
        if cfg["modality"] not in modalities:
            raise one_of("modality", cfg["modality"], modalities)

    def __init__(self, config: dict):
        super().__init__(config)
        dim, hidden, p = int(config["dim"]), int(config["hidden"]), float(config["dropout"])
        self.modality = str(config["modality"])
        self.mix = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())
        self.head = PredictionHead(hidden, self.num_outputs, p)

    def encoded_modalities(self) -> list[str]:
        return [str(self.config["modality"])]

    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.modality:
            return super().encode(name, x)
        if name not in self.modalities:
            raise one_of("modality", name, self.modalities)
        return torch.zeros(x.shape[0], 0, device=x.device)

    def fuse_features(self, features, present):
        return self.head(self.mix(pool(features[self.modality])))
