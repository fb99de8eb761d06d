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

import numba
import numpy as np
import torch

from .._checks import check_conv_inputs, check_int

__all__ = ["cuda_conv", "radix2_conv", "monarch_program", "monarch_factors", "monarch_smem_bytes",
           "half_spectrum", "device_smem_optin", "MONARCH_BLOCKS", "DEFAULT_BLOCK", "kernel_spectrum",
           "Program", "block_program", "bind_cuda", "Plan",
           "make_plan", "simulator_active", "kernel_resources", "KernelResources", "ptxas_path",
           "DEFAULT_SMEM_BYTES", "DEFAULT_THREADS", "fft_size", "max_length", "gpu_timings", "resource_table",
           "bit_reversed_spectrum"]

#: The executor's ``cuda`` (numba.cuda, the simulator, or the tracer): see ``bind_cuda``.
cuda = None

#: 48 KiB: the static shared memory every CUDA GPU since Kepler gives one block without opt-in.
DEFAULT_SMEM_BYTES = 48 * 1024
#: Threads per block (each thread does N/2/threads butterflies per stage).
DEFAULT_THREADS = 256

REAL_OF = {torch.float32: np.float32, torch.float64: np.float64}
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


def bind_cuda(fn, cuda_like, _g=None):
    """A copy of kernel body ``fn`` whose global name ``cuda`` means ``cuda_like``.

    numba.cuda (real or simulator) compiles/runs the copy; the tracer passes its counting
    namespace. Same code object, same closure: one algorithm, several executors.
    """
    g = dict(fn.__globals__) if _g is None else _g   # one dict shared with the helpers, so the
    g["cuda"] = cuda_like                             # simulator's swap of ``cuda`` reaches them
    closure = fn.__closure__
    if closure:  # helpers the body closes over (the Monarch kernel's load/fft/store) are bound too
        closure = tuple(types.CellType(bind_cuda(c.cell_contents, cuda_like, g)
                                       if isinstance(c.cell_contents, types.FunctionType)
                                       else c.cell_contents) for c in closure)
    out = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, closure)
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
def run_spectrum(ex, x, plan: Plan, out_re, out_im) -> None:
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


def run_conv(ex, x, spec_re, spec_im, conj: bool, plan: Plan, out) -> None:
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


def check_launch_params(real, smem_bytes, threads):
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
    real = REAL_OF[k.dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads, name="k")
    ex = _executor(k)
    re_, im_ = ex.empty(k.shape[0], plan.N, real), ex.empty(k.shape[0], plan.N, real)
    run_spectrum(ex, k, plan, re_, im_)
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
        real = REAL_OF[u.dtype]
        plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
        ex = _executor(u)
        kf_re, kf_im = ex.empty(H, plan.N, real), ex.empty(H, plan.N, real)
        run_spectrum(ex, k, plan, kf_re, kf_im)
        y = ex.empty(B * H, L, real)
        run_conv(ex, u.view(B * H, L), kf_re, kf_im, False, plan, y)
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
            run_conv(ex, g, kf_re, kf_im, True, plan, grad_u)
            grad_u = grad_u.view(B, H, L)
        if ctx.needs_input_grad[1]:          # dL/dk[s] = sum_b,t g[t] u[t - s]: g (*) conj(U_b)
            uf_re, uf_im = ex.empty(B * H, plan.N, plan.real), ex.empty(B * H, plan.N, plan.real)
            run_spectrum(ex, u.view(B * H, L), plan, uf_re, uf_im)
            gk = ex.empty(B * H, Lk, plan.real)
            run_conv(ex, g, uf_re, uf_im, True, plan, gk)
            grad_k = gk.view(B, H, Lk).sum(0)
        return grad_u, grad_k, None, None


def radix2_conv(u: torch.Tensor, k: torch.Tensor, *, smem_bytes: int = DEFAULT_SMEM_BYTES,
                threads: int = DEFAULT_THREADS) -> torch.Tensor:
    """The "before" kernel: causal long convolution by the radix-2 FlashButterfly (differentiable).

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
    real = REAL_OF[u.dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    make_plan(u.shape[2], real, smem_bytes=smem_bytes, threads=threads)      # length check
    _executor(u)                                                             # device check
    return _FlashButterflyConv.apply(u, k, smem_bytes, threads)


# ============================================================================ the Monarch kernel
# The registered ``cuda`` backend (issue 14). Everything above this line is the radix-2 kernel,
# kept as the notebook's "before" picture (``radix2_conv``) and as the long-L fallback.
#
# One thread block per row. With N = fft_size(L) and M = N/2, the real row u is read once as M
# complex values z[m] = u[2m] + i u[2m+1] (the real-input trick: an M-point complex FFT instead
# of an N-point one). The M-point DFT is a product of S = ceil(log2 M / log2 p) Monarch factors:
# each is a block-diagonal matrix of dense p x p DFT blocks (p = ``block``, 16 by default) with
# its twiddles folded in, applied as small dense complex mat-vecs out of shared memory
# (Stockham order: natural order in and out, ping-pong between two shared buffers). Output q of
# a factor with previous span Ls and radix p is
#     y[q] = sum_r x[j + r M/p] * W_M^(r * o * M/(Ls p)),   k = q mod Ls, s = (q / Ls) mod p,
#     j = (q / (Ls p)) Ls + k,  o = s Ls + k,
# all indices by shifts and masks, every coefficient read from one table of M-th roots that the
# host computes once (float64, rounded once) and the block stages into shared memory. Then the
# real-trick split gives the N-point half spectrum X[k], k = 0..M; it is multiplied by the cached
# kernel spectrum K (torch.fft.rfft of k, once per kernel tensor version); the merge and the
# inverse factors (conjugate roots) give y. Global memory: one read of u, one write of y per
# element, plus the (M+1)-point spectrum of the row's channel.
MONARCH_BLOCKS = (2, 4, 8, 16, 32, 64)
DEFAULT_BLOCK = 16
#: Shared memory assumed when no GPU is present (simulator, compile-only): the H100's opt-in
#: maximum per block, 227 KiB (NVIDIA H100 tuning guide, "shared memory capacity").
H100_SMEM_OPTIN = 227 * 1024


def monarch_factors(M: int, block: int) -> list[int]:
    """The radices of the Monarch factorisation of an M-point DFT: p, p, ..., remainder."""
    out, left = [], M
    while left > 1:
        out.append(min(block, left))
        left //= out[-1]
    return out


def monarch_smem_bytes(M: int, real, kind: str = "conv") -> int:
    """Dynamic shared memory of one block: two ping-pong buffers and the root table (re, im),
    plus for the backward the row's input half spectrum and the channel's grad_k accumulator."""
    s = np.dtype(real).itemsize
    return (6 * M + (4 * (M + 1) if kind == "grad" else 0)) * s


def monarch_program(M: int, block: int, real, kind: str):
    """The Monarch kernel body for M-point complex transforms: kind "conv" (forward, or grad_u
    with conj=-1) or "grad" (one block per channel, loop over the batch: grad_u and grad_k).

    conv args: (x, spec, roots, tw, out, n_in, n_out, conj, scale)
      x (R, n_in) real rows, spec (S, 2, M+1) half spectra (row r uses r % S), roots (2, M),
      tw (2, M//2+1) = W_N^k, out (R, n_out).
    grad args: (g, u, spec, roots, tw, grad_u, grad_k, B, H, n_in, n_k, scale)
      g, u, grad_u (B*H, L); spec (H, 2, M+1); grad_k (H, n_k).
    """
    LOGM = M.bit_length() - 1
    LOGP = block.bit_length() - 1
    S = len(monarch_factors(M, block))
    MASK = M - 1
    HALF = M // 2
    ZERO, HALF_R = real(0), real(0.5)
    RES_IN_B = S % 2 == 1
    GRAD = kind == "grad"
    SMEM_T = numba.from_dtype(np.dtype(real))  # a numba type: both the compiler and simulator take it

    def fft(a_re, a_im, b_re, b_im, w_re, w_im, sgn, tid, T):
        # S Monarch factors, A -> B -> A ...; the result is in B iff S is odd (RES_IN_B)
        ls = 0
        for st in range(S):
            lr = LOGP if LOGM - ls >= LOGP else LOGM - ls
            p = 1 << lr
            sh = LOGM - ls - lr
            stride = M >> lr
            lsmask = (1 << ls) - 1
            for q in range(tid, M, T):
                k = q & lsmask
                j = ((q >> (ls + lr)) << ls) + k
                step = (((q >> ls) & (p - 1)) << ls | k) << sh
                acc_r = ZERO
                acc_i = ZERO
                idx = 0
                for r in range(p):
                    if st % 2 == 0:
                        xr, xi = a_re[j + r * stride], a_im[j + r * stride]
                    else:
                        xr, xi = b_re[j + r * stride], b_im[j + r * stride]
                    wr, wi = w_re[idx], sgn * w_im[idx]
                    acc_r += xr * wr - xi * wi
                    acc_i += xr * wi + xi * wr
                    idx = (idx + step) & MASK
                if st % 2 == 0:
                    b_re[q], b_im[q] = acc_r, acc_i
                else:
                    a_re[q], a_im[q] = acc_r, acc_i
            cuda.syncthreads()
            ls += lr

    def split(zr1, zi1, zr2, zi2, wr, wi):
        # Z[k], Z[M-k] of z = u_even + i u_odd -> X[k], X[M-k] of the N-point real DFT
        er, ei = HALF_R * (zr1 + zr2), HALF_R * (zi1 - zi2)
        orr, oi = HALF_R * (zi1 + zi2), HALF_R * (zr2 - zr1)
        tr, ti = wr * orr - wi * oi, wr * oi + wi * orr
        return er + tr, ei + ti, er - tr, ti - ei

    def merge(y1r, y1i, y2r, y2i, wr, wi):
        # Y[k], Y[M-k] -> Z'[k], Z'[M-k] with z' = y_even + i y_odd (times M/... see scale)
        epr, epi = HALF_R * (y1r + y2r), HALF_R * (y1i - y2i)
        dr, di = HALF_R * (y1r - y2r), HALF_R * (y1i + y2i)
        opr, opi = dr * wr + di * wi, di * wr - dr * wi
        return epr - opi, epi + opr, epr + opi, opr - epi

    def load(x, row, n_in, a_re, a_im, tid, T):
        for m in range(tid, M, T):
            g = 2 * m
            a_re[m] = x[row, g] if g < n_in else ZERO
            a_im[m] = x[row, g + 1] if g + 1 < n_in else ZERO
        cuda.syncthreads()

    def store(out, row, n_out, a_re, a_im, scale, tid, T):
        for m in range(tid, M, T):
            g = 2 * m
            if g < n_out:
                out[row, g] = a_re[m] * scale
            if g + 1 < n_out:
                out[row, g + 1] = a_im[m] * scale

    if not GRAD:
        def kernel(x, spec, roots, tw, out, n_in, n_out, conj, scale):
            sm = cuda.shared.array(0, SMEM_T)
            a_re, a_im = sm[0:M], sm[M:2 * M]
            b_re, b_im = sm[2 * M:3 * M], sm[3 * M:4 * M]
            w_re, w_im = sm[4 * M:5 * M], sm[5 * M:6 * M]
            row, tid, T = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
            srow = row % spec.shape[0]
            for m in range(tid, M, T):                       # stage the roots once per block
                w_re[m], w_im[m] = roots[0, m], roots[1, m]
            load(x, row, n_in, a_re, a_im, tid, T)
            fft(a_re, a_im, b_re, b_im, w_re, w_im, real(1), tid, T)
            x_re, x_im = (b_re, b_im) if RES_IN_B else (a_re, a_im)
            for kk in range(tid, HALF + 1, T):               # split, multiply, merge: in place
                k2 = (M - kk) & MASK
                wr, wi = tw[0, kk], tw[1, kk]
                x1r, x1i, x2r, x2i = split(x_re[kk], x_im[kk], x_re[k2], x_im[k2], wr, wi)
                kr1, ki1 = spec[srow, 0, kk], conj * spec[srow, 1, kk]
                kr2, ki2 = spec[srow, 0, M - kk], conj * spec[srow, 1, M - kk]
                z1r, z1i, z2r, z2i = merge(x1r * kr1 - x1i * ki1, x1r * ki1 + x1i * kr1,
                                           x2r * kr2 - x2i * ki2, x2r * ki2 + x2i * kr2, wr, wi)
                x_re[kk], x_im[kk] = z1r, z1i
                if kk != 0 and k2 != kk:
                    x_re[k2], x_im[k2] = z2r, z2i
            cuda.syncthreads()
            # inverse from wherever X is: after 2S factors the result is back in A
            if RES_IN_B:
                fft(b_re, b_im, a_re, a_im, w_re, w_im, real(-1), tid, T)
            else:
                fft(a_re, a_im, b_re, b_im, w_re, w_im, real(-1), tid, T)
            store(out, row, n_out, a_re, a_im, scale, tid, T)
    else:
        def kernel(g, u, spec, roots, tw, grad_u, grad_k, B, H, n_in, n_k, scale):
            sm = cuda.shared.array(0, SMEM_T)
            a_re, a_im = sm[0:M], sm[M:2 * M]
            b_re, b_im = sm[2 * M:3 * M], sm[3 * M:4 * M]
            w_re, w_im = sm[4 * M:5 * M], sm[5 * M:6 * M]
            o = 6 * M
            u_re, u_im = sm[o:o + M + 1], sm[o + M + 1:o + 2 * M + 2]
            o += 2 * M + 2
            c_re, c_im = sm[o:o + M + 1], sm[o + M + 1:o + 2 * M + 2]
            h, tid, T = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
            for m in range(tid, M, T):
                w_re[m], w_im[m] = roots[0, m], roots[1, m]
            for m in range(tid, M + 1, T):
                c_re[m], c_im[m] = ZERO, ZERO
            x_re, x_im = (b_re, b_im) if RES_IN_B else (a_re, a_im)
            for b in range(B):
                row = b * H + h
                load(u, row, n_in, a_re, a_im, tid, T)        # U_b: half spectrum, kept
                fft(a_re, a_im, b_re, b_im, w_re, w_im, real(1), tid, T)
                for kk in range(tid, HALF + 1, T):
                    k2 = (M - kk) & MASK
                    x1r, x1i, x2r, x2i = split(x_re[kk], x_im[kk], x_re[k2], x_im[k2],
                                               tw[0, kk], tw[1, kk])
                    u_re[kk], u_im[kk] = x1r, x1i
                    u_re[M - kk], u_im[M - kk] = x2r, x2i
                cuda.syncthreads()
                load(g, row, n_in, a_re, a_im, tid, T)        # G_b: one FFT for both grads
                fft(a_re, a_im, b_re, b_im, w_re, w_im, real(1), tid, T)
                for kk in range(tid, HALF + 1, T):
                    k2 = (M - kk) & MASK
                    wr, wi = tw[0, kk], tw[1, kk]
                    g1r, g1i, g2r, g2i = split(x_re[kk], x_im[kk], x_re[k2], x_im[k2], wr, wi)
                    # grad_k accumulator += G conj(U_b) (this block owns channel h: no atomics)
                    ur, ui = u_re[kk], u_im[kk]
                    c_re[kk] += g1r * ur + g1i * ui
                    c_im[kk] += g1i * ur - g1r * ui
                    if M - kk != kk:
                        ur, ui = u_re[M - kk], u_im[M - kk]
                        c_re[M - kk] += g2r * ur + g2i * ui
                        c_im[M - kk] += g2i * ur - g2r * ui
                    # grad_u = G conj(K)
                    kr1, ki1 = spec[h, 0, kk], -spec[h, 1, kk]
                    kr2, ki2 = spec[h, 0, M - kk], -spec[h, 1, M - kk]
                    z1r, z1i, z2r, z2i = merge(g1r * kr1 - g1i * ki1, g1r * ki1 + g1i * kr1,
                                               g2r * kr2 - g2i * ki2, g2r * ki2 + g2i * kr2,
                                               wr, wi)
                    x_re[kk], x_im[kk] = z1r, z1i
                    if kk != 0 and k2 != kk:
                        x_re[k2], x_im[k2] = z2r, z2i
                cuda.syncthreads()
                if RES_IN_B:
                    fft(b_re, b_im, a_re, a_im, w_re, w_im, real(-1), tid, T)
                else:
                    fft(a_re, a_im, b_re, b_im, w_re, w_im, real(-1), tid, T)
                store(grad_u, row, n_in, a_re, a_im, scale, tid, T)
                cuda.syncthreads()
            for kk in range(tid, HALF + 1, T):               # grad_k: one inverse per channel
                k2 = (M - kk) & MASK
                z1r, z1i, z2r, z2i = merge(c_re[kk], c_im[kk], c_re[M - kk], c_im[M - kk],
                                           tw[0, kk], tw[1, kk])
                a_re[kk], a_im[kk] = z1r, z1i
                if kk != 0 and k2 != kk:
                    a_re[k2], a_im[k2] = z2r, z2i
            cuda.syncthreads()
            fft(a_re, a_im, b_re, b_im, w_re, w_im, real(-1), tid, T)
            store(grad_k, h, n_k, a_re if S % 2 == 0 else b_re,
                  a_im if S % 2 == 0 else b_im, scale, tid, T)

    kernel.__name__ = kernel.__qualname__ = f"monarch_{kind}_M{M}_p{block}_{_NUMBA_NAME[real]}"
    return kernel


# ---------------------------------------------------------------------------- host side
@functools.cache
def _tables_np(M: int, real):
    """Roots W_M^t (2, M) for the factors, W_N^k (2, M/2+1) for the real-input split (float64,
    rounded once to ``real``)."""
    t = np.arange(M)
    roots = np.exp(-2j * np.pi * t / M)
    k = np.arange(M // 2 + 1)
    tw = np.exp(-2j * np.pi * k / (2 * M))
    return (np.stack([roots.real, roots.imag]).astype(real),
            np.stack([tw.real, tw.imag]).astype(real))


_TABLES: dict = {}
_SPECTRA: dict = {}
_SPECTRUM_CACHE_SIZE = 16


def _tables(M: int, real, device):
    key = (M, real, str(device))
    if key not in _TABLES:
        r, t = _tables_np(M, real)
        _TABLES[key] = (torch.from_numpy(r).to(device), torch.from_numpy(t).to(device))
    return _TABLES[key]


def half_spectrum(k: torch.Tensor, N: int) -> torch.Tensor:
    """The kernel spectrum the Monarch kernel multiplies by: rfft(k, n=N) as a real (H, 2, N/2+1)
    tensor (re, im), cached on the kernel tensor's identity and version (``k._version`` changes
    on every in-place update, e.g. an optimizer step), so repeated forwards compute it once."""
    key = (id(k), k.data_ptr(), k._version, tuple(k.shape), N, k.dtype, str(k.device))
    hit = _SPECTRA.get(key)
    if hit is not None:
        return hit
    kf = torch.fft.rfft(k.detach(), n=N)
    spec = torch.stack([kf.real, kf.imag], dim=1).contiguous()
    if len(_SPECTRA) >= _SPECTRUM_CACHE_SIZE:
        _SPECTRA.pop(next(iter(_SPECTRA)))
    _SPECTRA[key] = spec
    return spec


def _monarch_sig(kind: str, real) -> str:
    t = _NUMBA_NAME[real]
    if kind == "conv":
        return (f"void({t}[:, ::1], {t}[:, :, ::1], {t}[:, ::1], {t}[:, ::1], {t}[:, ::1], "
                f"int64, int64, {t}, {t})")
    return (f"void({t}[:, ::1], {t}[:, ::1], {t}[:, :, ::1], {t}[:, ::1], {t}[:, ::1], "
            f"{t}[:, ::1], {t}[:, ::1], int64, int64, int64, int64, {t})")


@functools.cache
def _monarch_compiled(M: int, block: int, real, kind: str):
    from numba import cuda as ncuda
    return ncuda.jit(_monarch_sig(kind, real))(bind_cuda(monarch_program(M, block, real, kind),
                                                         ncuda))


def device_smem_optin(device_index: int = 0) -> int:
    """The largest dynamic shared memory one block may opt in to on this GPU
    (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN); without a GPU: the H100's 227 KiB."""
    if simulator_active():
        return H100_SMEM_OPTIN
    from numba import cuda as ncuda
    if not ncuda.is_available():
        return H100_SMEM_OPTIN
    return int(ncuda.gpus[device_index].MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)


def _opt_in(dispatcher, nbytes: int, device_index: int) -> None:
    """Allow ``nbytes`` of dynamic shared memory above the 48 KiB default: the driver attribute
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES on the compiled function (numba-cuda sets
    the carve-out the same way in CudaPythonFunction.set_shared_memory_carveout; numba-cuda
    issue #94 asks for this opt-in)."""
    if nbytes <= DEFAULT_SMEM_BYTES:
        return
    from numba.cuda.cudadrv.driver import binding, driver
    (kern,) = dispatcher.overloads.values()
    cufunc = kern._codelibrary.get_cufunc()
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    driver.cuKernelSetAttribute(attr, int(nbytes), cufunc.handle, device_index)


class _MonarchExecutor(_NumbaExecutor):
    """Launches Monarch kernels with their dynamic shared memory (opted in above 48 KiB)."""

    def launch_monarch(self, M, block, real, kind, grid, threads, smem, *args):
        k = _monarch_compiled(M, block, real, kind)
        args = [self._view(a) for a in args]
        if self.sim:
            k[grid, threads, 0, smem](*args)
            return
        idx = self.device.index or 0
        stream = self.cuda.external_stream(torch.cuda.current_stream(self.device).cuda_stream)
        with self.cuda.gpus[idx]:
            _opt_in(k, smem, idx)
            k[grid, threads, stream, smem](*args)


class _MonarchConv(torch.autograd.Function):
    """Forward: the fused Monarch kernel. Backward: one block per channel, one FFT of g per row
    shared by grad_u and grad_k (grad_k accumulated in shared memory over the batch)."""

    @staticmethod
    def forward(ctx, u, k, smem_bytes, threads, block):
        B, H, L = u.shape
        real = REAL_OF[u.dtype]
        N = fft_size(L)
        M = N // 2
        ex = _MonarchExecutor(u.device)
        spec = half_spectrum(k, N)
        roots, tw = _tables(M, real, u.device)
        y = torch.empty(B * H, L, dtype=u.dtype, device=u.device)
        ex.launch_monarch(M, block, real, "conv", (B * H,), threads,
                          monarch_smem_bytes(M, real, "conv"), u.view(B * H, L), spec, roots,
                          tw, y, L, L, real(1), real(1.0 / M))
        ctx.save_for_backward(u, k)
        ctx.cfg = (smem_bytes, threads, block)
        return y.view(B, H, L)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, k = ctx.saved_tensors
        smem_bytes, threads, block = ctx.cfg
        B, H, L = u.shape
        Lk = k.shape[1]
        real = REAL_OF[u.dtype]
        N = fft_size(L)
        M = N // 2
        need = monarch_smem_bytes(M, real, "grad")
        if need > smem_bytes:         # the fused backward does not fit: the radix-2 path
            gu, gk = _radix2_backward(u, k, gy, min(smem_bytes, DEFAULT_SMEM_BYTES), threads)
            return gu, gk, None, None, None
        ex = _MonarchExecutor(u.device)
        spec = half_spectrum(k, N)
        roots, tw = _tables(M, real, u.device)
        g = gy.contiguous().view(B * H, L)
        gu = torch.empty(B * H, L, dtype=u.dtype, device=u.device)
        gk = torch.empty(H, Lk, dtype=u.dtype, device=u.device)
        ex.launch_monarch(M, block, real, "grad", (H,), threads, need, g, u.view(B * H, L),
                          spec, roots, tw, gu, gk, B, H, L, Lk, real(1.0 / M))
        return gu.view(B, H, L), gk, None, None, None


def _radix2_backward(u, k, gy, smem_bytes, threads):
    with torch.enable_grad():
        u2, k2 = u.detach().requires_grad_(True), k.detach().requires_grad_(True)
        y = _FlashButterflyConv.apply(u2, k2, smem_bytes, threads)
        return torch.autograd.grad(y, (u2, k2), gy)


def check_block(block) -> int:
    block = check_int(block, "block", min=2, max=64, power_of_two=True)
    return block


def cuda_conv(u: torch.Tensor, k: torch.Tensor, *, smem_bytes: int | None = None,
              threads: int = DEFAULT_THREADS, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Causal long convolution by the fused Monarch FlashButterfly kernel (differentiable).

    u: (B, H, L), k: (H, Lk) with 1 <= Lk <= L; float32 or float64, contiguous, same device
    (CUDA tensors on a GPU, CPU tensors under NUMBA_ENABLE_CUDASIM=1). Returns y (B, H, L),
    y[b,h,t] = sum_s k[h,s] u[b,h,t-s].

    smem_bytes: fast memory one block may use; default: the device's opt-in maximum (227 KiB on
    an H100, 163 KiB on an A100; 227 KiB without a GPU). A row runs fused in the Monarch form if
    ``monarch_smem_bytes(N/2)`` fits (float32: L <= 8192 on an H100); longer rows take the
    radix-2 three-pass path (not yet the Monarch form). block: Monarch block size p (DFT blocks
    of p x p), a power of two 2..64. threads: threads per block, a power of two <= 1024.
    """
    check_conv_inputs(u, k)
    _check_contiguous(u, "u")
    _check_contiguous(k, "k")
    real = REAL_OF[u.dtype]
    limit = device_smem_optin(u.device.index or 0 if u.device.type == "cuda" else 0)
    if smem_bytes is None:
        smem_bytes = limit
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    if smem_bytes > limit:
        raise ValueError(f"smem_bytes={smem_bytes} is more than this device grants one block: "
                         f"smem_bytes may be at most {limit} (its "
                         f"MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)")
    block = check_block(block)
    M = fft_size(u.shape[2]) // 2
    fused = monarch_smem_bytes(M, real, "conv") <= smem_bytes
    small = min(smem_bytes, DEFAULT_SMEM_BYTES)
    if not fused:
        make_plan(u.shape[2], real, smem_bytes=small, threads=threads)       # length check
    _executor(u)                                                             # device check
    if fused:
        return _MonarchConv.apply(u, k, smem_bytes, threads, block)
    return _FlashButterflyConv.apply(u, k, small, threads)


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
    if dtype not in REAL_OF:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not (isinstance(cc, tuple) and len(cc) == 2 and all(isinstance(c, int) for c in cc)):
        raise TypeError(f"cc must be a (major, minor) tuple of ints such as (8, 0), got {cc!r}")
    real = REAL_OF[dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
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

        def run(fn, u=u, k=k):
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
