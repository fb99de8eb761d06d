"""Rung 4: FlashButterfly in PyTorch: the causal long convolution as a few dense matmuls.

``fft_conv`` (rung 2) calls torch.fft: an FFT is O(N log N) flops but, on a GPU, each of its
passes (and each of rfft, multiply, irfft) reads and writes the whole tensor in slow memory.
FlashButterfly (Fu et al. 2023, sec. 3.2) writes the same convolution as

    y = first L of  IDFT_N( DFT_N(pad(u)) * K ),     K = DFT_N(pad(k))  (the kernel spectrum)

with every DFT in the Monarch form of ``fft.monarch_dft``: small dense DFT matrices applied as
batched matmuls, pointwise twiddles, a transpose. Matmuls of 16x16..64x64 blocks run on tensor
cores, and one row of length N fits in fast memory, so a fused kernel reads u once and writes y
once (see ``io_model``). This module is that algorithm in PyTorch (no fusion: it shows the maths
and is the oracle for the rung-5 kernels):

* ``butterfly_kernel_spectrum(k, L)``  K = DFT_N(k zero-padded to N), (H, N) complex: compute it
                                       once per layer and pass it as ``k_f=`` to every call;
* ``butterfly_conv(u, k)``             the convolution in the matmul form (backend "butterfly");
* ``three_pass_conv(u, k)``            the paper's scheme for rows too long for fast memory: an
                                       outer butterfly pass over the whole row, ``outer``
                                       independent inner FFT convolutions of length N / outer, and
                                       an outer pass back.

One formula, four transforms: ``conv.fft_conv`` (torch.fft, half spectrum), ``radix2_conv`` below
(rung 3's FFT), ``butterfly_conv`` (the Monarch form) and ``learned.learned_butterfly_conv``
(trainable Monarch blocks) each compute pad -> transform u and k -> multiply -> inverse -> first
L. They stay four short functions rather than instances of one ``spectral_conv(u, k, transform)``:
each lesson prints its own function's source, and what each validates and precomputes differs
(an rfft's half spectrum, a cached ``k_f``, per-channel blocks and their tied inverse).

FFT size: N = the smallest power of two >= 2L by default (2L when L is a power of two, as in
fft_conv); with ``factors=`` given, N = their product (any integers, e.g. (3, 5)), which must be
>= L + Lk - 1 so that nothing wraps around. Kernel spectrum layout (``butterfly_kernel_spectrum``,
the one rungs-1-4 layout; the rung-5 kernels store theirs in the order their stages produce and
say so: ``kernels.cpu.kernel_spectrum``, ``kernels.cuda.half_spectrum``): K[h, j] is the j-th
DFT coefficient of the zero-padded k[h] in NATURAL order (j = 0 .. N-1, all N of them, not the
N/2 + 1 of an rfft), in u's complex dtype (complex64 for float32, complex128 for float64).
"""
from __future__ import annotations

import math

import torch

from ._checks import check_bool, check_conv_inputs, check_int, check_kernel_length, check_no_grad, check_tensor
from .fft import (
    COMPLEX_OF,
    check_factors,
    dft_matrix,
    fft_iterative,
    fft_size,
    monarch_dft,
    monarch_factors,
    twiddle_grid,
)

__all__ = ["butterfly_kernel_spectrum", "butterfly_conv", "three_pass_conv", "radix2_conv",
           "resolve_factors"]


def resolve_factors(N_from, factors, need: int, what: str) -> tuple[int, tuple[int, ...]]:
    """FFT size and Monarch factors: from ``factors`` if given (their product must be >= need,
    ``what`` says why in the error), else (N_from, monarch_factors(N_from))."""
    if factors is None:
        return N_from, monarch_factors(N_from)
    if not isinstance(factors, (tuple, list)):
        raise TypeError(f"factors must be a tuple of 2 or 3 ints such as (N1, N2), got {factors!r}")
    fs = tuple(check_int(f, f"factors[{i}]", min=1) for i, f in enumerate(factors))
    N = math.prod(fs)
    fs = check_factors(fs, N)                                 # 2 or 3 of them
    if N < need:
        raise ValueError(f"factors must multiply to an FFT size N >= {need} ({what}) so the causal "
                         f"convolution does not wrap around, got {fs} with product {N}")
    return N, fs


def butterfly_kernel_spectrum(k: torch.Tensor, L: int, *, factors=None) -> torch.Tensor:
    """The kernel spectrum K = DFT_N(k zero-padded to N) in the Monarch form: (H, N) complex.

    k: (H, Lk) float32/float64 with 1 <= Lk <= L; L: the input length it will be used with.
    N = prod(factors) if given (must be >= L + Lk - 1), else the smallest power of two >= 2L.
    Pass the result as ``butterfly_conv(u, None, k_f=K)`` (or with k) to skip this transform.
    """
    check_tensor(k, "k", ndim=2, shape_doc="2-D (H, Lk)")
    L = check_int(L, "L", min=1)
    H, Lk = k.shape
    check_kernel_length(Lk, L, "k", k.shape)
    N, fs = resolve_factors(fft_size(L), factors, L + Lk - 1, f"L + Lk - 1 with L={L}, Lk={Lk}")
    return monarch_dft(torch.nn.functional.pad(k, (0, N - Lk)), fs)


def _check_spectrum(k_f, u: torch.Tensor, need: int) -> int:
    cdtype = COMPLEX_OF[u.dtype]
    if isinstance(k_f, torch.Tensor) and k_f.dtype != cdtype:
        raise TypeError(f"k_f must have dtype {cdtype} to go with u of dtype {u.dtype}, got "
                        f"{k_f.dtype}; build it with butterfly_kernel_spectrum(k, L) from k of u's dtype")
    check_tensor(k_f, "k_f", ndim=2, dtypes=(cdtype,), shape_doc="2-D (H, N)")
    H, N = k_f.shape
    if H != u.shape[1]:
        raise ValueError(f"k_f has H={H} channels (shape {tuple(k_f.shape)}) but u has "
                         f"H={u.shape[1]} (shape {tuple(u.shape)})")
    if k_f.device != u.device:
        raise ValueError(f"k_f is on device {k_f.device} but u is on {u.device}")
    if N < need:
        raise ValueError(f"k_f has FFT size N={N} but must have N >= {need} for inputs of length "
                         f"L={u.shape[-1]}; build it with butterfly_kernel_spectrum(k, L)")
    return N


def _conv_setup(u, k, k_f, factors):
    """Validate (u, k or k_f, factors); return (L, N, fs, K)."""
    if k is None and k_f is None:
        raise ValueError("k must be a (H, Lk) kernel tensor, got None (pass k, or k_f=its spectrum)")
    if k is not None:
        B, H, L, Lk = check_conv_inputs(u, k)
        need = L + Lk - 1
    else:
        check_tensor(u, "u", ndim=3, shape_doc="3-D (B, H, L)")
        L = u.shape[-1]
        if L < 1:
            raise ValueError(f"u must have sequence length L >= 1, got shape {tuple(u.shape)}")
        need = 2 * L - 1
    if k_f is not None:
        N = _check_spectrum(k_f, u, need)
        if factors is None:
            if N & (N - 1):
                raise ValueError(f"factors must be given (to butterfly_conv) for a k_f of non-power-of-two "
                                 f"size N={N}; three_pass_conv needs a power of two")
            fs = monarch_factors(N)
        else:
            fs = check_factors(factors, N)
        return L, N, fs, k_f
    N, fs = resolve_factors(fft_size(L), factors, need, f"L + Lk - 1 with L={L}, Lk={k.shape[-1]}")
    return L, N, fs, monarch_dft(torch.nn.functional.pad(k, (0, N - k.shape[-1])), fs)


def butterfly_conv(u: torch.Tensor, k: torch.Tensor | None, *, factors=None,
                   k_f: torch.Tensor | None = None) -> torch.Tensor:
    """Causal long convolution in the FlashButterfly matmul form.

    u: (B, H, L) float32/float64; k: (H, Lk), 1 <= Lk <= L (or None when k_f is given).
    factors: the Monarch split (N1, N2) or (N1, N2, N3) of the FFT size N (default
    monarch_factors of the smallest power of two >= 2L). k_f: a precomputed kernel spectrum
    from butterfly_kernel_spectrum (then k, if also given, is only used to check shapes).
    Returns (B, H, L) in u's dtype. Autograd flows to u, k and k_f.

        U = monarch_dft(pad(u, N))        forward transform: matmuls + twiddles + transpose
        Y = U * K                         pointwise product with the kernel spectrum
        y = Re monarch_dft(Y, inverse)[..., :L]
    """
    L, N, fs, K = _conv_setup(u, k, k_f, factors)
    U = monarch_dft(torch.nn.functional.pad(u, (0, N - L)), fs)
    return monarch_dft(U * K, fs, inverse=True).real[..., :L]


def three_pass_conv(u: torch.Tensor, k: torch.Tensor | None, *, outer: int | None = None,
                    k_f: torch.Tensor | None = None) -> torch.Tensor:
    """The causal convolution by the paper's three-pass scheme, N = outer * M.

    With n = M a + b (input) and j = c + outer * d (frequency), a, c < outer, b, d < M:
      pass 1 (outer butterfly over the whole row): Y[c, b] = w_N^{c b} sum_a w_outer^{a c} x[M a + b]
      pass 2 (outer independent inner convolutions, each only M long): for each c,
             Y[c, :] <- IDFT_M( DFT_M(Y[c, :]) * K[c + outer * d] )   (a circular convolution)
      pass 3 (outer pass back): x'[M a + b] = 1/outer sum_c w_outer^{-a c} w_N^{-c b} Y[c, b]
    and y = Re x'[:L]. Each pass touches a row once, so a kernel doing pass 2 needs only M values
    of fast memory per inner convolution: that is what makes very long L possible.
    outer: a divisor of N (default: the first of monarch_factors(N)); k_f as in butterfly_conv
    (N must be a power of two here). u: (B, H, L), k: (H, Lk); returns (B, H, L).
    """
    L, N, _, K = _conv_setup(u, k, k_f, None)
    n1 = monarch_factors(N)[0] if outer is None else check_int(outer, "outer", min=1)
    if N % n1:
        raise ValueError(f"outer must divide the FFT size N = {N}, got {n1}")
    M = N // n1
    cd = K.dtype
    x = torch.nn.functional.pad(u, (0, N - L)).to(cd).reshape(*u.shape[:2], n1, M)
    T = twiddle_grid(n1, M, dtype=cd).to(u.device)
    Y = (dft_matrix(n1, dtype=cd).to(u.device) @ x) * T                     # pass 1
    K2 = K.reshape(K.shape[0], M, n1).transpose(-1, -2).unsqueeze(0)        # K2[c, d] = K[c + n1 d]
    inner = monarch_factors(M)
    Y = monarch_dft(monarch_dft(Y, inner) * K2, inner, inverse=True)        # pass 2
    x = dft_matrix(n1, inverse=True, dtype=cd).to(u.device) @ (Y * T.conj())  # pass 3
    return x.reshape(*u.shape[:2], N).real[..., :L]


def radix2_conv(u: torch.Tensor, k: torch.Tensor, *, jit: bool = False) -> torch.Tensor:
    """The same causal convolution with rung 3's hand-written radix-2 FFT (fft_iterative).

    N = the smallest power of two >= 2L; y = Re IFFT(FFT(pad u) * FFT(pad k))[:L]. jit=False (the
    default of every ``jit`` in rungs 1-4: readable torch, autograd works) runs the vectorised
    stages; jit=True the compiled Numba loop (CPU, no autograd): the "Numba FFT" of the timings.
    u: (B, H, L), k: (H, Lk) with 1 <= Lk <= L; returns (B, H, L).
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    check_bool(jit, "jit")
    if jit:
        check_no_grad("radix2_conv(jit=True)", u=u, k=k)
    N = fft_size(L)
    pad = torch.nn.functional.pad
    U = fft_iterative(pad(u, (0, N - L)), jit=jit)
    K = fft_iterative(pad(k, (0, N - Lk)), jit=jit)
    return fft_iterative(U * K, inverse=True, jit=jit).real[..., :L]
