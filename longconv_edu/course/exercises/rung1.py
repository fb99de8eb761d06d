"""Rung 1 exercises: the Toeplitz matrix and the direct convolution loop."""
from __future__ import annotations

import torch

from ... import conv
from .core import Exercise, register


def conv_cases():
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 1, 1, 1), (2, 3, 16, 16), (1, 2, 37, 5), (3, 1, 64, 64)]
    return [(torch.randn(B, H, L, generator=g, dtype=torch.float64),
             torch.randn(H, Lk, generator=g, dtype=torch.float64)) for B, H, L, Lk in shapes]


def _toeplitz_cases():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(Lk, generator=g, dtype=torch.float64), L) for Lk, L in [(1, 1), (3, 5), (8, 8), (5, 13)]]


def _register():
    register(Exercise("toeplitz_matrix", 1,
                      "Build the L x L lower-triangular Toeplitz matrix T[t, s] = k[t - s] of a 1-D kernel.",
                      conv.toeplitz, _toeplitz_cases,
                      hint="T[t, s] is k[t - s] when 0 <= t - s < len(k), and 0 otherwise."))
    register(Exercise("direct_conv_loop", 1,
                      "Write the causal convolution y[b,h,t] = sum_s k[h,s] u[b,h,t-s] as a loop.",
                      conv.direct_conv, conv_cases,
                      hint="s runs from 0 to min(t, Lk - 1); outputs never look at the future."))


_register()
