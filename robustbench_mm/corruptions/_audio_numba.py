"""reverb's exact spectra product (`audio._multiply_exactly_`) as one compiled loop (numba).

torch computes it in four passes over cache-sized blocks (both spectra to complex128, the product,
back to complex64): 1.8 ms for 256 x 5,001 values here, against 0.5 ms for this loop (one thread,
best of 30, measured). The bits are the torch path's: the products of float32 parts are exact in
float64, so re = ac - bd and im = ad + bc get one rounding each in float64, whatever the order or a
fused multiply-add, and then one to float32, as torch's `.to(complex64)` does.

Imported only when the draws already run compiled (`rng.runs_compiled`), so numba never
loads for this loop alone.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit("void(complex64[:, ::1], complex64[:, ::1])", cache=True, nogil=True)
def multiply_exactly_(spectrum, other):
    """spectrum *= other, each product computed in float64 and rounded once to complex64."""
    for r in range(spectrum.shape[0]):
        for i in range(spectrum.shape[1]):
            u, v = spectrum[r, i], other[r, i]
            a, b = np.float64(u.real), np.float64(u.imag)
            c, d = np.float64(v.real), np.float64(v.imag)
            spectrum[r, i] = np.complex64(complex(a * c - b * d, a * d + b * c))
