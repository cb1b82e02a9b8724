"""Waveform corruptions on (B, N) batches in [-1, 1] (the value range is kept).

Noise levels are signal-to-noise ratios in dB relative to each sample's own power; filters work
in the frequency domain with torch.fft (on CPU, reverb and the coloured noises in blocks of clips
that stay in cache).
"""

from __future__ import annotations

import math

import torch

from ..datasets.batch import ModalitySpec
from ._util import clip_
from .registry import corruption
from .rng import SampleRandom, runs_compiled

_SNR_TABLE = (20.0, 15.0, 10.0, 5.0, 0.0)
# Row blocks of the FFT kernels on CPU hold this many values per row set (reverb: its padded clips,
# beside as many of their impulse responses; the coloured noises: their float64 normals), ~1-2 MB:
# their transforms and passes then run in cache.
_CPU_BLOCK = 2**18


def _power(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(dim=-1, keepdim=True)


def _add_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float, spec: ModalitySpec,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """x + noise scaled so that power(x) / power(noise) = 10^(snr/10), per sample, written into `out`
    (default: the noise's buffer, which callers pass as their own)."""
    if math.isinf(snr_db) and snr_db > 0:
        return x.clone()
    gain = torch.sqrt(_power(x) / _power(noise).clamp(min=1e-12) * 10.0 ** (-snr_db / 10.0))
    return clip_(torch.add(noise.mul_(gain), x, out=noise if out is None else out), spec)


def _add_colored(x: torch.Tensor, rng: SampleRandom, exponent: float, snr_db: float, spec: ModalitySpec) -> torch.Tensor:
    """x plus noise with power spectrum 1/f^exponent (1 = pink, 2 = brown) at snr_db (`_add_at_snr`):
    float64 normals shaped in the frequency domain, then rounded to x's dtype.

    On CPU, blocks of rows (32 at 8,000 samples, `_CPU_BLOCK`) go through the FFTs, the shaping, the
    powers and the sum while in cache: for 256 clips the kernel took 22.6 ms against 24.2 ms on the
    whole batch (compiled draws, one thread, one run). Same bits: no FFT sees a lone row
    (`_row_blocks`, `_batch_of_two`)."""
    if math.isinf(snr_db) and snr_db > 0:
        return x.clone()
    b, n = x.shape
    white = rng.normal(n, dtype=torch.float64)
    f = torch.arange(n // 2 + 1, device=x.device, dtype=torch.float64)
    shaping = f.clamp(min=1.0) ** (-exponent / 2)
    shaping[0] = 0.0
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    for r0, r1 in _row_blocks(b, max(2, _CPU_BLOCK // n if x.device.type == "cpu" else b)):
        spectrum = torch.fft.rfft(_batch_of_two(white[r0:r1]), dim=-1)
        noise = torch.fft.irfft(spectrum.mul_(shaping), n=n, dim=-1)[: r1 - r0].to(x.dtype)
        _add_at_snr(x[r0:r1], noise, snr_db, spec, out=out[r0:r1])
    return out


def _row_blocks(b: int, rows: int) -> list[tuple[int, int]]:
    """(r0, r1) blocks of `rows` (>= 2) rows covering b rows; a last block of one row joins the one
    before, so that only a batch of one clip has a lone row (`_batch_of_two`)."""
    starts = list(range(0, b, rows))
    if len(starts) > 1 and b - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [b]))


def _batch_of_two(rows: torch.Tensor) -> torch.Tensor:
    """A lone row doubled. torch's CPU FFT (MKL) transforms a single row by another path than a batch
    of two or more, and the bits differ (measured: float32 from 10,000 points, not at 5,000; float64
    already at 8,000, not at 4,000; batches of 2 to 512 agree at any position): a clip evaluated alone
    must get the bits it gets in any batch."""
    return torch.cat([rows, rows]) if rows.shape[0] == 1 else rows


@corruption(
    "white_noise",
    kinds=("audio",),
    severity=_SNR_TABLE,
    identity=math.inf,
    unit="SNR in dB (per sample)",
    description="additive white Gaussian noise at a target signal-to-noise ratio",
)
def white_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    return _add_at_snr(x, rng.normal(x.shape[-1], dtype=x.dtype), param, spec)


@corruption(
    "pink_noise",
    kinds=("audio",),
    severity=_SNR_TABLE,
    identity=math.inf,
    unit="SNR in dB (per sample)",
    description="additive pink (1/f) noise at a target signal-to-noise ratio",
    revision=2,
)
def pink_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """Revision 2 (issue 23): a batch of one clip gets the bits the clip gets in any batch (its FFTs
    run beside a copy of it, `_batch_of_two`); revision 1 gave a lone clip MKL's single-row bits,
    which differ at long lengths (measured: float64 clips of 8,000 samples). Other batches keep their bits."""
    return _add_colored(x, rng, 1.0, param, spec)


@corruption(
    "brown_noise",
    kinds=("audio",),
    severity=_SNR_TABLE,
    identity=math.inf,
    unit="SNR in dB (per sample)",
    description="additive brown (1/f^2) noise at a target signal-to-noise ratio",
    revision=2,
)
def brown_noise(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """Revision 2 (issue 23): a batch of one clip gets the bits the clip gets in any batch (its FFTs
    run beside a copy of it, `_batch_of_two`); revision 1 gave a lone clip MKL's single-row bits,
    which differ at long lengths (measured: float64 clips of 8,000 samples). Other batches keep their bits."""
    return _add_colored(x, rng, 2.0, param, spec)


@corruption(
    "clipping",
    kinds=("audio",),
    severity=(0.3, 0.5, 0.7, 0.8, 0.9),
    unit="fraction of each sample's peak amplitude cut off",
    description="hard clipping at (1 - param) x the sample's peak",
)
def clipping(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    limit = x.abs().amax(dim=-1, keepdim=True) * (1.0 - param)
    return torch.minimum(torch.maximum(x, -limit), limit)


@corruption(
    "time_mask",
    kinds=("audio",),
    severity=(0.1, 0.2, 0.3, 0.4, 0.5),
    unit="fraction of the duration silenced (in 1/32-length segments)",
    description="dropouts: random segments set to silence",
)
def time_mask(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """Segment k covers samples i with i * segments // n == k. When the segments are equal, the
    dropped ones are cleared through an integer view of the bits in one pass over the batch
    (the same bits, +0.0 included, as `torch.where` on a per-sample mask, 5x faster: docs/performance.md)."""
    n = x.shape[-1]
    segments = min(32, n)
    drop = rng.uniform(segments, dtype=torch.float64) < param
    bits = _SAME_SIZE_INT.get(x.dtype)
    if n % segments or bits is None:
        seg_of = torch.arange(n, device=x.device) * segments // n
        return torch.where(drop[:, seg_of], torch.zeros_like(x), x)
    keep = drop.to(bits).sub_(1)  # -1 keeps every bit of a segment, 0 clears them (+0.0)
    cleared = x.contiguous().view(bits).view(x.shape[0], segments, n // segments) & keep[:, :, None]
    return cleared.view(x.dtype).view(x.shape)


_SAME_SIZE_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
                  torch.float64: torch.int64}


@corruption(
    "gain",
    kinds=("audio",),
    severity=(3.0, 6.0, 10.0, 15.0, 20.0),
    unit="attenuation in dB",
    description="gain change: the waveform attenuated by param dB",
)
def gain(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    return x * 10.0 ** (-param / 20.0)


@corruption(
    "lowpass",
    kinds=("audio",),
    severity=(0.5, 0.7, 0.8, 0.9, 0.95),
    unit="fraction of the band removed (cutoff = (1 - param) x Nyquist)",
    description="band-limiting: ideal low-pass filter in the frequency domain",
    revision=2,
)
def lowpass(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """Revision 2 (issue 23): a batch of one clip gets the bits the clip gets in any batch (its FFTs
    run beside a copy of it, `_batch_of_two`); revision 1 gave a lone clip MKL's single-row bits,
    which differ at long lengths (measured: float64 clips of 8,000 samples, float32 ones of 16,000).
    Other batches keep their bits."""
    if param <= 0 or x.shape[0] == 0:  # MKL rejects an FFT of no rows
        return x.clone()
    n = x.shape[-1]
    spectrum = torch.fft.rfft(_batch_of_two(x), dim=-1)
    keep = torch.arange(spectrum.shape[-1], device=x.device) <= (1.0 - param) * (spectrum.shape[-1] - 1)
    return clip_(torch.fft.irfft(spectrum * keep, n=n, dim=-1)[: x.shape[0]].to(x.dtype), spec)


@corruption(
    "reverb",
    kinds=("audio",),
    severity=(0.1, 0.3, 1.0, 3.0, 10.0),
    unit="energy of the reverberant tail relative to the direct sound (direct-to-reverberant ratio +10 ... -10 dB)",
    description="echo/reverberation: convolution with a random exponentially decaying impulse response, peak kept",
    revision=2,
)
def reverb(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    """The decay is fixed (time constant 5% of the clip) and severity is the wet/dry energy ratio:
    a longer decay at a fixed wet level changes little for spectral features, a louder tail always hurts.

    Revision 2 (issue 23): the impulse response's noise and the FFT convolution in float32 (revision 1:
    float64), at the fastest FFT length that holds the linear convolution, 2^a 5^b >= n + IR length - 1
    (revision 1: n + IR length). The law is unchanged; the bits are not, so the revision enters the hash
    of the protocols that can select it. The spectra are multiplied exactly (`_multiply_exactly_`).
    The convolution runs on a few clips at a time (`_reverb_blocks`), with the same bits."""
    if param <= 0:
        return x.clone()
    n = x.shape[-1]
    tau = max(1.0, 0.05 * n)
    length = min(n, max(2, math.ceil(5 * tau)))
    decay = torch.arange(length, device=x.device, dtype=torch.float32).div_(-tau).exp_()
    ir = rng.normal(length).mul_(decay)
    ir[:, 0] = 0.0
    ir.mul_(torch.sqrt(param / ir.square().sum(dim=1, keepdim=True).clamp_(min=1e-12)))
    ir[:, 0] = 1.0
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    peak_in = _peak(x).to(torch.float32)
    for r0, r1, wet in _reverb_blocks(x, ir, _fft_length(n + length - 1)):
        # a block is in cache: |wet| then its max took 40 us against _peak's 53 us (26 x 8,000, measured)
        scale = peak_in[r0:r1].div(wet.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12))
        if out.dtype == torch.float32:  # one pass; other dtypes get the float32 product rounded, as .to does
            clip_(torch.mul(wet, scale, out=out[r0:r1]), spec)
        else:
            clip_(out[r0:r1].copy_(wet.mul_(scale)), spec)
    return out


def _reverb_blocks(x: torch.Tensor, ir: torch.Tensor, size: int):
    """(r0, r1, the first n values of x[r0:r1] convolved with ir[r0:r1]) for successive row blocks,
    by float32 FFTs of `size` points.

    On CPU a block of clips (26 at 10,000 points, `_CPU_BLOCK`) and their impulse responses sit
    zero-padded in one buffer, transformed by one rfft and multiplied while in cache: the three FFTs
    of 256 clips took 10.1 ms against 12.1 ms on the whole batch (one thread, measured; kernels with
    blocks of 13 to 32 clips were within 3% of each other). The buffer's padding is zeroed once and
    never written. The bits do not depend on the blocks: MKL gives each row of a batch of two or more
    rows the same bits at any position (a last, shorter block leaves stale rows in the buffer,
    transformed and unused), but a lone row other bits at long lengths (`_batch_of_two`), so the
    irfft always transforms two rows or more."""
    b, n = x.shape
    if b == 0:
        return
    length = ir.shape[1]
    blocks = math.ceil(b / max(1, _CPU_BLOCK // size)) if x.device.type == "cpu" else 1
    rows = math.ceil(b / blocks)
    buffer = torch.zeros(2 * rows, size, dtype=torch.float32, device=x.device)  # [clips; impulse responses]
    for r0 in range(0, b, rows):
        c = min(b, r0 + rows) - r0
        buffer[:c, :n] = x[r0 : r0 + c]
        buffer[rows : rows + c, :length] = ir[r0 : r0 + c]
        spectra = torch.fft.rfft(buffer)
        _multiply_exactly_(spectra[:c], spectra[rows : rows + c])
        yield r0, r0 + c, torch.fft.irfft(spectra[: max(2, c)], n=size)[:c, :n]


def _multiply_exactly_(spectrum: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """spectrum *= other (complex64, same shape), each product computed in complex128, where the
    products of float32 parts are exact, then rounded once: torch's complex64 product rounds
    differently in its vector loop and its scalar tail (the latter fuses a multiply-add), so a clip's
    bits would depend on its place in the batch. When the draws run compiled, one compiled loop
    (`_audio_numba`, the same bits); otherwise row blocks of ~2^18 values keep the complex128
    temporaries in cache (1.8 against 2.6 ms for 256 x 5,001 values in one piece, measured)."""
    if runs_compiled(spectrum.device):
        from ._audio_numba import multiply_exactly_

        multiply_exactly_(spectrum.numpy(), other.numpy())
        return spectrum
    rows = max(1, 2**18 // max(1, spectrum.shape[-1]))
    for r0 in range(0, spectrum.shape[0], rows):
        block = spectrum[r0 : r0 + rows]
        block.copy_(block.to(torch.complex128).mul_(other[r0 : r0 + rows].to(torch.complex128)))
    return spectrum


def _peak(x: torch.Tensor) -> torch.Tensor:
    """max |x| along the last dimension, keepdim: the bits of x.abs().amax() (abs_ makes a zero peak
    +0.0) without an |x| copy, and 20x faster than torch.aminmax here (measured)."""
    return torch.maximum(x.amax(dim=-1, keepdim=True), x.amin(dim=-1, keepdim=True).neg_()).abs_()


def _fft_length(minimum: int) -> int:
    """The smallest 2^a 5^b >= minimum, a length with none of the CPU FFT's slow paths: 256 rows took
    3.7 ms at 10,000 points against 18 ms at 10,125 (3^4 5^3) and 8 ms at 12,288 (2^12 3), measured;
    revision 1's n + IR length could even be prime."""
    best = 1 << max(0, minimum - 1).bit_length()
    fives = 1
    while fives < minimum:
        fives *= 5
        length = fives
        while length < minimum:
            length *= 2
        best = min(best, length)
    return best
