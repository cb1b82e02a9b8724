"""The diamond-square steps of ImageNet-C fog's plasma fractal as one compiled loop per map (numba).

`imagenet_c._plasma_quarters` runs them as about 470 torch operations, each a trip through memory
for the finer grids; this loop keeps one map's grids in cache and computes every value from the same
operands in the same order, each sum, product and difference rounded once in the grid's dtype
(no fastmath; the products by 0.25 and the differences u - 0.5 are exact), so it gives torch's
bits (tests/test_imagenet_c.py compares both paths). Used exactly when the fractal's draws ran
compiled (`rng.runs_compiled`): it comes with the `fast` extra, loads only in a process that already
loaded numba for its draws, and is single-threaded like the draws' loops.
"""

from __future__ import annotations

import numba
import numpy as np


# Compiled on first use per dtype (4.3 s CPU for float32 here, 1.7 s more for float64), then loaded
# from numba's disk cache beside the draws' loops (0.03 s).
@numba.njit(cache=True, nogil=True)
def plasma_quarters(draws, scales, out):
    """out[:, b] = the last step's (corner, across, down, centre) grids of map b, (4, B, n, n).

    draws (B, 3 * sum of n_k^2): each step's three uniform grids (centres, across, down) side by
    side, coarse to fine, as `imagenet_c._plasma_quarters` draws them; scales: each step's noise
    scale 2 wibble^2. A step's corners carry one wrapped row and column and its centres one wrapped
    row and column at the front, as in the torch version.
    """
    last = out.shape[2]
    half, quarter = draws.dtype.type(0.5), draws.dtype.type(0.25)
    corners = np.zeros((last + 1, last + 1), dtype=draws.dtype)
    centres = np.empty((last + 1, last + 1), dtype=draws.dtype)
    across = np.empty((last, last), dtype=draws.dtype)
    down = np.empty((last, last), dtype=draws.dtype)
    for b in range(draws.shape[0]):
        u = draws[b]
        corners[:2, :2] = 0.0
        n, step, start = 1, 0, 0
        while True:
            s = scales[step]
            for i in range(n):  # (C[i, j] + C[i+1, j]) + (C[i, j+1] + C[i+1, j+1])
                c0, c1, middle, noise = corners[i], corners[i + 1], centres[i + 1], u[start + i * n : start + (i + 1) * n]
                for j in range(n):
                    middle[j + 1] = (noise[j] - half) * s + quarter * ((c0[j] + c1[j]) + (c0[j + 1] + c1[j + 1]))
            start += n * n
            centres[0, 1 : n + 1] = centres[n, 1 : n + 1]
            for i in range(n + 1):
                centres[i, 0] = centres[i, n]
            across_n, down_n = (out[1, b], out[2, b]) if n == last else (across, down)
            for i in range(n):  # across: S[i, j] + S[i-1, j] + C[i, j] + C[i, j+1]; down: S[i, j] + S[i, j-1] + C[i, j] + C[i+1, j]
                c0, c1, above, middle, a, d = corners[i], corners[i + 1], centres[i], centres[i + 1], across_n[i], down_n[i]
                noise_a = u[start + i * n : start + (i + 1) * n]
                noise_d = u[start + n * n + i * n : start + n * n + (i + 1) * n]
                for j in range(n):
                    a[j] = (noise_a[j] - half) * s + quarter * (((middle[j + 1] + above[j + 1]) + c0[j]) + c0[j + 1])
                for j in range(n):
                    d[j] = (noise_d[j] - half) * s + quarter * (((middle[j + 1] + middle[j]) + c0[j]) + c1[j])
            start += 2 * n * n
            if n == last:
                out[0, b] = corners[:n, :n]
                out[3, b] = centres[1:, 1:]
                break
            for i in range(n - 1, -1, -1):  # the finer corners, in place from the last row up
                c0, middle, a, d = corners[i], centres[i + 1], across[i], down[i]
                even, odd = corners[2 * i], corners[2 * i + 1]
                for j in range(n - 1, -1, -1):
                    odd[2 * j] = d[j]
                    odd[2 * j + 1] = middle[j + 1]
                for j in range(n - 1, -1, -1):
                    even[2 * j + 1] = a[j]
                    even[2 * j] = c0[j]
            n *= 2
            step += 1
            corners[n, :n] = corners[0, :n]
            for i in range(n + 1):
                corners[i, n] = corners[i, 0]
