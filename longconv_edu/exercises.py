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
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
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
