"""ImageNet-C JPEG's conversions around Pillow's codec as compiled loops (numba).

`imagenet_c._jpeg_compression` rounds each float image to 8 bits, hands Pillow its planes, takes the
decoded planes back and divides them by 255: in torch that is a clamp, a product, a rounding, a cast,
Pillow's merge and per-band `tobytes`, then a division pass over the batch, together more than the
reference's whole plumbing around the same codec. These two loops do it in one pass each, straight
between the float image and the (H, W, 4) RGBX buffers that Pillow's images share
(`Image.frombuffer`), read and written as one little-endian uint32 per pixel, with the torch path's
arithmetic: clamp, times 255 in the image's dtype, round
half to even; level / 255 in the output's dtype, each rounded once, so the same bits
(tests/test_imagenet_c.py compares both paths). Used exactly where the draws run compiled
(`rng.runs_compiled`): it comes with the `fast` extra and loads only in a process that already
loaded numba for its draws.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def to_levels(image, pixels):
    """pixels[y, x] = the RGBX pixel of round_half_even(255 clamp(image[:, y, x], 0, 1)): image
    (3, H, W) float32 or float64, pixels (H, W) uint32, a little-endian view of Pillow's (H, W, 4)
    bytes (R in the lowest byte). Three contiguous reads and one contiguous write per pixel, so the
    loop runs in vector registers (5.6 against 105-157 us per 224-px image for a byte-by-byte loop)."""
    zero, one, full = image.dtype.type(0.0), image.dtype.type(1.0), image.dtype.type(255.0)
    for y in range(image.shape[1]):
        r, g, b, out = image[0, y], image[1, y], image[2, y], pixels[y]
        for x in range(image.shape[2]):
            red = np.uint32(np.rint(min(max(r[x], zero), one) * full))
            green = np.uint32(np.rint(min(max(g[x], zero), one) * full))
            blue = np.uint32(np.rint(min(max(b[x], zero), one) * full))
            out[x] = red | (green << 8) | (blue << 16) | np.uint32(0xFF000000)


@numba.njit(cache=True, nogil=True)
def from_levels(pixels, image):
    """image[:, y, x] = the levels of RGBX pixel pixels[y, x] (as above) / 255, in image's dtype
    (float32 or float64)."""
    full = image.dtype.type(255.0)
    for y in range(pixels.shape[0]):
        p, r, g, b = pixels[y], image[0, y], image[1, y], image[2, y]
        for x in range(pixels.shape[1]):
            r[x] = image.dtype.type(p[x] & 0xFF) / full
            g[x] = image.dtype.type((p[x] >> 8) & 0xFF) / full
            b[x] = image.dtype.type((p[x] >> 16) & 0xFF) / full
