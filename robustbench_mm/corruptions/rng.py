"""Common random numbers: per-sample randomness that depends only on (seed, key, sample id).

torch's generators are stateful streams: the noise a sample receives from them depends on where it
sits in the batch, on the batch size and on the process. `SampleRandom` is counter-based instead:
every random value is a hash of (key, sample id, stream, element index) computed with exact
integer ops on the batch's device, so sample *i* gets bit-identical noise whatever batch it is in,
on one process or many, and two models see the same corrupted input. It is fully vectorised (no
per-sample loop, no host sync).

The hash is `lowbias32` (Chris Wellons' integer hash) on int32 tensors read as uint32 bits: int32
multiplies wrap modulo 2**32 on CPU and CUDA, and right shifts are masked to make them logical (a
test checks the hash bit for bit against pure Python). Per-sample keys and per-element counters
are hashed once each on their own small tensors; only one hash round runs over the full (B, n)
block, in place, which is what makes it cheap: random numbers bound every noise kernel.

Floats are built from the bits with single-rounding ops only (no fused multiply-add that a
compiler could contract differently in vector and scalar loops), and normals use `erfinv`, whose
CPU kernel has no separate vector path: a value does not change with its position in the tensor.

On CPU the hash and the float step can also run as one compiled loop per element (numba,
`_rng_numba.py`, the `fast` extra), giving the same bits 1.2-3x faster; RBMM_RNG picks the path
(`_compiled`), and by default numba loads only once a process has drawn enough values to repay it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os

import numpy as np
import torch

from ..errors import InputError

RNG_VERSION = "lowbias32-int32-erfinv/2"  # recorded in runs and baselines: a change alters every draw
_GOLDEN = 0x9E3779B9
_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B - 2**32  # the same bits as an int32
_CPU_CHUNK = 2**19  # elements hashed per pass on CPU: the working set stays in L2
_DEVICE_CHUNK = 2**26  # on accelerators one pass is best; this only caps scratch memory


def _as_int32(value: int) -> int:
    """A uint32 value as the int32 with the same bits."""
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def _int32_bits(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2**32) as int32 tensors holding the same 32 bits."""
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def _hash32_(x: torch.Tensor, tmp: torch.Tensor | None = None) -> torch.Tensor:
    """lowbias32 in place on an int32 tensor (`tmp`: optional scratch of its shape); returns it."""
    tmp = torch.empty_like(x) if tmp is None else tmp
    for shift, mul in ((16, _MUL1), (15, _MUL2), (16, None)):
        torch.bitwise_right_shift(x, shift, out=tmp)
        tmp.bitwise_and_((1 << (32 - shift)) - 1)  # arithmetic shift -> logical shift
        x.bitwise_xor_(tmp)
        if mul is not None:
            x.mul_(mul)
    return x


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of an int32 tensor (its bits read as uint32), as a new int32 tensor."""
    if x.dtype != torch.int32:
        raise ValueError("hash32 takes an int32 tensor")
    return _hash32_(x.clone())


# Finishers: int32 bits -> values, written into `out` with single-rounding ops (exact, see above).
def _uniform_32(bits: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(bits.bitwise_and_(0x7FFFFF)).mul_(2.0**-23).add_(2.0**-24)


def _uniform_64(bits: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(bits).add_(2.0**31 + 0.5).mul_(2.0**-32)  # the signed value shifted to [0, 2**32)


def _normal_32(bits: torch.Tensor, out: torch.Tensor) -> None:
    _normal_from_signed_(out.copy_(bits.bitwise_and_(0x7FFFFF)).mul_(2.0**-22).add_(2.0**-23 - 1.0))


def _normal_64(bits: torch.Tensor, out: torch.Tensor) -> None:
    _normal_from_signed_(out.copy_(bits).add_(2.0**31 + 0.5).mul_(2.0**-31).sub_(1.0))


def _normal_from_signed_(v: torch.Tensor) -> None:
    """2u - 1 -> sqrt(2) erfinv(2u - 1) in place: the normals' last step on both paths."""
    v.erfinv_().mul_(math.sqrt(2.0))


# The compiled path (corruptions/_rng_numba.py, numba): for each finisher, the loop that computes
# the hash and the finisher's exact part (its scale and offset, the finisher's constants), and the
# torch step left to run after it.
_COMPILED_STEPS = {
    _uniform_32: ("low23_32", 2.0**-23, 2.0**-24, None),
    _uniform_64: ("signed_64", 2.0**-32, 0.0, None),
    _normal_32: ("low23_32", 2.0**-22, 2.0**-23 - 1.0, _normal_from_signed_),
    _normal_64: ("signed_64", 2.0**-31, -1.0, _normal_from_signed_),
}
RNG_PATHS = ("auto", "compiled", "torch")  # the values of RBMM_RNG
# Importing numba and loading the loops costs ~0.5 s CPU (~0.95 s the first time, when numba
# compiles them), and the loops save ~1 ns a value (benchmarks/bench_rng.py, one thread). By default
# they load once a process has drawn this many values on torch's CPU path (~0.5 s forgone): a short
# run never pays for numba, and a long one pays for it at most once more than it has already lost.
_LOAD_AFTER = 2**29
_torch_values = 0  # values drawn on torch's CPU path so far, until the loops load
_loops = None  # the _rng_numba module once loaded, False where it could not be
_loops_failure = ""  # why it could not


def _compiled(finish, count: int):
    """(loop, torch step after it) for a CPU draw of `count` values through `finish`, or None for torch's path.

    RBMM_RNG chooses: `auto` (the default) loads the loops after _LOAD_AFTER values, `compiled`
    from the first draw, `torch` never. Both paths give the same bits (tests/test_rng_compiled.py).
    """
    global _torch_values
    path = _rng_path()
    if path == "torch" or finish not in _COMPILED_STEPS:
        return None
    if _loops is None and path == "auto" and _torch_values < _LOAD_AFTER:
        _torch_values += count
        return None
    if not _loaded_loops(path):
        return None
    name, scale, offset, after = _COMPILED_STEPS[finish]
    return functools.partial(getattr(_loops, name), scale=scale, offset=offset), after


def _rng_path() -> str:
    path = os.environ.get("RBMM_RNG") or "auto"
    if path not in RNG_PATHS:
        raise InputError(f"RBMM_RNG={path!r}; expected one of: {', '.join(RNG_PATHS)}")
    return path


def _loaded_loops(path: str) -> bool:
    """Whether the compiled loops are loaded, loading them on the first call; under
    RBMM_RNG=compiled, loops that cannot load are an error naming why."""
    global _loops, _loops_failure
    if _loops is None:
        try:
            from . import _rng_numba as _loops
        except (ImportError, RuntimeError) as exc:  # numba missing or not fitting this numpy; RuntimeError:
            _loops = False  # no writable place for numba's cache (NUMBA_CACHE_DIR sets one)
            _loops_failure = f"{type(exc).__name__}: {exc}"
    if _loops is False and path == "compiled":
        if importlib.util.find_spec("numba") is None:
            raise InputError("RBMM_RNG=compiled needs numba: pip install 'robustbench-mm[fast]'")
        raise InputError(f"RBMM_RNG=compiled: numba is installed but the compiled loops did not load ({_loops_failure})")
    return bool(_loops)


def runs_compiled(device: torch.device) -> bool:
    """Whether a kernel's own exact steps on `device` run compiled: on CPU, under RBMM_RNG=compiled
    (loading the loops if no draw has yet), or under `auto` once the draws' loops are loaded. Fog's
    fractal (`_plasma_numba.py`), reverb's spectra product (`_audio_numba.py`) and JPEG's conversions
    (`_jpeg_numba.py`) follow this choice, so under `auto` numba never loads for them alone; both
    paths of each give the same bits."""
    if device.type != "cpu":
        return False
    path = _rng_path()
    if path == "torch":
        return False
    return _loaded_loops(path) if path == "compiled" else bool(_loops)


def key32(*parts: object) -> int:
    """A 32-bit key from any labels (protocol seed, condition, modality...), stable across runs."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _stream_salts(device: torch.device, first: int, sizes: tuple[int, ...]) -> torch.Tensor:
    """int32 salts of streams first, first + 1, ..., sizes[k] elements of stream first + k, concatenated.

    Element i of a stream s is salted by hash(hash(i + s * golden) ^ s); computing several
    streams' salts together gives each the values it would have alone. They depend on no sample.
    """
    counts = torch.tensor(sizes, dtype=torch.int64, device=device)
    streams = torch.arange(first, first + len(sizes), dtype=torch.int64, device=device)
    starts = torch.cumsum(counts, 0) - counts
    total = int(sum(sizes))
    index = torch.arange(total, device=device, dtype=torch.int64)
    index -= torch.repeat_interleave(starts - streams * _GOLDEN, counts, output_size=total)
    stream_bits = torch.repeat_interleave(_int32_bits(streams & 0xFFFFFFFF), counts, output_size=total)
    return _hash32_(_hash32_(_int32_bits(index & 0xFFFFFFFF)) ^ stream_bits)


# The engine builds a fresh generator per condition and batch, so the same (first stream, sizes)
# come back every batch; a small draw (time_mask's 32 values per clip) would otherwise spend
# ~35 small torch ops on salts that never change. Big draws are not cached: their salts are
# one row of a (B, n) hash pass, and an entry would hold n values.
_SALT_CACHE_ELEMENTS = 2**14
_cached_salts = functools.lru_cache(maxsize=256)(_stream_salts)


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
        base = _as_int32(key32(seed, key))
        lo = _int32_bits(ids & 0xFFFFFFFF)
        hi = _int32_bits((ids >> 32) & 0xFFFFFFFF)
        mixed = _hash32_(lo ^ base) ^ _hash32_(hi ^ _as_int32(_GOLDEN))
        self.keys = _hash32_(mixed)
        self.device = ids.device
        self._stream = 0

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def child(self, label: str | int) -> "SampleRandom":
        """An independent generator for a named sub-part (e.g. one modality of a removal)."""
        other = SampleRandom.__new__(SampleRandom)
        other.keys = _hash32_(self.keys ^ _as_int32(key32("child", label)))
        other.device = self.device
        other._stream = 0
        return other

    def _salts(self, sizes: tuple[int, ...], compiled: bool = False) -> torch.Tensor:
        """int32 salts of the next len(sizes) streams, sizes[k] elements of stream k, concatenated
        (read-only: small ones are shared through `_cached_salts`; large ones come from the compiled
        loop when the draw runs compiled, the same bits)."""
        first = self._stream
        self._stream += len(sizes)
        if sum(sizes) <= _SALT_CACHE_ELEMENTS:
            return _cached_salts(self.device, first, tuple(sizes))
        if compiled:
            salts = np.empty(sum(sizes), dtype=np.uint32)
            _loops.stream_salts(first, np.asarray(sizes, dtype=np.int64), salts)
            return torch.from_numpy(salts.view(np.int32))
        return _stream_salts(self.device, first, tuple(sizes))

    def _draw(self, shape: tuple[int, ...], dtype: torch.dtype, finish, combine=None, operands=()) -> torch.Tensor:
        """Values of shape (B, *shape) from a fresh stream (`_draw_streams` of one size)."""
        b, n = len(self), math.prod(shape)
        flat = [op.expand((b,) + tuple(shape)).reshape(b, n) for op in operands]
        return self._draw_streams((n,), dtype, finish, combine, flat).reshape((b,) + tuple(shape))

    def _draw_streams(self, sizes: tuple[int, ...], dtype: torch.dtype, finish, combine=None, flat=()) -> torch.Tensor:
        """(B, sum(sizes)) values of len(sizes) fresh streams side by side, built chunk by chunk.

        Each chunk of int32 bit patterns is hashed and turned into values by `finish(bits, out)` in
        place, or by the compiled loop that computes the same (`_chunk_filler`). Chunks of ~2**19
        elements stay in the CPU's L2 cache, which makes the dozen passes over them about three
        times faster than whole-tensor passes; values do not depend on the chunking (every op is
        elementwise), so batch independence is untouched. `combine`, if given, then edits each
        chunk of values in place with the matching chunks of `flat` (tensors of shape
        (B, sum(sizes))), while they are still in cache.
        """
        b, n = len(self), sum(sizes)
        compiled = _compiled(finish, b * n) if self.device.type == "cpu" else None
        salt = self._salts(sizes, compiled=compiled is not None)
        work = dtype if dtype == torch.float64 else torch.float32
        out = torch.empty((b, n), dtype=work, device=self.device)
        if b and n:
            chunk = _CPU_CHUNK if self.device.type == "cpu" else _DEVICE_CHUNK
            cols = min(n, chunk)
            rows = max(1, chunk // n)
            fill = self._chunk_filler(compiled, finish, salt, out, min(rows, b) * cols)
            for r0 in range(0, b, rows):
                r1 = min(b, r0 + rows)
                for c0 in range(0, n, cols):
                    c1 = min(n, c0 + cols)
                    fill(r0, r1, c0, c1)
                    if combine is not None:
                        combine(out[r0:r1, c0:c1], *(op[r0:r1, c0:c1] for op in flat))
        return out.to(dtype)

    def _chunk_filler(self, compiled, finish, salt: torch.Tensor, out: torch.Tensor, chunk: int):
        """fill(r0, r1, c0, c1): out[r0:r1, c0:c1] = finish(hash(keys[r0:r1] ^ salt[c0:c1])).

        With `compiled` (what `_compiled` offered for this draw: a loop and the torch step after
        it), the compiled loop (the same bits); otherwise torch's ops on int32 scratch of `chunk`
        elements.
        """
        if compiled is not None:
            loop, after = compiled
            keys, salts, values = self.keys.numpy().view("uint32"), salt.numpy().view("uint32"), out.numpy()

            def fill_compiled(r0: int, r1: int, c0: int, c1: int) -> None:
                loop(keys[r0:r1], salts[c0:c1], values[r0:r1, c0:c1])
                if after is not None:
                    after(out[r0:r1, c0:c1])

            return fill_compiled
        buffer = torch.empty(chunk, dtype=torch.int32, device=self.device)
        scratch = torch.empty_like(buffer)

        def fill_torch(r0: int, r1: int, c0: int, c1: int) -> None:
            size = (r1 - r0) * (c1 - c0)
            bits = buffer[:size].view(r1 - r0, c1 - c0)
            torch.bitwise_xor(self.keys[r0:r1, None], salt[None, c0:c1], out=bits)
            finish(_hash32_(bits, scratch[:size].view_as(bits)), out[r0:r1, c0:c1])

        return fill_torch

    def combine(self, distribution: str, fn, x: torch.Tensor, *operands: torch.Tensor) -> torch.Tensor:
        """`fn(values, x, *operands)` over fresh draws of x's shape, one cache-sized chunk at a time.

        `values` (a chunk of `self.normal` or `self.uniform` draws, the values those would return,
        in float32 for half-precision x) is to be edited in place into the result; `x` and
        `operands` (broadcastable to x) come as the matching chunks. A noise kernel written this
        way makes its passes while the chunk is in cache instead of over the whole batch.
        """
        finishers = {"normal": (_normal_32, _normal_64), "uniform": (_uniform_32, _uniform_64)}
        if distribution not in finishers:
            raise ValueError(f"distribution must be one of {sorted(finishers)}, got {distribution!r}")
        if x.shape[0] != len(self):
            raise ValueError(f"x has {x.shape[0]} samples, the generator {len(self)}")
        single, double = finishers[distribution]
        finish = double if x.dtype == torch.float64 else single
        return self._draw(tuple(x.shape[1:]), x.dtype, finish, fn, (x,) + operands)

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """U(0, 1), never exactly 0 or 1, shape (B, *shape).

        float32: 23 random bits, (2k + 1) / 2**24, exact. float64: 32 bits, (2k + 1) / 2**33.
        Other float dtypes are rounded from float32 and kept inside (0, 1).
        """
        u = self._draw(shape, dtype, _uniform_64 if dtype == torch.float64 else _uniform_32)
        if dtype not in (torch.float32, torch.float64):
            info = torch.finfo(dtype)
            u.clamp_(info.tiny, 1.0 - info.eps / 2)
        return u

    def uniform_streams(self, sizes: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, sum(sizes)): the values of `uniform(size, dtype=dtype)` called once per size in turn,
        side by side, drawn in one pass: for many small draws (a fractal's 24 grids) the fixed cost
        of a draw is paid once, and a kernel can walk them in one loop (fog's compiled fractal)."""
        u = self._draw_streams(tuple(sizes), dtype, _uniform_64 if dtype == torch.float64 else _uniform_32)
        if dtype not in (torch.float32, torch.float64):
            info = torch.finfo(dtype)
            u.clamp_(info.tiny, 1.0 - info.eps / 2)
        return u

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, 1) by the inverse CDF, sqrt(2) erfinv(2u - 1), shape (B, *shape).

        float32 draws reach |z| of about 5.3, float64 draws about 6.3.
        """
        return self._draw(shape, dtype, _normal_64 if dtype == torch.float64 else _normal_32)

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
