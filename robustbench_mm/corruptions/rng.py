"""Common random numbers: per-sample randomness that depends only on (seed, key, sample id).

torch's generators are stateful streams: the noise a sample receives from them depends on where it
sits in the batch, on the batch size and on the process. `SampleRandom` is counter-based instead:
every random value is a hash of (key, sample id, stream, element index) computed with exact
integer ops on the batch's device, so sample *i* gets bit-identical noise whatever batch it is in,
on one process or many, and two models see the same corrupted input. It is fully vectorised (no
per-sample loop, no host sync).

The hash is `lowbias32` (Chris Wellons' integer hash) on 32-bit values held in int64. Products
are masked to their low 32 bits, which are exact whether or not the int64 product wraps (torch's
integer multiply wraps on CPU and CUDA; a test checks the hash bit for bit against pure Python).
Per-sample keys and per-element counters are hashed once each on their own small tensors; only
one hash round runs over the full (B, n) block, which is what makes it cheap.
"""

from __future__ import annotations

import hashlib
import math

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def key32(*parts: object) -> int:
    """A 32-bit key from any labels (protocol seed, condition, modality...), stable across runs."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class SampleRandom:
    """Random draws for a batch of samples, each sample's values a function of its id alone.

    Every call (uniform, normal, integers...) uses a fresh stream, so successive draws are
    independent; the sequence of calls is part of a corruption's definition, like a seed.

    >>> rng = SampleRandom(ids=torch.arange(4), seed=0, key="gaussian|pix|3")
    >>> rng.uniform(2, 3).shape
    torch.Size([4, 2, 3])
    """

    def __init__(self, ids: torch.Tensor, seed: int, key: str | int):
        if ids.dtype != torch.int64 or ids.dim() != 1:
            raise ValueError("ids must be an int64 tensor of shape (B,)")
        base = key32(seed, key)
        lo = ids & _MASK32
        hi = (ids >> 32) & _MASK32
        self.keys = hash32(hash32(lo ^ base) ^ hash32(hi ^ _GOLDEN))
        self.device = ids.device
        self._stream = 0

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def child(self, label: str | int) -> "SampleRandom":
        """An independent generator for a named sub-part (e.g. one modality of a removal)."""
        other = SampleRandom.__new__(SampleRandom)
        other.keys = hash32(self.keys ^ key32("child", label))
        other.device = self.device
        other._stream = 0
        return other

    def _bits(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform 32-bit integers of shape (B, *shape), one fresh stream per call."""
        stream = self._stream
        self._stream += 1
        n = math.prod(shape)
        counter = torch.arange(n, device=self.device, dtype=torch.int64)
        salt = hash32(hash32((counter + stream * _GOLDEN) & _MASK32) ^ (stream & _MASK32))
        bits = hash32(self.keys[:, None] ^ salt[None, :])
        return bits.reshape((len(self),) + tuple(shape))

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """U(0, 1), never exactly 0 or 1 (24 random bits, exact in float32), shape (B, *shape)."""
        bits = self._bits(shape)
        return ((bits >> 8).to(dtype) + 0.5) * 2.0**-24

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, 1) by Box-Muller, both outputs used, shape (B, *shape)."""
        n = math.prod(shape)
        half = (n + 1) // 2
        u1 = self.uniform(half, dtype=dtype)
        u2 = self.uniform(half, dtype=dtype)
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2.0 * math.pi) * u2
        z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :n]
        return z.reshape((len(self),) + tuple(shape))

    def integers(self, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in [0, high), int64, shape (B, *shape)."""
        return torch.floor(self.uniform(*shape, dtype=torch.float64) * high).to(torch.int64).clamp_(max=high - 1)

    def bernoulli(self, p: float | torch.Tensor, *shape: int) -> torch.Tensor:
        """Bool tensor (B, *shape), True with probability p (p a float or a tensor broadcastable to it)."""
        return self.uniform(*shape, dtype=torch.float64) < p

    def sample_mask(self, rate: float) -> torch.Tensor:
        """Which samples a protocol affects at this rate, (B,) bool: a per-sample, batch-independent choice."""
        if rate >= 1.0:
            return torch.ones(len(self), dtype=torch.bool, device=self.device)
        return self.child("sample-mask").uniform(dtype=torch.float64) < rate
