"""Rung 4 exercises: the four-step (Monarch) DFT, its twiddles and factor split."""
from __future__ import annotations

import numpy as np
import torch

from ... import fft
from .core import Exercise, register, short


def factor_check(got, want) -> str | None:
    """Any split works if it is 2 or 3 powers of two, each <= 64, multiplying to N."""
    N = int(np.prod(want))
    try:
        fs = [int(f) for f in got]
    except TypeError:
        return f"expected a tuple of 2 or 3 ints, got {short(got)}"
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


def _register():
    register(Exercise("four_step_twiddles", 4,
                      "Return the (n1, n2) four-step twiddles T[c, b] = exp(-2 pi i c b / (n1 n2)).",
                      fft.twiddle_grid, lambda: [(1, 1), (2, 2), (4, 8), (16, 16), (3, 5)], rtol=1e-6,
                      hint="c indexes the n1-point DFT outputs (rows), b the columns; N = n1 * n2, not n1 or n2."))
    register(Exercise("monarch_split", 4,
                      "Split a power of two N (e.g. 4096) into 2 or 3 Monarch factors, each a power of two <= 64.",
                      fft.monarch_factors, lambda: [(4096,), (1024,), (65536,), (8,), (262144,)],
                      compare=factor_check,
                      hint="4096 = 2^12: two factors of 2^6 = 64. Past 64 * 64 you need a third factor."))
    register(Exercise("four_step_dft", 4,
                      "Compute the DFT of a length n1*n2 vector by the four-step method: reshape (n1, n2), "
                      "n1-point DFTs down the columns, twiddles, n2-point DFTs along the rows, transpose.",
                      lambda x, n1, n2: fft.monarch_dft(x, (n1, n2)), _four_step_cases, rtol=1e-10,
                      hint="output k = c + n1 d sits at Z[c, d]: read Z column by column (Z.T.reshape(-1))."))


_register()
