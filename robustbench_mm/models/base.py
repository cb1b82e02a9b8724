"""The model interface the engine relies on.

A fusion model maps `dict[str, Tensor] -> logits (B, C)` (or (B,) / (B, 1) for regression).
Our models also split that into `encode(name, x)` per modality and `fuse(features, present)`, so
the engine can re-encode only the modality a condition touched. Foreign models (TorchScript,
`module:factory`) are wrapped as black boxes that only run a full forward pass.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Reencodable(Protocol):
    """A model whose forward is `fuse({m: encode(m, x[m])}, present)`; the engine checks for this."""

    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor: ...

    def fuse(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor: ...
