"""Rung 5b: the fused FFT convolution on the CPU, one row at a time in a buffer that stays in cache.

The paper's argument (Fu et al. 2023, section 3.2) is about *where the data lives*: an FFT
convolution computed as separate passes (rfft of u, multiply, irfft) streams every row through
slow memory three times, while a fused kernel loads a row once, does all the work in fast memory,
and writes the result once. On a GPU the fast memory is SRAM; on a CPU it is the L1/L2 cache of a
core. ``torch.fft`` runs the causal convolution as three batched library calls over tensors of
B*H*2L numbers, which fall out of cache once L passes a few thousand. Here each thread takes one
row (b, h) at a time and does

    load u[b, h, :]  ->  forward FFT  ->  times the kernel spectrum  ->  inverse FFT  ->  store y

in a private buffer of 2 x N/2 floats (about 8L bytes in float32: 512 KiB at L = 64K, inside a
1 MiB L2). Nothing but u, the kernel spectrum and y ever leave the core.

The loop is ``conv_rows``, the first numba function below: one parallel launch per call, one
task per channel h (or per channel and part of the batch when there are few channels), which
first transforms its channel's kernel k[h] (``kernel_row``) and then runs the rows of that
channel against it, so the kernel spectrum is made where it is used, in cache, with no launch of
its own. How the FFT is made fast enough to matter (each trick is a function below):

* **Real-input trick.** The FFT size is N = 2L (zero padding makes the circular convolution
  causal, see ``conv.fft_conv``), but the input is real: pack it as N/2 complex numbers
  z[m] = x[2m] + i x[2m+1], do one N/2-point complex FFT, then untangle the spectrum of the even
  and odd samples from the pairs (Z[k], Z[N/2-k]) (``split``). The inverse packs the product
  back the same way (``merge``). Half the work of a complex FFT of size N.
* **Zero padding is free.** The upper half of z is zero, so the first stage only reads the lower
  half (``first_stage``); only the lower half of the output is kept, so the last inverse stage
  only writes it (the end of ``fft_inverse``).
* **Radix-4 decimation in frequency, in place.** Each stage combines four numbers a span s apart
  (a 4-point DFT, no multiplications) and multiplies three of the results by twiddles: 8.5 real
  multiply-adds per point per two bits of N, against 10 for radix 2. Decimation in frequency
  leaves the spectrum in bit-reversed order; nothing reorders it. The product with the kernel
  spectrum does not care about the order as long as the kernel spectrum is stored in the same
  order (``kernel_spectrum``), and the inverse (the transposed algorithm, ``fft_inverse``)
  takes bit-reversed input and returns natural order. Even the pairs (k, N/2-k) of the
  real-input trick are easy to find in bit-reversed order: inside each octave [2^h, 2^(h+1)) of
  storage positions, position p pairs with 3 * 2^h - 1 - p, so ``spectral_product`` walks two
  contiguous runs, one forwards and one backwards.
* **Contiguous twiddles.** Each stage's twiddles are a contiguous table computed once per N
  (``_plan``), read with the same index as the data, so the loop over a group of butterflies is
  a plain loop over arrays that LLVM turns into SIMD instructions.
* **Loops LLVM can vectorise.** Four loop shapes, chosen by the span s (``stage_plan``): long
  spans (s >= ``_LONG_SPAN`` = 1024) loop over i inside a group (the group's first row index
  comes from a table, so LLVM checks for overlap once per group, not over the whole stage, and
  finds none); spans 16, 64 and 256 are compiled once per span, so every offset is a constant
  and no check is needed;
  span 1 loops over groups of four neighbours (LLVM's interleaved loads and stores); span 4
  stays scalar (about a third of the FFT's time, see ``profile_row`` and
  course/05_cpu_kernel.md). Indices in the vectorised loops are unsigned: numba wraps negative
  indices around, a branch per element that blocks vectorisation.

Backward (``_FusedConv.backward``): with G the spectrum of the output gradient,
grad_u = irfft(G * conj(K)) (a correlation with the kernel: the same fused pass with the conjugate
spectrum, which the forward kept) and grad_k[h] = irfft(sum_b G_b * conj(U_b)) (a correlation
with the input, summed over the batch). The sum is accumulated per channel by the thread that
owns the channel, so no two threads ever add into the same numbers. A call with nothing to
differentiate skips autograd and keeps no spectra.

Shapes: u (B, H, L), k (H, Lk) with 1 <= Lk <= L, float32 or float64, CPU; y (B, H, L).
The FFT size is N = the smallest power of two >= max(2L, 8); a length that is not a power of
two is padded further (up to 2x the work of the next power of two), never approximated.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import warnings
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit, prange

from .._checks import check_conv_inputs, check_int, check_kernel_length, check_tensor
from ..fft import bit_reversal_permutation, fft_size
from ..timing import time_call

__all__ = ["cpu_conv", "cpu_rfft", "kernel_spectrum", "stage_plan", "profile_row"]

_MIN_FFT = 8          # N >= 8, so the packed complex FFT has at least 4 points (one radix-4 stage)
# The one long-span threshold: radix-4 stages of span s >= _LONG_SPAN run stage_long (SIMD along
# the group, overlap checked per group); the shorter spans 256, 64, 16 each have a stage compiled
# for that span, span 4 is scalar and span 1 interleaved. Spans are powers of 4, so the long
# stages are exactly the spans above 256.
_LONG_SPAN = 1024


def _points(L: int) -> int:
    """The kernel's FFT size for length L: ``fft.fft_size(L)``, at least 8 (one radix-4 stage)."""
    return max(_MIN_FFT, fft_size(L))


def stage_plan(L: int) -> list[tuple[int, int, str]]:
    """The forward FFT's stages for length L as (radix, span, loop shape), first stage first.

    The product of the radices is the packed complex size M = N/2. The inverse runs the same
    stages backwards (transposed, with conjugate twiddles).
    """
    M = _points(L) // 2
    odd = (M.bit_length() - 1) % 2
    first = M // 2 if odd else M // 4
    plan = [(2 if odd else 4, first, "first stage: reads only the non-zero lower half")]
    s = first // 4
    while s >= 1:
        shape = ("long span: SIMD along the group, overlap checked per group" if s >= _LONG_SPAN else
                 "fixed span: compiled for this span, SIMD along the group" if s >= 16 else
                 "short span: scalar" if s > 1 else "unit span: SIMD across groups (interleaved)")
        plan.append((4, s, shape))
        s //= 4
    return plan


# ============================================================================ plan: twiddles once
class _Plan(NamedTuple):
    M: int                 # complex FFT size N/2
    tw_re: np.ndarray      # per-stage twiddle tables, concatenated (see _plan)
    tw_im: np.ndarray
    mid_re: np.ndarray     # W_N^k for the real-input trick, indexed by storage position
    mid_im: np.ndarray
    rows: np.ndarray       # rows[g] = 4 g: the first row of group g (see stage_long)


def _bit_reverse(n_bits: int) -> np.ndarray:
    """rev[p] = p with its n_bits bits in reverse order (``fft.bit_reversal_permutation``, in NumPy)."""
    return bit_reversal_permutation(1 << n_bits).numpy()


@functools.lru_cache(maxsize=32)
def _plan(M: int, dtype: str) -> _Plan:
    """Twiddle tables for an M-point complex FFT, computed in float64 once and cast to dtype.

    Stage order (forward): if log2(M) is odd, one radix-2 stage of span M/2; then radix-4 stages
    of span M/4 (or M/8), then /4 each, down to span 1. A radix-4 stage of span s owns 3s
    complex twiddles at offset o: w^i, w^2i, w^3i for i < s with w = exp(-2 pi i / 4s), each run
    contiguous. A radix-2 stage owns s twiddles exp(-2 pi i i / 2s).
    """
    n_bits = M.bit_length() - 1
    tw = []
    s = M
    if n_bits % 2:
        s = M // 2
        tw.append(np.exp(-2j * np.pi * np.arange(s) / (2 * s)))
    s //= 4
    while s >= 1:
        i = np.arange(s)
        for q in (1, 2, 3):
            tw.append(np.exp(-2j * np.pi * q * i / (4 * s)))
        s //= 4
    tw = np.concatenate(tw)
    # storage position p holds frequency k = rev(p); octave h = [2^h, 2^(h+1)) pairs p with
    # 3*2^h - 1 - p; compact index c = p - 2^(h-1) for the first half of each octave.
    rev = _bit_reverse(n_bits)
    mid = np.zeros(max(M // 2, 1), complex)
    for h in range(1, n_bits):
        base, half = 1 << h, 1 << (h - 1)
        p = base + np.arange(half)
        mid[half:base] = np.exp(-2j * np.pi * rev[p] / (2 * M))
    rows = 4 * np.arange(max(1, M // (4 * _LONG_SPAN)), dtype=np.int64)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)           # noqa: E731
    return _Plan(M, cast(tw.real), cast(tw.imag), cast(mid.real), cast(mid.imag), rows)


# ============================================================================ the numba kernels
# 'contract' lets LLVM fuse a*b+c into one FMA instruction; everything else stays IEEE
# (no reassociation, NaN and inf propagate as in torch). cache=True keeps the compiled code in
# __pycache__, so only the first use on a machine pays the compilation.
fm = {"contract"}
_CACHE = os.environ.get("LONGCONV_NUMBA_CACHE", "1") != "0"
jit = functools.partial(njit, fastmath=fm, cache=_CACHE)
inline = functools.partial(njit, fastmath=fm, cache=_CACHE, inline="always")

# ---------------------------------------------------------------- the heart: one row at a time
# The whole fused convolution is this loop. What it calls is defined further down (numba compiles
# on the first call, so a name may be used before its definition): the butterflies and the FFT
# stages (fft_forward, fft_inverse), the real-input trick with the product (spectral_product),
# then the rows in and out (load_row, store_row). Drivers take the plan P (a _Plan: M and the
# twiddle tables) instead of its seven fields.
@njit(parallel=True, fastmath=fm, cache=_CACHE)
def conv_rows(x, k, kre, kim, P, n_split, y, ksign, scale):
    """The heart: y[b, h] = first L samples of irfft(rfft(x[b, h]) * K[h]) for every row, one launch.

    x, y: (B, H, L). K[h], the spectrum of k[h] (storage order), is computed here by each task
    that needs it (``kernel_row``); kre/kim (H, M+1) keep it for the backward, or, when k has no
    rows, already hold it. ksign = -1 multiplies by conj(K) (a correlation: the backward of u).
    ``scale`` (1 / 4M) is applied once, after the inverse, so small inputs do not sink into
    subnormals on the way. One task per channel h and part c of the batch (b = c, c + n_split,
    ...); each owns a buffer of 2 x M numbers and its channel's spectrum, in cache for every row.
    """
    B, H = x.shape[0], x.shape[1]
    for task in prange(H * n_split):
        h, c = task // n_split, task % n_split
        re = np.empty(P.M, x.dtype)
        im = np.empty(P.M, x.dtype)
        kr, ki = kernel_row(k, kre, kim, h, c, re, im, P)      # K[h], storage order
        for b in range(c, B, n_split):
            load_row(x[b, h], re, im, P.M)                     # u[b, h] -> z, packed, in cache
            fft_forward(re, im, P)                             # Z, bit-reversed
            spectral_product(re, im, kr, ki, P, ksign)         # split, x K, merge
            fft_inverse(re, im, P)                             # natural order again
            store_row(re, im, y[b, h], scale)                  # first L samples, scaled


# ---------------------------------------------------------------- butterflies
@inline
def dif4(x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, w1r, w1i, w2r, w2i, w3r, w3i):
    """4-point DFT of (x0, x1, x2, x3), outputs 2, 1, 3 times w^2, w, w^3; stored order 0 2 1 3."""
    t0r = x0r + x2r; t0i = x0i + x2i; t1r = x0r - x2r; t1i = x0i - x2i
    t2r = x1r + x3r; t2i = x1i + x3i; t3r = x1r - x3r; t3i = x1i - x3i
    y2r = t0r - t2r; y2i = t0i - t2i                 # X_2 = t0 - t2
    y1r = t1r + t3i; y1i = t1i - t3r                 # X_1 = t1 - i t3
    y3r = t1r - t3i; y3i = t1i + t3r                 # X_3 = t1 + i t3
    return (t0r + t2r, t0i + t2i,
            y2r * w2r - y2i * w2i, y2r * w2i + y2i * w2r,
            y1r * w1r - y1i * w1i, y1r * w1i + y1i * w1r,
            y3r * w3r - y3i * w3i, y3r * w3i + y3i * w3r)

@inline
def dit4(b0r, b0i, b1r, b1i, b2r, b2i, b3r, b3i, w1r, w1i, w2r, w2i, w3r, w3i):
    """The transpose of dif4 with conjugate twiddles: one stage of the inverse FFT."""
    c2r = b1r * w2r + b1i * w2i; c2i = b1i * w2r - b1r * w2i      # b1 * conj(w^2)
    c1r = b2r * w1r + b2i * w1i; c1i = b2i * w1r - b2r * w1i      # b2 * conj(w)
    c3r = b3r * w3r + b3i * w3i; c3i = b3i * w3r - b3r * w3i      # b3 * conj(w^3)
    u0r = b0r + c2r; u0i = b0i + c2i; u1r = b0r - c2r; u1i = b0i - c2i
    u2r = c1r + c3r; u2i = c1i + c3i; u3r = c1r - c3r; u3i = c1i - c3i
    return (u0r + u2r, u0i + u2i, u1r - u3i, u1i + u3r,
            u0r - u2r, u0i - u2i, u1r + u3i, u1i - u3r)

@inline
def butterfly(inverse, x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, w1r, w1i, w2r, w2i, w3r, w3i):
    """dif4 (forward stage) or dit4 (inverse stage); ``inverse`` is fixed for a whole loop."""
    if inverse:
        return dit4(x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, w1r, w1i, w2r, w2i, w3r, w3i)
    return dif4(x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, w1r, w1i, w2r, w2i, w3r, w3i)


# ---------------------------------------------------------------- stages
@jit
def log2_is_odd(M):
    n = 0
    while (1 << n) < M:
        n += 1
    return n % 2 == 1


@jit
def first_stage(re, im, twr, twi, M):
    """Stage 1 when the upper half of the input is zero: reads M/2 numbers, writes M."""
    if log2_is_odd(M):                               # radix 2, span M/2: (a, 0) -> (a, a w)
        s = M // 2
        for i in range(s):
            ar = re[i]; ai = im[i]; wr = twr[i]; wi = twi[i]
            re[s + i] = ar * wr - ai * wi
            im[s + i] = ar * wi + ai * wr
        return s, s // 4
    s = M // 4                                       # radix 4 with x2 = x3 = 0
    for i in range(s):
        x0r = re[i]; x0i = im[i]; x1r = re[s + i]; x1i = im[s + i]
        y = dif4(x0r, x0i, x1r, x1i, x0r * 0, x0i * 0, x1r * 0, x1i * 0,
                 twr[i], twi[i], twr[s + i], twi[s + i], twr[2 * s + i], twi[2 * s + i])
        re[i] = y[0]; im[i] = y[1]; re[s + i] = y[2]; im[s + i] = y[3]
        re[2 * s + i] = y[4]; im[2 * s + i] = y[5]; re[3 * s + i] = y[6]; im[3 * s + i] = y[7]
    return 3 * s, s // 4

@jit
def stage_long(re, im, twr, twi, M, s, o, rows, inverse):
    """A radix-4 stage with span s >= _LONG_SPAN (1024): groups of 4 rows of s, vectorised along the rows.

    re/im are viewed as (M/s, s) matrices; group g is rows rows[g] .. rows[g]+3. Reading
    the row index from a table (instead of computing 4g) keeps LLVM from widening its
    overlap check over the whole stage, where the four rows of every group overlap the rows
    of the others: the per-group check passes and the loop runs on SIMD registers.
    """
    r2 = re.reshape((M // s, s)); i2 = im.reshape((M // s, s))
    t2r = twr[o:o + 3 * s].reshape((3, s)); t2i = twi[o:o + 3 * s].reshape((3, s))
    for g in range(M // (4 * s)):
        a0 = rows[g]; a1 = a0 + 1; a2 = a0 + 2; a3 = a0 + 3
        for i in range(s):
            y = butterfly(inverse, r2[a0, i], i2[a0, i], r2[a1, i], i2[a1, i], r2[a2, i],
                          i2[a2, i], r2[a3, i], i2[a3, i], t2r[0, i], t2i[0, i], t2r[1, i],
                          t2i[1, i], t2r[2, i], t2i[2, i])
            r2[a0, i] = y[0]; i2[a0, i] = y[1]; r2[a1, i] = y[2]; i2[a1, i] = y[3]
            r2[a2, i] = y[4]; i2[a2, i] = y[5]; r2[a3, i] = y[6]; i2[a3, i] = y[7]

def _fixed_span_stage(S: int):
    """A radix-4 stage compiled for one span S (16, 64 or 256): every offset is a constant.

    With S known, LLVM sees that the four rows of a group are S apart and never overlap, so it
    needs no overlap check at all; indices are unsigned so numba's wrap-around for negative
    indices (a branch per element) disappears. The loop over i then runs on SIMD registers even
    for S = 16, where the generic stage_long pays more for its checks than for the arithmetic.
    """
    uS = np.uint64(S)

    @jit
    def stage(re, im, twr, twi, M, o, inverse):
        uo = np.uint64(o)
        for g in range(M // (4 * S)):
            b = np.uint64(g) * np.uint64(4 * S)
            for i in range(S):
                ui = np.uint64(i)
                a0 = b + ui; a1 = a0 + uS; a2 = a1 + uS; a3 = a2 + uS
                w = uo + ui
                y = butterfly(inverse, re[a0], im[a0], re[a1], im[a1], re[a2], im[a2], re[a3],
                              im[a3], twr[w], twi[w], twr[w + uS], twi[w + uS],
                              twr[w + uS + uS], twi[w + uS + uS])
                re[a0] = y[0]; im[a0] = y[1]; re[a1] = y[2]; im[a1] = y[3]
                re[a2] = y[4]; im[a2] = y[5]; re[a3] = y[6]; im[a3] = y[7]
    return stage


stage_16 = _fixed_span_stage(16)
stage_64 = _fixed_span_stage(64)
stage_256 = _fixed_span_stage(256)


@jit
def stage_short(re, im, twr, twi, M, s, o, inverse):
    """The radix-4 stage of span 4: twiddle i fixed, loop over the groups (scalar: a group of
    16 neighbours is more than LLVM's interleaved loads take, and 4 is too short a vector)."""
    for i in range(s):
        w1r = twr[o + i]; w1i = twi[o + i]; w2r = twr[o + s + i]; w2i = twi[o + s + i]
        w3r = twr[o + 2 * s + i]; w3i = twi[o + 2 * s + i]
        for g in range(M // (4 * s)):
            b0 = 4 * s * g + i; b1 = b0 + s; b2 = b1 + s; b3 = b2 + s
            y = butterfly(inverse, re[b0], im[b0], re[b1], im[b1], re[b2], im[b2], re[b3],
                          im[b3], w1r, w1i, w2r, w2i, w3r, w3i)
            re[b0] = y[0]; im[b0] = y[1]; re[b1] = y[2]; im[b1] = y[3]
            re[b2] = y[4]; im[b2] = y[5]; re[b3] = y[6]; im[b3] = y[7]


@jit
def stage_unit(re, im, M, inverse):
    """The radix-4 stage of span 1: four neighbours, twiddles all 1 (interleaved SIMD)."""
    one = re[0] * 0 + 1
    zero = one - one
    for g in range(M // 4):
        b = 4 * g
        y = butterfly(inverse, re[b], im[b], re[b + 1], im[b + 1], re[b + 2], im[b + 2],
                      re[b + 3], im[b + 3], one, zero, one, zero, one, zero)
        re[b] = y[0]; im[b] = y[1]; re[b + 1] = y[2]; im[b + 1] = y[3]
        re[b + 2] = y[4]; im[b + 2] = y[5]; re[b + 3] = y[6]; im[b + 3] = y[7]

@jit
def radix4_stage(re, im, twr, twi, M, s, o, rows, inverse):
    """One radix-4 stage of span s at twiddle offset o, by the loop shape of stage_plan."""
    if s >= _LONG_SPAN:
        stage_long(re, im, twr, twi, M, s, o, rows, inverse)
    elif s == 256:
        stage_256(re, im, twr, twi, M, o, inverse)
    elif s == 64:
        stage_64(re, im, twr, twi, M, o, inverse)
    elif s == 16:
        stage_16(re, im, twr, twi, M, o, inverse)
    elif s > 1:
        stage_short(re, im, twr, twi, M, s, o, inverse)
    else:
        stage_unit(re, im, M, inverse)

@jit
def fft_forward(re, im, P):
    """M-point DFT in place; input's upper half must be zero; output in bit-reversed order."""
    twr = P.tw_re; twi = P.tw_im; M = P.M; rows = P.rows
    o, s = first_stage(re, im, twr, twi, M)
    while s >= 1:
        radix4_stage(re, im, twr, twi, M, s, o, rows, False)
        o += 3 * s
        s //= 4

@jit
def fft_inverse(re, im, P):
    """Unscaled inverse of fft_forward (bit-reversed in, natural out), lower half only."""
    twr = P.tw_re; twi = P.tw_im; M = P.M; rows = P.rows
    odd = log2_is_odd(M)
    s = 1
    o = twr.shape[0] - 3                              # the span-1 stage owns the last 3
    s_first = M // 2 if odd else M // 4
    while s < s_first and s < M:
        radix4_stage(re, im, twr, twi, M, s, o, rows, True)
        s *= 4
        o -= 3 * s
    if odd:                                           # transposed radix 2: out0 = b0 + b1 conj(w)
        s = M // 2
        for i in range(s):
            br = re[s + i]; bi = im[s + i]; wr = twr[i]; wi = twi[i]
            re[i] = re[i] + (br * wr + bi * wi)
            im[i] = im[i] + (bi * wr - br * wi)
    else:                                             # transposed radix 4: outputs 0 and 1 only
        s = M // 4
        for i in range(s):
            y = dit4(re[i], im[i], re[s + i], im[s + i], re[2 * s + i], im[2 * s + i],
                     re[3 * s + i], im[3 * s + i], twr[i], twi[i], twr[s + i], twi[s + i],
                     twr[2 * s + i], twi[2 * s + i])
            re[i] = y[0]; im[i] = y[1]; re[s + i] = y[2]; im[s + i] = y[3]

# ---------------------------------------------------------------- real-input trick
@inline
def split(ar, ai, br, bi, wr, wi):
    """From a = Z[k], b = Z[M-k] and w = W_N^k: (2X[k], 2X[N/2-k]) of the real input."""
    er = ar + br; ei = ai - bi                       # E = a + conj(b)   (even samples)
    dr = ar - br; di = ai + bi                       # D = a - conj(b);  O = -i D (odd samples)
    tr = wr * di + wi * dr; ti = wi * di - wr * dr   # w O
    return er + tr, ei + ti, er - tr, ti - ei        # X_k = E + wO, X_{M-k} = conj(E - wO)

@inline
def merge(ckr, cki, cmr, cmi, wr, wi):
    """Inverse of split: from Y[k], Y[N/2-k] the packed Z'[k], Z'[M-k] (times 2)."""
    er = ckr + cmr; ei = cki - cmi                   # Ye = Y_k + conj(Y_m)
    fr = ckr - cmr; fi = cki + cmi                   # F = Y_k - conj(Y_m)
    orr = fr * wr + fi * wi; oi = fi * wr - fr * wi  # Yo = F conj(w)
    return er - oi, ei + orr, er + oi, orr - ei      # Z'_k = Ye + i Yo, Z'_m = conj(Ye - i Yo)

@inline
def cmul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br

@jit
def product_octave(zpr, zpi, zqr, zqi, kpr, kpi, kqr, kqi, wr_, wi_, ksign):
    """One octave of spectral_product: zp[j] pairs with zq[n-1-j] (a forward and a backward run).

    The runs arrive as separate slices indexed from 0, and the backward index is unsigned, so
    LLVM sees indices that cannot be negative (numba wraps negative ones around, a branch that
    stops vectorisation) on distinct arrays, and vectorises the loop (reversing in registers).
    """
    n = zpr.shape[0]
    last = np.uint64(n - 1)
    for j in range(n):
        t = last - np.uint64(j)
        wr = wr_[j]; wi = wi_[j]
        xkr, xki, xmr, xmi = split(zpr[j], zpi[j], zqr[t], zqi[t], wr, wi)
        ykr, yki = cmul(xkr, xki, kpr[j], ksign * kpi[j])
        ymr, ymi = cmul(xmr, xmi, kqr[t], ksign * kqi[t])
        zkr, zki, zmr, zmi = merge(ykr, yki, ymr, ymi, wr, wi)
        zpr[j] = zkr; zpi[j] = zki; zqr[t] = zmr; zqi[t] = zmi


@jit
def spectral_product(re, im, kre, kim, P, ksign):
    """Z -> X (split) -> X * K -> merge, in place, for every pair; ksign=-1 uses conj(K)."""
    mre = P.mid_re; mim = P.mid_im; M = P.M
    z = re[0] * 0
    one = z + 1
    # p = 0 holds k = 0 and (slot M of the spectra) k = N/2; p = 1 holds k = N/4
    x0r, x0i, xmr, xmi = split(re[0], im[0], re[0], im[0], one, z)
    y0r, y0i = cmul(x0r, x0i, kre[0], ksign * kim[0])
    ymr, ymi = cmul(xmr, xmi, kre[M], ksign * kim[M])
    zr, zi, _, _ = merge(y0r, y0i, ymr, ymi, one, z)
    re[0] = zr; im[0] = zi
    x1r, x1i, _, _ = split(re[1], im[1], re[1], im[1], z, -one)
    y1r, y1i = cmul(x1r, x1i, kre[1], ksign * kim[1])
    zr, zi, _, _ = merge(y1r, y1i, y1r, y1i, z, -one)
    re[1] = zr; im[1] = zi
    half = 1
    while 2 * half < M and half < 32:        # short octaves: a plain loop (slicing costs more)
        base = 2 * half
        for j in range(half):
            p = base + j; q = 2 * base - 1 - j; c = half + j
            wr = mre[c]; wi = mim[c]
            xkr, xki, xmr, xmi = split(re[p], im[p], re[q], im[q], wr, wi)
            ykr, yki = cmul(xkr, xki, kre[p], ksign * kim[p])
            ymr, ymi = cmul(xmr, xmi, kre[q], ksign * kim[q])
            zkr, zki, zmr, zmi = merge(ykr, yki, ymr, ymi, wr, wi)
            re[p] = zkr; im[p] = zki; re[q] = zmr; im[q] = zmi
        half *= 2
    while 2 * half < M:                      # octave [2 half, 4 half): p = 2 half + j
        a, b, e = 2 * half, 3 * half, 4 * half
        product_octave(re[a:b], im[a:b], re[b:e], im[b:e], kre[a:b], kim[a:b], kre[b:e],
                       kim[b:e], mre[half:a], mim[half:a], ksign)
        half *= 2


@jit
def unpack_octave(zpr, zpi, zqr, zqi, xpr, xpi, xqr, xqi, wr_, wi_, scale):
    """One octave of unpack (same layout as product_octave)."""
    n = zpr.shape[0]
    last = np.uint64(n - 1)
    for j in range(n):
        t = last - np.uint64(j)
        a, b, c, d = split(zpr[j], zpi[j], zqr[t], zqi[t], wr_[j], wi_[j])
        xpr[j] = a * scale; xpi[j] = b * scale; xqr[t] = c * scale; xqi[t] = d * scale


@jit
def unpack(re, im, xre, xim, P, scale):
    """The spectrum (storage order, slot M = Nyquist) of the packed FFT in re/im, times 2 scale."""
    mre = P.mid_re; mim = P.mid_im; M = P.M
    z = re[0] * 0
    one = z + 1
    a, b, c, d = split(re[0], im[0], re[0], im[0], one, z)
    xre[0] = a * scale; xim[0] = b * scale; xre[M] = c * scale; xim[M] = d * scale
    a, b, _, _ = split(re[1], im[1], re[1], im[1], z, -one)
    xre[1] = a * scale; xim[1] = b * scale
    half = 1
    while 2 * half < M:
        a_, b_, e_ = 2 * half, 3 * half, 4 * half
        unpack_octave(re[a_:b_], im[a_:b_], re[b_:e_], im[b_:e_], xre[a_:b_], xim[a_:b_],
                      xre[b_:e_], xim[b_:e_], mre[half:a_], mim[half:a_], scale)
        half *= 2


@jit
def pack_octave(xpr, xpi, xqr, xqi, zpr, zpi, zqr, zqi, wr_, wi_):
    """One octave of pack (same layout as product_octave)."""
    n = xpr.shape[0]
    last = np.uint64(n - 1)
    for j in range(n):
        t = last - np.uint64(j)
        a, b, c, d = merge(xpr[j], xpi[j], xqr[t], xqi[t], wr_[j], wi_[j])
        zpr[j] = a; zpi[j] = b; zqr[t] = c; zqi[t] = d


@jit
def pack(xre, xim, re, im, P):
    """Inverse of unpack (without scale): spectrum -> packed Z' (times 2) for fft_inverse."""
    mre = P.mid_re; mim = P.mid_im; M = P.M
    z = xre[0] * 0
    one = z + 1
    a, b, _, _ = merge(xre[0], xim[0], xre[M], xim[M], one, z)
    re[0] = a; im[0] = b
    a, b, _, _ = merge(xre[1], xim[1], xre[1], xim[1], z, -one)
    re[1] = a; im[1] = b
    half = 1
    while 2 * half < M:
        a_, b_, e_ = 2 * half, 3 * half, 4 * half
        pack_octave(xre[a_:b_], xim[a_:b_], xre[b_:e_], xim[b_:e_], re[a_:b_], im[a_:b_],
                    re[b_:e_], im[b_:e_], mre[half:a_], mim[half:a_])
        half *= 2


@jit
def cross_octave(gpr, gpi, gqr, gqi, upr, upi, uqr, uqi, apr, api, aqr, aqi, wr_, wi_):
    """One octave of cross_spectrum (same layout as product_octave)."""
    n = gpr.shape[0]
    last = np.uint64(n - 1)
    for j in range(n):
        t = last - np.uint64(j)
        wr = wr_[j]; wi = wi_[j]
        gkr, gki, gmr, gmi = split(gpr[j], gpi[j], gqr[t], gqi[t], wr, wi)
        ukr, uki, umr, umi = split(upr[j], upi[j], uqr[t], uqi[t], wr, wi)
        apr[j] += gkr * ukr + gki * uki; api[j] += gki * ukr - gkr * uki
        aqr[t] += gmr * umr + gmi * umi; aqi[t] += gmi * umr - gmr * umi


@jit
def cross_spectrum(gre, gim, ure, uim, are, aim, P):
    """acc += G conj(U) at every stored frequency, from the packed FFTs of g and u (x4)."""
    mre = P.mid_re; mim = P.mid_im; M = P.M
    z = gre[0] * 0
    one = z + 1
    g0r, g0i, gmr, gmi = split(gre[0], gim[0], gre[0], gim[0], one, z)
    u0r, u0i, umr, umi = split(ure[0], uim[0], ure[0], uim[0], one, z)
    are[0] += g0r * u0r + g0i * u0i; aim[0] += g0i * u0r - g0r * u0i
    are[M] += gmr * umr + gmi * umi; aim[M] += gmi * umr - gmr * umi
    g1r, g1i, _, _ = split(gre[1], gim[1], gre[1], gim[1], z, -one)
    u1r, u1i, _, _ = split(ure[1], uim[1], ure[1], uim[1], z, -one)
    are[1] += g1r * u1r + g1i * u1i; aim[1] += g1i * u1r - g1r * u1i
    half = 1
    while 2 * half < M:
        a, b, e = 2 * half, 3 * half, 4 * half
        cross_octave(gre[a:b], gim[a:b], gre[b:e], gim[b:e], ure[a:b], uim[a:b], ure[b:e],
                     uim[b:e], are[a:b], aim[a:b], are[b:e], aim[b:e], mre[half:a], mim[half:a])
        half *= 2


# ---------------------------------------------------------------- rows in and out
@jit
def load_row(x, re, im, M):
    """z[m] = x[2m] + i x[2m+1] for the real row x, zero up to M/2 (the upper half is never read)."""
    n = x.shape[0]
    h = n // 2
    for m in range(h):
        re[m] = x[2 * m]
        im[m] = x[2 * m + 1]
    z = x[0] * 0
    if n % 2:
        re[h] = x[n - 1]; im[h] = z
        h += 1
    for m in range(h, M // 2):
        re[m] = z; im[m] = z

@jit
def store_row(re, im, y, scale):
    """y[2m] = re[m], y[2m+1] = im[m] (times scale) for the first len(y) samples."""
    n = y.shape[0]
    h = n // 2
    for m in range(h):
        y[2 * m] = re[m] * scale
        y[2 * m + 1] = im[m] * scale
    if n % 2:
        y[n - 1] = re[h] * scale

# ---------------------------------------------------------------- the kernel's own spectrum
@jit
def row_spectrum(x, re, im, xre, xim, P, scale):
    """The spectrum of the real row x (storage order, slot M = Nyquist, times 2 scale) in xre/xim;
    re/im (M numbers each) are the work buffer."""
    load_row(x, re, im, P.M)
    fft_forward(re, im, P)
    unpack(re, im, xre, xim, P, scale)

@jit
def kernel_row(k, kre, kim, h, c, re, im, P):
    """The spectrum K[h] that task (h, c) of conv_rows multiplies by (unscaled, storage order).

    If k has no rows, K is given: kre[h]. Otherwise it is computed from k[h] with the task's
    buffer re/im: into kre[h] by the first task of channel h when kre has rows (it is kept for
    the backward), else into a private row; no two tasks write the same numbers.
    """
    if k.shape[0] == 0:
        return kre[h], kim[h]
    if c == 0 and kre.shape[0] > 0:
        kr = kre[h]
        ki = kim[h]
    else:
        kr = np.empty(P.M + 1, re.dtype)
        ki = np.empty(P.M + 1, re.dtype)
    row_spectrum(k[h], re, im, kr, ki, P, re.dtype.type(0.5))   # unpack gives 2 X
    return kr, ki


# ---------------------------------------------------------------- the other parallel drivers
# Like conv_rows (at the top), each takes the plan P (a _Plan: M and the twiddle tables).
@njit(parallel=True, fastmath=fm, cache=_CACHE)
def spectra(x, P, scale, xre, xim):
    """Spectra (storage order, times scale) of the rows of x: (R, Lx) -> (R, M+1)."""
    for r in prange(x.shape[0]):
        re = np.empty(P.M, x.dtype)
        im = np.empty(P.M, x.dtype)
        row_spectrum(x[r], re, im, xre[r], xim[r], P, scale)

@njit(parallel=True, fastmath=fm, cache=_CACHE)
def grad_rows(g, u, kre, kim, P, n_split, gu, gk, want_gu):
    """Backward of conv_rows for every channel h and part c of the batch (one task each).

    g, u, gu: (B*H, L); gk: (H, n_split, Lk) partial kernel gradients (summed by the caller).
    Task (h, c) owns channel h for batch indices c, c + n_split, ...: its spectrum
    accumulator acc = sum_b G_b conj(U_b) is private, so no two threads add to it.
    """
    R = g.shape[0]
    H = kre.shape[0]
    B = R // H
    M = P.M
    one = g[0, 0] * 0 + 1
    scale_u = one / (4 * M)                  # the product with the unscaled K, as in conv_rows
    scale_k = one / (8 * M)                  # cross spectrum: x4 from the two splits, x2 merge
    for task in prange(H * n_split):
        h = task // n_split
        c = task % n_split
        gre = np.empty(M, g.dtype); gim = np.empty(M, g.dtype)
        ure = np.empty(M, g.dtype); uim = np.empty(M, g.dtype)
        are = np.zeros(M + 1, g.dtype); aim = np.zeros(M + 1, g.dtype)
        for b in range(c, B, n_split):
            r = b * H + h
            load_row(g[r], gre, gim, M)
            fft_forward(gre, gim, P)
            load_row(u[r], ure, uim, M)
            fft_forward(ure, uim, P)
            cross_spectrum(gre, gim, ure, uim, are, aim, P)
            if want_gu:
                spectral_product(gre, gim, kre[h], kim[h], P, -one)
                fft_inverse(gre, gim, P)
                store_row(gre, gim, gu[r], scale_u)
        pack(are, aim, gre, gim, P)          # grad_k partial for (h, c): irfft of the sum
        fft_inverse(gre, gim, P)
        store_row(gre, gim, gk[h, c], scale_k)


# ============================================================================ torch glue
def _check_cpu(x: torch.Tensor, name: str) -> None:
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU for the numba backend, got device {x.device} "
                         f"(move it with .cpu(), or use backend='cuda' on a GPU)")


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    """A C-contiguous NumPy view of a detached CPU tensor, same shape (copied if strided)."""
    x = x.detach()
    return (x if x.is_contiguous() else x.contiguous()).numpy()


def _as_rows(x: torch.Tensor) -> np.ndarray:
    """The same as (rows, length): every leading dimension folded into the rows."""
    return _as_numpy(x).reshape(-1, x.shape[-1])


class _Setup(NamedTuple):
    M: int                 # packed FFT size N/2
    plan: _Plan
    dtype: np.dtype
    scale: np.floating     # 1 / 4M, applied after the inverse
    plus: np.floating      # ksign for K (forward) and conj(K) (backward of u)
    minus: np.floating


@functools.lru_cache(maxsize=64)
def _setup(L: int, dtype: torch.dtype) -> _Setup:
    """Everything a call at length L and dtype needs besides its tensors, found once per (L, dtype)."""
    M = _points(L) // 2
    dt = np.dtype(str(dtype).removeprefix("torch."))
    return _Setup(M, _plan(M, dt.name), dt, dt.type(1.0 / (4 * M)), dt.type(1), dt.type(-1))


def _spectrum(x: torch.Tensor, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectra of the rows of x (every leading dimension folded in), (rows, M+1) each, in storage
    order, unscaled: for ``kernel_spectrum`` and ``cpu_rfft`` (the convolution computes the
    kernel's own inside conv_rows)."""
    xn = _as_rows(x)
    xre = np.empty((xn.shape[0], M + 1), xn.dtype)
    xim = np.empty_like(xre)
    _parallel(spectra, xn, _plan(M, xn.dtype.name), xn.dtype.type(0.5), xre, xim)
    return xre, xim


# ---------------------------------------------------------------- threads: safe under threads and fork
# numba's threading layers differ (numba docs, "The Threading Layers"): 'workqueue' aborts the
# process when two Python threads enter a parallel region at once ("Concurrent access has been
# detected"); GNU OpenMP ('omp') terminates every fork()ed child of a process that ran its threads
# (what fork-based DataLoader workers are), at the fork, before any Python runs in the child;
# 'tbb' is safe under both. So, unless the user chose a layer (NUMBA_THREADING_LAYER): pin 'tbb'
# when the pip wheel `tbb` is installed (its library lies in sys.prefix/lib, which the loader does
# not search, so it is loaded here first), else prefer 'workqueue' to 'omp'. Calls under
# 'workqueue' are serialised by a lock, which makes it thread-safe, and it is fork-safe. A user
# who picks GNU OpenMP is warned once, at the first call, that fork()ed children will be killed.
_LOCK = threading.Lock()
_WARNED_OMP = False


def _pin_threading_layer() -> None:
    from numba.np.ufunc import parallel
    if os.environ.get("NUMBA_THREADING_LAYER") or parallel._is_initialized:
        return                                    # the user's choice, or too late to choose
    try:
        ctypes.CDLL(os.path.join(sys.prefix, "lib", "libtbb.so.12"), mode=ctypes.RTLD_GLOBAL)
        import numba.np.ufunc.tbbpool  # noqa: F401  (fails if numba cannot use this TBB)
        numba.config.THREADING_LAYER = "tbb"
    except (OSError, ImportError):
        numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]


_pin_threading_layer()


def _layer() -> str:
    try:
        return numba.threading_layer()
    except ValueError:                            # no parallel region has run yet
        return ""


def _warn_gnu_openmp() -> None:
    global _WARNED_OMP
    try:
        from numba.np.ufunc import omppool
        gnu = getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except ImportError:
        gnu = False
    _WARNED_OMP = True
    if gnu:
        warnings.warn("longconv_edu numba backend: numba runs on GNU OpenMP "
                      "(NUMBA_THREADING_LAYER=omp), which terminates every fork()ed child of "
                      "this process (fork-based DataLoader workers, multiprocessing 'fork'); "
                      "install the `tbb` package or unset NUMBA_THREADING_LAYER for a safe layer, "
                      "or use the 'spawn' start method", RuntimeWarning, stacklevel=4)


def _parallel(kernel, *args):
    """Run one of the parallel drivers above safely for this process (see the comment above)."""
    layer = _layer()
    if layer == "workqueue" or not layer:         # not thread-safe (and unknown before 1st run)
        with _LOCK:
            kernel(*args)
        if not layer and _layer() == "omp" and not _WARNED_OMP:
            _warn_gnu_openmp()
        return
    if layer == "omp" and not _WARNED_OMP:
        _warn_gnu_openmp()
    kernel(*args)


def _threads() -> int:
    return int(numba.get_num_threads())


def _n_split(B: int, H: int, per_thread: int = 4) -> int:
    """Parts of the batch per channel, so that there are about ``per_thread`` tasks per thread
    (1 if H is large). The backward asks for 1: each part costs a partial kernel gradient."""
    return max(1, min(B, -(-per_thread * _threads() // H)))


def _forward(u: torch.Tensor, k: torch.Tensor, keep: bool):
    """conv_rows over u (B, H, L) with kernel k (H, Lk), one launch: y and, if ``keep``, the
    kernel spectra (kre, kim), (H, M+1) each, for the backward (else two empty arrays)."""
    B, H, L = u.shape
    S = _setup(L, u.dtype)
    un = _as_numpy(u)
    y = np.empty_like(un)
    kre = np.empty((H if keep else 0, S.M + 1), S.dtype)
    kim = np.empty_like(kre)
    _parallel(conv_rows, un, _as_numpy(k), kre, kim, S.plan, _n_split(B, H), y, S.plus, S.scale)
    return torch.from_numpy(y), (kre, kim)


def _correlate(g: torch.Tensor, kspec: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """conv_rows with conj(K) from the saved spectra: the gradient of u."""
    B, H, L = g.shape
    S = _setup(L, g.dtype)
    gn = _as_numpy(g)
    y = np.empty_like(gn)
    no_k = np.empty((0, 1), S.dtype)                 # k has no rows: K is given
    _parallel(conv_rows, gn, no_k, kspec[0], kspec[1], S.plan, _n_split(B, H), y, S.minus,
              S.scale)
    return torch.from_numpy(y)


def _flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


class _FusedConv(torch.autograd.Function):
    """Autograd for the fused CPU convolution: forward and backward both run the fused kernels.

    The kernel spectrum computed by the forward is kept for the backward (not recomputed). With
    ``create_graph=True`` the backward is written as convolutions by this same Function, so it
    is itself differentiable (second-order gradients, gradient penalties):
    grad_u = flip(conv(flip(g), k)) and grad_k[h] = sum_b flip(conv(flip(g_b), u_b))[:Lk].
    """

    @staticmethod
    def forward(ctx, u, k):
        ctx.save_for_backward(u, k)
        y, ctx.kspec = _forward(u, k, keep=True)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, k = ctx.saved_tensors
        need_u, need_k = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():              # create_graph=True: differentiable backward
            return _double_differentiable_grads(u, k, grad_y, need_u, need_k)
        grad_u = grad_k = None
        kre, kim = ctx.kspec
        if need_k:
            B, H, L = u.shape
            Lk = k.shape[1]
            S = _setup(L, u.dtype)
            gn, un = _as_rows(grad_y), _as_rows(u)
            n_split = _n_split(B, H, per_thread=1)
            gu = np.empty_like(un) if need_u else np.empty((1, 1), un.dtype)
            gk = np.empty((H, n_split, Lk), un.dtype)
            _parallel(grad_rows, gn, un, kre, kim, S.plan, n_split, gu, gk, need_u)
            grad_k = torch.from_numpy(gk.reshape(H, Lk) if n_split == 1 else gk.sum(axis=1))
            if need_u:
                grad_u = torch.from_numpy(gu).reshape(B, H, L)
        elif need_u:
            grad_u = _correlate(grad_y, (kre, kim))
        return grad_u, grad_k


def _double_differentiable_grads(u, k, g, need_u, need_k):
    """The backward as causal convolutions of flipped signals, by cpu_conv (see _FusedConv)."""
    B, H, L = u.shape
    gf = _flip(g)
    grad_u = _flip(cpu_conv(gf, k)) if need_u else None
    grad_k = None
    if need_k:
        per_row = cpu_conv(gf.reshape(1, B * H, L), u.reshape(B * H, L))
        grad_k = _flip(per_row).reshape(B, H, L).sum(0)[:, :k.shape[1]]
    return grad_u, grad_k


def cpu_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal long convolution by the fused Numba CPU kernel: same result as ``fft_conv(u, k)``.

    u: (B, H, L), k: (H, Lk) with 1 <= Lk <= L, both float32 or both float64, on the CPU.
    Returns (B, H, L) in u's dtype; differentiable in u and k to any order (the first backward
    is fused too; ``create_graph=True`` builds it from this function, so it is differentiable).
    Non-contiguous inputs are copied to contiguous ones first. Runs on numba's threads
    (``numba.set_num_threads`` / NUMBA_NUM_THREADS), one row (b, h) per thread at a time;
    safe from several Python threads and in fork()ed children (see ``_parallel``).
    Range: the 1/N of the inverse FFT is applied after it, so inputs down to the subnormal
    range keep float accuracy; values above ~max_float / (L * max|k| * N) overflow to inf.
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    _check_cpu(u, "u")
    _check_cpu(k, "k")
    if B * H == 0:                       # no rows: an empty result, still part of the graph
        return u * 0 + k.sum() * 0
    if torch.is_grad_enabled() and (u.requires_grad or k.requires_grad):
        return _FusedConv.apply(u, k)
    return _forward(u, k, keep=False)[0]     # nothing to differentiate: no graph, no spectra kept


def kernel_spectrum(k: torch.Tensor, L: int) -> torch.Tensor:
    """The spectrum the fused kernel multiplies by: torch.fft.rfft(k, n=N), (H, N/2+1).

    N = max(8, fft.fft_size(L)) (the kernel's smallest FFT has one radix-4 stage).

    Computed by this module's own FFT (real-input trick, radix 4, bit-reversed storage) and put
    back in natural frequency order, so it can be checked against torch.fft.
    """
    check_tensor(k, "k", ndim=2, shape_doc="2-D (H, Lk)")
    _check_cpu(k, "k")
    L = check_int(L, "L", min=1)
    check_kernel_length(k.shape[1], L, "k", k.shape)
    M = _points(L) // 2
    kre, kim = _spectrum(k, M)
    return _natural_order(kre, kim, M)


def cpu_rfft(x: torch.Tensor, n: int) -> torch.Tensor:
    """torch.fft.rfft(x, n) for real rows x (..., Lx) with Lx <= n/2, n a power of two >= 8.

    The forward half of the fused kernel, on its own, for teaching and testing: the result
    comes back in natural order (the kernel itself never reorders).
    """
    check_tensor(x, "x")
    _check_cpu(x, "x")
    n = check_int(n, "n", min=_MIN_FFT, power_of_two=True)
    if x.ndim < 1 or not 1 <= x.shape[-1] <= n // 2:
        raise ValueError(f"x must have 1 <= x.shape[-1] <= n/2 = {n // 2} (the zero-padded "
                         f"half is what the fused kernel assumes), got shape {tuple(x.shape)}")
    M = n // 2
    return _natural_order(*_spectrum(x, M), M).reshape(*x.shape[:-1], M + 1)


def _natural_order(xre: np.ndarray, xim: np.ndarray, M: int) -> torch.Tensor:
    """(R, M+1) spectra from storage order (p -> k = rev(p), slot M -> k = M) to natural order."""
    rev = _bit_reverse(M.bit_length() - 1)
    spec = np.empty(xre.shape, np.result_type(xre.dtype, np.complex64))
    spec[:, rev] = xre[:, :M] + 1j * xim[:, :M]
    spec[:, M] = xre[:, M] + 1j * xim[:, M]
    return torch.from_numpy(spec)


def profile_row(L: int, *, dtype: str = "float32", repeats: int = 50) -> dict[str, float]:
    """Microseconds per row for each step of the fused pass at length L, on one thread.

    Each step runs alone on a buffer restored before every call (so the numbers cannot drift
    into overflow; the restore is timed alone and subtracted), timed by ``timing.time_call``:
    the fastest of 5 samples of ``repeats`` calls each. Keys: 'load', one 'forward radix-R
    span S' per stage (the first stage included), 'product', 'inverse' (all inverse stages
    together) and 'store'. Their sum is about one row of conv_rows.
    """
    L = check_int(L, "L", min=1)
    repeats = check_int(repeats, "repeats", min=1)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    M = _points(L) // 2
    P = _plan(M, dt.name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(L).astype(dt)
    y = np.empty(L, dt)
    kre = (rng.standard_normal(M + 1) / M).astype(dt)
    kim = (rng.standard_normal(M + 1) / M).astype(dt)
    re, im = np.empty(M, dt), np.empty(M, dt)
    load_row(x, re, im, M)
    src = (re.copy(), im.copy())
    one = dt.type(1)

    def restore():
        re[:], im[:] = src

    def per_call(step) -> float:
        def sample():
            for _ in range(repeats):
                restore()
                step()
        return time_call(sample, repeats=5, warmup=1, stat="min") / repeats

    base = per_call(lambda: None)

    def best(step) -> float:
        return max(0.0, per_call(step) - base) * 1e6

    times = {"load": best(lambda: load_row(x, re, im, M))}
    stages = stage_plan(L)
    times[f"forward radix-{stages[0][0]} span {stages[0][1]}"] = best(
        lambda: first_stage(re, im, P.tw_re, P.tw_im, M))
    o = stages[0][1] if stages[0][0] == 2 else 3 * stages[0][1]
    for _radix, s, _ in stages[1:]:
        times[f"forward radix-4 span {s}"] = best(
            lambda s=s, o=o: radix4_stage(re, im, P.tw_re, P.tw_im, M, s, o, P.rows, False))
        o += 3 * s
    times["product"] = best(lambda: spectral_product(re, im, kre, kim, P, one))
    times["inverse"] = best(lambda: fft_inverse(re, im, P))
    times["store"] = best(lambda: store_row(re, im, y, one))
    return times
