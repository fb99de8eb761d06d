"""Rung 5a aside: the DFT blocks on tensor cores, emulated in NumPy to measure their accuracy.

A tensor core multiplies small matrices whose *inputs* are rounded to a short format (fp16,
bf16 or tf32) and adds the products in fp32. FlashButterfly's DFT (rung 4, ``fft.monarch_dft``)
is made of small dense blocks, so its matmuls could run there: a complex p x p block F = Fr + i Fi
applied to columns X = Xr + i Xi is one real (2p x 2p) matmul,

    [Yr]   [Fr  -Fi] [Xr]
    [Yi] = [Fi   Fr] [Xi],

with F and X rounded to the format and the sums kept in fp32. What that rounding costs is a
question of arithmetic, answered here without a GPU (course page 5, "Tensor cores", says what
compiles for the GPU and what does not):

* ``round_to_format``   float32 values rounded to nearest (ties to even) in fp16 (10 stored
                        fraction bits, max 65504), bf16 (7 bits, fp32's range) or tf32 (10 bits,
                        fp32's range), or truncated to tf32 (``"tf32-trunc"``); ``"fp32"``
                        leaves them as they are (the CUDA-core kernel).
* ``emulated_dft``      the DFT of the last axis (numpy.fft's convention) in the Monarch form with
                        blocks of ``block`` points: every block matmul takes rounded inputs and
                        accumulates in fp32 (NumPy's float32 matmul: the products of two rounded
                        values are exact in fp32, only the sums round); the twiddles between
                        blocks are fp32 multiplies (CUDA cores). Blocks are scaled by 1/sqrt(p)
                        so that values keep their size from stage to stage (fp16 overflows above
                        65504; an unscaled 64K-point DFT of a row of ones is 65536 at k = 0).
* ``emulated_fft_conv`` the causal convolution y = irfft(rfft(u, N) * rfft(k, N))[:L], N =
                        fft_size(L), with both transforms emulated and the kernel's spectrum
                        computed once in float64 and stored in fp32 (the cached spectrum).
* ``accuracy_table``    relative errors against a float64 FFT convolution, per format and L;
* ``block_step_errors`` the error of one DFT block alone.

What the emulation is not: a model of the tensor cores' own adders. They do not round their
partial sums as IEEE 754 does (Fasi et al. 2021, "Numerical behavior of NVIDIA tensor cores",
PeerJ Comput. Sci. 7:e330); the emulation sums in IEEE fp32 in NumPy's order. With inputs
rounded to 2^-11 (fp16, tf32) or 2^-8 (bf16) and sums rounded to about 2^-24, the input rounding
is what the numbers measure. It also transforms the zero-padded real input as a full complex
N-point signal (the CUDA kernel's real-input trick, an N/2-point transform, is not emulated).

``python -m longconv_edu.tensorcore`` prints the table (``--json PATH`` writes it).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_choice, check_conv_inputs, check_cost, check_float, check_int, check_tensor, is_power_of_two
from .fft import fft_size

__all__ = ["FORMATS", "round_to_format", "emulated_dft", "emulated_fft_conv", "accuracy_table", "block_step_errors"]

#: format -> (stored fraction bits, unit roundoff, largest finite value). Round to nearest (unit
#: roundoff 2^-(bits+1)) except "tf32-trunc": fp32 words whose 13 low fraction bits are dropped
#: (round toward zero, unit roundoff 2^-10), what a TF32 matmul computes if its operands are
#: fp32 words that nothing rounded first and the hardware ignores the low bits.
FORMATS = {
    "fp16": (10, 2.0 ** -11, 65504.0),
    "bf16": (7, 2.0 ** -8, float(np.finfo(np.float32).max)),
    "tf32": (10, 2.0 ** -11, float(np.finfo(np.float32).max)),
    "tf32-trunc": (10, 2.0 ** -10, float(np.finfo(np.float32).max)),
    "fp32": (23, 2.0 ** -24, float(np.finfo(np.float32).max)),
}
SIGNAL_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
MAX_BLOCK = 64


def _check_fmt(fmt) -> str:
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a string, one of {', '.join(map(repr, FORMATS))}; got {fmt!r}")
    return check_choice(fmt, "fmt", FORMATS)


def _check_block(block) -> int:
    return check_int(block, "block", min=2, max=MAX_BLOCK, power_of_two=True)


# ----------------------------------------------------------------------------- rounding
def _round(x: np.ndarray, fmt: str) -> np.ndarray:
    """float32 array -> float32 array of values representable in fmt (round to nearest even)."""
    if fmt == "fp32":
        return x
    if fmt == "fp16":
        with np.errstate(over="ignore"):            # beyond 65504: inf, as the hardware gives
            return x.astype(np.float16).astype(np.float32)
    drop = 23 - FORMATS[fmt][0]                     # low fraction bits that the format lacks
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    if fmt == "tf32-trunc":
        return (b & np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)).view(np.float32)
    half = np.uint32((1 << (drop - 1)) - 1)
    lsb = (b >> np.uint32(drop)) & np.uint32(1)     # ties go to the even neighbour
    r = ((b + half + lsb) & np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)).view(np.float32)
    return np.where(np.isfinite(x), r, x)           # inf and NaN pass unchanged


def round_to_format(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """``x`` (float32) rounded to nearest, ties to even, in ``fmt`` ("fp16", "bf16", "tf32" or
    "fp32"; "tf32-trunc" drops the 13 low fraction bits instead), returned as float32. fp16
    values beyond 65504 become +-inf (below 2^-14 they are subnormal, with fewer bits); bf16 and
    tf32 keep fp32's range (8 exponent bits); inf and NaN pass unchanged."""
    check_tensor(x, "x", dtypes=(torch.float32,))
    fmt = _check_fmt(fmt)
    return torch.from_numpy(_round(x.detach().cpu().numpy(), fmt).copy()).reshape(x.shape)


# ----------------------------------------------------------------------------- the emulated transform
def _factors(N: int, block: int) -> tuple[int, ...]:
    """N (a power of two) as blocks of ``block`` points, the remainder last: 2048, 16 -> (16, 16, 8)."""
    e, b = N.bit_length() - 1, block.bit_length() - 1
    fs = [block] * (e // b) + ([1 << (e % b)] if e % b else [])
    return tuple(fs) or (1,)


def _block(n: int, fmt: str, inverse: bool) -> np.ndarray:
    """The real (2n x 2n) form of F_n / sqrt(n) (conjugated when inverse), rounded to fmt."""
    j = np.arange(n)
    F = np.exp((1.0 if inverse else -1.0) * 2j * np.pi * np.outer(j, j) / n) / math.sqrt(n)
    Fr, Fi = F.real.astype(np.float32), F.imag.astype(np.float32)
    return _round(np.block([[Fr, -Fi], [Fi, Fr]]).astype(np.float32), fmt)


def _apply(Bk: np.ndarray, re: np.ndarray, im: np.ndarray, axis: int, fmt: str):
    """Apply the complex block (real form Bk) along ``axis`` of (re, im): one fp32 matmul whose
    inputs are rounded to fmt."""
    n = Bk.shape[0] // 2
    xr, xi = np.moveaxis(re, axis, 0), np.moveaxis(im, axis, 0)
    shape = xr.shape
    X = np.concatenate([_round(xr.reshape(n, -1), fmt), _round(xi.reshape(n, -1), fmt)])
    Y = np.matmul(Bk, X)                            # float32 x float32: fp32 sums
    yr = np.moveaxis(Y[:n].reshape(shape), 0, axis)
    yi = np.moveaxis(Y[n:].reshape(shape), 0, axis)
    return yr, yi


def _twiddles(n1: int, m: int, M: int, inverse: bool):
    prod = (np.arange(n1)[:, None] * np.arange(m)[None, :]) % M     # exact angles, float64
    w = np.exp((1.0 if inverse else -1.0) * 2j * np.pi * prod / M)
    return w.real.astype(np.float32), w.imag.astype(np.float32)


def _monarch(re, im, fs, fmt, inverse):
    """(R, P, M) float32 pairs -> their unitary DFT along the last axis (natural order)."""
    R, P, M = re.shape
    n1 = fs[0]
    Bk = _block(n1, fmt, inverse)
    if len(fs) == 1:
        return _apply(Bk, re, im, 2, fmt)
    rest = M // n1
    yr, yi = _apply(Bk, re.reshape(R, P, n1, rest), im.reshape(R, P, n1, rest), 2, fmt)
    tr, ti = _twiddles(n1, rest, M, inverse)        # on CUDA cores: fp32 complex multiply
    yr, yi = yr * tr - yi * ti, yr * ti + yi * tr
    zr, zi = _monarch(yr.reshape(R, P * n1, rest), yi.reshape(R, P * n1, rest), fs[1:], fmt, inverse)
    def back(z):
        return np.ascontiguousarray(z.reshape(R, P, n1, rest).transpose(0, 1, 3, 2)).reshape(R, P, M)
    return back(zr), back(zi)


def _unitary_dft(re: np.ndarray, im: np.ndarray, fmt: str, block: int, inverse: bool):
    """(R, N) float32 pairs -> the unitary DFT F x / sqrt(N) (inverse: F^H x / sqrt(N))."""
    R, N = re.shape
    zr, zi = _monarch(re.reshape(R, 1, N), im.reshape(R, 1, N), _factors(N, block), fmt, inverse)
    return zr.reshape(R, N), zi.reshape(R, N)


def emulated_dft(x: torch.Tensor, *, fmt: str = "fp16", block: int = 16, inverse: bool = False) -> torch.Tensor:
    """The DFT of the last axis of ``x`` (numpy.fft.fft's convention; ``inverse=True``: ifft) as
    a tensor-core kernel would compute it: Monarch blocks of ``block`` points (a power of two,
    2..64; the last block takes the remainder), block matmuls with inputs rounded to ``fmt`` and
    fp32 sums, fp32 twiddles. The length must be a power of two. Returns complex64.

    The blocks are unitary (F_p / sqrt(p)); the result is scaled by sqrt(N) (forward) or
    1/sqrt(N) (inverse) at the end, in fp32.
    """
    check_tensor(x, "x", dtypes=SIGNAL_DTYPES)
    if x.ndim < 1:
        raise ValueError(f"x must have at least 1 dimension (the transform runs along the last axis), "
                         f"got a {x.ndim}-D tensor")
    N = x.shape[-1]
    if not is_power_of_two(N):
        raise ValueError(f"x must have a power-of-two length along its last axis, got N={N} "
                         f"(shape {tuple(x.shape)}); zero-pad it to {1 << max(N - 1, 0).bit_length()}")
    fmt = _check_fmt(fmt)
    block = _check_block(block)
    if not isinstance(inverse, (bool, np.bool_)):
        raise TypeError(f"inverse must be True or False, got {type(inverse).__name__} {inverse!r}")
    check_cost("emulated_dft", nbytes=48.0 * x.numel(), how="about 12 float32 copies of the signal")
    z = x.detach().cpu().to(torch.complex128).reshape(-1, N).numpy()
    with np.errstate(over="ignore", invalid="ignore"):          # fp16 overflow: inf, then NaN
        zr, zi = _unitary_dft(z.real.astype(np.float32), z.imag.astype(np.float32), fmt, block, bool(inverse))
        s = np.float32(1 / math.sqrt(N) if inverse else math.sqrt(N))
        out = (zr * s) + 1j * (zi * s)
    return torch.from_numpy(out.astype(np.complex64)).reshape(x.shape)


def emulated_fft_conv(u: torch.Tensor, k: torch.Tensor, *, fmt: str = "fp16", block: int = 16) -> torch.Tensor:
    """Causal convolution of ``u`` (B, H, L) with ``k`` (H, Lk), Lk <= L, float32 or float64 (the
    same for both), by an FFT of size N = fft_size(L) whose DFT blocks run as a tensor core would
    (``emulated_dft``: inputs rounded to ``fmt``, fp32 sums). The kernel's spectrum is computed in
    float64 and stored in fp32; the pointwise product is fp32. Returns float32 (B, H, L).

    Both transforms are unitary (y = U^H((U u) * K) with U = F / sqrt(N) and K = F k), so the
    values stay about the size of u's; fp16 still overflows (inf) where they pass 65504.
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    fmt = _check_fmt(fmt)
    block = _check_block(block)
    N = fft_size(L)
    check_cost("emulated_fft_conv", nbytes=64.0 * B * H * N, how="about 16 float32 copies of the padded input")
    u32 = np.zeros((B * H, N), dtype=np.float32)
    u32[:, :L] = u.detach().cpu().reshape(B * H, L).to(torch.float32).numpy()
    Kf = np.fft.fft(k.detach().cpu().to(torch.float64).numpy(), n=N, axis=-1).astype(np.complex64)
    Kr = np.tile(Kf.real, (B, 1)); Ki = np.tile(Kf.imag, (B, 1))       # row b*H + h uses k[h]
    with np.errstate(over="ignore", invalid="ignore"):          # fp16 overflow: inf, then NaN
        zr, zi = _unitary_dft(u32, np.zeros_like(u32), fmt, block, False)
        pr, pi = zr * Kr - zi * Ki, zr * Ki + zi * Kr                    # fp32 pointwise product
        yr, _ = _unitary_dft(pr, pi, fmt, block, True)
    return torch.from_numpy(np.ascontiguousarray(yr[:, :L])).reshape(B, H, L)


# ----------------------------------------------------------------------------- the table
def accuracy_table(Ls=(1024, 2048, 4096, 8192, 16384, 32768, 65536), *,
                   fmts=("fp16", "bf16", "tf32", "tf32-trunc", "fp32"), B: int = 2, H: int = 2, block: int = 16,
                   seed: int = 0, scale: float = 1.0) -> list[dict]:
    """Relative errors of ``emulated_fft_conv`` against a float64 FFT convolution (numpy), one
    row per (L, fmt): ``rel_l2`` = ||y - y64|| / ||y64|| over all B*H rows, ``rel_max`` =
    max|y - y64| / max|y64|; ``max_abs_u`` and ``max_abs_product`` (the largest real or
    imaginary part of (U u) * K, float64, the values the inverse transform rounds first) say
    whether fp16's range was left. Data: u = scale * N(0, 1) (float32), k[h, t] = N(0, 1) *
    exp(-4 t / L) (float32, Lk = L), from numpy's default_rng(seed). ``scale`` moves u's values
    through fp16's range: 1e-6 and 1e4 show what its 5 exponent bits cost (NaN: an overflow)."""
    if isinstance(Ls, (int, np.integer)) or not isinstance(Ls, (list, tuple)) or not Ls:
        raise TypeError(f"Ls must be a non-empty list or tuple of sequence lengths, got {Ls!r}")
    Ls = [check_int(L, f"Ls[{i}]", min=1) for i, L in enumerate(Ls)]
    if isinstance(fmts, str) or not isinstance(fmts, (list, tuple)) or not fmts:
        raise TypeError(f"fmts must be a non-empty list or tuple of formats such as ('fp16', 'bf16'), got {fmts!r}")
    fmts = [_check_fmt(f) for f in fmts]
    B, H = check_int(B, "B", min=1), check_int(H, "H", min=1)
    block = _check_block(block)
    seed = check_int(seed, "seed", min=0)
    scale = check_float(scale, "scale", min=0.0, min_inclusive=False)
    rows = []
    for L in Ls:
        rng = np.random.default_rng(seed)
        u = (scale * rng.standard_normal((B, H, L))).astype(np.float32)
        k = (rng.standard_normal((H, L)) * np.exp(-4.0 * np.arange(L) / L)).astype(np.float32)
        N = fft_size(L)
        U64, K64 = np.fft.rfft(u.astype(np.float64), N), np.fft.rfft(k.astype(np.float64), N)
        ref = np.fft.irfft(U64 * K64, N)[..., :L]
        prod = U64 * K64 / math.sqrt(N)                 # what the inverse transform's first matmul rounds
        sizes = {"max_abs_u": float(np.max(np.abs(u))),
                 "max_abs_product": float(max(np.max(np.abs(prod.real)), np.max(np.abs(prod.imag))))}
        for fmt in fmts:
            y = emulated_fft_conv(torch.from_numpy(u), torch.from_numpy(k), fmt=fmt, block=block).numpy()
            with np.errstate(invalid="ignore"):
                d = y.astype(np.float64) - ref
            rows.append({"L": L, "N": N, "fmt": fmt, "block": block, "scale": scale,
                         "factors": list(_factors(N, block)),
                         "unit_roundoff": FORMATS[fmt][1],
                         "rel_l2": float(np.linalg.norm(d) / np.linalg.norm(ref)),
                         "rel_max": float(np.max(np.abs(d)) / np.max(np.abs(ref))), **sizes})
    return rows


def block_step_errors(*, block: int = 16, rows: int = 4096, fmts=tuple(FORMATS), seed: int = 0) -> dict:
    """One DFT block alone: ``emulated_dft`` of ``rows`` complex signals of ``block`` points
    (real and imaginary parts N(0, 1) from default_rng(seed)) against numpy.fft.fft in float64;
    format -> ||X - X64|| / ||X64||."""
    block = _check_block(block)
    rows = check_int(rows, "rows", min=1)
    if isinstance(fmts, str) or not isinstance(fmts, (list, tuple)) or not fmts:
        raise TypeError(f"fmts must be a non-empty list or tuple of formats such as ('fp16', 'bf16'), got {fmts!r}")
    fmts = [_check_fmt(f) for f in fmts]
    seed = check_int(seed, "seed", min=0)
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((rows, block)) + 1j * rng.standard_normal((rows, block))).astype(np.complex64)
    ref = np.fft.fft(z.astype(np.complex128), axis=-1)
    out = {}
    for fmt in fmts:
        X = emulated_dft(torch.from_numpy(z), fmt=fmt, block=block).numpy().astype(np.complex128)
        out[fmt] = float(np.linalg.norm(X - ref) / np.linalg.norm(ref))
    return out


def _print_rows(rows) -> None:
    print(f"{'L':>6} {'N':>7}  {'scale':>6}  {'fmt':10}  {'unit roundoff':>13}  {'rel L2 error':>12}  "
          f"{'rel max error':>13}")
    for r in rows:
        print(f"{r['L']:>6} {r['N']:>7}  {r['scale']:>6.0e}  {r['fmt']:10}  {r['unit_roundoff']:>13.3g}  "
              f"{r['rel_l2']:>12.3g}  {r['rel_max']:>13.3g}")


def _main(argv=None) -> int:
    import argparse
    import json
    import sys
    p = argparse.ArgumentParser(prog="python -m longconv_edu.tensorcore",
                                description="Accuracy of DFT blocks on tensor cores, emulated (no GPU).")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--block", type=int, default=16)
    a = p.parse_args(argv)
    step = block_step_errors(block=a.block)
    print(f"one {a.block}-point DFT block (4096 random complex columns), relative L2 error vs float64:")
    for fmt, e in step.items():
        print(f"  {fmt:10} {e:.3g}")
    print("\nFFT convolution, u ~ N(0, 1):")
    rows = accuracy_table(block=a.block)
    _print_rows(rows)
    print("\nFFT convolution at L = 4096, u scaled through fp16's range:")
    ranged = [r for s in (1e-6, 1e4) for r in accuracy_table((4096,), block=a.block, scale=s)]
    _print_rows(ranged)
    if a.json:
        cmd = "python -m longconv_edu.tensorcore " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(a.json, "w") as f:
            def finite(rs):                                 # JSON has no NaN: an overflowed run is null
                return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                        for r in rs]
            json.dump({"command": cmd, "block_step": step, "rows": finite(rows), "range_rows": finite(ranged)},
                      f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
