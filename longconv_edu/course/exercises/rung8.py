"""Rung 8 exercises: per-channel DFT blocks, Monarch FLOPs and block drift."""
from __future__ import annotations

import torch

from ... import io_model
from ..._checks import check_int
from ...fft import dft_matrix
from ...learned import block_drift
from .core import Exercise, register, same_value


def dft_block_init_reference(n: int, H: int, inverse: bool = False) -> torch.Tensor:
    """H independent copies of ``fft.dft_matrix(n, inverse=...)``: shape (H, n, n), complex128."""
    H = check_int(H, "H", min=1)
    return dft_matrix(n, inverse=inverse).expand(H, n, n).clone()


def block_drift_reference(blocks: torch.Tensor) -> torch.Tensor:
    """``learned.block_drift`` of one factor's (H, n, n) blocks: (H,) relative Frobenius distances."""
    return block_drift([blocks])[0]


def _register():

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
                      dft_block_init_reference, init_cases, rtol=1e-12,
                      hint="Build F from an outer product of j and k; for the inverse conjugate and "
                           "divide by n; .expand(H, n, n).clone() makes independent copies."))
    register(Exercise("monarch_flops", 8,
                      "Count the real FLOPs of an n-point complex DFT in Monarch form with dense "
                      "blocks of sizes `factors`: 8 per complex multiply-add, 6 per twiddle multiply.",
                      io_model.monarch_flops, flop_cases, compare=same_value,
                      hint="Stage i does n/ni dense ni x ni matrix-vector products = n*ni multiply-adds; "
                           "there are len(factors) - 1 twiddle steps of n multiplications each."))
    register(Exercise("block_drift", 8,
                      "For learned blocks (H, n, n), return per block ||B - F||_F / ||F||_F, the "
                      "relative distance from the exact DFT matrix F.",
                      block_drift_reference, drift_cases, rtol=1e-10,
                      hint="The Frobenius norm is the square root of the sum of |entries|^2; "
                           "||F||_F = n for the DFT."))


_register()
