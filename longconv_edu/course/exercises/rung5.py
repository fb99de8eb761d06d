"""Rung 5 exercises: the fused kernels' arithmetic (spectrum order, traffic, thread map, plan, rfft trick, races)."""
from __future__ import annotations

import numpy as np
import torch

from ... import io_model
from ..._checks import check_int
from ...kernels import cuda as kc
from ...kernels.cuda import make_plan
from .core import Exercise, register, same_value


def _spectrum_cases():
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(H, Lk, generator=g, dtype=torch.float64), N)
            for H, Lk, N in [(1, 1, 2), (2, 3, 8), (3, 16, 32), (1, 5, 64)]]


def _traffic_cases():
    return [(1, 1, 1, 4), (2, 3, 1000, 4), (4, 8, 4096, 8), (1, 2, 3, 2)]


def _register_cuda():
    register(Exercise("bit_reversed_spectrum", 5,
                      "Return the spectrum the fused kernel multiplies by: the size-N DFT of each "
                      "zero-padded row of k (H, Lk), entries in bit-reversed order (complex, (H, N)).",
                      kc.bit_reversed_spectrum, _spectrum_cases,
                      hint="torch.fft.fft(k, n=N), then index the last axis with the bit-reversal "
                           "permutation (longconv_edu.fft.bit_reversal_permutation)."))
    register(Exercise("fused_kernel_traffic", 5,
                      "Return (bytes read, bytes written) in global memory by the fused kernel for "
                      "B, H, L and s bytes per real (the kernel spectrum: N = next_pow2(2L) complex).",
                      lambda B, H, L, s: (io_model.fused_conv(B, H, L, dtype_bytes=s).bytes_read,
                                          io_model.fused_conv(B, H, L, dtype_bytes=s).bytes_written),
                      _traffic_cases, rtol=0.0,
                      hint="Each row reads its L inputs and its channel's N complex spectrum values "
                           "once, and writes its L outputs once."))


def thread_butterflies(n: int, span: int):
    """Reference: which butterfly each thread of a block computes in one stage of the CUDA kernel.

    ``kernels.cuda`` runs the FFT in place, decimation in frequency: natural order in, spectrum
    out in bit-reversed order (the kernel spectrum is kept in that same order, so no bit-reversal
    pass is ever needed). Its stages have spans h = n/2, n/4, ..., 1; a stage combines elements h
    apart inside groups of 2h. With n/2 threads, thread q owns one butterfly of each stage:

        top    = (q // h) * (2 * h) + q % h
        bottom = top + h
        e      = (q % h) * (n // (2 * h))           # twiddle w = exp(-2j*pi*e/n)
        x[top], x[bottom] = x[top] + x[bottom], (x[top] - x[bottom]) * w

    Every element is touched by exactly one thread per stage, so a stage needs no atomics, only a
    barrier (``cuda.syncthreads()``) before the next. Returns (top, bottom, e): three int64 arrays
    of length n/2, indexed by thread id. (The same map, read off a recorded run of the kernel, is
    ``kernels.trace.butterfly_schedule``; the tests compare the two.)
    """
    n = check_int(n, "n", min=2, power_of_two=True)
    h = check_int(span, "span", min=1, max=n // 2, power_of_two=True)
    q = np.arange(n // 2, dtype=np.int64)
    top = (q // h) * (2 * h) + q % h
    return top, top + h, (q % h) * (n // (2 * h))


def shared_memory_plan(L: int, itemsize: int, smem_bytes: int) -> tuple[int, int, int]:
    """Reference: how ``kernels.cuda`` runs a row of length L: (FFT size N, passes, inner size).

    A thin adapter over ``kernels.cuda.make_plan`` (which takes a NumPy dtype instead of
    ``itemsize``): N is the next power of two >= 2L; a tile of n complex values takes 2 n itemsize
    bytes; one fused pass if N fits, else three passes with an inner tile of
    min(largest fitting tile, 2**ceil(log2(N) / 2)) values.
    """
    L = check_int(L, "L", min=1)
    itemsize = check_int(itemsize, "itemsize", min=1)
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=4 * itemsize)    # a tile of 2 values
    plan = make_plan(L, np.float32 if itemsize == 4 else np.float64, smem_bytes=smem_bytes)
    return plan.N, plan.passes, plan.inner


def barrier_races(n: int, threads: int, span: int) -> tuple[int, ...]:
    """Reference: where the radix-2 CUDA kernel races without the barrier after one forward stage.

    The kernel's forward FFT of n points (``kernels.cuda.block_program``) runs with ``threads``
    threads, thread t doing butterflies t, t + T, t + 2T, ... of every stage, and a barrier after
    each stage. Leave out the barrier after the stage of span ``span`` (so that stage and the next,
    of span span/2, run between the same two barriers) and return the sorted shared-memory
    positions two different threads then touch, one of them writing: the races. Computed by the
    tracer's race detector (``kernels.trace.trace_conv(..., drop_barriers=(j,))``), on the kernel
    itself: a tuple of ints, empty when that barrier can go (which is not the same as "the output
    came out right": a race may give the right answer by luck of scheduling, or not).
    """
    from ...kernels.trace import trace_conv
    n = check_int(n, "n", min=4, power_of_two=True)
    threads = check_int(threads, "threads", min=1, max=n // 2, power_of_two=True)
    h = check_int(span, "span", min=2, max=n // 2, power_of_two=True)
    j = (n // h).bit_length() - 1              # barrier 0 follows the load, barrier j stage j
    u = torch.zeros(1, 1, n // 2, dtype=torch.float64)
    tr = trace_conv(u, torch.zeros(1, 1, dtype=torch.float64), threads=threads,
                    drop_barriers=(j,))
    idx = {r.index for r in tr.launches[0].races if r.array == "shared array 0"}
    return tuple(sorted(idx))


def _register_kernels():
    def butterfly_cases():
        return [(2, 1), (8, 4), (8, 2), (8, 1), (16, 2), (64, 8), (1024, 512), (1024, 1)]

    def plan_cases():
        KiB = 1024
        return [(1, 4, 48 * KiB), (1024, 4, 48 * KiB), (2048, 4, 48 * KiB), (3000, 4, 48 * KiB),
                (3000, 8, 48 * KiB), (4096, 4, 228 * KiB), (65536, 4, 228 * KiB),
                (1000, 8, 16 * KiB), (300, 4, 1 * KiB)]

    def rfft_cases():
        g = torch.Generator().manual_seed(5)
        return [(torch.randn(n, generator=g, dtype=torch.float64),) for n in (2, 8, 30)] + \
               [(torch.randn(3, 2, 64, generator=g, dtype=torch.float64),)]

    register(Exercise("thread_butterflies", 5,
                      "For the stage of span h of the CUDA kernel's in-place FFT (n points, n/2 "
                      "threads), return per thread q its butterfly's indices (top, bottom) and its "
                      "twiddle exponent e (w = exp(-2j*pi*e/n)).",
                      thread_butterflies, butterfly_cases,
                      hint="thread q sits in group q // h (groups are 2h long) at offset q % h; the "
                           "twiddle of offset j in a group of 2h is exp(-2j*pi*j/(2h)) = w_n^(j*n/(2h))."))
    register(Exercise("shared_memory_plan", 5,
                      "Given L, the bytes per real number and the shared memory per block, return "
                      "(FFT size N, number of passes 1 or 3, inner tile size) as kernels.cuda plans it.",
                      shared_memory_plan, plan_cases, compare=same_value,
                      hint="N = next power of two >= 2L; a complex value takes 2 * itemsize bytes; "
                           "t = largest power of two whose tile fits; too long: inner = "
                           "min(t, 2**ceil(log2(N) / 2))."))
    def race_cases():
        return [(16, 4, 8), (16, 4, 4), (16, 4, 2), (16, 2, 2), (8, 2, 2), (32, 8, 16),
                (32, 8, 4), (64, 4, 8), (64, 16, 2)]

    register(Exercise("barrier_races", 5,
                      "The radix-2 kernel's forward stages on n points, T threads (thread t does "
                      "butterflies t, t+T, ...): return the sorted positions (a tuple of ints) where "
                      "two threads race if the barrier after the stage of span h is removed.",
                      barrier_races, race_cases, compare=same_value,
                      hint="in the stage of span h, position p belongs to butterfly "
                           "q = (p // (2h)) * h + p % h, which thread q % T does; a race is a "
                           "position whose thread differs between the stages of span h and h/2."))
    register(Exercise("rfft_from_half_size_fft", 5,
                      "Compute rfft(x) (length n//2 + 1) of a real x of even length n from ONE complex "
                      "FFT of length n/2: the real-input trick the CPU kernel uses.",
                      torch.fft.rfft, rfft_cases, rtol=1e-10,
                      hint="z = x[..., 0::2] + 1j*x[..., 1::2]; Z = fft(z); the even and odd parts are "
                           "E[k] = (Z[k] + conj(Z[-k]))/2 and O[k] = (Z[k] - conj(Z[-k]))/(2j), "
                           "then X[k] = E[k] + exp(-2j*pi*k/n) O[k] for k = 0..n/2 (indices mod n/2)."))


_register_cuda()
_register_kernels()
