"""Rung 3 exercises: one butterfly stage and the radix-2 twiddles."""
from __future__ import annotations

import torch

from ... import fft
from .core import Exercise, register


def _stage_cases():
    g = torch.Generator().manual_seed(3)
    out = []
    for n, stage in [(2, 1), (8, 1), (8, 2), (8, 3), (16, 3), (64, 6)]:
        x = torch.randn(2, n, generator=g, dtype=torch.float64) \
            + 1j * torch.randn(2, n, generator=g, dtype=torch.float64)
        out.append((x, stage))
    return out


def _register():
    register(Exercise("butterfly_stage", 3,
                      "Apply butterfly stage s to y: in each block of m = 2^s values, (a, b) -> (a + w b, a - w b) "
                      "with w = exp(-2 pi i j / m), j < m/2.",
                      fft.butterfly_stage, _stage_cases, rtol=1e-10,
                      hint="reshape y to (..., N/m, 2, m/2): the first half of each block is a, the second b."))
    register(Exercise("radix2_twiddles", 3,
                      "Return the n/2 twiddle factors w_n^k = exp(-2 pi i k / n), k = 0 .. n/2 - 1, "
                      "as a complex tensor.",
                      fft.twiddles, lambda: [(n,) for n in (2, 4, 8, 64, 1024)], rtol=1e-6,
                      hint="the minus sign in the exponent is the forward transform's convention (numpy, torch)."))


_register()
