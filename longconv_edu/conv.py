"""Rungs 1-2: what a long convolution computes, first the slow obvious way, then with the FFT.

A long-convolution layer mixes each channel of a sequence with its own kernel that is as long
as the sequence itself. With input ``u`` of shape (B, H, L) and kernel ``k`` of shape (H, Lk),
1 <= Lk <= L, the *causal* convolution is

    y[b, h, t] = sum_{s = 0}^{min(t, Lk - 1)} k[h, s] * u[b, h, t - s]        t = 0 .. L-1

so output t sees only inputs 0..t. This module computes that four ways:

* ``direct_conv``   the double loop, O(L * Lk) per row (plain Python+torch, or Numba with jit=True);
* ``toeplitz_conv`` the same sum as a matrix-vector product with a lower-triangular Toeplitz matrix;
* ``fft_conv``      the convolution theorem: pad to FFT size N >= L + Lk - 1 (2L by default),
                    multiply spectra, transform back, keep the first L outputs: O(N log N);
* ``circular_conv`` and ``bidirectional_conv``: the two other convolutions an FFT of size L or a
                    kernel of length 2L give you, named so they are never confused with the causal one.

Output dtype follows the input (float32 or float64). NaN or inf in the input propagate as in
torch, never an error: through ``direct_conv`` only to the outputs that depend on them (t >= the
bad position); through ``toeplitz_conv`` to every output of that row (the zeros above the
diagonal still multiply the bad value, and 0 * inf = 0 * NaN = NaN); through the FFT forms to
every output of that row (the FFT mixes all positions).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ._checks import (
    check_bool,
    check_conv_inputs,
    check_cost,
    check_int,
    check_kernel_length,
    check_no_grad,
    check_tensor,
)

__all__ = ["direct_conv", "toeplitz", "toeplitz_conv", "fft_conv", "circular_conv",
           "bidirectional_conv", "direct_conv_seconds", "toeplitz_bytes"]


def _empty_result(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The (B, H, L) result of a convolution with B = 0 or H = 0: empty, still tied to u and k in
    autograd. torch.fft refuses empty batches (MKL: "Inconsistent configuration parameters")."""
    return u * 0 + k.sum() * 0


# ----------------------------------------------------------------------------- rung 1: direct
def direct_conv(u: torch.Tensor, k: torch.Tensor, *, jit: bool = False) -> torch.Tensor:
    """Causal convolution by the definition: y[b,h,t] = sum_s k[h,s] u[b,h,t-s].

    u: (B, H, L) float32/float64; k: (H, Lk) with 1 <= Lk <= L, same dtype and device.
    Returns (B, H, L) in u's dtype. Cost O(B*H*L*Lk).

    jit=False runs the double loop over (t, s) in Python, each step a torch op over all (B, H):
    readable, and slow enough to make the quadratic cost visible. jit=True runs the very same
    loop, over every (b, h, t, s), compiled by Numba (CPU tensors only; no autograd).
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    check_bool(jit, "jit")
    check_cost(f"direct_conv(jit={jit}) with B={B}, H={H}, L={L}, Lk={Lk}",
               seconds=direct_conv_seconds(B, H, L, Lk, jit=jit),
               how="modelled as in direct_conv_seconds", hint="use fft_conv, O(L log L)")
    if jit:
        if u.device.type != "cpu":
            raise ValueError(f"direct_conv(jit=True) runs on the CPU; u is on {u.device}")
        check_no_grad("direct_conv(jit=True)", u=u, k=k)
        y = np.zeros((B, H, L), dtype=u.detach().numpy().dtype)
        _direct_conv_numba()(u.detach().contiguous().numpy(), k.detach().contiguous().numpy(), y)
        return torch.from_numpy(y)
    y = torch.zeros_like(u)
    for t in range(L):
        for s in range(min(t + 1, Lk)):
            y[:, :, t] += k[:, s] * u[:, :, t - s]
    return y


def direct_conv_seconds(B: int, H: int, L: int, Lk: int, *, jit: bool = False) -> float:
    """A rough (optimistic) model of direct_conv's run time, for refusing hopeless sizes up front.

    The double loop makes S = sum_t min(t + 1, Lk) = L Lk - Lk (Lk - 1) / 2 steps. jit=False: each
    step is one torch op over all B*H rows, ~3 us of overhead plus ~1 ns per row; jit=True: B*H*S
    compiled multiply-adds at ~1e9 per second.
    """
    B, H = check_int(B, "B", min=0), check_int(H, "H", min=0)
    L = check_int(L, "L", min=1)
    Lk = check_kernel_length(check_int(Lk, "Lk"), L)
    check_bool(jit, "jit")
    steps = L * Lk - Lk * (Lk - 1) // 2
    if jit:
        return B * H * steps * 1e-9
    return steps * (3e-6 + 1e-9 * B * H)


def toeplitz_bytes(H: int, L: int, itemsize: int) -> int:
    """Peak memory of toeplitz(k, L) for H channels: the (L, L) int64 lag and index grids, a mask,
    and two (H, L, L) matrices (gathered taps and their masked product)."""
    H, L = check_int(H, "H", min=0), check_int(L, "L", min=1)
    itemsize = check_int(itemsize, "itemsize", min=1)
    return L * L * (8 + 8 + 1 + itemsize) + 2 * H * L * L * itemsize


@functools.cache
def _direct_conv_numba():
    """Compile (once, lazily: importing numba is not free) the loop of direct_conv."""
    import numba

    @numba.njit(cache=False, fastmath=False)
    def loop(u, k, y):
        B, H, L = u.shape
        Lk = k.shape[1]
        for b in range(B):
            for h in range(H):
                for t in range(L):
                    acc = y.dtype.type(0)
                    for s in range(min(t + 1, Lk)):
                        acc += k[h, s] * u[b, h, t - s]
                    y[b, h, t] = acc
    return loop


# ----------------------------------------------------------------------------- rung 1: Toeplitz
def toeplitz(k: torch.Tensor, L: int) -> torch.Tensor:
    """The lower-triangular Toeplitz matrix T with T[t, s] = k[t - s] (0 <= t - s < Lk), else 0.

    k: (Lk,) or (H, Lk), float32/float64, 1 <= Lk <= L. Returns (L, L) or (H, L, L), so that the
    causal convolution of a row u of length L is ``T @ u``. Every diagonal is constant: that is
    what makes the product a convolution, and what lets the FFT compute it fast.
    """
    check_tensor(k, "k", ndim=(1, 2), shape_doc="1-D (Lk,) or 2-D (H, Lk)")
    L = check_int(L, "L", min=1)
    Lk = check_kernel_length(k.shape[-1], L, "k", k.shape)
    H = k.shape[0] if k.ndim == 2 else 1
    check_cost(f"toeplitz with H={H}, L={L}", nbytes=toeplitz_bytes(H, L, k.element_size()),
               how="H+1 dense L x L matrices, as in toeplitz_bytes",
               hint="use fft_conv, O(L) memory")
    t = torch.arange(L, device=k.device)
    lag = t[:, None] - t[None, :]                      # lag[t, s] = t - s
    inside = (lag >= 0) & (lag < Lk)
    taps = k[..., lag.clamp(0, Lk - 1)]                # (..., L, L): k[t - s] where defined
    return taps * inside.to(k.dtype)


def toeplitz_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution as y[b,h] = T_h @ u[b,h] with T_h = toeplitz(k[h], L). O(L^2) per row.

    u: (B, H, L); k: (H, Lk), 1 <= Lk <= L. Builds H dense L x L matrices: memory O(H L^2).
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    T = toeplitz(k, L)                                 # (H, L, L)
    return torch.einsum("hts,bhs->bht", T, u)


# ----------------------------------------------------------------------------- rung 2: FFT
def fft_conv(u: torch.Tensor, k: torch.Tensor, *, fft_size: int | None = None) -> torch.Tensor:
    """Causal convolution by the convolution theorem, with torch.fft.rfft/irfft.

    u: (B, H, L); k: (H, Lk), 1 <= Lk <= L. fft_size: the FFT length N, default 2L.

    A product of two length-N DFTs is the *circular* convolution of period N. Zero-padding both
    signals to N >= L + Lk - 1 leaves room for the whole linear convolution, so nothing wraps
    around and the first L outputs are exactly the causal ones. 2L is the usual choice (it also
    serves kernels as long as the input, and is a power of two when L is). An N smaller than
    L + Lk - 1 would fold the tail of the convolution back onto its start: for that on purpose
    use ``circular_conv``; here it is an error.
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    need = L + Lk - 1
    if fft_size is None:
        n = 2 * L
    else:
        n = check_int(fft_size, "fft_size", min=1)
        if n < need:
            raise ValueError(f"fft_size must be >= L + Lk - 1 = {need} for a causal convolution "
                             f"without wrap-around, got {n} (for the periodic result on purpose "
                             f"use circular_conv)")
        if u.device.type == "cpu":          # spectra of u and k, their product, the inverse
            check_cost(f"fft_conv with B={B}, H={H}, fft_size={n}",
                       nbytes=(3 * B * H + H) * (n + 2) * u.element_size(),
                       how="complex spectra of u, k, their product and the inverse, each of fft_size",
                       hint="an fft_size of L + Lk - 1 (or the default 2L) is enough")
    if u.numel() == 0:
        return _empty_result(u, k)
    u_f = torch.fft.rfft(u, n=n)
    k_f = torch.fft.rfft(k, n=n)
    return torch.fft.irfft(u_f * k_f, n=n)[..., :L]


def circular_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Circular (periodic) convolution of period L: y[t] = sum_s k[s] u[(t - s) mod L].

    What an FFT of size L computes. The first Lk - 1 outputs pick up taps from the *end* of the
    sequence (wrap-around), which a causal model must never see: compare with fft_conv.
    u: (B, H, L); k: (H, Lk), 1 <= Lk <= L.
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    if u.numel() == 0:
        return _empty_result(u, k)
    return torch.fft.irfft(torch.fft.rfft(u, n=L) * torch.fft.rfft(k, n=L), n=L)


def bidirectional_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Non-causal convolution with a kernel of length 2L: L causal taps, then L anti-causal taps.

    k[:, :L]  are the taps at lags 0, 1, ..., L-1 (the past, as in fft_conv);
    k[:, L:]  are the taps at lags -1, -2, ..., -L (k[:, L + j] weighs u[t + j + 1], the future).

        y[t] = sum_{s=0}^{L-1} k[s] u[t - s]  +  sum_{j=0}^{L-1} k[L + j] u[t + j + 1]

    With FFT size 2L the anti-causal taps sit at the end of the circular kernel (negative lags
    wrap to indices 2L-1, 2L-2, ...), which is the flip below. u: (B, H, L); k: (H, 2L).
    """
    B, H, L, Lk = check_conv_inputs(u, k, max_kernel_len="2L")
    if u.numel() == 0:
        return _empty_result(u, k)
    n = 2 * L
    circ = torch.cat([k[:, :L], k[:, L:].flip(-1)], dim=-1)      # lag -(j+1) -> index 2L-1-j
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(circ, n=n), n=n)[..., :L]
