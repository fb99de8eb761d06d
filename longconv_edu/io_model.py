"""Rung 4: an IO model of the long convolution: bytes moved to and from slow memory, and FLOPs.

Why FlashButterfly is fast is not that it does fewer FLOPs (it does *more*: dense matmuls instead
of an O(N log N) FFT), but that it moves fewer bytes. A GPU (or a CPU) can do hundreds of FLOPs
in the time it takes to fetch one float from slow memory (HBM / DRAM), so a convolution whose
every step writes its whole intermediate tensor back to slow memory and reads it again is
limited by memory bandwidth. This module counts those bytes for three schedules:

* ``unfused_fft_conv``  what ``fft_conv`` does in PyTorch: rfft(u), rfft(k), multiply, irfft,
                        truncate: five separate kernels, each reading its inputs from slow memory
                        and writing its output back;
* ``fused_conv``        the fused FlashButterfly kernel: one block per (b, h) row reads its L
                        inputs once and its channel's kernel spectrum once, does the whole
                        forward transform, product and inverse transform in fast memory
                        (registers / shared memory / cache), and writes its L outputs once;
* ``three_pass_traffic`` the paper's scheme for rows too long for fast memory: an outer butterfly
                        pass over the whole row, many independent inner FFT convolutions, an outer
                        pass back: three round trips through slow memory instead of five-plus.

Conventions (all functions): B batch, H channels, L sequence length, kernel length Lk = L,
``dtype_bytes`` s bytes per real number (4 for float32), FFT size N = ``fft_size`` or 2L (the
fused and three-pass schedules round N up to a power of two: the matmul form splits N into
power-of-two factors; ``fft_conv`` and cuFFT do not need that). A complex number is 2s bytes.
Real-input FFT outputs (rfft) hold N/2 + 1 complex values.

FLOP conventions: a complex FFT of size N costs about 5 N log2 N real flops (the classic count
for radix-2: N/2 log2 N butterflies, each one complex multiply (6 flops) and two complex adds
(4 flops)); a real-input rfft/irfft costs half of that. In the matmul (Monarch) form an N-point
complex DFT with factors (n_1, ..., n_k) is k stages of batched n_i x n_i complex matmuls, i.e.
N * n_i complex multiply-adds (8 real flops each) per stage, plus (k - 1) twiddle multiplies of
N complex numbers (6 flops each). A pointwise complex product is 6 flops per element.

All counts are for one forward convolution; they are a model (caches, partial reuse and the
padding reads an implementation may do are ignored), good for ratios and the roofline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._checks import check_bool, check_float, check_int
from .fft import monarch_factors, next_power_of_two

__all__ = ["Traffic", "fft_flops", "monarch_flops", "unfused_fft_conv",
           "fused_conv", "three_pass_traffic", "flashbutterfly_conv", "roofline_time"]


@dataclass
class Traffic:
    """Bytes read from and written to slow memory, real FLOPs, and the list of passes.

    passes: [(name, bytes_read, bytes_written), ...] in execution order; their sums are
    bytes_read and bytes_written.
    """
    bytes_read: int
    bytes_written: int
    flops: float
    passes: list = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Total slow-memory traffic, read plus written."""
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte of slow-memory traffic."""
        return self.flops / self.bytes if self.bytes else math.inf

    @classmethod
    def from_passes(cls, passes, flops) -> Traffic:
        return cls(sum(int(p[1]) for p in passes), sum(int(p[2]) for p in passes), float(flops),
                   [(p[0], int(p[1]), int(p[2])) for p in passes])


def _sizes(B, H, L, dtype_bytes, fft_size, *, pow2: bool):
    B = check_int(B, "B", min=1)
    H = check_int(H, "H", min=1)
    L = check_int(L, "L", min=1)
    s = check_int(dtype_bytes, "dtype_bytes", min=1)
    if fft_size is None:
        N = 2 * L
    else:
        N = check_int(fft_size, "fft_size", min=1)
        if N < 2 * L - 1:
            raise ValueError(f"fft_size must be >= 2L - 1 = {2 * L - 1} for a causal convolution "
                             f"with a length-L kernel, got {N}")
    if pow2:
        N = next_power_of_two(N)
    return B, H, L, s, N


def fft_flops(N: int, *, real_input: bool = False) -> float:
    """Real flops of one length-N FFT: 5 N log2 N (complex), half that for rfft/irfft."""
    N = check_int(N, "N", min=1)
    f = 5.0 * N * math.log2(N) if N > 1 else 0.0
    return f / 2 if real_input else f


def monarch_flops(N: int, factors=None) -> float:
    """Real flops of one N-point complex DFT in the matmul form with the given factors."""
    N = check_int(N, "N", min=1)
    if factors is None:
        factors = monarch_factors(N)
    else:                                             # any number of factors here (1 = a dense DFT)
        if not isinstance(factors, (tuple, list)):
            raise TypeError(f"factors must be a tuple of ints such as (N1, N2), got {factors!r}")
        factors = tuple(check_int(f, f"factors[{i}]", min=1) for i, f in enumerate(factors))
        if math.prod(factors) != N:
            raise ValueError(f"factors must multiply to N = {N}, got {factors} (product {math.prod(factors)})")
    stages = [n for n in factors if n > 1]            # a factor of 1 is no work
    return float(sum(8 * N * n for n in stages) + 6 * N * max(len(stages) - 1, 0))


def unfused_fft_conv(B: int, H: int, L: int, *, dtype_bytes: int = 4,
                     fft_size: int | None = None, fft_passes: int = 1) -> Traffic:
    """Slow-memory traffic of PyTorch's fft_conv: five kernels, each a round trip.

    Passes: rfft(u) reads B*H*L reals, writes B*H*(N/2+1) complex; rfft(k) the same for H rows;
    multiply reads both spectra and writes the product; irfft reads it and writes B*H*N reals;
    truncating to the first L (a slice, made contiguous by the next op) reads and writes B*H*L.
    fft_passes: slow-memory round trips inside ONE transform. 1 (the default, optimistic) when a
    row fits in the FFT library's fast memory; a long FFT (cuFFT beyond a few thousand points)
    runs as several kernels, each extra pass reading and writing the (N/2+1)-complex row again.
    """
    B, H, L, s, N = _sizes(B, H, L, dtype_bytes, fft_size, pow2=False)
    P = check_int(fft_passes, "fft_passes", min=1)
    F = N // 2 + 1                                    # rfft bins
    c = 2 * s                                         # bytes per complex number
    extra = (P - 1) * F * c                           # per row, per transform, read and written
    passes = [
        ("rfft(u)", B * H * (L * s + extra), B * H * (F * c + extra)),
        ("rfft(k)", H * (L * s + extra), H * (F * c + extra)),
        ("multiply", B * H * F * c + H * F * c, B * H * F * c),
        ("irfft", B * H * (F * c + extra), B * H * (N * s + extra)),
        ("truncate", B * H * L * s, B * H * L * s),
    ]
    flops = (B * H + H) * fft_flops(N, real_input=True) + B * H * 6 * F \
        + B * H * fft_flops(N, real_input=True)
    return Traffic.from_passes(passes, flops)


def _matmul_conv_flops(N: int, factors=None) -> float:
    """Per row: forward DFT + pointwise product + inverse DFT, all in the matmul form."""
    return 2 * monarch_flops(N, factors) + 6 * N


#: Real flops of the real-input split (or its inverse, the merge) per pair of bins (Z[k], Z[M-k]):
#: four half sums, a complex multiply by W_N^k and four sums, about 18.
SPLIT_FLOPS = 18


def _real_input_conv_flops(N: int, factors=None) -> float:
    """Per row, with the real-input trick: an N/2-point complex DFT each way in the matmul form,
    the split and the merge (M/2 pairs each), and the product with the N/2 + 1 bins."""
    M = N // 2
    return 2 * monarch_flops(M, factors) + 6 * (M + 1) + 2 * SPLIT_FLOPS * (M // 2)


def fused_conv(B: int, H: int, L: int, *, dtype_bytes: int = 4, fft_size: int | None = None,
               factors=None, real_input: bool = False) -> Traffic:
    """Slow-memory traffic of the fused FlashButterfly kernel: one pass.

    One block per (b, h) row reads its L inputs once and its channel's kernel spectrum, stored as
    N full complex values, once per row, and writes its L outputs once:
    bytes_read = B*H*(L*s + 2*N*s), bytes_written = B*H*L*s. N = fft_size or 2L, rounded up to a
    power of two (the matmul form's factors are powers of two). The kernel spectrum is computed
    once per layer (its own small cost is not counted here). FLOPs: the matmul form of the forward
    and inverse N-point DFTs (``factors``, default ``monarch_factors(N)``) and the pointwise product.

    real_input=True: the real-input trick (an N/2-point complex DFT, then the split into the
    N/2 + 1 bins of the real row's spectrum): the spectrum read is N/2 + 1 complex values,
    bytes_read = B*H*(L*s + (N + 2)*s); FLOPs of N/2-point DFTs (``factors`` of N/2), the split,
    the merge (``SPLIT_FLOPS`` per pair of bins) and the product with N/2 + 1 bins.
    """
    B, H, L, s, N = _sizes(B, H, L, dtype_bytes, fft_size, pow2=True)
    if check_bool(real_input, "real_input"):
        passes = [("fused conv", B * H * (L * s + (N + 2) * s), B * H * L * s)]
        return Traffic.from_passes(passes, B * H * _real_input_conv_flops(N, factors))
    passes = [("fused conv", B * H * (L * s + 2 * N * s), B * H * L * s)]
    return Traffic.from_passes(passes, B * H * _matmul_conv_flops(N, factors))


def three_pass_traffic(B: int, H: int, L: int, *, dtype_bytes: int = 4, fft_size: int | None = None,
                    outer: int | None = None, real_input: bool = False) -> Traffic:
    """Slow-memory traffic of the paper's three-pass scheme (for rows beyond fast memory).

    N = outer * M. Pass 1 (outer butterfly): read the L inputs of a row, do the outer-point DFTs
    across the row and the twiddles, write N complex values. Pass 2 (inner convolutions): read the
    N complex values and the N complex kernel spectrum, do `outer` independent M-point
    DFT -> product -> inverse DFT, write N complex values. Pass 3 (outer back): read N complex,
    inverse twiddles and outer-point DFTs, write the L outputs. ``outer`` defaults to the first
    factor of ``monarch_factors(N)``.

    real_input=True: the real-input trick, as the ``cuda`` backend's Monarch three passes do it:
    the row is N/2 complex values (outer x inner, ``outer`` a divisor of N/2, default the first
    of ``monarch_factors(N/2)``), so the intermediate is N/2 complex (N reals) each way and the
    spectrum N/2 + 1 complex: per row, pass 1 reads L and writes N reals, pass 2 reads N + (N + 2)
    and writes N, pass 3 reads N and writes L. FLOPs: N/2-point DFTs, split, merge, product.
    """
    B, H, L, s, N = _sizes(B, H, L, dtype_bytes, fft_size, pow2=True)
    c = 2 * s
    R = B * H
    if check_bool(real_input, "real_input"):
        Mc = N // 2
        n1 = (monarch_factors(Mc)[0] if Mc > 1 else 1) if outer is None else \
            check_int(outer, "outer", min=1, power_of_two=True)
        if Mc % n1:
            raise ValueError(f"outer must divide N/2 = {Mc} (real_input=True), got {n1}")
        passes = [
            ("outer DFT + twiddles", R * L * s, R * Mc * c),
            ("inner convolutions", R * Mc * c + R * (Mc + 1) * c, R * Mc * c),
            ("outer inverse", R * Mc * c, R * L * s),
        ]
        inner = monarch_flops(Mc // n1) if Mc // n1 > 1 else 0.0
        flops = R * (2 * (8 * Mc * n1 + 6 * Mc + n1 * inner) + 6 * (Mc + 1)
                     + 2 * SPLIT_FLOPS * (Mc // 2))
        return Traffic.from_passes(passes, flops)
    n1 = monarch_factors(N)[0] if outer is None else check_int(outer, "outer", min=1, power_of_two=True)
    if N % n1:
        raise ValueError(f"outer must divide the FFT size N = {N}, got {n1}")
    M = N // n1
    passes = [
        ("outer DFT + twiddles", R * L * s, R * N * c),
        ("inner convolutions", R * N * c + R * N * c, R * N * c),
        ("outer inverse", R * N * c, R * L * s),
    ]
    # outer stage n1-point matmuls (8 N n1) + twiddles (6N), each way; inner: M-point DFTs both ways
    inner = monarch_flops(M) if M > 1 else 0.0
    flops = R * (2 * (8 * N * n1 + 6 * N + n1 * inner) + 6 * N)
    return Traffic.from_passes(passes, flops)


def flashbutterfly_conv(B: int, H: int, L: int, *, fast_memory_bytes: int, dtype_bytes: int = 4,
                        fft_size: int | None = None) -> Traffic:
    """The FlashButterfly schedule for a given fast-memory size: fused if a row fits, else 3-pass.

    A row "fits" when its working set, the N complex values of the transformed row plus the N
    complex kernel spectrum (4*N*s bytes), is at most ``fast_memory_bytes``.
    """
    fast = check_int(fast_memory_bytes, "fast_memory_bytes", min=1)
    B, H, L, s, N = _sizes(B, H, L, dtype_bytes, fft_size, pow2=True)
    if 4 * N * s <= fast:
        return fused_conv(B, H, L, dtype_bytes=s, fft_size=N)
    return three_pass_traffic(B, H, L, dtype_bytes=s, fft_size=N)


def roofline_time(traffic: Traffic, bandwidth: float, peak_flops: float) -> float:
    """Roofline estimate of the run time in seconds: max(bytes / bandwidth, flops / peak).

    bandwidth in bytes/s (e.g. 3.35e12 for an H100 SXM's HBM3), peak_flops in flop/s.
    """
    if not isinstance(traffic, Traffic):
        raise TypeError(f"traffic must be a Traffic (from unfused_fft_conv, fused_conv, ...), "
                        f"got {type(traffic).__name__}")
    bw = check_float(bandwidth, "bandwidth", min=0, min_inclusive=False)
    pk = check_float(peak_flops, "peak_flops", min=0, min_inclusive=False)
    return max(traffic.bytes / bw, traffic.flops / pk)
