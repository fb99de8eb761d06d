"""Rung 7 exercises: the learning-rate schedule and a causality probe."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ... import conv, learned
from ..._checks import check_float, check_int
from ...lab.train import lr_factor
from .core import Exercise, Named, register, same_value


def _schedule_cases():
    return [(s, w, t) for (w, t) in [(0, 10), (4, 20), (10, 100)] for s in (0, 1, w, w + 1, t // 2, t - 1)]


def _register_schedule():
    register(Exercise("lr_schedule", 7,
                      "Return the learning-rate multiplier at a step: linear warm-up, then half a cosine.",
                      lr_factor, _schedule_cases, rtol=1e-12,
                      hint="Warm-up gives (step + 1) / (warmup_steps + 1); after it, "
                           "0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))."))


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
    L = check_int(L, "L", min=1)
    tol = check_float(tol, "tol", min=0)
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


def _register_causal():

    def causal_cases():
        g = torch.Generator().manual_seed(7)
        L = 24
        k = torch.randn(1, L, generator=g, dtype=torch.float64)
        k2 = torch.randn(1, 2 * L, generator=g, dtype=torch.float64)
        # rung 8: once trained, the Monarch blocks are no longer the DFT, and the "convolution"
        # is no longer causal: a learned butterfly whose blocks moved a little from the DFT
        moved = [b + 0.05 * torch.randn(b.shape, generator=g, dtype=torch.complex128)
                 for b in learned.dft_blocks((8, 8), H=1, dtype=torch.float64)]
        fns = [
            Named(lambda u: conv.fft_conv(u, k), "fft_conv (FFT size 2L)"),
            Named(lambda u: conv.circular_conv(u, k), "circular_conv (FFT size L)"),
            Named(lambda u: conv.bidirectional_conv(u, k2), "bidirectional_conv (kernel 2L)"),
            Named(lambda u: torch.tanh(conv.fft_conv(torch.relu(u), k)) + u, "tanh(fft_conv(relu(u))) + u"),
            Named(lambda u: torch.cumsum(u, -1), "cumsum"),
            Named(lambda u: torch.roll(u, -1, dims=-1), "next value (roll by -1)"),
            Named(lambda u: u - u.mean(-1, keepdim=True), "u minus its mean over time"),
            Named(lambda u: u[..., -1:].expand_as(u).clone(), "last value everywhere"),
            Named(lambda u: learned.learned_butterfly_conv(u, k), "learned butterfly at its DFT init"),
            Named(lambda u: learned.learned_butterfly_conv(u, k, moved), "learned butterfly, blocks moved"),
        ]
        return [(f, L) for f in fns]

    register(Exercise("is_causal", 7,
                      "Given a model fn (input (1, 1, L) -> output (1, 1, L)) return True if no output "
                      "at time t depends on inputs after t, else False.",
                      is_causal, causal_cases, compare=same_value,
                      hint="Perturb one input position s and see whether any output before s changes; "
                           "try every s. Linear or not, that is what 'causal' means."))


_register_schedule()
_register_causal()
