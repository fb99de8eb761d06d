"""Checkers for the course exercises: ``check("name", your_function)``.

Each exercise names a reference function from the library and a few inputs. ``check`` runs the
learner's function and the reference on every input and prints, for the first mismatch, what was
passed, what was expected and what came back, so the learner sees *what* is wrong, not only that
something is. It never raises for the learner's mistakes: it prints and returns False. An
unfilled exercise (raising NotImplementedError) is reported as such.

    >>> from longconv_edu.exercises import check, list_exercises
    >>> check("causal_fft_conv", my_fft_conv)
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = ["Exercise", "EXERCISES", "check", "list_exercises", "register"]


@dataclass(frozen=True)
class Exercise:
    name: str
    rung: int
    task: str                                   # one sentence: what to write
    reference: Callable                         # the library's answer
    cases: Callable[[], list]                   # -> list of argument tuples (built fresh each check)
    rtol: float = 1e-8                          # relative to the reference's max magnitude
    hint: str = ""
    compare: Callable | None = field(default=None)  # custom (got, expected) -> str | None


EXERCISES: dict[str, Exercise] = {}


def register(ex: Exercise) -> Exercise:
    if ex.name in EXERCISES:
        raise ValueError(f"exercise name {ex.name!r} is already registered")
    EXERCISES[ex.name] = ex
    return ex


def list_exercises(rung: int | None = None) -> list[str]:
    """Names of the registered exercises (of one rung if given), in course order."""
    return [e.name for e in sorted(EXERCISES.values(), key=lambda e: (e.rung, e.name))
            if rung is None or e.rung == rung]


def _to_np(x):
    if isinstance(x, torch.Tensor):       # resolve lazy conj/neg views (x.conj()) before numpy
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if isinstance(x, (tuple, list)):
        return [_to_np(v) for v in x]
    return np.asarray(x)


def _short(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"array{x.shape} {x.dtype}"
    return repr(x)[:60]


def _compare(got, want, rtol: float) -> str | None:
    """None if equal to tolerance, else a sentence saying what differs."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a sequence of {len(want)} items, got {_short(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            msg = _compare(g, w, rtol)
            if msg:
                return f"item {i}: {msg}"
        return None
    g, w = _to_np(got), _to_np(want)
    if g.shape != w.shape:
        return f"shape {g.shape}, expected {w.shape}"
    if g.dtype.kind != w.dtype.kind and not (g.dtype.kind in "fc" and w.dtype.kind in "fc"):
        return f"dtype {g.dtype}, expected something like {w.dtype}"
    if w.size == 0:
        return None
    err = np.abs(g.astype(np.complex128) - w.astype(np.complex128))
    scale = max(float(np.max(np.abs(w))), 1e-30)
    if not np.all(np.isfinite(err)) or float(np.max(err)) > rtol * scale:
        idx = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
        return (f"values differ: largest error {float(np.nanmax(err)):.3g} at index {tuple(map(int, idx))} "
                f"(got {g[idx]:.6g}, expected {w[idx]:.6g}; tolerance {rtol:g} x {scale:.3g})")
    return None


def check(name: str, fn: Callable, *, verbose: bool = True) -> bool:
    """Run the learner's ``fn`` against exercise ``name``'s reference; print a report; return pass/fail."""
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {', '.join(map(repr, list_exercises()))}; got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    ex = EXERCISES[name]
    say = print if verbose else (lambda *a, **k: None)
    cases = ex.cases()
    for i, args in enumerate(cases):
        want = ex.reference(*args)
        try:
            got = fn(*args)
        except NotImplementedError:
            say(f"[{name}] not filled in yet: replace the `raise NotImplementedError` with your code.")
            return False
        except Exception as e:  # the learner's bug: report it, do not crash the notebook
            frame = traceback.extract_tb(e.__traceback__)[-1]
            say(f"[{name}] case {i + 1}/{len(cases)} raised {type(e).__name__}: {e}\n"
                f"    at line {frame.lineno}: {frame.line}\n    inputs: {', '.join(_short(a) for a in args)}")
            return False
        msg = (ex.compare or (lambda g, w: _compare(g, w, ex.rtol)))(got, want)
        if msg:
            say(f"[{name}] case {i + 1}/{len(cases)} is wrong: {msg}\n"
                f"    inputs: {', '.join(_short(a) for a in args)}" + (f"\n    hint: {ex.hint}" if ex.hint else ""))
            return False
    say(f"[{name}] all {len(cases)} cases pass.")
    return True


# ----------------------------------------------------------------------------- rungs 1-2
def _conv_cases():
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 1, 1, 1), (2, 3, 16, 16), (1, 2, 37, 5), (3, 1, 64, 64)]
    return [(torch.randn(B, H, L, generator=g, dtype=torch.float64),
             torch.randn(H, Lk, generator=g, dtype=torch.float64)) for B, H, L, Lk in shapes]


def _toeplitz_cases():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(Lk, generator=g, dtype=torch.float64), L) for Lk, L in [(1, 1), (3, 5), (8, 8), (5, 13)]]


def _register_rung12():
    from . import conv
    register(Exercise("toeplitz_matrix", 1,
                      "Build the L x L lower-triangular Toeplitz matrix T[t, s] = k[t - s] of a 1-D kernel.",
                      conv.toeplitz, _toeplitz_cases,
                      hint="T[t, s] is k[t - s] when 0 <= t - s < len(k), and 0 otherwise."))
    register(Exercise("direct_conv_loop", 1,
                      "Write the causal convolution y[b,h,t] = sum_s k[h,s] u[b,h,t-s] as a loop.",
                      conv.direct_conv, _conv_cases,
                      hint="s runs from 0 to min(t, Lk - 1); outputs never look at the future."))
    register(Exercise("causal_fft_conv", 2,
                      "Compute the causal convolution with torch.fft: pad, multiply spectra, invert, truncate.",
                      conv.fft_conv, _conv_cases,
                      hint="An FFT of size L gives the circular convolution; pad to 2L and keep the first L outputs."))


_register_rung12()


# ----------------------------------------------------------------------------- rungs 3-4
def _stage_cases():
    g = torch.Generator().manual_seed(3)
    out = []
    for n, stage in [(2, 1), (8, 1), (8, 2), (8, 3), (16, 3), (64, 6)]:
        x = torch.randn(2, n, generator=g, dtype=torch.float64) \
            + 1j * torch.randn(2, n, generator=g, dtype=torch.float64)
        out.append((x, stage))
    return out


def _factor_check(got, want) -> str | None:
    """Any split works if it is 2 or 3 powers of two, each <= 64, multiplying to N."""
    N = int(np.prod(want))
    try:
        fs = [int(f) for f in got]
    except TypeError:
        return f"expected a tuple of 2 or 3 ints, got {_short(got)}"
    if len(fs) not in (2, 3):
        return f"expected 2 or 3 factors, got {len(fs)}: {tuple(fs)}"
    if int(np.prod(fs)) != N:
        return f"factors {tuple(fs)} multiply to {int(np.prod(fs))}, not N = {N}"
    bad = [f for f in fs if f > 64 or f < 1 or f & (f - 1)]
    if bad:
        return f"factors {tuple(fs)}: {bad} are not powers of two between 1 and 64 (a tensor-core-sized block)"
    return None


def _four_step_cases():
    g = torch.Generator().manual_seed(4)
    return [(torch.randn(n1 * n2, generator=g, dtype=torch.float64).to(torch.complex128), n1, n2)
            for n1, n2 in [(1, 1), (2, 2), (4, 2), (2, 8), (3, 5), (16, 16)]]


def _register_rung34():
    from . import fft
    register(Exercise("butterfly_stage", 3,
                      "Apply butterfly stage s to y: in each block of m = 2^s values, (a, b) -> (a + w b, a - w b) "
                      "with w = exp(-2 pi i j / m), j < m/2.",
                      fft.butterfly_stage, _stage_cases, rtol=1e-10,
                      hint="reshape y to (..., N/m, 2, m/2): the first half of each block is a, the second b."))
    register(Exercise("radix2_twiddles", 3,
                      "Return the n/2 twiddle factors w_n^k = exp(-2 pi i k / n), k = 0 .. n/2 - 1, as a complex tensor.",
                      fft.twiddles, lambda: [(n,) for n in (2, 4, 8, 64, 1024)], rtol=1e-6,
                      hint="the minus sign in the exponent is the forward transform's convention (numpy, torch)."))
    register(Exercise("four_step_twiddles", 4,
                      "Return the (n1, n2) four-step twiddles T[c, b] = exp(-2 pi i c b / (n1 n2)).",
                      fft.twiddle_grid, lambda: [(1, 1), (2, 2), (4, 8), (16, 16), (3, 5)], rtol=1e-6,
                      hint="c indexes the n1-point DFT outputs (rows), b the columns; N = n1 * n2, not n1 or n2."))
    register(Exercise("monarch_split", 4,
                      "Split a power of two N (e.g. 4096) into 2 or 3 Monarch factors, each a power of two <= 64.",
                      fft.monarch_factors, lambda: [(4096,), (1024,), (65536,), (8,), (262144,)],
                      compare=_factor_check,
                      hint="4096 = 2^12: two factors of 2^6 = 64. Past 64 * 64 you need a third factor."))
    register(Exercise("four_step_dft", 4,
                      "Compute the DFT of a length n1*n2 vector by the four-step method: reshape (n1, n2), "
                      "n1-point DFTs down the columns, twiddles, n2-point DFTs along the rows, transpose.",
                      lambda x, n1, n2: fft.monarch_dft(x, (n1, n2)), _four_step_cases, rtol=1e-10,
                      hint="output k = c + n1 d sits at Z[c, d]: read Z column by column (Z.T.reshape(-1))."))


_register_rung34()


# ----------------------------------------------------------------------------- rung 5 (CUDA kernel)
def _spectrum_cases():
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(H, Lk, generator=g, dtype=torch.float64), N)
            for H, Lk, N in [(1, 1, 2), (2, 3, 8), (3, 16, 32), (1, 5, 64)]]


def _traffic_cases():
    return [(1, 1, 1, 4), (2, 3, 1000, 4), (4, 8, 4096, 8), (1, 2, 3, 2)]


def _register_rung5_cuda():
    from . import io_model
    from .kernels import cuda as kc
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


_register_rung5_cuda()


# ----------------------------------------------------------------------------- rung 6
def _squash_cases():
    g = torch.Generator().manual_seed(6)
    return [(torch.tensor([0.5, -0.2, 0.1, -0.05, 0.0], dtype=torch.float64), 0.1),
            (torch.randn(3, 40, generator=g, dtype=torch.float64) * 0.002, 0.003),
            (torch.randn(2, 2, 17, generator=g, dtype=torch.float64), 0.0),
            (torch.randn(64, generator=g, dtype=torch.float64), 10.0)]


def _smooth_cases():
    g = torch.Generator().manual_seed(7)
    return [(torch.tensor([0.0, 3.0, 0.0, 0.0, 6.0], dtype=torch.float64), 3),
            (torch.randn(3, 40, generator=g, dtype=torch.float64), 7),
            (torch.randn(1, 9, generator=g, dtype=torch.float64), 9),
            (torch.randn(2, 33, generator=g, dtype=torch.float64), 1)]


def _register_rung6():
    from . import regularize
    register(Exercise("squash", 6,
                      "Write Squash: soft-threshold every tap, sign(k) * max(|k| - lam, 0).",
                      regularize.squash, _squash_cases,
                      hint="torch.sign(k) * torch.relu(k.abs() - lam): small taps become exactly 0, "
                           "large ones shrink by lam."))
    register(Exercise("smooth", 6,
                      "Write Smooth: the average of the `width` taps centred on each tap "
                      "(odd width, zeros beyond both ends, same length out).",
                      regularize.smooth, _smooth_cases,
                      hint="Pad width//2 zeros on each side, then out[s] = mean(padded[s : s + width]); "
                           "divide by width even at the ends (the zeros count)."))


_register_rung6()


# ----------------------------------------------------------------------------- rung 7
def _schedule_cases():
    return [(s, w, t) for (w, t) in [(0, 10), (4, 20), (10, 100)] for s in (0, 1, w, w + 1, t // 2, t - 1)]


def _register_rung7():
    def reference(step, warmup_steps, total_steps):
        from .train import lr_factor

        return lr_factor(step, warmup_steps, total_steps)

    register(Exercise("lr_schedule", 7,
                      "Return the learning-rate multiplier at a step: linear warm-up, then half a cosine.",
                      reference, _schedule_cases, rtol=1e-12,
                      hint="Warm-up gives (step + 1) / (warmup_steps + 1); after it, "
                           "0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))."))


_register_rung7()


# ----------------------------------------------------------------------------- rungs 5, 7, 8
# References come from the library where it computes the answer (kernels.cuda.make_plan,
# fft.dft_matrix, io_model.monarch_flops, learned.block_drift,
# torch.fft.rfft). Two small answers no module computes on its own (the CUDA kernel's thread ->
# butterfly map is inline in its body; a causality probe) are written here as reference solutions;
# tests/test_exercises.py checks them against independent oracles (the kernel's recorded trace,
# numpy.fft, autograd Jacobians). Exercise notebooks: course/exercises/; solutions: course/solutions/.
import math as _math

from ._checks import check_float as _check_float
from ._checks import check_int as _check_int


class _Named:
    """A function with a readable repr, so a failing case prints ``circular_conv``, not an address."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return self.name


def _same_value(got, want) -> str | None:
    """Compare a bool, int or tuple-of-ints answer exactly (int 8 and float 8.0 are equal)."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, np.generic):
        got = got.item()
    if isinstance(got, list):
        got = tuple(got)
    if isinstance(got, tuple):
        got = tuple(v.item() if isinstance(v, (np.generic, torch.Tensor)) else v for v in got)
    if type(want) is bool and not isinstance(got, bool):
        return f"expected True or False, got {_short(got)}"
    if type(got) is not type(want) and not (isinstance(got, (int, float)) and isinstance(want, (int, float))):
        return f"expected a {type(want).__name__} like {want!r}, got {_short(got)}"
    if got != want:
        return f"got {got!r}, expected {want!r}"
    return None


# rung 2 (a second exercise): the bidirectional layout ---------------------------------------
def _register_rung2_extra():
    from . import conv

    def cases():
        g = torch.Generator().manual_seed(2)
        return [(torch.randn(B, H, L, generator=g, dtype=torch.float64),
                 torch.randn(H, 2 * L, generator=g, dtype=torch.float64))
                for B, H, L in [(1, 1, 1), (2, 3, 8), (1, 2, 13)]]

    register(Exercise("bidirectional_fft_conv", 2,
                      "Compute the non-causal convolution with a (H, 2L) kernel: k[:, :L] weighs "
                      "u[t - s] (the past), k[:, L + j] weighs u[t + j + 1] (the future); use one "
                      "FFT of size 2L.",
                      conv.bidirectional_conv, cases,
                      hint="In a circular kernel of length 2L, lag -(j+1) sits at index 2L-1-j: place "
                           "k[:, :L] first, then k[:, L:] flipped; multiply rfft spectra (n=2L), keep L."))


_register_rung2_extra()


# rung 5: the kernels' arithmetic ------------------------------------------------------------
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
    n = _check_int(n, "n", min=2, power_of_two=True)
    h = _check_int(span, "span", min=1, max=n // 2, power_of_two=True)
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
    L = _check_int(L, "L", min=1)
    itemsize = _check_int(itemsize, "itemsize", min=1)
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
    smem_bytes = _check_int(smem_bytes, "smem_bytes", min=4 * itemsize)    # a tile of 2 values
    from .kernels.cuda import make_plan
    plan = make_plan(L, np.float32 if itemsize == 4 else np.float64, smem_bytes=smem_bytes)
    return plan.N, plan.passes, plan.inner


def _register_rung5():
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
                      shared_memory_plan, plan_cases, compare=_same_value,
                      hint="N = next power of two >= 2L; a complex value takes 2 * itemsize bytes; "
                           "t = largest power of two whose tile fits; too long: inner = "
                           "min(t, 2**ceil(log2(N) / 2))."))
    register(Exercise("rfft_from_half_size_fft", 5,
                      "Compute rfft(x) (length n//2 + 1) of a real x of even length n from ONE complex "
                      "FFT of length n/2: the real-input trick the CPU kernel uses.",
                      torch.fft.rfft, rfft_cases, rtol=1e-10,
                      hint="z = x[..., 0::2] + 1j*x[..., 1::2]; Z = fft(z); the even and odd parts are "
                           "E[k] = (Z[k] + conj(Z[-k]))/2 and O[k] = (Z[k] - conj(Z[-k]))/(2j), "
                           "then X[k] = E[k] + exp(-2j*pi*k/n) O[k] for k = 0..n/2 (indices mod n/2)."))


_register_rung5()


# rung 7: training ---------------------------------------------------------------------------
def is_causal(fn: Callable, L: int, *, tol: float = 1e-9) -> bool:
    """Reference: does y = fn(u) at each time t depend only on u[..., :t+1]?

    ``fn`` maps an input of shape (1, 1, L) to an output of the same shape. The probe: a random
    float64 input u; for every position s, change u[s] and check that no output before s moved
    (relative to the output's size, ``tol``). Works for nonlinear models too, since it compares
    outputs, not weights. A model that leaks the future (FFT size L, a bidirectional kernel, a
    shifted target) trains to a suspiciously low loss and fails at generation time.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    L = _check_int(L, "L", min=1)
    tol = _check_float(tol, "tol", min=0)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 1, L, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = fn(u)
        scale = max(float(y.abs().max()), 1e-30)
        for s in range(1, L):
            v = u.clone()
            v[..., s] += 1.0
            if float((fn(v)[..., :s] - y[..., :s]).abs().max()) > tol * scale:
                return False
    return True


def _register_rung7_causal():
    from . import conv

    def causal_cases():
        from . import learned
        g = torch.Generator().manual_seed(7)
        L = 24
        k = torch.randn(1, L, generator=g, dtype=torch.float64)
        k2 = torch.randn(1, 2 * L, generator=g, dtype=torch.float64)
        # rung 8: once trained, the Monarch blocks are no longer the DFT, and the "convolution"
        # is no longer causal: a learned butterfly whose blocks moved a little from the DFT
        moved = [b + 0.05 * torch.randn(b.shape, generator=g, dtype=torch.complex128)
                 for b in learned.dft_blocks((8, 8), H=1, dtype=torch.float64)]
        fns = [
            _Named(lambda u: conv.fft_conv(u, k), "fft_conv (FFT size 2L)"),
            _Named(lambda u: conv.circular_conv(u, k), "circular_conv (FFT size L)"),
            _Named(lambda u: conv.bidirectional_conv(u, k2), "bidirectional_conv (kernel 2L)"),
            _Named(lambda u: torch.tanh(conv.fft_conv(torch.relu(u), k)) + u, "tanh(fft_conv(relu(u))) + u"),
            _Named(lambda u: torch.cumsum(u, -1), "cumsum"),
            _Named(lambda u: torch.roll(u, -1, dims=-1), "next value (roll by -1)"),
            _Named(lambda u: u - u.mean(-1, keepdim=True), "u minus its mean over time"),
            _Named(lambda u: u[..., -1:].expand_as(u).clone(), "last value everywhere"),
            _Named(lambda u: learned.learned_butterfly_conv(u, k), "learned butterfly at its DFT init"),
            _Named(lambda u: learned.learned_butterfly_conv(u, k, moved), "learned butterfly, blocks moved"),
        ]
        return [(f, L) for f in fns]

    register(Exercise("is_causal", 7,
                      "Given a model fn (input (1, 1, L) -> output (1, 1, L)) return True if no output "
                      "at time t depends on inputs after t, else False.",
                      is_causal, causal_cases, compare=_same_value,
                      hint="Perturb one input position s and see whether any output before s changes; "
                           "try every s. Linear or not, that is what 'causal' means."))


_register_rung7_causal()


# rung 8: learned butterfly ------------------------------------------------------------------
def _dft_block_init_reference(n: int, H: int, inverse: bool = False) -> torch.Tensor:
    """H independent copies of ``fft.dft_matrix(n, inverse=...)``: shape (H, n, n), complex128."""
    from .fft import dft_matrix
    H = _check_int(H, "H", min=1)
    return dft_matrix(n, inverse=inverse).expand(H, n, n).clone()


def _block_drift_reference(blocks: torch.Tensor) -> torch.Tensor:
    """``learned.block_drift`` of one factor's (H, n, n) blocks: (H,) relative Frobenius distances."""
    from .learned import block_drift
    return block_drift([blocks])[0]


def _register_rung8():
    from . import io_model

    def init_cases():
        return [(1, 1, False), (2, 3, False), (4, 2, False), (16, 2, False), (16, 1, True), (5, 2, True)]

    def flop_cases():
        return [(16, (16,)), (16, (4, 4)), (4096, (16, 16, 16)), (4096, (64, 64)), (32768, (32, 32, 32)),
                (24, (2, 3, 4))]

    def drift_cases():
        g = torch.Generator().manual_seed(8)
        out = []
        for n in (2, 8, 16):
            F = torch.fft.fft(torch.eye(n, dtype=torch.complex128), dim=0)
            noise = torch.randn(4, n, n, generator=g, dtype=torch.complex128)
            scales = torch.tensor([0.0, 0.01, 0.5, 2.0], dtype=torch.float64).view(4, 1, 1)
            out.append((F + scales * noise,))
        out.append((torch.zeros(2, 4, 4, dtype=torch.complex128),))
        return out

    register(Exercise("dft_block_init", 8,
                      "Return H copies (shape (H, n, n), complex) of the n x n DFT matrix "
                      "F[j,k] = exp(-2j*pi*j*k/n), or of its inverse conj(F)/n if inverse=True.",
                      _dft_block_init_reference, init_cases, rtol=1e-12,
                      hint="Build F from an outer product of j and k; for the inverse conjugate and "
                           "divide by n; .expand(H, n, n).clone() makes independent copies."))
    register(Exercise("monarch_flops", 8,
                      "Count the real FLOPs of an n-point complex DFT in Monarch form with dense "
                      "blocks of sizes `factors`: 8 per complex multiply-add, 6 per twiddle multiply.",
                      io_model.monarch_flops, flop_cases, compare=_same_value,
                      hint="Stage i does n/ni dense ni x ni matrix-vector products = n*ni multiply-adds; "
                           "there are len(factors) - 1 twiddle steps of n multiplications each."))
    register(Exercise("block_drift", 8,
                      "For learned blocks (H, n, n), return per block ||B - F||_F / ||F||_F, the "
                      "relative distance from the exact DFT matrix F.",
                      _block_drift_reference, drift_cases, rtol=1e-10,
                      hint="The Frobenius norm is the square root of the sum of |entries|^2; "
                           "||F||_F = n for the DFT."))


_register_rung8()
