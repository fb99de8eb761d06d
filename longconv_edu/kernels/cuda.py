"""Rung 5a: the fused FlashButterfly convolution as a Numba CUDA kernel, trainable and verifiable.

The paper's point (Fu et al. 2023, Sec. 3.2) is that an FFT convolution is limited by memory
traffic, not by arithmetic: PyTorch's ``fft_conv`` runs several kernels, each reading its input
from slow global memory (HBM) and writing its output back. FlashButterfly *fuses* the whole
convolution into one pass over fast on-chip memory. This module implements that fusion:

    one thread block per (b, h) row:
      1. load the row u[b, h, :L] from global memory into shared memory, zero-padded to N
         (N = the next power of two >= 2L, so the circular convolution holds the causal one);
      2. forward FFT in log2(N) butterfly stages, all threads of the block working on one stage,
         then ``cuda.syncthreads()`` before the next stage reads what this one wrote;
      3. multiply pointwise by the channel's precomputed kernel spectrum (read from global memory);
      4. inverse FFT: the forward stages undone in reverse order, again synchronised stage by stage;
      5. write the first L outputs (scaled by 1/N) back to global memory.

Global memory is touched exactly once per element: L reads of u, 2N reads of the spectrum (N
complex values, stored as a real and an imaginary plane), L writes of y. This is
``io_model.fused_conv`` to the byte, and ``kernels.trace`` checks it by running this very code.

**No bit reversal.** The forward stages are decimation-in-frequency (DIF) butterflies: natural
order in, spectrum out in *bit-reversed* order. The inverse undoes those stages one by one, so it
takes bit-reversed order in and gives natural order out. A convolution only multiplies spectra
pointwise, so if the kernel spectrum is stored in the same bit-reversed order, no permutation is
ever needed. ``kernel_spectrum`` computes it with the same stages, so the layouts always agree.
(This is the answer to "how is k_f laid out?": N full complex values per channel, bit-reversed.)

**Rows too long for shared memory: the three-pass scheme.** A tile of n values needs 2*n*s bytes
of shared memory (real and imaginary planes, s bytes per real). When N does not fit the budget
``smem_bytes``, N = N1 * N2 with tiles of N1 and N2 values that fit, and the same DIF stages are
split in two groups: the first log2(N1) stages only ever combine elements whose indices agree
modulo N2 (a "column" of N1 values, stride N2), the last log2(N2) stages act on independent
contiguous blocks of N2 values. (We split N about evenly, N2 = 2^ceil(log2(N)/2) capped by the
budget.) Hence the paper's scheme: pass 1, one block per column does the outer stages and
writes the row back to global memory; pass 2, one block per contiguous block runs the fused
forward / multiply / inverse on it (independent sub-problems); pass 3, one block per column
undoes the outer stages and writes the first L outputs. Three round trips instead of one
(``io_model.three_pass_conv``).

**One source of truth, three executors.** Every launch runs one *block program*
(``block_program``): load a tile -> [forward stages] -> [multiply] -> [inverse stages] -> store,
with the tile's geometry (which global indices it holds) and the steps chosen per launch. The
kernel body refers to a module-level name ``cuda`` that is deliberately unbound here:
``bind_cuda`` gives each executor its own ``cuda``:

* ``numba.cuda`` on a GPU (compiled to PTX; ``compile_ptx`` works without a GPU, see
  ``kernel_resources``);
* ``numba.cuda`` under ``NUMBA_ENABLE_CUDASIM=1``: the simulator runs the same Python on the CPU,
  one Python thread per CUDA thread (tiny sizes: the tests);
* ``kernels.trace``: our tracer, whose ``cuda`` hands out counting arrays and so measures the
  global and shared memory traffic of each thread block.

Backward (``cuda_conv`` is a ``torch.autograd.Function``): with g = dL/dy,
dL/du = first L of IFFT(FFT(g) * conj(K)) and dL/dk = sum_b first Lk of IFFT(FFT(g) * conj(U_b)):
correlations, i.e. the same fused kernel run on g with a *conjugated* spectrum (a sign flip on
the imaginary plane as it is read, no copy).

Shapes: u (B, H, L), k (H, Lk) with 1 <= Lk <= L, float32 or float64, contiguous, on a CUDA
device (zero-copy through ``__cuda_array_interface__``), or on the CPU when the simulator is on.
"""
from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
import types
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_conv_inputs, check_int

__all__ = ["cuda_conv", "kernel_spectrum", "Program", "block_program", "bind_cuda", "Plan",
           "make_plan", "simulator_active", "kernel_resources", "KernelResources", "ptxas_path",
           "DEFAULT_SMEM_BYTES", "DEFAULT_THREADS", "fft_size", "max_length", "gpu_timings", "resource_table",
           "bit_reversed_spectrum"]

#: The executor's ``cuda`` (numba.cuda, the simulator, or the tracer): see ``bind_cuda``.
cuda = None

#: 48 KiB: the static shared memory every CUDA GPU since Kepler gives one block without opt-in.
DEFAULT_SMEM_BYTES = 48 * 1024
#: Threads per block (each thread does N/2/threads butterflies per stage).
DEFAULT_THREADS = 256

_REAL = {torch.float32: np.float32, torch.float64: np.float64}
_NUMBA_NAME = {np.float32: "float32", np.float64: "float64"}


# ============================================================================ the block program
@dataclass(frozen=True)
class Program:
    """What one kernel launch does to each tile (fixed at compile time).

    n        tile size, a power of two: the length of the two shared arrays (re, im)
    real     np.float32 or np.float64
    load     "real": x_re holds real rows of length n_in, zero-padded beyond (the input u);
             "complex": x_re, x_im hold full complex rows of length N (an intermediate)
    forward  run the DIF butterfly stages (spans n/2, ..., 1)
    multiply multiply by spec_re + i * conj_sign * spec_im (the kernel spectrum)
    inverse  undo the DIF stages (spans 1, ..., n/2), each without its 1/2: a factor n
    store    "real": write the real part times ``scale`` for global indices < n_out;
             "complex": write re and im of the whole tile
    """
    n: int
    real: type
    load: str = "real"
    forward: bool = True
    multiply: bool = True
    inverse: bool = True
    store: str = "real"

    @property
    def name(self) -> str:
        steps = [s for s, on in (("forward", self.forward), ("multiply", self.multiply),
                                 ("inverse", self.inverse)) if on]
        return f"{self.load}->{'+'.join(steps) or 'copy'}->{self.store} (n={self.n})"

    @property
    def shared_bytes(self) -> int:
        return 2 * self.n * np.dtype(self.real).itemsize


def block_program(p: Program):
    """The kernel body for program ``p``: a plain Python function in the CUDA style.

    Launch it with grid (rows, tiles) and a 1-D block; its arguments are
    (x_re, x_im, spec_re, spec_im, out_re, out_im, n_in, n_out, tile_step, stride, conj_sign, scale).
    Element m (0 <= m < n) of tile t of row r is global index g = t * tile_step + m * stride.
    The spectrum row used by row r is r % spec_re.shape[0] (one spectrum per channel, or per row).
    """
    n, real = p.n, p.real
    half = n // 2
    LOAD_REAL, STORE_REAL = p.load == "real", p.store == "real"
    FORWARD, MULTIPLY, INVERSE = p.forward, p.multiply, p.inverse
    PI = real(math.pi)
    ZERO = real(0)

    def kernel(x_re, x_im, spec_re, spec_im, out_re, out_im, n_in, n_out, tile_step, stride,
               conj_sign, scale):
        def twiddle(g, H):
            # exp(-i pi (g mod H) / H): the DIF twiddle of global index g at global span H
            ang = -PI * real(g % H) / real(H)
            return real(math.cos(ang)), real(math.sin(ang))

        s_re = cuda.shared.array(n, real)                   # the tile, in fast memory
        s_im = cuda.shared.array(n, real)
        row = cuda.blockIdx.x
        i0 = cuda.blockIdx.y * tile_step                    # global index of tile element 0
        tid = cuda.threadIdx.x
        T = cuda.blockDim.x

        # 1. load: each global element read once (beyond n_in: the zero padding, never read)
        for m in range(tid, n, T):
            g = i0 + m * stride
            if LOAD_REAL:
                s_re[m] = x_re[row, g] if g < n_in else ZERO
                s_im[m] = ZERO
            else:
                s_re[m] = x_re[row, g]
                s_im[m] = x_im[row, g]
        cuda.syncthreads()

        # 2. forward DIF stages: (a, b) -> (a + b, (a - b) w); thread tid does butterflies tid, tid+T..
        if FORWARD:
            h = half
            while h >= 1:
                for q in range(tid, half, T):
                    m = (q // h) * 2 * h + q % h            # top wing; the bottom one is m + h
                    c, s = twiddle(i0 + m * stride, h * stride)
                    ar, ai, br, bi = s_re[m], s_im[m], s_re[m + h], s_im[m + h]
                    dr, di = ar - br, ai - bi
                    s_re[m], s_im[m] = ar + br, ai + bi
                    s_re[m + h], s_im[m + h] = dr * c - di * s, dr * s + di * c
                cuda.syncthreads()
                h //= 2

        # 3. pointwise product with the spectrum (bit-reversed order, like the tile)
        if MULTIPLY:
            srow = row % spec_re.shape[0]
            for m in range(tid, n, T):
                g = i0 + m * stride
                kr, ki = spec_re[srow, g], conj_sign * spec_im[srow, g]
                ar, ai = s_re[m], s_im[m]
                s_re[m], s_im[m] = ar * kr - ai * ki, ar * ki + ai * kr
            cuda.syncthreads()

        # 4. inverse: undo the DIF stages in reverse order: (a, b) -> (a + b conj(w), a - b conj(w))
        if INVERSE:
            h = 1
            while h < n:
                for q in range(tid, half, T):
                    m = (q // h) * 2 * h + q % h
                    c, s = twiddle(i0 + m * stride, h * stride)
                    ar, ai, br, bi = s_re[m], s_im[m], s_re[m + h], s_im[m + h]
                    tr, ti = br * c + bi * s, bi * c - br * s      # b * conj(w)
                    s_re[m], s_im[m] = ar + tr, ai + ti
                    s_re[m + h], s_im[m + h] = ar - tr, ai - ti
                cuda.syncthreads()
                h *= 2

        # 5. store: each global element written once (real: only the first n_out)
        for m in range(tid, n, T):
            g = i0 + m * stride
            if STORE_REAL:
                if g < n_out:
                    out_re[row, g] = s_re[m] * scale
            else:
                out_re[row, g] = s_re[m]
                out_im[row, g] = s_im[m]

    kernel.__name__ = kernel.__qualname__ = "flashbutterfly_" + (
        f"{p.load}_{'f' if FORWARD else ''}{'m' if MULTIPLY else ''}{'i' if INVERSE else ''}"
        f"_{p.store}_n{n}_{_NUMBA_NAME[real]}")
    return kernel


def bind_cuda(fn, cuda_like):
    """A copy of kernel body ``fn`` whose global name ``cuda`` means ``cuda_like``.

    numba.cuda (real or simulator) compiles/runs the copy; the tracer passes its counting
    namespace. Same code object, same closure: one algorithm, several executors.
    """
    g = dict(fn.__globals__)
    g["cuda"] = cuda_like
    out = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__qualname__ = fn.__qualname__
    return out


# ============================================================================ plans: which launches
@dataclass(frozen=True)
class Plan:
    """How a row of FFT size N is processed under a shared-memory budget.

    passes == 1: one fused launch, tile N. passes == 3: N = outer * inner; outer pass tiles of
    ``outer`` values (stride ``inner``), inner pass tiles of ``inner`` contiguous values.
    """
    N: int
    outer: int
    inner: int
    threads: int
    real: type

    @property
    def passes(self) -> int:
        return 1 if self.outer == 1 else 3

    def block(self, n: int) -> int:
        """Threads per block for a tile of n: one per butterfly, at most ``threads``."""
        return max(1, min(n // 2, self.threads))


def fft_size(L: int) -> int:
    """N = the next power of two >= 2L (room for the causal convolution, power of two for the stages)."""
    return 1 << (2 * L - 1).bit_length()


def max_tile(real, smem_bytes: int) -> int:
    """Largest power-of-two tile n whose two shared planes (2 n s bytes) fit ``smem_bytes``."""
    n_fit = smem_bytes // (2 * np.dtype(real).itemsize)
    return 1 << (n_fit.bit_length() - 1) if n_fit >= 2 else 0


def max_length(real, smem_bytes: int = DEFAULT_SMEM_BYTES) -> int:
    """Longest L the kernel supports: N = 2L must be at most (largest tile)^2 (two levels)."""
    t = max_tile(real, smem_bytes)
    return t * t // 2


def make_plan(L: int, real, *, smem_bytes: int = DEFAULT_SMEM_BYTES,
              threads: int = DEFAULT_THREADS, name: str = "u") -> Plan:
    """The fused plan if a row of FFT size N fits in ``smem_bytes``, else the three-pass plan."""
    N = fft_size(L)
    t = max_tile(real, smem_bytes)
    if N <= t:
        return Plan(N, 1, N, threads, real)
    if N > t * t:
        raise ValueError(
            f"{name} has length L={L}: FFT size {N} needs more than two levels of tiles of at most "
            f"{t} values ({smem_bytes} bytes of shared memory, {np.dtype(real).name}); the cuda "
            f"backend supports L <= {max_length(real, smem_bytes)} with this budget (raise "
            f"smem_bytes, or use backend='fft')")
    inner = min(t, 1 << -(-(N.bit_length() - 1) // 2))   # balanced: about sqrt(N) each way
    return Plan(N, N // inner, inner, threads, real)


# The operations, written against an executor ``ex`` with ex.empty(rows, cols, real),
# ex.dummy(real) and ex.launch(program, grid, block, *arrays, *scalars). Arrays are 2-D (rows, len).
def _run_spectrum(ex, x, plan: Plan, out_re, out_im) -> None:
    """out = bit-reversed DFT (size N) of each real row of x, zero-padded: forward stages only."""
    R, Lx = x.shape
    r, z = plan.real, ex.dummy(plan.real)
    if plan.passes == 1:
        p = Program(plan.N, r, "real", True, False, False, "complex")
        ex.launch(p, (R, 1), plan.block(p.n), x, z, z, z, out_re, out_im, Lx, 0, 0, 1, r(1), r(1))
        return
    po = Program(plan.outer, r, "real", True, False, False, "complex")
    ex.launch(po, (R, plan.inner), plan.block(po.n), x, z, z, z, out_re, out_im,
              Lx, 0, 1, plan.inner, r(1), r(1))
    pi = Program(plan.inner, r, "complex", True, False, False, "complex")
    ex.launch(pi, (R, plan.outer), plan.block(pi.n), out_re, out_im, z, z, out_re, out_im,
              0, 0, plan.inner, 1, r(1), r(1))


def _run_conv(ex, x, spec_re, spec_im, conj: bool, plan: Plan, out) -> None:
    """out[:, :n_out] = first n_out of IFFT(FFT(x row) * spectrum (conjugated if conj)).

    x (R, Lx) real rows; spectrum (S, N) bit-reversed, row r uses spectrum row r % S; out (R, n_out).
    """
    R, Lx = x.shape
    n_out = out.shape[1]
    r, z = plan.real, ex.dummy(plan.real)
    sign, scale = r(-1 if conj else 1), r(1.0 / plan.N)
    if plan.passes == 1:
        p = Program(plan.N, r)
        ex.launch(p, (R, 1), plan.block(p.n), x, z, spec_re, spec_im, out, z,
                  Lx, n_out, 0, 1, sign, scale)
        return
    w_re, w_im = ex.empty(R, plan.N, r), ex.empty(R, plan.N, r)      # the row between passes
    po = Program(plan.outer, r, "real", True, False, False, "complex")
    ex.launch(po, (R, plan.inner), plan.block(po.n), x, z, z, z, w_re, w_im,
              Lx, 0, 1, plan.inner, sign, r(1))
    pi = Program(plan.inner, r, "complex", True, True, True, "complex")
    ex.launch(pi, (R, plan.outer), plan.block(pi.n), w_re, w_im, spec_re, spec_im, w_re, w_im,
              0, 0, plan.inner, 1, sign, r(1))
    pb = Program(plan.outer, r, "complex", False, False, True, "real")
    ex.launch(pb, (R, plan.inner), plan.block(pb.n), w_re, w_im, z, z, out, z,
              0, n_out, 1, plan.inner, sign, scale)


# ============================================================================ numba executors
def simulator_active() -> bool:
    """True when numba runs CUDA kernels in its CPU simulator (NUMBA_ENABLE_CUDASIM=1 at import)."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


_HOW_TO_SIMULATE = (
    "To run the kernel without a GPU, use numba's CUDA simulator: set the environment variable "
    "NUMBA_ENABLE_CUDASIM=1 *before numba is first imported* in the process (e.g. "
    "`NUMBA_ENABLE_CUDASIM=1 python script.py`, or os.environ['NUMBA_ENABLE_CUDASIM'] = '1' in "
    "the first cell of a notebook) and pass CPU tensors (tiny sizes: one Python thread per CUDA "
    "thread). Otherwise use backend='fft' or a machine with an NVIDIA GPU and CUDA tensors.")


@functools.cache
def _compiled(p: Program):
    """numba.cuda.jit of the block program (the simulator's jit when it is active), compiled once."""
    from numba import cuda as ncuda
    t = _NUMBA_NAME[p.real]
    sig = f"void({', '.join([t + '[:, ::1]'] * 6)}, int64, int64, int64, int64, {t}, {t})"
    return ncuda.jit(sig)(bind_cuda(block_program(p), ncuda))


class _NumbaExecutor:
    """Launches block programs with numba.cuda on torch tensors, without copies.

    GPU: tensors are viewed through __cuda_array_interface__ (numba.cuda.as_cuda_array) and the
    kernels run on torch's current stream. Simulator: CPU tensors are viewed as NumPy arrays.
    """

    def __init__(self, device: torch.device):
        from numba import cuda as ncuda
        self.cuda, self.device, self.sim = ncuda, device, simulator_active()

    def empty(self, rows, cols, real):
        return torch.empty(rows, cols, dtype=_torch_dtype(real), device=self.device)

    def dummy(self, real):
        return torch.zeros(1, 1, dtype=_torch_dtype(real), device=self.device)

    def _view(self, a):
        if not isinstance(a, torch.Tensor):
            return a
        a = a.detach()
        return a.numpy() if self.sim else self.cuda.as_cuda_array(a)

    def launch(self, p: Program, grid, block, *args):
        k = _compiled(p)
        args = [self._view(a) for a in args]
        if self.sim:
            k[grid, block](*args)
            return
        stream = self.cuda.external_stream(torch.cuda.current_stream(self.device).cuda_stream)
        with self.cuda.gpus[self.device.index or 0]:
            k[grid, block, stream](*args)


def _torch_dtype(real):
    return torch.float32 if real is np.float32 else torch.float64


def _executor(u: torch.Tensor) -> _NumbaExecutor:
    """The executor for u's device, or a clear error saying what is needed."""
    env_sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    sim = simulator_active()
    if sim:
        if u.device.type != "cpu":
            raise ValueError(f"u is on device {u.device}, but numba's CUDA simulator is active "
                             f"(NUMBA_ENABLE_CUDASIM=1): it runs on CPU tensors only; move u and "
                             f"k with .cpu(), or run without the simulator to use the GPU")
        return _NumbaExecutor(u.device)
    if u.device.type != "cuda":
        late = (" NUMBA_ENABLE_CUDASIM is set now, but numba was imported before it was set, "
                "so the simulator is off in this process." if env_sim else "")
        raise ValueError(f"u is on device {u.device}; backend 'cuda' runs on CUDA tensors "
                         f"(u.cuda(), k.cuda()).{late} {_HOW_TO_SIMULATE}")
    from numba import cuda as ncuda
    if not ncuda.is_available():
        raise RuntimeError(f"u is a CUDA tensor but numba.cuda finds no usable GPU/driver. "
                           f"{_HOW_TO_SIMULATE}")
    return _NumbaExecutor(u.device)


# ============================================================================ public API
def _check_contiguous(x: torch.Tensor, name: str) -> None:
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous (row-major, as torch.empty makes it), got "
                         f"strides {tuple(x.stride())} for shape {tuple(x.shape)}; the kernel "
                         f"reads it in place without copying: pass {name}.contiguous()")


def _check_launch_params(real, smem_bytes, threads):
    s = np.dtype(real).itemsize
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=4 * s)   # at least a tile of 2
    threads = check_int(threads, "threads", min=1, max=1024, power_of_two=True)
    return smem_bytes, threads


def kernel_spectrum(k: torch.Tensor, L: int, *, smem_bytes: int = DEFAULT_SMEM_BYTES,
                    threads: int = DEFAULT_THREADS) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectrum the fused kernel multiplies by: (re, im), each (H, N), bit-reversed order.

    k: (H, Lk) contiguous, zero-padded to N = fft_size(L). Equals
    torch.fft.fft(k, n=N)[:, bit_reversal_permutation(N)], computed by the kernel's own stages.
    """
    from .._checks import check_tensor
    check_tensor(k, "k", ndim=2, shape_doc="2-D (H, Lk)")
    L = check_int(L, "L", min=1)
    _check_contiguous(k, "k")
    if not 1 <= k.shape[1] <= L:
        raise ValueError(f"k must have length 1 <= Lk <= L = {L}, got shape {tuple(k.shape)}")
    real = _REAL[k.dtype]
    smem_bytes, threads = _check_launch_params(real, smem_bytes, threads)
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads, name="k")
    ex = _executor(k)
    re_, im_ = ex.empty(k.shape[0], plan.N, real), ex.empty(k.shape[0], plan.N, real)
    _run_spectrum(ex, k, plan, re_, im_)
    return re_, im_


def bit_reversed_spectrum(k: torch.Tensor, N: int) -> torch.Tensor:
    """What ``kernel_spectrum`` computes, by torch.fft: fft(k, n=N) in bit-reversed order, (H, N).

    The reference for the layout (and for the course exercise of that name); CPU or GPU, any
    float dtype, no numba. N must be a power of two >= Lk.
    """
    from .._checks import check_tensor
    from ..fft import bit_reversal_permutation
    check_tensor(k, "k", ndim=2, shape_doc="2-D (H, Lk)")
    N = check_int(N, "N", min=max(1, k.shape[1]), power_of_two=True)
    return torch.fft.fft(k, n=N)[:, bit_reversal_permutation(N).to(k.device)]


class _FlashButterflyConv(torch.autograd.Function):
    """Forward: the fused kernel. Backward: the same kernel on dL/dy with conjugated spectra."""

    @staticmethod
    def forward(ctx, u, k, smem_bytes, threads):
        B, H, L = u.shape
        Lk = k.shape[1]
        real = _REAL[u.dtype]
        plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
        ex = _executor(u)
        kf_re, kf_im = ex.empty(H, plan.N, real), ex.empty(H, plan.N, real)
        _run_spectrum(ex, k, plan, kf_re, kf_im)
        y = ex.empty(B * H, L, real)
        _run_conv(ex, u.view(B * H, L), kf_re, kf_im, False, plan, y)
        ctx.save_for_backward(u, kf_re, kf_im)
        ctx.plan, ctx.Lk = plan, Lk
        return y.view(B, H, L)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, kf_re, kf_im = ctx.saved_tensors
        plan, Lk = ctx.plan, ctx.Lk
        B, H, L = u.shape
        ex = _executor(u)
        g = gy.contiguous().view(B * H, L)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:          # dL/du[t] = sum_t' g[t'] k[t' - t]: g (*) conj(K)
            grad_u = ex.empty(B * H, L, plan.real)
            _run_conv(ex, g, kf_re, kf_im, True, plan, grad_u)
            grad_u = grad_u.view(B, H, L)
        if ctx.needs_input_grad[1]:          # dL/dk[s] = sum_b,t g[t] u[t - s]: g (*) conj(U_b)
            uf_re, uf_im = ex.empty(B * H, plan.N, plan.real), ex.empty(B * H, plan.N, plan.real)
            _run_spectrum(ex, u.view(B * H, L), plan, uf_re, uf_im)
            gk = ex.empty(B * H, Lk, plan.real)
            _run_conv(ex, g, uf_re, uf_im, True, plan, gk)
            grad_k = gk.view(B, H, Lk).sum(0)
        return grad_u, grad_k, None, None


def cuda_conv(u: torch.Tensor, k: torch.Tensor, *, smem_bytes: int = DEFAULT_SMEM_BYTES,
              threads: int = DEFAULT_THREADS) -> torch.Tensor:
    """Causal long convolution by the fused FlashButterfly Numba CUDA kernel (differentiable).

    u: (B, H, L), k: (H, Lk) with 1 <= Lk <= L; float32 or float64, contiguous, same device:
    CUDA tensors on a GPU, or CPU tensors under numba's simulator (NUMBA_ENABLE_CUDASIM=1).
    Returns y (B, H, L) with y[b,h,t] = sum_s k[h,s] u[b,h,t-s] (as fft_conv), and gradients for
    both u and k through autograd.

    smem_bytes: shared memory one block may use (default 48 KiB). A row of FFT size
    N = next_pow2(2L) runs fused if 2*N*s <= smem_bytes, otherwise in three passes; L beyond
    ``max_length`` is an error. threads: threads per block (a power of two <= 1024).
    """
    check_conv_inputs(u, k)
    _check_contiguous(u, "u")
    _check_contiguous(k, "k")
    real = _REAL[u.dtype]
    smem_bytes, threads = _check_launch_params(real, smem_bytes, threads)
    make_plan(u.shape[2], real, smem_bytes=smem_bytes, threads=threads)      # length check
    _executor(u)                                                             # device check
    return _FlashButterflyConv.apply(u, k, smem_bytes, threads)


# ============================================================================ PTX and resources
@dataclass
class KernelResources:
    """One compiled kernel: its program, target, static shared memory, registers (if ptxas ran)."""
    program: str
    cc: tuple
    threads: int
    shared_bytes: int
    registers: int | None
    note: str
    ptx: str


def ptxas_path() -> str | None:
    """ptxas from the nvidia-cuda-nvcc wheel (matching the NVVM that numba-cuda uses), else PATH."""
    try:
        import nvidia
        for root in getattr(nvidia, "__path__", []):
            for sub in ("cu13/bin/ptxas", "cuda_nvcc/bin/ptxas"):
                cand = os.path.join(root, sub)
                if os.access(cand, os.X_OK):
                    return cand
    except ImportError:
        pass
    return shutil.which("ptxas")


_SHARED_DECL = re.compile(r"^\s*(?:\.visible\s+|\.global\s+)?\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]",
                          re.M)


def _ptxas_registers(ptx: str, cc) -> tuple[int | None, str]:
    exe = ptxas_path()
    if exe is None:
        return None, "ptxas not found (pip install nvidia-cuda-nvcc, or a CUDA toolkit)"
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([exe, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
    m = re.search(r"Used (\d+) registers", r.stdout + r.stderr)
    if r.returncode or not m:
        first = (r.stderr or r.stdout).strip().splitlines()
        return None, f"ptxas failed: {first[0] if first else r.returncode}"
    return int(m.group(1)), f"ptxas -arch=sm_{cc[0]}{cc[1]}"


def kernel_resources(L: int, *, dtype: torch.dtype = torch.float32, cc=(8, 0),
                     smem_bytes: int = DEFAULT_SMEM_BYTES, threads: int = DEFAULT_THREADS,
                     registers: bool = True) -> list[KernelResources]:
    """Compile (no GPU needed) the kernels the forward pass launches for length L; report each.

    Uses numba.cuda.compile_ptx for compute capability ``cc``; shared bytes per block are read
    from the PTX's .shared declarations; registers per thread come from ``ptxas -v`` when it is
    available (registers=False skips it). Under the simulator (which cannot compile) the work is
    done in a child Python process started without NUMBA_ENABLE_CUDASIM.
    """
    L = check_int(L, "L", min=1)
    if dtype not in _REAL:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not (isinstance(cc, tuple) and len(cc) == 2 and all(isinstance(c, int) for c in cc)):
        raise TypeError(f"cc must be a (major, minor) tuple of ints such as (8, 0), got {cc!r}")
    real = _REAL[dtype]
    smem_bytes, threads = _check_launch_params(real, smem_bytes, threads)
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
    if simulator_active():         # the simulator cannot compile: ask a process without it
        return [r for *_, r in resource_table((L,), dtypes=(dtype,), ccs=(cc,),
                                              smem_bytes=smem_bytes, threads=threads,
                                              registers=registers)]
    if plan.passes == 1:
        progs = [Program(plan.N, real)]
    else:
        progs = [Program(plan.outer, real, "real", True, False, False, "complex"),
                 Program(plan.inner, real, "complex", True, True, True, "complex"),
                 Program(plan.outer, real, "complex", False, False, True, "real")]
    return [_resources(p, cc, plan.block(p.n), registers) for p in progs]


@functools.cache
def _resources(p: Program, cc, threads: int, registers: bool) -> KernelResources:
    from numba import cuda as ncuda
    t = _NUMBA_NAME[p.real]
    sig = f"void({', '.join([t + '[:, ::1]'] * 6)}, int64, int64, int64, int64, {t}, {t})"
    ptx, _ = ncuda.compile_ptx(bind_cuda(block_program(p), ncuda), sig, cc=cc)
    shared = sum(int(m) for m in _SHARED_DECL.findall(ptx))
    regs, note = _ptxas_registers(ptx, cc) if registers else (None, "registers not requested")
    return KernelResources(p.name, cc, threads, shared, regs, note, ptx)


def resource_table(lengths=(1024,), *, dtypes=(torch.float32,), ccs=((8, 0), (9, 0)),
                   smem_bytes: int = DEFAULT_SMEM_BYTES, threads: int = DEFAULT_THREADS,
                   registers: bool = True) -> list[tuple]:
    """``kernel_resources`` for every (dtype, cc, L): [(dtype name, cc, L, KernelResources), ...].

    Under the simulator the whole table is compiled in one child process (numba and NVVM start
    once, not once per row).
    """
    if simulator_active():
        return _table_in_child(tuple(lengths), tuple(str(d).split(".")[-1] for d in dtypes),
                               tuple(tuple(c) for c in ccs), smem_bytes, threads, registers)
    return [(str(d).split(".")[-1], tuple(cc), L, r) for d in dtypes for cc in ccs for L in lengths
            for r in kernel_resources(L, dtype=d, cc=tuple(cc), smem_bytes=smem_bytes,
                                      threads=threads, registers=registers)]


def _table_in_child(lengths, dtype_names, ccs, smem_bytes, threads, registers) -> list[tuple]:
    import json
    import sys
    code = ("import json, torch; from longconv_edu.kernels.cuda import resource_table; "
            f"rows = resource_table({lengths!r}, dtypes=[getattr(torch, n) for n in {dtype_names!r}], "
            f"ccs={ccs!r}, smem_bytes={smem_bytes}, threads={threads}, registers={registers}); "
            "print(json.dumps([(d, c, L, r.__dict__) for d, c, L, r in rows]))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"compiling the kernels in a child process failed:\n{r.stderr[-2000:]}")
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    return [(d, tuple(c), L, KernelResources(**{**kr, "cc": tuple(kr["cc"])}))
            for d, c, L, kr in rows]


# ============================================================================ timing on a GPU
def gpu_timings(lengths=(1024, 4096, 16384), *, B: int = 4, H: int = 256,
                dtype: torch.dtype = torch.float32, repeats: int = 10) -> list[dict]:
    """Median seconds of cuda_conv and fft_conv (forward) on the current GPU, per length L.

    Needs a CUDA GPU, torch with CUDA, and the simulator off. Returns [{"L", "cuda_conv",
    "fft_conv", "speedup"}, ...] (speedup = fft_conv time / cuda_conv time).
    """
    from ..conv import fft_conv
    from ..timing import time_call
    if not torch.cuda.is_available() or simulator_active():
        raise RuntimeError("gpu_timings needs a CUDA GPU, a CUDA build of torch, and "
                           "NUMBA_ENABLE_CUDASIM unset")
    out = []
    for L in lengths:
        L = check_int(L, "lengths[i]", min=1)
        u = torch.randn(B, H, L, device="cuda", dtype=dtype)
        k = torch.randn(H, L, device="cuda", dtype=dtype)

        def run(fn):
            fn(u, k)
            torch.cuda.synchronize()
        t_cuda = time_call(run, cuda_conv, repeats=repeats)
        t_fft = time_call(run, fft_conv, repeats=repeats)
        out.append({"L": L, "cuda_conv": t_cuda, "fft_conv": t_fft, "speedup": t_fft / t_cuda})
    return out


if __name__ == "__main__":              # python -m longconv_edu.kernels.cuda: GPU timings
    for row in gpu_timings():
        print(f"L={row['L']:>6}  cuda_conv {row['cuda_conv'] * 1e3:8.3f} ms  "
              f"fft_conv {row['fft_conv'] * 1e3:8.3f} ms  speedup x{row['speedup']:.2f}")
