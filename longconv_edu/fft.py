"""Rungs 3-4: the DFT taken apart: Cooley-Tukey by hand, butterfly factors, the Monarch form.

The length-N discrete Fourier transform (numpy/torch convention, no scaling forward)

    X[k] = sum_{n=0}^{N-1} x[n] w_N^{n k},        w_N = exp(-2 pi i / N),

is a multiplication by the dense N x N matrix F_N[k, n] = w_N^{n k}: O(N^2). Cooley and Tukey
noticed that F_N is a product of sparse factors. This module writes that fact three ways:

Rung 3 (radix 2, N a power of two)
* ``fft_recursive``   split x into even and odd samples, transform each half, combine with the
                      twiddles w_N^k:  X[k] = E[k] + w_N^k O[k],  X[k + N/2] = E[k] - w_N^k O[k];
* ``fft_iterative``   the same computation unrolled: reorder the input by the bit-reversal
                      permutation, then log2 N *butterfly stages* (``butterfly_stage``), each
                      combining pairs of values; ``jit=True`` runs it in place, compiled by Numba;
* ``butterfly_factors``  the same stages as matrices: F_N = B_{log2 N} ... B_2 B_1 P, each B_s with
                      two non-zeros per row, P the bit-reversal permutation matrix.

Rung 4 (any factorisation N = N1 N2 or N1 N2 N3, powers of two or not)
* ``monarch_dft``     the four-step / Monarch form: reshape, small DFTs as batched *dense matmuls*,
                      pointwise twiddles, small DFTs along the other axis, a transpose. Dense
                      matmuls of small blocks are what tensor cores do best, and a row fits in fast
                      memory: this is the transform inside FlashButterfly (Fu et al. 2023, sec. 3.2).

Inverses: every function takes ``inverse=True`` and then computes x[n] = 1/N sum_k X[k] w_N^{-nk}
(numpy.fft.ifft's convention). ``inverse`` is always this bool across the library (rung 8's choice
of tied or learned inverse blocks is a separate argument, ``inverse_mode``); ``jit`` is always a
bool defaulting to False (readable torch with autograd; True compiles the same loop with Numba).
Transforms act on the LAST axis; leading axes are a batch.
Inputs may be float32/float64 (treated as real) or complex64/complex128; outputs are complex of
matching precision. Integer inputs are refused (cast them first).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._checks import check_bool, check_cost, check_int, check_no_grad, check_tensor, is_power_of_two

__all__ = ["dft_matrix", "twiddles", "twiddle_grid", "bit_reversal_permutation",
           "fft_recursive", "butterfly_stage", "fft_iterative", "butterfly_factors",
           "monarch_factors", "monarch_dft", "four_step_stages", "fft_size", "next_power_of_two",
           "COMPLEX_OF", "check_factors", "check_blocks"]

SIGNAL_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
# The complex dtype that goes with each signal dtype (the one map of the library).
COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128,
              torch.complex64: torch.complex64, torch.complex128: torch.complex128}


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    n = check_int(n, "n", min=1)
    return 1 << (n - 1).bit_length()


def fft_size(L: int) -> int:
    """The FFT size of a causal convolution of length L: the smallest power of two >= 2L.

    A length-L input and a length-L kernel give 2L - 1 output taps; an FFT of size N >= 2L - 1
    computes them without wrap-around (rung 2), and a power of two splits into butterflies
    (rung 3) or Monarch factors (rung 4). Every rung and kernel asks this one function.
    """
    return next_power_of_two(2 * check_int(L, "L", min=1))


def _complex_dtype(dtype) -> torch.dtype:
    if dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    return dtype


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    return x.to(COMPLEX_OF[x.dtype])


def _check_signal(x, name: str = "x", *, pow2: bool = False, min_ndim: int = 1) -> int:
    """Validate a signal tensor (transform along its last axis); return its length N."""
    check_tensor(x, name, dtypes=SIGNAL_DTYPES)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s) (the transform runs "
                         f"along the last axis), got a {x.ndim}-D tensor")
    N = x.shape[-1]
    if N < 1:
        raise ValueError(f"{name} must have length >= 1 along its last axis, got shape {tuple(x.shape)}")
    if pow2 and not is_power_of_two(N):
        raise ValueError(f"{name} must have a power-of-two length along its last axis for a "
                         f"radix-2 FFT, got N={N} (shape {tuple(x.shape)}); zero-pad it to "
                         f"{next_power_of_two(N)} or use monarch_dft with factors of N")
    return N


# ----------------------------------------------------------------------------- building blocks
def _check_dense(what: str, entries: int, hint: str) -> None:
    """Refuse a dense complex table too large for memory before NumPy or torch try to allocate it
    (~48 bytes an entry while it is built: int64 exponents, float64 angles, complex128 values)."""
    check_cost(what, nbytes=48 * entries, how=f"{entries:,} complex entries built in float64", hint=hint)


@functools.lru_cache(maxsize=256)
def _roots(n: int, m: int, N: int, inverse: bool, dtype: torch.dtype) -> torch.Tensor:
    """(n, m) grid of w_N^{c b} = exp(-+2 pi i (c * b mod N) / N), computed in float64."""
    prod = (np.arange(n)[:, None] * np.arange(m)[None, :]) % N      # reduce first: exact angles
    sign = 1.0 if inverse else -1.0
    w = np.exp(sign * 2j * np.pi * prod / N)
    return torch.from_numpy(w).to(dtype)


def dft_matrix(n: int, *, inverse: bool = False, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """The n x n DFT matrix F[k, j] = w_n^{j k} (inverse=True: its inverse, conj(F) / n).

    So ``F @ x`` is numpy.fft.fft(x) and ``dft_matrix(n, inverse=True) @ X`` is numpy.fft.ifft(X).
    These are the small blocks monarch_dft multiplies by (and the learned butterfly starts from).
    """
    n = check_int(n, "n", min=1)
    check_bool(inverse, "inverse")
    dtype = _complex_dtype(dtype)
    _check_dense(f"dft_matrix({n})", n * n, "keep n small: it is dense; monarch_dft(x, factors) applies it")
    F = _roots(n, n, n, inverse, torch.complex128)
    return (F / n if inverse else F.clone()).to(dtype)        # a fresh tensor, never the cached one


def twiddles(n: int, *, inverse: bool = False, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """The n/2 radix-2 twiddle factors w_n^k = exp(-2 pi i k / n), k = 0 .. n/2 - 1.

    They rotate the odd half's transform before it is added to the even half's:
    X[k] = E[k] + w_n^k O[k]. n must be a power of two (n = 1 gives an empty tensor).
    inverse=True conjugates them (exp(+2 pi i k / n)).
    """
    n = check_int(n, "n", min=1, power_of_two=True)
    check_bool(inverse, "inverse")
    dtype = _complex_dtype(dtype)
    return _roots(2, max(n // 2, 1), n, inverse, torch.complex128)[1, : n // 2].clone().to(dtype)  # row c=1


def twiddle_grid(n1: int, n2: int, *, inverse: bool = False,
                 dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """The four-step twiddles T[c, b] = w_N^{c b}, N = n1 n2, c < n1, b < n2: shape (n1, n2).

    In monarch_dft they multiply, pointwise, the n1-point DFTs of the columns before the n2-point
    DFTs along the rows. inverse=True conjugates them.
    """
    n1 = check_int(n1, "n1", min=1)
    n2 = check_int(n2, "n2", min=1)
    check_bool(inverse, "inverse")
    dtype = _complex_dtype(dtype)
    _check_dense(f"twiddle_grid({n1}, {n2})", n1 * n2, "n1 * n2 is the transform length N")
    return _roots(n1, n2, n1 * n2, inverse, torch.complex128).clone().to(dtype)


def bit_reversal_permutation(n: int) -> torch.Tensor:
    """perm[i] = i with its log2(n) bits reversed; n a power of two. Shape (n,), int64.

    Reading x[perm] puts, side by side, exactly the samples that the innermost recursion of
    fft_recursive pairs up: x[0], x[n/2], x[n/4], x[3n/4], ... It is its own inverse.
    """
    n = check_int(n, "n", min=1, power_of_two=True)
    bits = n.bit_length() - 1
    i = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((i >> b) & 1) << (bits - 1 - b)
    return torch.from_numpy(rev)


# ----------------------------------------------------------------------------- rung 3: radix 2
def fft_recursive(x: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """Radix-2 decimation-in-time FFT along the last axis, written as the recursion.

    X = FFT(x) with E = FFT(x[0::2]), O = FFT(x[1::2]), w = twiddles(N):
        X[:N/2] = E + w O,   X[N/2:] = E - w O.
    Both half-size transforms are done in ONE recursive call (stacked on a new axis), so the
    recursion is log2 N calls deep and wide instead of N calls. N must be a power of two.
    """
    N = _check_signal(x, pow2=True)
    check_bool(inverse, "inverse")
    z = _as_complex(x)
    X = _fft_recursive(z, inverse)
    return X / N if inverse else X


def _fft_recursive(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    N = x.shape[-1]
    if N == 1:
        return x                                   # the DFT of one sample is the sample
    halves = _fft_recursive(torch.stack((x[..., 0::2], x[..., 1::2]), dim=-2), inverse)
    E, O = halves[..., 0, :], halves[..., 1, :]
    wO = twiddles(N, inverse=inverse, dtype=x.dtype).to(x.device) * O
    return torch.cat((E + wO, E - wO), dim=-1)


def butterfly_stage(y: torch.Tensor, stage: int, *, inverse: bool = False) -> torch.Tensor:
    """Apply butterfly stage ``stage`` (1 .. log2 N) to a bit-reversed, partly transformed y.

    Stage s works on blocks of m = 2^s consecutive values: with a = block[:m/2], b = block[m/2:]
    and w = twiddles(m), the block becomes (a + w b, a - w b). After stages 1..s every block of
    length 2^s holds the DFT of the samples that bit reversal gathered there. Returns a new tensor
    (complex); the inverse stage uses conjugated twiddles and halves the result, so that the
    log2 N stages together divide by N.
    """
    N = _check_signal(y, "y", pow2=True)
    S = N.bit_length() - 1
    stage = check_int(stage, "stage", min=1, max=max(S, 1))
    if S == 0:
        raise ValueError(f"y must have length >= 2 to have a butterfly stage, got N={N}")
    check_bool(inverse, "inverse")
    z = _as_complex(y)
    m = 1 << stage
    blocks = z.reshape(*z.shape[:-1], N // m, 2, m // 2)
    a, b = blocks[..., 0, :], blocks[..., 1, :]
    wb = twiddles(m, inverse=inverse, dtype=z.dtype).to(z.device) * b
    out = torch.stack((a + wb, a - wb), dim=-2).reshape(z.shape)
    return out / 2 if inverse else out


def fft_iterative(x: torch.Tensor, *, inverse: bool = False, jit: bool = False) -> torch.Tensor:
    """Iterative radix-2 FFT along the last axis: bit-reversal permutation, then log2 N stages.

    jit=False: torch, one vectorised ``butterfly_stage`` per stage (autograd works).
    jit=True:  the textbook in-place loop (swap pairs by bit reversal, then three nested loops over
               stages, blocks and pairs) compiled by Numba, on a copy of x as a NumPy array;
               CPU only, no autograd. Used for timings against torch.fft.
    """
    N = _check_signal(x, pow2=True)
    check_bool(inverse, "inverse")
    check_bool(jit, "jit")
    z = _as_complex(x)
    if jit:
        if z.device.type != "cpu":
            raise ValueError(f"fft_iterative(jit=True) runs on the CPU; x is on {z.device}")
        check_no_grad("fft_iterative(jit=True)", x=x)
        a = z.detach().resolve_conj().numpy().reshape(-1, N).copy()
        w = twiddles(N, inverse=inverse, dtype=z.dtype).numpy() if N > 1 else a[0, :0]
        _fft_numba()(a, w)
        out = torch.from_numpy(a.reshape(z.shape))
        return out / N if inverse else out
    y = z[..., bit_reversal_permutation(N).to(z.device)]
    for s in range(1, N.bit_length()):
        y = butterfly_stage(y, s, inverse=inverse)
    return y


@functools.cache
def _fft_numba():
    """Compile (once, lazily) the in-place iterative FFT over the rows of a 2-D complex array."""
    import numba

    @numba.njit(cache=False)
    def fft_rows(a, w):                      # a: (rows, N) complex, w: the N/2 twiddles of size N
        rows, N = a.shape
        for r in range(rows):
            j = 0                            # bit-reversal swaps, counting j in reversed binary
            for i in range(1, N):
                bit = N >> 1
                while j & bit:
                    j ^= bit
                    bit >>= 1
                j |= bit
                if i < j:
                    t = a[r, i]
                    a[r, i] = a[r, j]
                    a[r, j] = t
            m = 2
            while m <= N:                    # stage with blocks of m: twiddle w_m^k = w_N^{k N/m}
                half = m // 2
                step = N // m
                for start in range(0, N, m):
                    for k in range(half):
                        t = w[k * step] * a[r, start + half + k]
                        u = a[r, start + k]
                        a[r, start + k] = u + t
                        a[r, start + half + k] = u - t
                m *= 2
    return fft_rows


def butterfly_factors(n: int, *, inverse: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The sparse factors of the n-point DFT matrix: (factors [B_1, ..., B_S], P), S = log2 n.

    dft_matrix(n) == B_S @ ... @ B_2 @ B_1 @ P exactly (to rounding), where
    * P is the bit-reversal permutation matrix, (P x)[i] = x[bit_reversal_permutation(n)[i]];
    * B_s (stage s, blocks of m = 2^s) is block-diagonal with n/m copies of [[I, D], [I, -D]],
      I the m/2 identity and D = diag(twiddles(m)): two non-zeros per row.
    inverse=True gives the factors of the inverse DFT (conjugate twiddles, each B_s halved).
    Dense complex128 matrices of n x n, for looking at and multiplying out (keep n small).
    """
    n = check_int(n, "n", min=1, power_of_two=True)
    check_bool(inverse, "inverse")
    _check_dense(f"butterfly_factors({n})", n * n * n.bit_length(),
                 "keep n small: the factors are dense n x n matrices, one per stage")
    P = torch.zeros(n, n, dtype=torch.complex128)
    P[torch.arange(n), bit_reversal_permutation(n)] = 1
    factors = []
    for s in range(1, n.bit_length()):
        m = 1 << s
        I = torch.eye(m // 2, dtype=torch.complex128)
        D = torch.diag(twiddles(m, inverse=inverse))
        block = torch.cat((torch.cat((I, D), 1), torch.cat((I, -D), 1)), 0)
        Bs = torch.block_diag(*([block] * (n // m)))
        factors.append(Bs / 2 if inverse else Bs)
    return factors, P


# ----------------------------------------------------------------------------- rung 4: Monarch
def monarch_factors(N: int, max_factor: int = 64) -> tuple[int, ...]:
    """Split a power of two N into 2 or 3 power-of-two factors for monarch_dft.

    As few factors as possible (at least 2, at most 3), each <= max_factor when N <= max_factor**3,
    as equal as possible, largest first: 4096 -> (64, 64), 8192 -> (32, 16, 16) with max_factor
    32, 2 -> (2, 1), 1 -> (1, 1). Beyond max_factor**3 (2^18 with the default) the three factors
    grow past max_factor, as equal as possible: 2^19 -> (128, 64, 64). Larger dense blocks cost
    more flops per value (N * n_i per stage) but nothing else changes.
    """
    N = check_int(N, "N", min=1, power_of_two=True)
    max_factor = check_int(max_factor, "max_factor", min=2, power_of_two=True)
    e, m = N.bit_length() - 1, max_factor.bit_length() - 1
    k = min(3, max(2, -(-e // m)))                       # number of factors
    exps = [e // k + (1 if i < e % k else 0) for i in range(k)]
    return tuple(1 << x for x in exps)


def check_factors(factors, N: int) -> tuple[int, ...]:
    """Validate a Monarch split: 2 or 3 ints multiplying to the transform length N; return it."""
    if isinstance(factors, (int, np.integer)) or not isinstance(factors, (tuple, list)):
        raise TypeError(f"factors must be a tuple of 2 or 3 ints such as (N1, N2), got {factors!r}")
    if len(factors) not in (2, 3):
        raise ValueError(f"factors must hold 2 or 3 sizes, (N1, N2) or (N1, N2, N3), got {tuple(factors)}")
    fs = tuple(check_int(f, f"factors[{i}]", min=1) for i, f in enumerate(factors))
    if math.prod(fs) != N:
        raise ValueError(f"factors must multiply to the transform length N = {N} (x.shape[-1]), "
                         f"got {fs} with product {math.prod(fs)}")
    return fs


def check_blocks(blocks, name: str = "blocks", *, dtype: torch.dtype, factors=None, H: int | None = None,
                 device=None) -> tuple[int, ...]:
    """Validate the small matrices of a Monarch DFT, one per factor; return their sizes n_i.

    Each block is a square complex tensor, (n, n) shared by all channels or (H, n, n) one per
    channel. ``dtype``: the signal's dtype (float32/complex64 -> complex64 blocks, float64/complex128
    -> complex128). ``factors``: the sizes the blocks must have (default: 2 or 3 blocks of any
    size). ``H``: the channel count per-channel blocks must have (None: they must agree among
    themselves). ``device``: where they must live. Used by monarch_dft and learned.
    """
    want = COMPLEX_OF[dtype]
    count = (f"one block per factor, {len(factors)} for factors {tuple(factors)}" if factors is not None
             else "2 or 3 blocks (one per factor)")
    if not isinstance(blocks, (tuple, list)):
        raise TypeError(f"{name} must be a list of complex tensors, {count}, got "
                        f"{type(blocks).__name__}")
    if (len(blocks) != len(factors)) if factors is not None else len(blocks) not in (2, 3):
        raise ValueError(f"{name} must hold {count}, got {len(blocks)}")
    sizes, G = [], H
    for i, b in enumerate(blocks):
        bname = f"{name}[{i}]"
        check_tensor(b, bname, ndim=(2, 3), dtypes=(want,),
                     shape_doc="2-D (n, n) shared or 3-D (H, n, n) per channel")
        if b.shape[-1] != b.shape[-2]:
            raise ValueError(f"{bname} must be square (n, n) in its last two dimensions, got shape "
                             f"{tuple(b.shape)}")
        n = int(b.shape[-1])
        if factors is not None and n != factors[i]:
            raise ValueError(f"{bname} must be ({factors[i]}, {factors[i]}) or (H, {factors[i]}, "
                             f"{factors[i]}) for factor {factors[i]}, got shape {tuple(b.shape)}")
        if b.ndim == 3:
            if G is not None and b.shape[0] != G:
                raise ValueError(f"{bname} has {b.shape[0]} channel blocks (shape {tuple(b.shape)}) "
                                 f"but {'the input has' if H is not None else 'an earlier block has'} "
                                 f"H = {G} channels")
            G = b.shape[0]
        if device is not None and b.device != device:
            raise ValueError(f"{bname} is on device {b.device} but the input is on {device}")
        sizes.append(n)
    return tuple(sizes)


def monarch_dft(x: torch.Tensor, factors, *, inverse: bool = False, blocks=None) -> torch.Tensor:
    """DFT along the last axis in the Monarch (four-step) matmul form, N = N1 N2 or N1 N2 N3.

    Index conventions for factors (N1, M), M = N2 (or N2 N3, done by the same steps recursively):
      input  n = M a + b   (a < N1, b < M): x reshaped row-major to (..., N1, M), x2[a, b] = x[M a + b]
      output k = c + N1 d  (c < N1, d < M)
    and  X[c + N1 d] = sum_b w_M^{b d} * [ w_N^{b c} * ( sum_a w_N1^{a c} x2[a, b] ) ]:
      1. Y = A1 @ x2              N1-point DFTs down the columns (one batched matmul)
      2. Y = Y * T                twiddles T[c, b] = w_N^{c b} (twiddle_grid(N1, M))
      3. Z[c, :] = DFT_M(Y[c, :]) M-point DFTs along the rows (a matmul, or recursively Monarch)
      4. X = Z^T flattened        output k = c + N1 d sits at Z[c, d]: the transpose is the
                                  permutation that puts the outputs in natural order.
    blocks: optional sequence of one complex matrix per factor replacing the exact DFT matrices
    (A_i = dft_matrix(n_i) by default; with inverse=True, dft_matrix(n_i, inverse=True)). Each
    is (n_i, n_i), shared by all rows, or (H, n_i, n_i), one per channel, with x then shaped
    (..., H, N). Their dtype must be x's complex dtype (complex64 for float32/complex64 input,
    complex128 for float64/complex128). A block acts as A[out, in]: step 1 computes
    Y[c, b] = sum_a A1[c, a] x2[a, b]. Twiddles and the final permutation stay fixed.
    inverse=True computes numpy.fft.ifft (conjugate twiddles; default blocks include the 1/n_i).
    Differentiable with autograd (w.r.t. x and blocks).
    """
    N = _check_signal(x)
    fs = check_factors(factors, N)
    check_bool(inverse, "inverse")
    z = _as_complex(x)
    cdtype = z.dtype
    if blocks is None:
        mats = [dft_matrix(n, inverse=inverse, dtype=cdtype).to(z.device).unsqueeze(0) for n in fs]
        G = 1
    else:
        H = x.shape[-2] if x.ndim >= 2 else None
        check_blocks(blocks, "blocks", dtype=x.dtype, factors=fs, H=H, device=x.device)
        if H is None and any(A.ndim == 3 for A in blocks):
            raise ValueError(f"blocks are per channel (H, n, n), so x must be (..., H, N) with H on "
                             f"its second-to-last axis, got x of shape {tuple(x.shape)}")
        G = max((A.shape[0] for A in blocks if A.ndim == 3), default=1)
        mats = [A if A.ndim == 3 else A.unsqueeze(0) for A in blocks]
    lead = z.shape[:-1]
    zz = z.reshape(-1, G, 1, N)                  # (R, G, P=1, N): G channels, P done output rows
    out = _monarch(zz, fs, mats, inverse)
    return out.reshape(*lead, N)


def _monarch(z: torch.Tensor, fs: tuple[int, ...], mats: list[torch.Tensor], inverse: bool):
    """z: (R, G, P, M) with M = prod(fs); mats[i]: (G, n_i, n_i). DFT of the last axis."""
    R, G, P, M = z.shape
    n1 = fs[0]
    if len(fs) == 1:                                           # base case: one dense matmul
        return z @ mats[0].unsqueeze(0).transpose(-1, -2)   # Z[p, d] = sum_b A[d, b] z[p, b]
    A = mats[0].unsqueeze(0).unsqueeze(2)                     # (1, G or 1, 1, n1, n1)
    rest = M // n1
    z2 = z.reshape(R, G, P, n1, rest)                           # x2[a, b] = x[rest * a + b]
    Y = A @ z2                                                  # 1. columns: Y[c, b] = sum_a A[c, a] x2[a, b]
    Y = Y * _roots(n1, rest, M, inverse, z.dtype).to(z.device)  # 2. twiddles w_M^{c b}
    Z = _monarch(Y.reshape(R, G, P * n1, rest), fs[1:], mats[1:], inverse)   # 3. rows
    return Z.reshape(R, G, P, n1, rest).transpose(-1, -2).reshape(R, G, P, M)  # 4. k = c + n1 d


def four_step_stages(x: torch.Tensor, n1: int, n2: int) -> list[tuple[str, torch.Tensor]]:
    """The intermediate arrays of monarch_dft(x, (n1, n2)) for ONE 1-D signal, for pictures.

    Returns [(name, (rows, cols) complex tensor)] for: the reshape x2[a, b] = x[n2 a + b];
    the n1-point DFTs down the columns (dft_matrix(n1) @ x2); the twiddled array (* twiddle_grid);
    the n2-point DFTs along the rows (@ dft_matrix(n2).T); and the transpose, whose row-major
    reading is X = fft(x). Spelled out step by step; monarch_dft computes the same (a test checks).
    """
    N = _check_signal(x)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (one signal) to draw its four steps, got shape {tuple(x.shape)}")
    check_factors((n1, n2), N)
    z = _as_complex(x)
    x2 = z.reshape(n1, n2)
    Y = dft_matrix(n1, dtype=z.dtype) @ x2
    T = Y * twiddle_grid(n1, n2, dtype=z.dtype)
    Z = T @ dft_matrix(n2, dtype=z.dtype).T
    return [("reshape (n1, n2)", x2), ("n1-point DFTs (matmul)", Y), ("x twiddles", T),
            ("n2-point DFTs (matmul)", Z), ("transpose = X", Z.T)]
