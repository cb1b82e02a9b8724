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


AUDIO_SAMPLE_RATE = 8000  # every built-in audio modality is 8 kHz; it only places the mel bands
MAX_MELS = 40
LOG_FLOOR = 1e-3  # log(floor + band power): silence sits at log(1e-3), speech well above it


def mel_filterbank(bins: int, bands: int, sample_rate: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """(bands, bins) triangular filters on the HTK mel scale, mel = 2595 log10(1 + f / 700),
    spanning 0 .. sample_rate / 2, each normalised to sum 1 (a band's value is an average power)."""
    to_mel = lambda f: 2595.0 * torch.log10(1.0 + f / 700.0)  # noqa: E731
    edges_mel = torch.linspace(0.0, float(to_mel(torch.tensor(sample_rate / 2.0))), bands + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = torch.linspace(0.0, sample_rate / 2.0, bins, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs - lo) / (mid - lo)
    fall = (hi - freqs) / (hi - mid)
    weights = torch.clamp(torch.minimum(rise, fall), min=0.0)
    return (weights / weights.sum(1, keepdim=True)).float()


def _conv_out(length: int, kernel: int, stride: int) -> int:
    return (length + 2 * (kernel // 2) - kernel) // stride + 1


class AudioEncoder(nn.Module):
    """x : (B, N) float waveform -> (B, T', dim): log-mel spectrogram computed here, then temporal convs.

    The spectrogram is part of the model, so a corruption of the waveform (noise, clipping,
    filtering, gain) reaches the features the way it would reach a real front end. Window:
    Hann, n_fft the largest power of two <= N/8 capped at 256 (32 ms at 8 kHz), hop n_fft/2;
    power per bin divided by the window's energy (unit-variance white noise -> 1 per bin), averaged
    into min(40, bins // 2) mel bands, log(1e-3 + power). Three 1-D convs over time (two of stride
    2: about 17 frames, 270 ms at N = 8000, of receptive field, the length of a syllable) are
    average-pooled to T' <= MAX_TOKENS tokens.
    """

    def __init__(self, spec: ModalitySpec, dim: int, width: int, dropout: float):
        super().__init__()
        (length,) = spec.shape
        self.n_fft = int(min(256, 2 ** int(math.log2(max(length // 8, 8)))))
        self.hop = self.n_fft // 2
        bins = self.n_fft // 2 + 1
        bands = max(1, min(MAX_MELS, bins // 2))
        frames = length // self.hop + 1
        after = _conv_out(_conv_out(frames, 5, 2), 3, 2)
        self.norm = Standardize(spec)
        window = torch.hann_window(self.n_fft)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel", mel_filterbank(bins, bands), persistent=False)
        self.window_energy = float(window.pow(2).sum())
        self.net = nn.Sequential(
            nn.Conv1d(bands, dim, 5, stride=2, padding=2), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(dim, dim, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(dim, dim, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool1d(min(MAX_TOKENS, after)),
        )  # fmt: skip

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) waveform in data units -> (B, bands, frames) log band powers."""
        spec = torch.stft(self.norm(x), self.n_fft, self.hop, window=self.window, return_complex=True)
        power = spec.abs().pow(2) / self.window_energy
        return torch.log(LOG_FLOOR + torch.einsum("mf,bft->bmt", self.mel, power))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.log_mel(x)).transpose(1, 2)


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
