"""One encoder per modality kind; each takes raw data units and returns features of width `dim`.

Every encoder first standardises its input with the modality's train mean/std, held as buffers,
so a model (and its checkpoint) takes data exactly as the dataset produces it.

Outputs: vector, image, tokens -> (B, dim); sequence, audio -> token features (B, T', dim) with
T' <= MAX_TOKENS (the calibration gates them token-wise; the transformer backbone attends to them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..datasets.batch import PAD_ID, UNK_ID, ModalitySpec

MAX_TOKENS = 8  # token features kept per sequence/audio modality (fusion cost stays small)


def pool(features: torch.Tensor) -> torch.Tensor:
    """(B, dim) stays; token features (B, T, dim) are averaged over tokens."""
    return features.mean(dim=1) if features.dim() == 3 else features


class Standardize(nn.Module):
    """(x - mean) / std with the spec's train statistics; identity where they are unknown.

    Constant features (std 0) are only centred, so a corrupted input cannot blow up by 1/std.
    """

    def __init__(self, spec: ModalitySpec):
        super().__init__()
        shape = spec.shape[-1:] if spec.kind == "sequence" else spec.shape
        mean = torch.zeros(shape) if spec.mean is None else spec.mean.detach().float().cpu()
        std = torch.ones(shape) if spec.std is None else spec.std.detach().float().cpu()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class VectorEncoder(nn.Module):
    """x : (B, D) float -> (B, dim) through a two-layer MLP."""

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        self.norm = Standardize(spec)
        self.net = nn.Sequential(
            nn.Linear(spec.shape[0], width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class ImageEncoder(nn.Module):
    """x : (B, C, H, W) float -> (B, dim) through two conv blocks and a 4x4 pooled grid."""

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        channels = spec.shape[0]
        c1, c2 = 16, 32
        self.norm = Standardize(spec)
        self.net = nn.Sequential(
            nn.Conv2d(channels, c1, 3, padding=1), nn.GELU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(c2 * 16, dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


def _tokens_after(length: int) -> int:
    return max(1, min(MAX_TOKENS, math.ceil(length / 2)))


class SequenceEncoder(nn.Module):
    """x : (B, T, D) float frames -> (B, T', dim) by a strided temporal conv (T' <= MAX_TOKENS)."""

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        length, channels = spec.shape
        self.norm = Standardize(spec)
        self.net = nn.Sequential(
            nn.Conv1d(channels, dim, 5, stride=2, padding=2), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(dim, dim, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool1d(_tokens_after(length)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x).transpose(1, 2)).transpose(1, 2)


class AudioEncoder(nn.Module):
    """x : (B, N) float waveform -> (B, T', dim): log-magnitude STFT, then a temporal conv."""

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        (length,) = spec.shape
        self.n_fft = int(min(128, 2 ** int(math.log2(max(length // 8, 8)))))
        self.hop = self.n_fft // 2
        frames = length // self.hop + 1
        self.norm = Standardize(spec)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.net = nn.Sequential(
            nn.Conv1d(self.n_fft // 2 + 1, dim, 3, stride=2, padding=1), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(dim, dim, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool1d(_tokens_after(frames)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(self.norm(x), self.n_fft, self.hop, window=self.window, return_complex=True)
        return self.net(torch.log1p(spec.abs())).transpose(1, 2)


class TokenEncoder(nn.Module):
    """x : (B, L) integer ids (0 = pad) -> (B, dim): embedding, local conv, masked mean pooling.

    Ids outside the vocabulary are read as the unknown id 1.
    """

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(int(spec.vocab_size), dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        x = torch.where((x >= 0) & (x < self.embed.num_embeddings), x, torch.full_like(x, UNK_ID))
        keep = (x != PAD_ID).unsqueeze(-1).float()
        e = self.embed(x)
        h = e + self.conv(e.transpose(1, 2)).transpose(1, 2)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.out(pooled)


ENCODERS = {
    "vector": VectorEncoder,
    "image": ImageEncoder,
    "sequence": SequenceEncoder,
    "audio": AudioEncoder,
    "tokens": TokenEncoder,
}


def build_encoder(spec: ModalitySpec, dim: int, width: int = 128, dropout: float = 0.1) -> nn.Module:
    """The encoder for `spec.kind` producing `dim` features per token (width: vector MLP hidden size)."""
    return ENCODERS[spec.kind](spec, dim, width, dropout)
