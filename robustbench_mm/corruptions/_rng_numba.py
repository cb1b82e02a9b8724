"""The counter hash and the bits-to-float step of `rng.SampleRandom` as compiled loops (numba).

torch computes lowbias32 as eleven elementwise passes over a chunk, each a trip through memory;
one compiled loop does it per element in registers: hash and floats of 16 x 3x224x224 uniforms in
0.4-0.7 ms against torch's 2.8 ms here (one thread). The values are the torch path's bit for bit:
the hash is exact 32-bit integer arithmetic, and each float is built from at most 32 random bits
by an exact int-to-float conversion, multiplies by powers of two and adds whose results are
representable (no rounding anywhere, so no compiler choice of instructions can change a value; no
fastmath). Normals leave here as 2u - 1 and get torch's `erfinv_` afterwards, their definition.

One thread: `parallel=True` would bring numba's own thread pool beside torch's (its OpenMP layer
changed torch's thread count when tried; its workqueue layer is not thread-safe). The loops
release the GIL, and `cache=True` keeps the machine code on disk after the first compilation.
Imported only by `rng._compiled`, when RBMM_RNG asks for the loops (by default once a process has
drawn 2**29 values on torch's path), so `rbmm` never loads numba to start up.
"""

from __future__ import annotations

import numba
import numpy as np

_MUL1 = np.uint32(0x7FEB352D)
_MUL2 = np.uint32(0x846CA68B)
_LOW23 = np.uint32(0x7FFFFF)
_GOLDEN = 0x9E3779B9  # rng._GOLDEN
_SIGNATURE32 = "void(uint32[::1], uint32[::1], float32[:, ::1], float32, float32)"
_SIGNATURE64 = "void(uint32[::1], uint32[::1], float64[:, ::1], float64, float64)"


@numba.njit(cache=True, nogil=True)
def _lowbias32(x):
    """Chris Wellons' lowbias32 on a uint32 (products truncated to 32 bits, shifts logical)."""
    x ^= x >> np.uint32(16)
    x = np.uint32(x * _MUL1)
    x ^= x >> np.uint32(15)
    x = np.uint32(x * _MUL2)
    return x ^ (x >> np.uint32(16))


@numba.njit("void(int64, int64[::1], uint32[::1])", cache=True, nogil=True)
def stream_salts(first, sizes, out):
    """rng._stream_salts: element i of stream s = first + k gets hash(hash(i + s * golden) ^ s),
    modulo 2**32, streams side by side. Salts are a second hash pass over each draw's columns: in
    torch, ~30 passes of int64 and int32 ops: 0.70 ms for a 3x224x224 stream against the loop's
    0.08 ms (one thread, freed memory kept, best of 50)."""
    c = 0
    for k in range(sizes.shape[0]):
        s = first + k
        stream_bits = np.uint32(s & 0xFFFFFFFF)
        offset = (s * _GOLDEN) & 0xFFFFFFFF
        for i in range(sizes[k]):
            out[c] = _lowbias32(_lowbias32(np.uint32((i + offset) & 0xFFFFFFFF)) ^ stream_bits)
            c += 1


# The two loops below write what rng.py's finishers compute from the hash, by the same operations in
# the same order, each exact (see the module's docstring): `rng._COMPILED_STEPS` gives each finisher
# its loop, scale and offset.


@numba.njit(_SIGNATURE32, cache=True, nogil=True)
def low23_32(keys, salt, out, scale, offset):
    """k * scale + offset, k the low 23 bits of hash(keys[r] ^ salt[c]): rng._uniform_32 (2**-23,
    2**-24) and _normal_32 before its erfinv (2**-22, 2**-23 - 1)."""
    for r in range(out.shape[0]):
        key = keys[r]
        for c in range(out.shape[1]):
            k = np.float32(np.int32(_lowbias32(key ^ salt[c]) & _LOW23))
            out[r, c] = k * scale + offset


@numba.njit(_SIGNATURE64, cache=True, nogil=True)
def signed_64(keys, salt, out, scale, offset):
    """(s + 2**31 + 0.5) * scale + offset, s the hash read as a signed 32-bit value: rng._uniform_64
    (2**-32, 0: the product is positive, so adding 0 changes no bit) and _normal_64 before its erfinv
    (2**-31, -1)."""
    for r in range(out.shape[0]):
        key = keys[r]
        for c in range(out.shape[1]):
            s = np.float64(np.int32(_lowbias32(key ^ salt[c])))
            out[r, c] = (s + (2.0**31 + 0.5)) * scale + offset
