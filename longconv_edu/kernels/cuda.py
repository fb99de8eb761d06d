"""Rung 5a: the fused FlashButterfly convolution as a Numba CUDA kernel, trainable and verifiable.

Two kernels live here. ``cuda_conv``, the registered ``cuda`` backend, is the Monarch form (the
"Monarch kernel" section below: DFT blocks as small mat-vecs, the real-input trick, generated source with
every index a literal): one launch per row where the row fits one block's shared memory, on
sm_90 one launch per row held by a thread block cluster beyond that (``_cluster``, with the
distributed shared memory primitives of ``kernels.dsmem``), else the
Monarch three-pass scheme beyond (outer factors over coalesced tiles of columns, inner Monarch
convolutions, outer inverse). ``radix2_conv`` is the textbook radix-2 kernel the course starts
from (the "before" picture; described first, right below; no backend uses it). The compiler tools
(ptxas, nvdisasm) are in ``kernels.ptx``; the performance model in ``kernels.perf_model``; the
GPU check script in ``kernels.cuda_check``.

The radix-2 kernel:

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
ever needed. ``radix2_kernel_spectrum`` computes it with the same stages, so the layouts always agree.
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
(``io_model.three_pass_traffic``).

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
import itertools
import linecache
import math
import os
import re
import subprocess
import types
from dataclasses import dataclass

import numba
import numpy as np
import torch

from .._checks import check_choice, check_conv_inputs, check_int, check_kernel_length
from ..fft import bit_reversal_permutation, fft_size

__all__ = ["cuda_conv", "radix2_conv", "monarch_program", "monarch_factors", "monarch_smem_bytes",
           "MonarchPlan", "monarch_plan", "monarch_tables", "run_monarch", "THREE_PASS_KINDS",
           "MONARCH_KINDS", "half_spectrum", "spectrum_pad", "device_smem_optin", "MONARCH_BLOCKS",
           "default_block", "check_block", "check_cluster", "default_cluster_max", "device_cluster_max",
           "REPORT_SMEM", "radix2_kernel_spectrum", "monarch_spans", "monarch_pairs",
           "monarch_roots", "least_roots", "check_roots", "fused_backward_plan",
           "Program", "block_program", "bind_cuda", "Plan",
           "make_plan", "simulator_active", "kernel_resources", "KernelResources", "ptxas_path",
           "DEFAULT_SMEM_BYTES", "DEFAULT_THREADS", "max_length", "gpu_timings", "resource_table",
           "bit_reversed_spectrum", "REAL_OF", "check_launch_params", "run_conv", "run_spectrum",
           "monarch_source", "monarch_threads", "sass_counts", "sass_report", "sass_table",
           "write_sass_report", "report_configurations", "SASS_REPORT", "MODEL_LENGTHS", "REPORT_CCS"]

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


def max_tile(real, smem_bytes: int) -> int:
    """Largest power-of-two tile n whose two shared planes (2 n s bytes) fit ``smem_bytes``."""
    n_fit = smem_bytes // (2 * np.dtype(real).itemsize)
    return 1 << (n_fit.bit_length() - 1) if n_fit >= 2 else 0


def max_length(real, smem_bytes: int = DEFAULT_SMEM_BYTES, *, kernel: str = "radix2") -> int:
    """Longest L a kernel supports with ``smem_bytes`` of shared memory per block.

    "radix2": N = 2L must be at most (largest tile)^2 (two levels of tiles). "monarch" (the
    ``cuda`` backend): the longest L some ``monarch_plan`` fits, fused or in three passes."""
    check_choice(kernel, "kernel", ("radix2", "monarch"))
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=1)
    if kernel == "monarch":
        return _monarch_max_length(real, smem_bytes)
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
            f"{t} values ({smem_bytes} bytes of shared memory, {np.dtype(real).name}); with this "
            f"budget the kernel supports L <= {max_length(real, smem_bytes)} (the longest rows "
            f"of the cuda backend: L <= {max_length(real, DEFAULT_SMEM_BYTES)}, its three-pass "
            f"tiles use at most {DEFAULT_SMEM_BYTES} bytes); use backend='fft' for longer rows")
    inner = min(t, 1 << -(-(N.bit_length() - 1) // 2))   # balanced: about sqrt(N) each way
    return Plan(N, N // inner, inner, threads, real)


# The operations, written against an executor ``ex`` with ex.empty(rows, cols, real),
# ex.dummy(real) and ex.launch(program, grid, block, *arrays, *scalars). Arrays are 2-D (rows, len).
def run_spectrum(ex, x, plan: Plan, out_re, out_im) -> None:
    """out = bit-reversed DFT (size N) of each real row of x, zero-padded: forward stages only."""
    R, Lx = x.shape
    r, z = plan.real, ex.dummy(plan.real)
    if plan.passes == 1:
        p = Program(n=plan.N, real=r, load="real", forward=True, multiply=False, inverse=False, store="complex")
        ex.launch(p, (R, 1), plan.block(p.n), x, z, z, z, out_re, out_im, Lx, 0, 0, 1, r(1), r(1))
        return
    po = Program(n=plan.outer, real=r, load="real", forward=True, multiply=False, inverse=False, store="complex")
    ex.launch(po, (R, plan.inner), plan.block(po.n), x, z, z, z, out_re, out_im,
              Lx, 0, 1, plan.inner, r(1), r(1))
    pi = Program(n=plan.inner, real=r, load="complex", forward=True, multiply=False, inverse=False, store="complex")
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
        p = Program(n=plan.N, real=r)
        ex.launch(p, (R, 1), plan.block(p.n), x, z, spec_re, spec_im, out, z,
                  Lx, n_out, 0, 1, sign, scale)
        return
    w_re, w_im = ex.empty(R, plan.N, r), ex.empty(R, plan.N, r)      # the row between passes
    po = Program(n=plan.outer, real=r, load="real", forward=True, multiply=False, inverse=False, store="complex")
    ex.launch(po, (R, plan.inner), plan.block(po.n), x, z, z, z, w_re, w_im,
              Lx, 0, 1, plan.inner, sign, r(1))
    pi = Program(n=plan.inner, real=r, load="complex", forward=True, multiply=True, inverse=True, store="complex")
    ex.launch(pi, (R, plan.outer), plan.block(pi.n), w_re, w_im, spec_re, spec_im, w_re, w_im,
              0, 0, plan.inner, 1, sign, r(1))
    pb = Program(n=plan.outer, real=r, load="complex", forward=False, multiply=False, inverse=True, store="real")
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

    def empty(self, rows, cols, real, label: str = ""):
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


def radix2_kernel_spectrum(k: torch.Tensor, L: int, *, smem_bytes: int = DEFAULT_SMEM_BYTES,
                    threads: int = DEFAULT_THREADS) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectrum the fused kernel multiplies by: (re, im), each (H, N), bit-reversed order.

    k: (H, Lk) contiguous, zero-padded to N = fft_size(L). Equals
    torch.fft.fft(k, n=N)[:, bit_reversal_permutation(N)], computed by the kernel's own stages.
    """
    from .._checks import check_tensor
    check_tensor(k, "k", ndim=2, shape_doc="2-D (H, Lk)")
    L = check_int(L, "L", min=1)
    _check_contiguous(k, "k")
    check_kernel_length(k.shape[1], L, "k", k.shape)
    real = REAL_OF[k.dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads, name="k")
    ex = _executor(k)
    re_, im_ = ex.empty(k.shape[0], plan.N, real), ex.empty(k.shape[0], plan.N, real)
    run_spectrum(ex, k, plan, re_, im_)
    return re_, im_


def bit_reversed_spectrum(k: torch.Tensor, N: int) -> torch.Tensor:
    """What ``radix2_kernel_spectrum`` computes, by torch.fft: fft(k, n=N) in bit-reversed order, (H, N).

    The reference for the layout (and for the course exercise of that name); CPU or GPU, any
    float dtype, no numba. N must be a power of two >= Lk.
    """
    from .._checks import check_tensor
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
# The registered ``cuda`` backend. Everything above this line is the radix-2 kernel,
# kept as the notebook's "before" picture (``radix2_conv``).
#
# One thread block per row. With N = fft_size(L) and M = N/2, the real row u is read once as M
# complex values z[m] = u[2m] + i u[2m+1] (the real-input trick: an M-point complex FFT instead
# of an N-point one). The M-point DFT is a product of S = ceil(log2 M / log2 p) Monarch factors:
# each is a block-diagonal matrix of p x p DFT blocks (p = ``block``, ``default_block(M)``: 8, or
# 4 for M <= 1024) with its twiddles folded in, applied as small complex mat-vecs in registers
# (p <= 4 as dense sums, larger p by the block's own factorisation: ``_dft_lines``), IN PLACE
# (``_inplace_factor_source``): factor f of span P (sub-transforms of P values, stride s = P/p)
# lets a thread load its group of p values q0 + r s into registers, apply the block, multiply
# output k by W_P^(j k) (j = the group's offset in its sub-transform) and store output k back
# into the slot of rev_p(k) (k's bits reversed): a decimation-in-frequency FFT that leaves
# frequency rev(i) at position i (log2 M bits reversed) whatever the radices, with one buffer of
# M values and a barrier between factors. The real-input split joins Z[k] and Z[M - k]: in this
# order the two sit at mirror positions of one octave [2H, 4H) of positions (``monarch_pairs``);
# it gives the N-point half spectrum X[k], k = 0..M, which is multiplied by the cached kernel
# spectrum K (torch.fft.rfft of k, once per kernel tensor version) stored in the same order
# (``half_spectrum``); the merge and the inverse factors, run backwards (conjugate twiddles
# and blocks), restore natural order: no permutation anywhere. The twiddles come from two small
# tables staged once per block (``monarch_tables``): W_Q^t (t < Q) serves every factor of span
# P <= Q in one lookup; the first factor (P > Q) makes W_P^j = W_Q^(t_hi) W_M^(t_lo) (t < M/Q)
# once per group and its other twiddles as powers of it.
# Q is the largest the shared-memory budget allows (``monarch_roots``; Q = M: one table).
# Global memory: one read of u, one write of y per element, plus the (M+1)-point spectrum of
# the row's channel and the tables.
#
# Rows beyond one block's shared memory (``_three_pass``, ``monarch_plan``): M = outer x inner,
# the row seen as an (outer, inner) array. Pass 1 reads u by tiles of consecutive columns (a
# warp's loads are consecutive floats), applies the outer Monarch factors down the columns and
# the twiddles W_M^(k1 b), and writes the row w (N reals) to global memory in the same order;
# pass 2 takes two inner rows per block (the rows whose values pair up in the real-input split),
# applies the inner factors, splits, multiplies by the spectrum (stored in this order, so read
# in order too), merges, applies the inverse inner factors, writes w back; pass 3 reads w by
# tiles of columns, applies the conjugate twiddles and the inverse outer factors, writes y.
# Two more round trips of w (N reals per row) than the fused kernel.
MONARCH_BLOCKS = (2, 4, 8, 16, 32, 64)


def default_block(M: int) -> int:
    """The Monarch block size p the ``cuda`` backend takes for rows of M complex values: 8, or 4
    for M <= 1024. Chosen by the performance model from the SASS report (course page 05,
    "choosing p"): an 8 x 8 block, evaluated in registers (``_dft_lines``), costs fewer
    instructions per value than two 4 x 4 factors with a shared-memory round trip and a barrier
    between them; at M <= 1024 the 256 rows of the model's batch leave too few warps per SM
    unless each row keeps 256 threads busy, which p = 4 does and p = 8 does not."""
    M = check_int(M, "M", min=1)
    return 4 if M <= 1024 else 8


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


#: The kernels of the three-pass scheme (rows beyond one block's shared memory): pass 1
#: "outer" (the outer factors down tiles of columns, then the twiddles), pass 2 "inner" (the
#: inner factors, the product with the kernel spectrum, the inverse inner factors) or
#: "inner_spectrum" (the inner factors and the real-input split only: the half spectrum of a
#: row, for grad_k), pass 3 "outer_inverse" (the conjugate twiddles, the inverse outer factors).
THREE_PASS_KINDS = ("outer", "inner", "inner_spectrum", "outer_inverse")
MONARCH_KINDS = ("conv", "grad") + THREE_PASS_KINDS + ("cluster",)


def least_roots(M: int) -> int:
    """The smallest root table Q a fused Monarch kernel of M complex values takes:
    2^ceil(log2(M) / 2), about sqrt(M), so that both tables (W_Q^t, t < Q, and W_M^t, t < M/Q)
    hold at most Q values."""
    M = check_int(M, "M", min=1, power_of_two=True)
    return 1 << (M.bit_length() // 2)


def check_roots(M: int, roots) -> int:
    """``roots`` (Q, the size of the fused kernel's root table W_Q^t) checked against M:
    a power of two from ``least_roots(M)`` to M; None means M (one table, no two-level
    twiddles)."""
    if roots is None:
        return M
    return check_int(roots, "roots", min=least_roots(M), max=M, power_of_two=True)


def monarch_smem_bytes(M: int, real, kind: str = "conv", *, roots: int | None = None,
                       outer: int = 1, columns: int = 1, cluster: int = 2) -> int:
    """Dynamic shared memory of one block of Monarch kernel ``kind`` for rows of M complex values.

    "conv" (fused): the row, M values transformed in place, and the root tables: W_Q^t
    (t < Q = ``roots``; None: Q = M) and, when Q < M, W_M^t (t < M/Q), re and im:
    2 M + 2 Q + 2 M/Q reals (4 M with Q = M); "grad" adds the row's input half spectrum and the
    channel's grad_k accumulator, 4 (M + 1). Three passes, M = outer x inner: "inner" and
    "inner_spectrum" hold two inner rows in two buffers and the inner root table, 10 inner;
    "outer" and "outer_inverse" a tile of outer x columns values in two buffers and the outer
    root table, 4 outer columns + 2 outer. "cluster": one of the ``cluster`` CTAs that hold a
    row together (``_cluster``), each as a fused "conv" block of M / cluster values.
    """
    M = check_int(M, "M", min=1, power_of_two=True)
    check_choice(kind, "kind", MONARCH_KINDS)
    s = np.dtype(real).itemsize
    if kind == "cluster":
        C = check_int(cluster, "cluster", min=2, max=max(2, M // 2), power_of_two=True)
        return monarch_smem_bytes(M // C, real, "conv", roots=roots)
    if kind in ("conv", "grad"):
        Q = check_roots(M, roots)
        tables = 2 * Q + (2 * (M // Q) if Q < M else 0)
        return (2 * M + tables + (4 * (M + 1) if kind == "grad" else 0)) * s
    outer = check_int(outer, "outer", min=2, max=max(2, M // 2), power_of_two=True)
    if kind in ("inner", "inner_spectrum"):
        return 10 * (M // outer) * s
    columns = check_int(columns, "columns", min=1, max=M // outer, power_of_two=True)
    return (4 * outer * columns + 2 * outer) * s


def monarch_roots(M: int, real, smem_bytes: int, kind: str = "conv",
                  block: int | None = None) -> int | None:
    """The root table Q a fused Monarch kernel ``kind`` ("conv" or "grad") of M complex values
    takes under ``smem_bytes``: the largest candidate whose block fits, so the fewest factors
    pay for two-level twiddles (a factor of span P > Q does); None when not even
    ``least_roots(M)`` fits (then the row takes three passes). Candidates: the factors' spans
    P_f (``monarch_spans``) from M down to ``least_roots(M)``, and ``least_roots(M)`` itself."""
    M = check_int(M, "M", min=1, power_of_two=True)
    check_choice(kind, "kind", ("conv", "grad"))
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=1)
    block = default_block(M) if block is None else check_block(block)
    q0 = least_roots(M)
    for Q in sorted({P for P in monarch_spans(M, block) if P >= q0} | {q0, M}, reverse=True):
        if monarch_smem_bytes(M, real, kind, roots=Q) <= smem_bytes:
            return Q
    return None


def _dft_terms(p: int, sgn: int, consts: dict, real) -> list[tuple[str, str]]:
    """Source of the p-point DFT block y_s = sum_r t_r W_p^(sgn r s), W_p = exp(-2 pi i / p),
    on registers t{r}r, t{r}i: [(re expression, im expression) for s in 0..p-1]. Entries that
    are exactly 0 or +-1 (the four quarter turns) become additions; every other entry is a
    named constant ``K<j>`` of type ``real`` (added to ``consts``)."""
    def const(v: float) -> str:
        return _const(v, consts, real)

    def lin(pairs):                     # sum of coef * var, coefficients exact where they can be
        out = []
        for coef, var in pairs:
            if coef == 0:
                continue
            if coef == 1:
                out.append(f"+ {var}")
            elif coef == -1:
                out.append(f"- {var}")
            else:
                out.append(f"+ {var} * {const(coef)}")
        s = " ".join(out) or "ZERO"
        return s[2:] if s.startswith("+ ") else "ZERO " + s if s.startswith("- ") else s

    rows = []
    for s in range(p):
        re_terms, im_terms = [], []
        for r in range(p):
            e = (r * s) % p
            if e == 0:
                c, d = 1, 0
            elif 2 * e == p:
                c, d = -1, 0
            elif 4 * e == p:
                c, d = 0, -sgn
            elif 4 * e == 3 * p:
                c, d = 0, sgn
            else:
                ang = -2 * math.pi * e / p * sgn
                c, d = math.cos(ang), math.sin(ang)
            re_terms += [(c, f"t{r}r"), (-d, f"t{r}i")]      # (tr + i ti)(c + i d)
            im_terms += [(d, f"t{r}r"), (c, f"t{r}i")]
        rows.append((lin(re_terms), lin(im_terms)))
    return rows


#: Blocks this size or smaller are written out as dense sums (2 and 4: only additions, since
#: every entry is 0 or a quarter turn); larger blocks are evaluated by their own factorisation.
DENSE_BLOCK_MAX = 4


def _dft_lines(p: int, sgn: int, consts: dict, real, ind: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Source of the p-point DFT block y_s = sum_r t_r W_p^(sgn r s) on registers t{r}r, t{r}i:
    (lines, outs), outs[s] = (re, im) of y_s after ``lines`` ran.

    p <= ``DENSE_BLOCK_MAX``: the dense sums of ``_dft_terms``, no lines. Larger p: the block's
    own Monarch factorisation, one level down and in registers: p = m q (m = 4, or 2 for p = 8),
    r = m r2 + r1, s = s1 + q s2, so
        y_(s1 + q s2) = sum_r1 W_m^(r1 s2) W_p^(r1 s1) sum_r2 W_q^(r2 s1) t_(m r2 + r1):
    m DFTs of q points, the constant twiddles W_p^(r1 s1) (quarter turns as swaps and signs),
    q DFTs of m points. The same matrix as the dense sum, at about 5 p log2(p) real flops
    instead of the dense sum's (208 for p = 8 with its exact entries folded, 76 this way): on
    CUDA cores, without a tensor core to do the dense product in one instruction, this is what
    lets p = 8 take fewer SASS instructions per element than p = 4 (the SASS report)."""
    if p <= DENSE_BLOCK_MAX:
        return [], _dft_terms(p, sgn, consts, real)
    lines: list[str] = []
    count = [0]

    def fresh() -> tuple[str, str]:
        count[0] += 1
        return f"v{count[0]}r", f"v{count[0]}i"

    tok = re.compile(r"\bt(\d+)([ri])\b")

    def dft(xs, n):
        if n <= DENSE_BLOCK_MAX:
            def sub(m):                            # t{r}r / t{r}i -> the names of xs[r]
                return xs[int(m.group(1))][0 if m.group(2) == "r" else 1]
            outs = []
            for er, ei in _dft_terms(n, sgn, consts, real):
                vr, vi = fresh()
                lines.append(f"{ind}{vr} = {tok.sub(sub, er)}")
                lines.append(f"{ind}{vi} = {tok.sub(sub, ei)}")
                outs.append((vr, vi))
            return outs
        m = 4 if n >= 16 else 2
        q = n // m
        cols = [dft([xs[m * r2 + r1] for r2 in range(q)], q) for r1 in range(m)]
        for r1 in range(1, m):
            for s1 in range(1, q):
                cols[r1][s1] = twiddle(cols[r1][s1], (r1 * s1) % n, n)
        out = [None] * n
        for s1 in range(q):
            for s2, y in enumerate(dft([cols[r1][s1] for r1 in range(m)], m)):
                out[s1 + q * s2] = y
        return out

    def twiddle(x, e, n):                          # x W_n^(sgn e), a constant
        a, b = x
        if e == 0:
            return x
        if 2 * e == n:
            return f"(-{a})", f"(-{b})"
        if 4 * e == n or 4 * e == 3 * n:          # -+ i sgn
            d = -sgn if 4 * e == n else sgn
            return (f"(-{b})", a) if d > 0 else (b, f"(-{a})")
        ang = -2 * math.pi * e / n * sgn
        c, d = _const(math.cos(ang), consts, real), _const(math.sin(ang), consts, real)
        vr, vi = fresh()
        lines.append(f"{ind}{vr} = {a} * {c} - {b} * {d}")
        lines.append(f"{ind}{vi} = {a} * {d} + {b} * {c}")
        return vr, vi

    outs = dft([(f"t{r}r", f"t{r}i") for r in range(p)], p)
    return lines, outs


def _const(v: float, consts: dict, real) -> str:
    """The name of the constant v of type ``real`` (``K<j>``, added to ``consts`` once)."""
    v = float(real(v))
    for name, c in consts.items():
        if name.startswith("K") and float(c) == v:
            return name
    name = f"K{len(consts)}"
    consts[name] = real(v)
    return name


def _u(n: int, consts: dict) -> str:
    """The name of the unsigned 64-bit constant n (``U<n>``): indices built only from unsigned
    values skip numba's negative-index wrap-around (a compare and a select per access)."""
    name = f"U{n}"
    consts[name] = np.uint64(n)
    return name


def _factor_source(M: int, block: int, src: str, dst: str, sgn: int, consts: dict, real,
                   ind: str, count: int = 1, layout: str = "rows") -> list[str]:
    """Source of the Monarch factors of an M-point DFT (sgn=+1) or its unscaled inverse (-1),
    from shared buffers ``src`` to alternating buffers, one barrier after each factor.

    count > 1: ``count`` independent M-point transforms at once, laid out as ``layout``:
    "rows" (transform t holds elements t*M .. t*M + M-1: the inner pass's two rows) or
    "columns" (element i of transform t at i*count + t: the outer passes' tile of columns,
    where consecutive threads take consecutive columns)."""
    LOGM = M.bit_length() - 1
    lines, ls = [], 0
    bufs = (src, dst)
    u = functools.partial(_u, consts=consts)
    lc = count.bit_length() - 1
    for st, p in enumerate(monarch_factors(M, block)):
        lr = p.bit_length() - 1
        a, b = bufs[st % 2], bufs[(st + 1) % 2]
        stride, sh, span = M >> lr, LOGM - ls - lr, 1 << ls
        groups = M // p
        i2 = ind + "    "
        if count == 1:
            lines.append(f"{ind}# factor {st}: {M // p} dense {p}x{p} DFT blocks, previous span {span}")
            lines.append(f"{ind}for c in range(tid, {u(groups)}, T):")
            if ls:
                lines.append(f"{i2}k = c & {u(span - 1)}")
                lines.append(f"{i2}e = k << {u(sh)}")
                lines.append(f"{i2}q0 = ((c >> {u(ls)}) << {u(ls + lr)}) + k")
            else:
                lines.append(f"{i2}q0 = c << {u(lr)}")
            base, mult = "c", 1
        else:
            lines.append(f"{ind}# factor {st}: {count} x {M // p} dense {p}x{p} DFT blocks ({layout}), "
                         f"previous span {span}")
            lines.append(f"{ind}for cc in range(tid, {u(count * groups)}, T):")
            if layout == "rows":
                lines.append(f"{i2}c = cc & {u(groups - 1)}")
                lines.append(f"{i2}bs = (cc >> {u(groups.bit_length() - 1)}) << {u(LOGM)}")
                lines.append(f"{i2}i0 = bs + c")
                if ls:
                    lines.append(f"{i2}k = c & {u(span - 1)}")
                    lines.append(f"{i2}e = k << {u(sh)}")
                    lines.append(f"{i2}q0 = bs + ((c >> {u(ls)}) << {u(ls + lr)}) + k")
                else:
                    lines.append(f"{i2}q0 = bs + (c << {u(lr)})")
                base, mult = "i0", 1
            else:
                lines.append(f"{i2}tc = cc & {u(count - 1)}")
                lines.append(f"{i2}c = cc >> {u(lc)}")
                if ls:
                    lines.append(f"{i2}k = c & {u(span - 1)}")
                    lines.append(f"{i2}e = k << {u(sh)}")
                    lines.append(f"{i2}q0 = ((((c >> {u(ls)}) << {u(ls + lr)}) + k) << {u(lc)}) + tc")
                else:
                    lines.append(f"{i2}q0 = (c << {u(lr + lc)}) + tc")
                base, mult = "cc", count
        for r in range(p):
            off = f"{base} + {u(r * stride * mult)}" if r else base
            if ls and r:
                lines.append(f"{i2}xr = {a}_re[{off}]")
                lines.append(f"{i2}xi = {a}_im[{off}]")
                lines.append(f"{i2}wr = w_re[{u(r)} * e]")
                lines.append(f"{i2}wi = w_im[{u(r)} * e]")
                if sgn > 0:                                  # x * w
                    lines.append(f"{i2}t{r}r = xr * wr - xi * wi")
                    lines.append(f"{i2}t{r}i = xr * wi + xi * wr")
                else:                                        # x * conj(w)
                    lines.append(f"{i2}t{r}r = xr * wr + xi * wi")
                    lines.append(f"{i2}t{r}i = xi * wr - xr * wi")
            else:
                lines.append(f"{i2}t{r}r = {a}_re[{off}]")
                lines.append(f"{i2}t{r}i = {a}_im[{off}]")
        pre, outs = _dft_lines(p, sgn, consts, real, i2)
        lines += pre
        for s, (er, ei) in enumerate(outs):
            q = f"q0 + {u(s * span * mult)}" if s else "q0"
            lines.append(f"{i2}{b}_re[{q}] = {er}")
            lines.append(f"{i2}{b}_im[{q}] = {ei}")
        lines.append(f"{ind}cuda.syncthreads()")
        ls += lr
    return lines


def monarch_spans(M: int, block: int) -> list[int]:
    """The span P_f of each Monarch factor of an M-point DFT (``monarch_factors``): factor f
    works on independent sub-transforms of P_f = M / (p_0 ... p_{f-1}) values (P_0 = M)."""
    out, P = [], M
    for p in monarch_factors(M, block):
        out.append(P)
        P //= p
    return out


def _power_lines(p: int, ind: str) -> list[str]:
    """Source making w_k = w1^k (variables wkr, wki), k = 2..p-1, from w1: each a product of two
    earlier powers (w2 = w1 w1, w3 = w2 w1, w4 = w2 w2, w5 = w4 w1, ...), depth log2(k)
    multiplies, so the rounding error stays a few ulp."""
    out = []
    for k in range(2, p):
        a = 1 << (k.bit_length() - 1)                # k = a + b, a the highest power of two
        a, b = (k // 2, k // 2) if a == k else (a, k - a)
        out += [f"{ind}w{k}r = w{a}r * w{b}r - w{a}i * w{b}i",
                f"{ind}w{k}i = w{a}r * w{b}i + w{a}i * w{b}r"]
    return out


def _inplace_factor_source(M: int, block: int, sgn: int, consts: dict, real, ind: str,
                           roots: int, start: str = "tid") -> list[str]:
    """Source of the Monarch factors of an M-point DFT applied IN PLACE in the shared buffer
    ``a``: sgn=+1 the forward factors 0, 1, ..., S-1 (decimation in frequency: natural order
    in, bit-reversed order out), sgn=-1 their exact inverses (unscaled) in the reverse order
    (bit-reversed in, natural out). One barrier after each factor.

    Factor f (span P, radix p, stride s = P/p) owns the M/p groups of p values q0 + r s
    (q0 = (c / s) P + j, j = c mod s): a thread loads its group into registers, applies the
    dense p x p DFT block, multiplies output k by the twiddle W_P^(j k) and stores output k in
    the slot of index rev_p(k) (k's log2 p bits reversed), so that after all factors position
    i holds frequency rev(i), i's log2 M bits reversed, whatever the radices (digit reversal
    with each digit's bits reversed too). The inverse loads slot rev_p(k), multiplies by
    conj(W_P^(j k)), applies the conjugate block and stores in natural slots.

    Twiddles come from two shared tables: w = W_Q^t (t < Q = ``roots``) and, when Q < M,
    f = W_M^t (t < M/Q). A factor whose span P <= Q reads W_P^(j k) = w[j k Q/P] (one
    lookup per k); a larger span (only the first factor) makes w1 = W_P^j = W_M^(j M/P) from
    both tables (t = j M/P = t_hi M/Q + t_lo: W_M^t = w[t_hi] f[t_lo]) and its powers
    W_P^(j k) = w1^k by products of depth log2(k) (w2 = w1 w1, w3 = w2 w1, w4 = w2 w2, ...):
    p - 2 complex multiplies for the group instead of p - 1 two-table lookups, each four loads
    and a complex multiply, at a rounding error that grows with the depth (a few ulp)."""
    LOGM = M.bit_length() - 1
    Q = roots
    LOGQ = Q.bit_length() - 1
    u = functools.partial(_u, consts=consts)
    facs, spans = monarch_factors(M, block), monarch_spans(M, block)
    order = range(len(facs)) if sgn > 0 else range(len(facs) - 1, -1, -1)
    i2 = ind + "    "
    lines = []

    def twiddle(k: int, P: int) -> list[str]:        # wr, wi = W_P^(j k), from e (see below)
        if P > Q:                                     # the powers made by ``powers``
            return [f"{i2}wr = w{k}r", f"{i2}wi = w{k}i"]
        t = "e" if k == 1 else f"{u(k)} * e"
        return [f"{i2}wr = w_re[{t}]", f"{i2}wi = w_im[{t}]"]

    def powers(p: int) -> list[str]:                  # w1 = W_M^e from both tables, then
        sh = LOGM - LOGQ                              # its powers
        return [f"{i2}w1r = w_re[e >> {u(sh)}]", f"{i2}w1i = w_im[e >> {u(sh)}]",
                f"{i2}fr = f_re[e & {u((1 << sh) - 1)}]", f"{i2}fi = f_im[e & {u((1 << sh) - 1)}]",
                f"{i2}w1r, w1i = w1r * fr - w1i * fi, w1r * fi + w1i * fr", *_power_lines(p, i2)]

    for f in order:
        p, P = facs[f], spans[f]
        s = P // p
        lr, ls, lP = p.bit_length() - 1, s.bit_length() - 1, P.bit_length() - 1
        rev = [int(v) for v in bit_reversal_permutation(p)]
        how = "one lookup" if P <= Q else "powers of W_P^j (two lookups)"
        lines.append(f"{ind}# factor {f}{' (inverse)' if sgn < 0 else ''}: {M // p} dense {p}x{p} "
                     f"DFT blocks in place, span {P}, stride {s}"
                     + (f", twiddles W_{P}^(j k): {how}" if s > 1 else ", no twiddles"))
        lines.append(f"{ind}for c in range({start}, {u(M // p)}, T):")
        if s > 1:
            lines.append(f"{i2}j = c & {u(s - 1)}")
            lines.append(f"{i2}q0 = ((c >> {u(ls)}) << {u(lP)}) + j")
            shift = LOGQ - lP if P <= Q else LOGM - lP           # e = j Q/P, or j M/P
            lines.append(f"{i2}e = j << {u(shift)}" if shift else f"{i2}e = j")
            if P > Q:
                lines += powers(p)
        else:
            lines.append(f"{i2}q0 = c << {u(lr)}")

        def slot(r, s=s):
            return f"q0 + {u(r * s)}" if r else "q0"
        if sgn > 0:
            for r in range(p):
                lines += [f"{i2}t{r}r = a_re[{slot(r)}]", f"{i2}t{r}i = a_im[{slot(r)}]"]
            pre, outs = _dft_lines(p, +1, consts, real, i2)
            lines += pre
            for k, (er, ei) in enumerate(outs):
                q = slot(rev[k])
                if k == 0 or s == 1:
                    lines += [f"{i2}a_re[{q}] = {er}", f"{i2}a_im[{q}] = {ei}"]
                else:
                    lines += [f"{i2}yr = {er}", f"{i2}yi = {ei}", *twiddle(k, P),
                              f"{i2}a_re[{q}] = yr * wr - yi * wi", f"{i2}a_im[{q}] = yr * wi + yi * wr"]
        else:
            for k in range(p):
                q = slot(rev[k])
                if k == 0 or s == 1:
                    lines += [f"{i2}t{k}r = a_re[{q}]", f"{i2}t{k}i = a_im[{q}]"]
                else:
                    lines += [f"{i2}xr = a_re[{q}]", f"{i2}xi = a_im[{q}]", *twiddle(k, P),
                              f"{i2}t{k}r = xr * wr + xi * wi", f"{i2}t{k}i = xi * wr - xr * wi"]
            pre, outs = _dft_lines(p, -1, consts, real, i2)
            lines += pre
            for r, (er, ei) in enumerate(outs):
                lines += [f"{i2}a_re[{slot(r)}] = {er}", f"{i2}a_im[{slot(r)}] = {ei}"]
        lines.append(f"{ind}cuda.syncthreads()")
    return lines


def _pair_source(M: int, NT: int, consts: dict, ind: str, body, special,
                 top: int | None = None) -> list[str]:
    """Source of the loop over the pairs of positions (i, i2) of the bit-reversed row whose
    frequencies k and M - k the real-input split joins (``monarch_pairs``), NT threads.

    Pair e1 (1 <= e1 < M/2) has i = e1 + H, H the highest set bit of e1, and its partner is the
    mirror image i2 = 6H - 1 - i in the octave [2H, 4H) of positions; pair 0 is position 0
    (frequency 0), whose partner is X[M]. First pass: thread t takes pair e1 = t (the octaves
    H < NT; H from one count-leading-zeros); then one loop per octave H >= NT, whose positions
    are affine in the thread: i = 2H + d, i2 = 4H - 1 - d, e1 = H + d, d = t + NT x (literal
    offsets, no per-pair index arithmetic, and whole 32-byte sectors of the spectrum and the
    twiddles per warp). Position 1 (k = M/2, its own partner) is ``special``, done by thread 0.
    ``body(ind, guard)`` gives the lines for one pair from i, i2, kb (where the partner's
    spectrum is: X[M] for pair 0) and e1 (the pair's number: its twiddle); guard: whether i2
    may equal i (pair 0). top: where the spectrum holds X[M] (default M; the cluster kernel's
    CTA 0 holds M values of a longer row)."""
    u = functools.partial(_u, consts=consts)
    n0 = min(NT, max(M // 2, 1))
    out = [f"{ind}e1 = tid",
           f"{ind}if e1 < {u(n0)}:" if n0 < NT else f"{ind}if True:",
           f"{ind}    hb = {u(1 << 31)} >> np.uint64(cuda.clz(np.uint32(e1)))   # e1's top bit; 0 for 0",
           f"{ind}    i = e1 + hb                            # e1 = 0: position 0 (DC, with X[M])",
           f"{ind}    i2 = {u(6)} * hb - {u(1)} - i if e1 != {u(0)} else {u(0)}",
           f"{ind}    kb = i2 if e1 != {u(0)} else {u(M if top is None else top)}",
           *body(ind + "    ", True)]
    if M >= 2:
        out += [f"{ind}if tid == {u(0)}:                     # position 1: k = M/2, its own partner",
                *special(ind + "    ")]
    H = NT
    while H <= M // 4:
        out += [f"{ind}for it_ in range({u(H // NT)}):         # the octave [{2 * H}, {4 * H})",
                f"{ind}    d = tid + it_ * {u(NT)}",
                f"{ind}    i = {u(2 * H)} + d", f"{ind}    i2 = {u(4 * H - 1)} - d",
                f"{ind}    kb = i2", f"{ind}    e1 = {u(H)} + d",
                *body(ind + "    ", False)]
        H *= 2
    return out


def monarch_pairs(M: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, i2): for each pair e1 = 0 .. max(M/2, 1) - 1 the two positions of the fused kernel's
    bit-reversed row (position i holds frequency rev(i)) whose frequencies k and M - k the
    real-input split joins (``_pair_source`` computes the same in the kernel): e1 = 0 is
    (0, 0), the partner of Z[0] being X[M]; for e1 >= 1, with H the highest set bit of e1,
    i = e1 + H and i2 = 6H - 1 - i, the mirror image of i in the octave [2H, 4H). With
    position 1 (k = M/2, its own partner, done apart) every position appears exactly once."""
    M = check_int(M, "M", min=1, power_of_two=True)
    e1 = np.arange(max(M // 2, 1))
    hb = np.where(e1 > 0, np.left_shift(1, np.frexp(np.maximum(e1, 1))[1].astype(np.int64) - 1), 0)
    i = e1 + hb                                                 # hb: e1's highest set bit, exactly
    i2 = np.where(e1 > 0, 6 * hb - 1 - i, 0)
    return i.astype(np.int64), i2.astype(np.int64)


_SPLIT = """\
er = HALF_R * ({z1r} + {z2r})
ei = HALF_R * ({z1i} - {z2i})
orr = HALF_R * ({z1i} + {z2i})
oi = HALF_R * ({z2r} - {z1r})
tr = wr * orr - wi * oi
ti = wr * oi + wi * orr
{x1r} = er + tr
{x1i} = ei + ti
{x2r} = er - tr
{x2i} = ti - ei"""

_MERGE = """\
epr = HALF_R * ({y1r} + {y2r})
epi = HALF_R * ({y1i} - {y2i})
dr = HALF_R * ({y1r} - {y2r})
di = HALF_R * ({y1i} + {y2i})
opr = dr * wr + di * wi
opi = di * wr - dr * wi
{z1r} = epr - opi
{z1i} = epi + opr
{z2r} = epr + opi
{z2i} = opr - epi"""


def _block(template: str, ind: str, **names) -> list[str]:
    return [ind + line for line in template.format(**names).splitlines()]


# The pieces of source the fused kernels ("conv", "grad") and the cluster kernel share.
_split_pair = functools.partial(_block, _SPLIT, z1r="ar", z1i="ai", z2r="br", z2i="bi")
_merge_pair = functools.partial(_block, _MERGE, y1r="y1r", y1i="y1i", y2r="y2r", y2i="y2i",
                                z1r="z1r", z1i="z1i", z2r="z2r", z2i="z2i")


def _shared_row(M: int, Q: int, F: int) -> list[str]:
    """One block's shared memory ``sm`` as the row of M values in place (a_re, a_im) and the
    root tables W_Q^t (w) and, when F > 0, W_M^t for t < F (f)."""
    return [f"    a_re = sm[0:{M}]", f"    a_im = sm[{M}:{2 * M}]",
            f"    w_re = sm[{2 * M}:{2 * M + Q}]", f"    w_im = sm[{2 * M + Q}:{2 * M + 2 * Q}]",
            *([f"    f_re = sm[{2 * M + 2 * Q}:{2 * M + 2 * Q + F}]",
               f"    f_im = sm[{2 * M + 2 * Q + F}:{2 * M + 2 * Q + 2 * F}]"] if F else [])]


def _stage_roots(Q: int, F: int, u) -> list[str]:
    """The loops that stage the root tables into shared memory once per block."""
    return [f"    for m in range(tid, {u(Q)}, T):             # stage the roots W_Q^t once per block",
            "        w_re[m] = roots[0, m]", "        w_im[m] = roots[1, m]",
            *([f"    for m in range(tid, {u(F)}, T):             # and the fine roots W_M^t, t < M/Q",
               "        f_re[m] = fine[0, m]", "        f_im[m] = fine[1, m]"] if F else [])]


def _z_pair(ind: str, t: str = "e1") -> list[str]:
    """The pair's two values (positions i, i2) and its split twiddle tw[:, t]."""
    return [f"{ind}wr = tw[0, {t}]", f"{ind}wi = tw[1, {t}]", f"{ind}ar = a_re[i]",
            f"{ind}ai = a_im[i]", f"{ind}br = a_re[i2]", f"{ind}bi = a_im[i2]"]


def _write_pair(ind: str, guard: bool) -> list[str]:
    """The merged pair back to positions i and i2 (guard: i2 may equal i, pair 0)."""
    return [f"{ind}a_re[i] = z1r", f"{ind}a_im[i] = z1i",
            *([f"{ind}if i2 != i:", f"{ind}    a_re[i2] = z2r", f"{ind}    a_im[i2] = z2i"]
              if guard else [f"{ind}a_re[i2] = z2r", f"{ind}a_im[i2] = z2i"])]


def _pair_product(ind: str, srow: str, sign: str, k1: str = "i", k2: str = "kb") -> list[str]:
    """y1 = x1 K[k], y2 = x2 K[M - k], K from spectrum row ``srow`` at indices k1 and k2, its
    imaginary part multiplied by ``sign`` (conjugation)."""
    return [f"{ind}kr1 = spec[{srow}, 0, {k1}]", f"{ind}ki1 = {sign}spec[{srow}, 1, {k1}]",
            f"{ind}kr2 = spec[{srow}, 0, {k2}]", f"{ind}ki2 = {sign}spec[{srow}, 1, {k2}]",
            f"{ind}y1r = x1r * kr1 - x1i * ki1", f"{ind}y1i = x1r * ki1 + x1i * kr1",
            f"{ind}y2r = x2r * kr2 - x2i * ki2", f"{ind}y2i = x2r * ki2 + x2i * kr2"]


def _conv_pair(ind: str, guard: bool, t: str = "e1") -> list[str]:
    """One pair of the forward convolution: split, times the spectrum (conj when conj = -1),
    merge, written back."""
    return [*_z_pair(ind, t), *_split_pair(ind, x1r="x1r", x1i="x1i", x2r="x2r", x2i="x2i"),
            *_pair_product(ind, "srow", "conj * "), *_merge_pair(ind), *_write_pair(ind, guard)]


def _conv_special(ind: str, u) -> list[str]:
    """Position 1 (k = M/2, its own partner): X[M/2] = conj(Z[M/2]), and the merge of
    Y = X[M/2] K[M/2] gives conj(Y), so Z[M/2] is multiplied by conj(K[M/2])."""
    return [f"{ind}zr = a_re[{u(1)}]", f"{ind}zi = a_im[{u(1)}]",
            f"{ind}kr = spec[srow, 0, {u(1)}]", f"{ind}ki = conj * spec[srow, 1, {u(1)}]",
            f"{ind}a_re[{u(1)}] = zr * kr + zi * ki      # Z[M/2] conj(K[M/2])",
            f"{ind}a_im[{u(1)}] = zi * kr - zr * ki"]


def monarch_threads(M: int, threads: int | None = None, kind: str = "conv", block: int = 4) -> int:
    """Threads of a Monarch block for M-point transforms (a compile-time constant of the kernel:
    the launch uses exactly this many): ``threads`` capped at M, or by default, for the fused
    forward, M / (2 p) between 256 and 1024 (two p-point groups per thread and factor: M/8 for
    p = 4, M/16 for p = 8), so that the long rows, whose shared memory leaves room for one block
    per SM, still have 32 warps on it to hide latency (shorter rows fit several blocks per SM);
    the three-pass kernels take M/8 between 256 and 1024 whatever p (their shared memory leaves
    one or a few blocks per SM, so they keep the warps). The fused
    backward (kind "grad") takes 256 by default: its loop over the batch makes the compiler
    keep each thread's addresses live through the whole loop, and with more threads (fewer
    registers each) they spill (1024 threads at M = 8192: 232 bytes; 256: 58 registers, none)."""
    if threads is None:
        per = 2 * check_block(block) if kind == "conv" else 8
        threads = DEFAULT_THREADS if kind == "grad" else min(1024, max(DEFAULT_THREADS, M // per))
    return max(1, min(threads, M))


def monarch_source(M: int, block: int, real, kind: str = "conv", threads: int | None = None, *,
                   outer: int = 1, columns: int = 1, roots: int | None = None, cluster: int = 2,
                   emulate: bool = False) -> str:
    """The Python source of the Monarch kernel ``kind`` for rows of M complex values (see
    ``monarch_program``): generated, so that every radix, stride, shift and DFT entry is a
    literal the compiler folds (entries 0 and +-1 become additions, no index is divided)."""
    return _monarch(M, block, real, kind, threads, outer, columns, roots, cluster, emulate)[0]


_STRIDED = re.compile(r"^(\s*)for (\w+) in range\((r?tid), U(\d+), T\):(.*)$")


def _fixed_thread_loops(src: str, NT: int, consts: dict) -> str:
    """Rewrite each thread-strided ``for m in range(tid, X, T)`` of the source for a block of
    exactly NT threads (a compile-time constant): X/NT iterations of m = tid + i NT, a guard
    only where NT does not divide X. Trip counts are then constants, so the compiler needs no
    64-bit division per loop (ceil((X - tid) / T) with a run-time T) and may unroll.
    ``range(rtid, X, T)`` is the same loop with the threads in reverse order (rtid = NT-1-tid)."""
    u = functools.partial(_u, consts=consts)
    out = []
    for line in src.splitlines():
        m = _STRIDED.match(line)
        if not m:
            out.append(line)
            continue
        ind, var, t0, X, note = m.group(1), m.group(2), m.group(3), int(m.group(4)), m.group(5)
        if X <= NT:
            out += [f"{ind}{var} = {t0}", f"{ind}if {var} < {u(X)}:{note}" if X < NT
                    else f"{ind}if True:{note}"]
        else:
            out += [f"{ind}for it_ in range({u(-(-X // NT))}):{note}",
                    f"{ind}    {var} = {t0} + it_ * {u(NT)}"]
            if X % NT:
                out += [f"{ind}    if {var} >= {u(X)}:", f"{ind}        continue"]
    return "\n".join(out) + "\n"


def _monarch(M: int, block: int, real, kind: str, threads: int | None = None, outer: int = 1,
             columns: int = 1, roots: int | None = None, cluster: int = 2, emulate: bool = False):
    M = check_int(M, "M", min=1, power_of_two=True)
    block = check_block(block)
    check_choice(kind, "kind", MONARCH_KINDS)
    if real not in _NUMBA_NAME:
        raise TypeError(f"real must be np.float32 or np.float64, got {real!r}")
    if kind in THREE_PASS_KINDS:
        return _three_pass(M, block, real, kind, threads, outer, columns)
    if kind == "cluster":
        C = check_int(cluster, "cluster", min=2, max=8, power_of_two=True)
        check_int(M, "M", min=2 * C)
        return _cluster(M, C, block, real, threads, roots, bool(emulate))
    Q = check_roots(M, roots)
    F = M // Q if Q < M else 0                    # the fine table (two-level twiddles) or none
    NT = monarch_threads(M, threads, kind, block)
    consts: dict = {}
    u = functools.partial(_u, consts=consts)
    I = "    "
    head = [
        "    sm = cuda.shared.array(0, SMEM_T)", *_shared_row(M, Q, F),
        "    tid = np.uint64(cuda.threadIdx.x)",
        *([f"    rtid = {u(NT - 1)} - tid     # the inverse factors: groups in reverse thread order"]
          if kind == "conv" else []),
        *_stage_roots(Q, F, u),
    ]
    top = 2 * M + 2 * Q + 2 * F                   # the grad kernel's arrays start here

    def load(arr, row, ind):
        return [f"{ind}for m in range(tid, {u(M)}, T):      # one read of each input",
                f"{ind}    m2 = {u(2)} * m",
                f"{ind}    a_re[m] = {arr}[{row}, m2] if m2 < nu_in else ZERO",
                f"{ind}    a_im[m] = {arr}[{row}, m2 + {u(1)}] if m2 + {u(1)} < nu_in else ZERO",
                f"{ind}cuda.syncthreads()"]

    def store(arr, row, n, ind):
        return [f"{ind}for m in range(tid, {u(M)}, T):      # one write of each output",
                f"{ind}    m2 = {u(2)} * m",
                f"{ind}    if m2 < {n}:",
                f"{ind}        {arr}[{row}, m2] = a_re[m] * scale",
                f"{ind}    if m2 + {u(1)} < {n}:",
                f"{ind}        {arr}[{row}, m2 + {u(1)}] = a_im[m] * scale"]

    def pairs(note, ind, body, special):
        return [f"{ind}# {note}: the pairs (k, M - k), at positions (i, i2)",
                *_pair_source(M, NT, consts, ind, body, special)]

    fwd = _inplace_factor_source(M, block, +1, consts, real, I, Q)
    inv = _inplace_factor_source(M, block, -1, consts, real, I, Q, "rtid" if kind == "conv" else "tid")
    if kind == "conv":
        body = ["def kernel(x, spec, roots, fine, tw, out, n_in, n_out, conj, scale):", *head,
                "    row = cuda.blockIdx.x",
                "    srow = np.uint32(row) % np.uint32(spec.shape[0])     # 32 bits: no division call",
                "    nu_in = np.uint64(n_in)", "    nu_out = np.uint64(n_out)",
                *load("x", "row", I), *fwd,
                *pairs("real-input split, x K, merge", I, _conv_pair,
                       functools.partial(_conv_special, u=u)),
                "    cuda.syncthreads()", *inv, *store("out", "row", "nu_out", I)]
    else:
        def u_body(ind, guard):                   # U_b's half spectrum, kept (X[M] last)
            return [*_z_pair(ind), *_split_pair(ind, x1r="u_re[i]", x1i="u_im[i]", x2r="u_re[kb]",
                                         x2i="u_im[kb]")]

        def u_special(ind):
            return [f"{ind}u_re[{u(1)}] = a_re[{u(1)}]", f"{ind}u_im[{u(1)}] = -a_im[{u(1)}]"]

        def g_body(ind, guard):                   # G_b: one FFT for both gradients
            return [*_z_pair(ind), *_split_pair(ind, x1r="x1r", x1i="x1i", x2r="x2r", x2i="x2i"),
                    f"{ind}ur = u_re[i]", f"{ind}ui = u_im[i]",
                    f"{ind}c_re[i] += x1r * ur + x1i * ui    # grad_k: G conj(U_b), no atomics",
                    f"{ind}c_im[i] += x1i * ur - x1r * ui",
                    f"{ind}ur = u_re[kb]", f"{ind}ui = u_im[kb]",
                    f"{ind}c_re[kb] += x2r * ur + x2i * ui", f"{ind}c_im[kb] += x2i * ur - x2r * ui",
                    *_pair_product(ind, "h", "-"), *_merge_pair(ind), *_write_pair(ind, guard)]

        def g_special(ind):
            return [f"{ind}gr = a_re[{u(1)}]", f"{ind}gi = -a_im[{u(1)}]",
                    f"{ind}ur = u_re[{u(1)}]", f"{ind}ui = u_im[{u(1)}]",
                    f"{ind}c_re[{u(1)}] += gr * ur + gi * ui", f"{ind}c_im[{u(1)}] += gi * ur - gr * ui",
                    f"{ind}kr = spec[h, 0, {u(1)}]", f"{ind}ki = -spec[h, 1, {u(1)}]",
                    f"{ind}a_re[{u(1)}] = gr * kr - gi * ki", f"{ind}a_im[{u(1)}] = -(gr * ki + gi * kr)"]

        def k_body(ind, guard):                   # grad_k: the merge of the accumulated C
            return [f"{ind}wr = tw[0, e1]", f"{ind}wi = tw[1, e1]",
                    *_block(_MERGE, ind, y1r="c_re[i]", y1i="c_im[i]", y2r="c_re[kb]",
                            y2i="c_im[kb]", z1r="z1r", z1i="z1i", z2r="z2r", z2i="z2i"),
                    *_write_pair(ind, guard)]

        def k_special(ind):
            return [f"{ind}a_re[{u(1)}] = c_re[{u(1)}]", f"{ind}a_im[{u(1)}] = -c_im[{u(1)}]"]
        o = top
        body = ["def kernel(g, u, spec, roots, fine, tw, grad_u, grad_k, B, H, n_in, n_k, scale):",
                *head,
                f"    u_re = sm[{o}:{o + M + 1}]", f"    u_im = sm[{o + M + 1}:{o + 2 * M + 2}]",
                f"    c_re = sm[{o + 2 * M + 2}:{o + 3 * M + 3}]",
                f"    c_im = sm[{o + 3 * M + 3}:{o + 4 * M + 4}]",
                "    h = cuda.blockIdx.x", "    nu_in = np.uint64(n_in)", "    nu_k = np.uint64(n_k)",
                f"    for m in range(tid, {u(M + 1)}, T):",
                "        c_re[m] = ZERO", "        c_im[m] = ZERO",
                "    for b in range(B):",
                "        row = b * H + h",
                *load("u", "row", I * 2), *[I + s for s in fwd],
                *pairs("U_b: its half spectrum, kept", I * 2, u_body, u_special),
                "        cuda.syncthreads()",
                *load("g", "row", I * 2), *[I + s for s in fwd],
                *pairs("G_b: grad_k += G conj(U_b), grad_u = IFFT(G conj(K))", I * 2, g_body,
                       g_special),
                "        cuda.syncthreads()", *[I + s for s in inv],
                *store("grad_u", "row", "nu_in", I * 2),
                "        cuda.syncthreads()",
                *pairs("grad_k: one inverse per channel", I, k_body, k_special),
                "    cuda.syncthreads()", *inv, *store("grad_k", "h", "nu_k", I)]
    src = _fixed_thread_loops("\n".join(body) + "\n", NT, consts)
    g = {"cuda": None, "np": np, "SMEM_T": numba.from_dtype(np.dtype(real)), "ZERO": real(0),
         "HALF_R": real(0.5), **consts}
    return src, g


def _three_pass(M: int, block: int, real, kind: str, threads: int | None, outer: int,
                columns: int):
    """Source of the three-pass kernels for rows of M = outer x inner complex values.

    The row z (M values, the real-input trick) is seen as an (outer, inner) array, z[a inner + b].
    With k = k1 + outer k2, the M-point DFT is
        Z[k1 + outer k2] = sum_b W_inner^(b k2) W_M^(b k1) sum_a W_outer^(a k1) z[a inner + b]:
    pass 1 ("outer") applies the outer-point DFT down each column b and the twiddle W_M^(b k1),
    leaving k1 at row k1 (position k1 inner + b); pass 2 ("inner") applies the inner-point DFT
    along each row, leaving Z[k1 + outer k2] at position k1 inner + k2; pass 3 undoes both.

    "outer" args (x, w_out, roots, tw, n_in): x (R, n_in) real rows; w_out (R, 2 M): re at
      [0, M), im at [M, 2M); roots (2, outer) = W_outer^t; tw (2, M) = W_M^(k1 b) at k1 inner + b.
      Grid (R, inner / columns): a block takes the tile of ``columns`` consecutive columns: its
      loads of u (2 x columns consecutive reals per tile row, split into re and im in shared
      memory) and its stores are consecutive addresses across a warp.
    "inner" args (w_in, w_out, spec, roots, tw, n_outer, conj): spec (S, 2, M + pad) in this layout
      (``half_spectrum(k, N, outer)``: K[k1 + outer k2] at k1 inner + k2, K[M] at M), row r uses
      spec row r % S; roots (2, inner) = W_inner^t; tw (2, M) = W_N^k at the position of Z[k].
      Grid (R, outer / 2): block j takes rows j and outer - j (j = 0: rows 0 and outer/2), whose
      values pair up as (Z[k], Z[M - k]) in the real-input split; w_out may be w_in.
    "inner_spectrum" args (w_in, spec_out, roots, tw, n_outer): the half spectrum X of each row
      (R, 2, M + pad), in the layout of spec.
    "outer_inverse" args (w_in, out, roots, tw, n_out, scale): out (R, n_out) real rows.
    """
    O = check_int(outer, "outer", min=2, max=max(2, M // 2), power_of_two=True)
    I = M // O
    consts: dict = {}
    u = functools.partial(_u, consts=consts)
    LOGI = I.bit_length() - 1
    ind = "    "
    if kind in ("inner", "inner_spectrum"):
        S = len(monarch_factors(I, block))
        X = "b" if S % 2 else "a"                 # where the forward factors leave the rows
        Y = "a" if X == "b" else "b"

        def pos(x):                               # buffer index -> position in the row
            return f"((ra if {x} < {u(I)} else rb) << {u(LOGI)}) + ({x} & {u(I - 1)})"
        args = ("w_in, w_out, spec, roots, tw, n_outer, conj" if kind == "inner"
                else "w_in, spec_out, roots, tw, n_outer")
        body = [
            f"def kernel({args}):",
            "    sm = cuda.shared.array(0, SMEM_T)",
            f"    a_re = sm[0:{2 * I}]", f"    a_im = sm[{2 * I}:{4 * I}]",
            f"    b_re = sm[{4 * I}:{6 * I}]", f"    b_im = sm[{6 * I}:{8 * I}]",
            f"    w_re = sm[{8 * I}:{9 * I}]", f"    w_im = sm[{9 * I}:{10 * I}]",
            "    tid = np.uint64(cuda.threadIdx.x)",
            f"    for m in range(tid, {u(I)}, T):             # stage the inner roots once per block",
            "        w_re[m] = roots[0, m]", "        w_im[m] = roots[1, m]",
            "    row = cuda.blockIdx.x",
            "    j = np.uint64(cuda.blockIdx.y)",
            "    nouter = np.uint64(n_outer)",
            f"    mfull = nouter << {u(LOGI)}",
            "    ra = j                                    # rows ra and rb: real-input partners",
            f"    rb = nouter - j if j != {u(0)} else nouter >> {u(1)}",
            f"    for m in range(tid, {u(2 * I)}, T):         # one read of each value, in order",
            f"        g = {pos('m')}",
            "        a_re[m] = w_in[row, g]", "        a_im[m] = w_in[row, mfull + g]",
            "    cuda.syncthreads()",
            *_factor_source(I, block, "a", "b", +1, consts, real, ind, count=2, layout="rows"),
            f"    for e in range(tid, {u(I)}, T):          # the pairs (Z[k], Z[M - k])",
            f"        lo = e < {u(I // 2)}",
            f"        if j == {u(0)}:                        # rows 0 and outer/2 pair with themselves",
            f"            ia = e if lo else e + {u(I // 2)}",
            f"            ib = (({u(I)} - e) & {u(I - 1)}) if lo else {u(5 * I // 2 - 1)} - e",
            "        else:",
            "            ia = e",
            f"            ib = {u(2 * I - 1)} - e",
            f"        pa = {pos('ia')}",
            f"        pb = {pos('ib')}",
            f"        kb = mfull if pa == {u(0)} else pb        # X[M] pairs with X[0]",
            "        wr = tw[0, pa]", "        wi = tw[1, pa]",
            *_block(_SPLIT, ind * 2, z1r=f"{X}_re[ia]", z1i=f"{X}_im[ia]", z2r=f"{X}_re[ib]",
                    z2i=f"{X}_im[ib]", x1r="x1r", x1i="x1i", x2r="x2r", x2i="x2i"),
        ]
        # Z[M/2] (row 0, position inner/2) is its own partner: X[M/2] = conj(Z[M/2]), and the
        # merge of Y = X[M/2] K[M/2] gives conj(Y): one thread does it, beside the loop
        half = [f"    if j == {u(0)} and tid == {u(0)}:       # Z[M/2]: X[M/2] = conj(Z[M/2])",
                f"        zr = {X}_re[{u(I // 2)}]", f"        zi = {X}_im[{u(I // 2)}]"]
        if kind == "inner":
            body.insert(body.index("    row = cuda.blockIdx.x") + 1, "    srow = row % spec.shape[0]")
            body += [
                "        kr1 = spec[srow, 0, pa]", "        ki1 = conj * spec[srow, 1, pa]",
                "        kr2 = spec[srow, 0, kb]", "        ki2 = conj * spec[srow, 1, kb]",
                "        y1r = x1r * kr1 - x1i * ki1", "        y1i = x1r * ki1 + x1i * kr1",
                "        y2r = x2r * kr2 - x2i * ki2", "        y2i = x2r * ki2 + x2i * kr2",
                *_block(_MERGE, ind * 2, y1r="y1r", y1i="y1i", y2r="y2r", y2i="y2i",
                        z1r="z1r", z1i="z1i", z2r="z2r", z2i="z2i"),
                f"        {X}_re[ia] = z1r", f"        {X}_im[ia] = z1i",
                "        if ib != ia:",
                f"            {X}_re[ib] = z2r", f"            {X}_im[ib] = z2i",
                *half,
                f"        kr = spec[srow, 0, {u(I // 2)}]", f"        ki = conj * spec[srow, 1, {u(I // 2)}]",
                f"        {X}_re[{u(I // 2)}] = zr * kr + zi * ki      # Z[M/2] conj(K[M/2])",
                f"        {X}_im[{u(I // 2)}] = zi * kr - zr * ki",
                "    cuda.syncthreads()",
                *_factor_source(I, block, X, Y, -1, consts, real, ind, count=2, layout="rows"),
                f"    for m in range(tid, {u(2 * I)}, T):         # one write of each value, in order",
                f"        g = {pos('m')}",
                "        w_out[row, g] = a_re[m]", "        w_out[row, mfull + g] = a_im[m]"]
        else:
            body += [
                "        spec_out[row, 0, pa] = x1r", "        spec_out[row, 1, pa] = x1i",
                f"        if ib != ia or pa == {u(0)}:",
                "            spec_out[row, 0, kb] = x2r", "            spec_out[row, 1, kb] = x2i",
                *half,
                f"        spec_out[row, 0, {u(I // 2)}] = zr", f"        spec_out[row, 1, {u(I // 2)}] = -zi"]
        NT = monarch_threads(2 * I, threads)
    else:
        C = check_int(columns, "columns", min=1, max=I, power_of_two=True)
        T_ = O * C
        LOGC, LOGT = C.bit_length() - 1, T_.bit_length() - 1
        S = len(monarch_factors(O, block))
        head = [
            "    sm = cuda.shared.array(0, SMEM_T)",
            f"    a_re = sm[0:{T_}]", f"    a_im = sm[{T_}:{2 * T_}]",
            f"    b_re = sm[{2 * T_}:{3 * T_}]", f"    b_im = sm[{3 * T_}:{4 * T_}]",
            f"    w_re = sm[{4 * T_}:{4 * T_ + O}]", f"    w_im = sm[{4 * T_ + O}:{4 * T_ + 2 * O}]",
            "    tid = np.uint64(cuda.threadIdx.x)",
            f"    for m in range(tid, {u(O)}, T):             # stage the outer roots once per block",
            "        w_re[m] = roots[0, m]", "        w_im[m] = roots[1, m]",
            "    row = cuda.blockIdx.x",
            f"    b0 = np.uint64(cuda.blockIdx.y) << {u(LOGC)}    # the tile's first column"]
        gi = f"((q >> {u(LOGC + 1)}) << {u(LOGI + 1)}) + (b0 << {u(1)}) + (q & {u(2 * C - 1)})"
        g = f"((m >> {u(LOGC)}) << {u(LOGI)}) + b0 + (m & {u(C - 1)})"
        if kind == "outer":
            X = "b" if S % 2 else "a"
            body = [
                "def kernel(x, w_out, roots, tw, n_in):", *head,
                "    nu_in = np.uint64(n_in)",
                f"    for q in range(tid, {u(T_)}, T):   # tile rows < outer/2: 2 x columns reals each, in order",
                f"        gi = {gi}",
                f"        sm[((q & {u(1)}) << {u(LOGT)}) + (q >> {u(1)})] = x[row, gi] if gi < nu_in else ZERO",
                f"    for m in range(tid, {u(T_ // 2)}, T):   # rows >= outer/2: the zero padding (2m >= M >= L)",
                f"        a_re[{u(T_ // 2)} + m] = ZERO", f"        a_im[{u(T_ // 2)} + m] = ZERO",
                "    cuda.syncthreads()",
                *_factor_source(O, block, "a", "b", +1, consts, real, ind, count=C, layout="columns"),
                f"    for m in range(tid, {u(T_)}, T):   # x W_M^(k1 b), one write of each value, in order",
                f"        g = {g}",
                f"        xr = {X}_re[m]", f"        xi = {X}_im[m]",
                "        wr = tw[0, g]", "        wi = tw[1, g]",
                "        w_out[row, g] = xr * wr - xi * wi",
                f"        w_out[row, {u(M)} + g] = xr * wi + xi * wr"]
        else:
            off = 2 * T_ if S % 2 else 0           # where the inverse factors leave the tile
            body = [
                "def kernel(w_in, out, roots, tw, n_out, scale):", *head,
                "    nu_out = np.uint64(n_out)",
                f"    for m in range(tid, {u(T_)}, T):   # one read of each value, in order, x conj(W_M^(k1 b))",
                f"        g = {g}",
                "        xr = w_in[row, g]", f"        xi = w_in[row, {u(M)} + g]",
                "        wr = tw[0, g]", "        wi = tw[1, g]",
                "        a_re[m] = xr * wr + xi * wi", "        a_im[m] = xi * wr - xr * wi",
                "    cuda.syncthreads()",
                *_factor_source(O, block, "a", "b", -1, consts, real, ind, count=C, layout="columns"),
                f"    for q in range(tid, {u(T_)}, T):   # tile rows < outer/2 hold the outputs: in order",
                f"        gi = {gi}",
                "        if gi < nu_out:",
                f"            out[row, gi] = sm[{u(off)} + ((q & {u(1)}) << {u(LOGT)}) + (q >> {u(1)})] * scale"]
        NT = monarch_threads(T_, threads)
    src = _fixed_thread_loops("\n".join(body) + "\n", NT, consts)
    g = {"cuda": None, "np": np, "SMEM_T": numba.from_dtype(np.dtype(real)), "ZERO": real(0),
         "HALF_R": real(0.5), **consts}
    return src, g



# ---------------------------------------------------------------------------- the cluster kernel
def _cmac(terms, consts: dict, real) -> tuple[str, str]:
    """(re, im) source of sum_j w_j x_j for complex literals w_j and registers (xr, xi):
    parts of w that round to 0 or +-1 become additions, others named constants."""
    re_, im_ = [], []

    def add(out, c, v):
        if abs(c) < 1e-15:
            return
        if abs(abs(c) - 1) < 1e-15:
            out.append(("+ " if c > 0 else "- ") + v)
        else:
            out.append(f"+ {_const(c, consts, real)} * {v}")
    for w, xr, xi in terms:
        c, s = float(np.real(w)), float(np.imag(w))
        add(re_, c, xr), add(re_, -s, xi), add(im_, c, xi), add(im_, s, xr)

    def join(parts):
        if not parts:
            return "ZERO"
        s = " ".join(parts)
        return s[2:] if s.startswith("+ ") else "-" + s[2:]
    return join(re_), join(im_)


def _cluster(M: int, C: int, block: int, real, threads: int | None, roots: int | None,
             emulate: bool):
    """Source of the cluster kernel: one row of M complex values held by a cluster of C thread
    blocks (CTAs), M/C values each, through distributed shared memory (``kernels.dsmem``).

    Write Ml = M/C, n = n' + Ml c and k = C k' + r (decimation in frequency at the top). Then
        Z[C k' + r] = sum_n' W_Ml^(n' k') v_r[n'],  v_r[n'] = W_M^(r n') sum_c W_C^(r c) z[n' + Ml c]:
    CTA r builds v_r as it loads the row (z is zero beyond M/2, the causal padding, so only
    chunks c < C/2 are read) and applies the fused kernel's in-place Ml-point factors: its
    position i holds Z[C rev(i) + r]. The real-input split joins k and M - k: for r = 0 both
    are in CTA 0, at the fused kernel's pairs of an Ml-point row; for r > 0 the partner of
    position i of CTA r is position Ml - 1 - i of CTA (C - r) mod C, so CTA r does the pairs of
    its own positions i < Ml/2, reading and writing the partner's half through DSMEM (every
    pair once, Ml/2 per CTA). The inverse runs the local factors backwards, and the outputs
        z'[n' + Ml j] = sum_r W_C^(-j r) W_M^(-r n') a_r[n']   (j < C/2: the first L outputs)
    are made by CTA n' // (Ml/C) from the C values a_r[n'] of all CTAs. Four cluster barriers:
    before the pairs, before the inverse, before the outputs, before exit (a CTA's shared
    memory must outlive the others' reads).

    Arguments: (x, spec, roots, fine, tw, ctw, out, n_in, n_out, conj, scale); spec (S, 2,
    M + pad) in the cluster's order (``_cluster_order``), tw (2, M) W_N^k for the frequency k at
    each position of that order, ctw (2, M) W_M^t; roots, fine: the local Ml-point tables.
    emulate: the simulator's variant (``kernels.dsmem``: one block of C x NT threads).
    """
    Ml = M // C
    if C < 2 or Ml < 2:
        raise ValueError(f"a cluster kernel needs C >= 2 and M/C >= 2, got M={M}, C={C}")
    Q = check_roots(Ml, roots)
    F = Ml // Q if Q < Ml else 0
    NT = monarch_threads(Ml, threads, "conv", block)
    S = 2 * Ml + 2 * Q + 2 * F                     # reals of one CTA's shared memory
    consts: dict = {}
    u = functools.partial(_u, consts=consts)
    I, I2 = "    ", "        "
    sync = "    cuda.syncthreads()" if emulate else "    cluster_sync()"
    if emulate:
        who = ["    smc = cuda.shared.array(0, SMEM_T)     # emulation: C thread groups, C slices",
               f"    rank = np.uint64(cuda.threadIdx.x) // {u(NT)}",
               f"    tid = np.uint64(cuda.threadIdx.x) & {u(NT - 1)}",
               f"    sm = smc[rank * {u(S)}:(rank + {u(1)}) * {u(S)}]",
               "    row = cuda.blockIdx.x"]
    else:
        who = ["    sm = cuda.shared.array(0, SMEM_T)",
               "    smc = sm                                 # DSMEM addresses are taken from it",
               f"    rank = np.uint64(cuda.blockIdx.x) & {u(C - 1)}   # the CTA's rank in its cluster",
               "    tid = np.uint64(cuda.threadIdx.x)",
               f"    row = np.uint64(cuda.blockIdx.x) >> {u(C.bit_length() - 1)}"]
    head = [*who, *_shared_row(Ml, Q, F),
            f"    rtid = {u(NT - 1)} - tid",
            "    srow = np.uint32(row) % np.uint32(spec.shape[0])",
            "    nu_in = np.uint64(n_in)", "    nu_out = np.uint64(n_out)",
            f"    off = rank * {u(Ml)}                    # this CTA's positions in spec and tw",
            *_stage_roots(Q, F, u)]
    def reads(ind: str, guard: bool) -> list[str]:     # z[m] and z[m + c Ml], c < C/2
        def get(i: str) -> str:
            return f"x[row, {i}] if {i} < nu_in else ZERO" if guard else f"x[row, {i}]"
        out = [f"{ind}zr = {get('m2')}", f"{ind}zi = {get(f'm2 + {u(1)}')}"]
        for c in range(1, C // 2):
            out += [f"{ind}n2 = m2 + {u(2 * Ml * c)}",
                    f"{ind}y{c}r = {get('n2')}", f"{ind}y{c}i = {get(f'n2 + {u(1)}')}"]
        return out
    # v_r[m] from the row's first C/2 chunks; the reads of one m are checked against the row's
    # end only where the last of them is past it (never when L = M). last: that read's offset
    # from 2m, and the offset of the last output of n' from 2n' (the same chunks, j < C/2)
    last = 2 * Ml * (C // 2 - 1) + 1
    load = [f"    for m in range(tid, {u(Ml)}, T):      # v_r[m]: the row's first C/2 chunks",
            f"{I2}m2 = {u(2)} * m",
            f"{I2}if m2 + {u(last)} < nu_in:", *reads(I2 + I, False),
            f"{I2}else:", *reads(I2 + I, True)]
    for c in range(1, C // 2):
        load += [f"{I2}t = (rank * {u(c * Ml)}) & {u(M - 1)}      # W_C^(r c) = W_M^(r c Ml)",
                 f"{I2}wr = ctw[0, t]", f"{I2}wi = ctw[1, t]",
                 f"{I2}zr += y{c}r * wr - y{c}i * wi", f"{I2}zi += y{c}r * wi + y{c}i * wr"]
    load += [f"{I2}t = rank * m", f"{I2}wr = ctw[0, t]", f"{I2}wi = ctw[1, t]",
             f"{I2}a_re[m] = zr * wr - zi * wi", f"{I2}a_im[m] = zr * wi + zi * wr",
             "    cuda.syncthreads()"]
    fwd = _inplace_factor_source(Ml, block, +1, consts, real, I, Q)
    inv = _inplace_factor_source(Ml, block, -1, consts, real, I, Q, "rtid")
    def local_pair(ind, guard):                   # CTA 0: the fused kernel's pairs, the
        return _conv_pair(ind, guard, t="i")       # split twiddles by position
    pairs = [f"    if rank == {u(0)}:          # CTA 0: frequencies C k', pairs inside the CTA",
             *_pair_source(Ml, NT, consts, I2, local_pair, functools.partial(_conv_special, u=u),
                           top=M),
             "    else:                        # CTA r: pairs with CTA C - r, through DSMEM",
             f"{I2}pr = ({u(C)} - rank) & {u(C - 1)}",
             f"{I2}bp = dsmem_base(smc, pr)",
             f"{I2}kp = pr * {u(Ml)}"]
    # the Ml/2 pairs of CTA r, unrolled here: pair i = tid + s NT, s = 0, 1, ..., so that every
    # index offset is a constant of the instruction (as a loop the compiler kept them a loop;
    # CTA 0's octave loops from _pair_source it unrolls itself)
    for s_ in range(-(-(Ml // 2) // NT)):
        pairs += [f"{I2}i = tid + {u(s_ * NT)}",
                  f"{I2}if i < {u(Ml // 2)}:" if (s_ + 1) * NT > Ml // 2 else f"{I2}if True:",
                  f"{I2}    i2 = {u(Ml - 1)} - i",
                  f"{I2}    wr = tw[0, off + i]", f"{I2}    wi = tw[1, off + i]",
                  f"{I2}    ar = a_re[i]", f"{I2}    ai = a_im[i]",
                  f"{I2}    br = dsmem_load(smc, bp, i2)",
                  f"{I2}    bi = dsmem_load(smc, bp, i2 + {u(Ml)})",
                  *_split_pair(I2 + I, x1r="x1r", x1i="x1i", x2r="x2r", x2i="x2i"),
                  *_pair_product(I2 + I, "srow", "conj * ", "off + i", "kp + i2"),
                  *_merge_pair(I2 + I), f"{I2}    a_re[i] = z1r", f"{I2}    a_im[i] = z1i",
                  f"{I2}    dsmem_store(smc, bp, i2, z2r)",
                  f"{I2}    dsmem_store(smc, bp, i2 + {u(Ml)}, z2i)"]
    # the outputs: CTA rank makes n' in [rank Ml/C, (rank + 1) Ml/C), j < C/2
    w = Ml // C
    store = [*(f"    b{s} = dsmem_base(smc, {u(s)})" for s in range(C)),
             f"    for m in range(tid, {u(w)}, T):      # the C values a_r[n'] -> C/2 outputs",
             f"{I2}n = rank * {u(w)} + m"]
    # W_M^(s n), s < C: one lookup, the others its powers (``_power_lines``)
    store += [f"{I2}w1r = ctw[0, n]", f"{I2}w1i = ctw[1, n]", *_power_lines(C, I2)]
    for s in range(C):
        store += [f"{I2}xr = dsmem_load(smc, b{s}, n)", f"{I2}xi = dsmem_load(smc, b{s}, n + {u(Ml)})"]
        if s:
            store += [f"{I2}v{s}r = xr * w{s}r + xi * w{s}i", f"{I2}v{s}i = xi * w{s}r - xr * w{s}i"]
        else:
            store += [f"{I2}v0r = xr", f"{I2}v0i = xi"]
    outs = []
    for j in range(C // 2):
        er, ei = _cmac([(np.exp(2j * np.pi * j * s / C), f"v{s}r", f"v{s}i") for s in range(C)],
                       consts, real)
        store += [f"{I2}o{j}r = ({er}) * scale", f"{I2}o{j}i = ({ei}) * scale"]
        outs += [(f"o{j}r", f"{u(2 * Ml * j)} + o" if j else "o"),
                 (f"o{j}i", f"{u(2 * Ml * j + 1)} + o")]
    # the C/2 complex outputs of n: stored unchecked where the last of them is inside the row
    # (always when L = M), else each checked against the row's end
    store += [f"{I2}o = {u(2)} * n", f"{I2}if o + {u(last)} < nu_out:",
              *(f"{I2}    out[row, {i}] = {v}" for v, i in outs), f"{I2}else:"]
    for v, i in outs:
        store += [f"{I2}    if {i} < nu_out:", f"{I2}        out[row, {i}] = {v}"]
    body = ["def kernel(x, spec, roots, fine, tw, ctw, out, n_in, n_out, conj, scale):",
            *head, *load, *fwd, sync, *pairs, sync, *inv, sync, *store, sync]
    src = _fixed_thread_loops("\n".join(body) + "\n", NT, consts)
    g = {"cuda": None, "np": np, "SMEM_T": numba.from_dtype(np.dtype(real)), "ZERO": real(0),
         "HALF_R": real(0.5), **consts}
    if emulate:
        from . import dsmem
        g.update(dsmem.emulated(S))          # cluster_sync is written as cuda.syncthreads()
    else:
        from .dsmem import cluster_sync, dsmem_base, dsmem_load, dsmem_store
        g.update(dsmem_base=dsmem_base, dsmem_load=dsmem_load, dsmem_store=dsmem_store,
                 cluster_sync=cluster_sync)
    return src, g


@functools.cache
def _cluster_order(M: int, C: int) -> np.ndarray:
    """Index r Ml + i of the cluster kernel's spectrum and split twiddles -> frequency
    C rev(i) + r (rev: bit reversal of log2(Ml) bits, Ml = M/C); M at M."""
    Ml = M // C
    rev = bit_reversal_permutation(Ml).numpy()
    return np.append((C * rev[None, :] + np.arange(C)[:, None]).reshape(-1), M)


def monarch_program(M: int, block: int, real, kind: str = "conv", threads: int | None = None, *,
                    outer: int = 1, columns: int = 1, roots: int | None = None, cluster: int = 2,
                    emulate: bool = False):
    """The Monarch kernel body for rows of M complex values, as a Python function in the CUDA
    style (its source: ``monarch_source``): kind "conv" (fused forward, or grad_u with
    conj=-1), "grad" (fused backward: one block per channel, a loop over the batch: grad_u and
    grad_k), or one of the three-pass kernels (``THREE_PASS_KINDS``, M = outer x inner; see
    ``_three_pass`` for their arguments).

    The fused kinds transform the row in place (``_inplace_factor_source``): the forward
    factors leave frequency rev(i) (i's log2 M bits reversed) at position i, the split joins
    the positions of k and M - k (``monarch_pairs``), the spectrum is stored in that order
    (``half_spectrum``) and the inverse factors, run backwards, restore natural order: no
    permutation anywhere. roots: Q, the size of the root table W_Q^t (``monarch_tables``;
    None: M); factors of span > Q take their twiddles from two tables.

    conv args: (x, spec, roots, fine, tw, out, n_in, n_out, conj, scale)
      x (R, n_in) real rows, spec (S, 2, M + pad) half spectra in the kernel's order (row r
      uses r % S), roots (2, Q), fine (2, M/Q), tw (2, max(M/2, 1)) the split's twiddles in
      pair order, out (R, n_out).
    grad args: (g, u, spec, roots, fine, tw, grad_u, grad_k, B, H, n_in, n_k, scale)
      g, u, grad_u (B*H, L); spec (H, 2, M + pad); grad_k (H, n_k).
    kind "cluster": the row held by a cluster of ``cluster`` CTAs (sm_90; ``_cluster``, which
    lists its arguments); emulate=True: its one-block variant for the simulator and the tracer.
    """
    src, g = _monarch(M, block, real, kind, threads, outer, columns, roots, cluster, emulate)
    if kind in ("inner", "inner_spectrum"):
        name = f"monarch_{kind}_I{M // outer}_p{block}_{_NUMBA_NAME[real]}"
    elif kind == "cluster":
        name = (f"monarch_cluster{cluster}_M{M}_Q{check_roots(M // cluster, roots)}_p{block}_"
                f"{_NUMBA_NAME[real]}{'_emulated' if emulate else ''}")
    elif kind in THREE_PASS_KINDS:
        name = f"monarch_{kind}_O{outer}xI{M // outer}_C{columns}_p{block}_{_NUMBA_NAME[real]}"
    else:
        name = f"monarch_{kind}_M{M}_Q{check_roots(M, roots)}_p{block}_{_NUMBA_NAME[real]}"
    filename = f"<{name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), g)
    kernel = g["kernel"]
    kernel.__name__ = kernel.__qualname__ = name
    return kernel


# ---------------------------------------------------------------------------- plans
#: A pass-1/3 tile row of this many bytes fills whole 32-byte sectors (coalescing 1).
_SECTOR = 32
#: Values in a pass-1/3 tile (outer x columns) the plan aims at: a few blocks per SM.
_OUTER_TILE = 2048


@dataclass(frozen=True)
class MonarchPlan:
    """How ``cuda_conv`` runs a row of FFT size N: M = N/2 complex values (the real-input trick).

    outer == 1: fused, one launch per row (kind "conv"; the backward: "grad" where it fits,
    ``fused_backward_plan``), with a root table of ``roots`` values (Q, ``monarch_roots``).
    cluster = C > 1 (outer == 1): one launch, a cluster of C blocks per row, each holding M/C
    values with a root table of ``roots`` values for M/C (kind "cluster", sm_90).
    outer > 1: three passes, M = outer x inner: pass 1 ("outer") one block per tile of
    ``columns`` consecutive columns of the (outer, inner) view of the row; pass 2 ("inner")
    outer/2 blocks per row, each two inner rows; pass 3 ("outer_inverse") as pass 1.
    block: the Monarch block size p; threads: the caller's threads per block (None: default).
    """
    N: int
    outer: int
    inner: int
    columns: int
    real: type
    block: int
    threads: int | None = None
    roots: int | None = None
    cluster: int = 1

    @property
    def M(self) -> int:
        return self.N // 2

    @property
    def passes(self) -> int:
        return 1 if self.outer == 1 else 3

    def kernels(self) -> tuple:
        """The kinds a forward convolution launches, in order."""
        if self.cluster > 1:
            return ("cluster",)
        return ("conv",) if self.passes == 1 else ("outer", "inner", "outer_inverse")

    def _items(self, kind: str) -> int:
        if kind == "cluster":
            return self.M // self.cluster
        if kind in ("conv", "grad"):
            return self.M
        if kind in ("inner", "inner_spectrum"):
            return self.inner           # a block holds two rows: inner/8 threads leave 128
        return self.outer * self.columns  # registers each at inner = 4096, no spills

    def kernel_threads(self, kind: str) -> int:
        """Threads per block of kernel ``kind`` (a compile-time constant of that kernel)."""
        kd = "conv" if kind == "cluster" else kind       # each CTA of a cluster: a fused row
        return monarch_threads(self._items(kind), self.threads, kd, self.block)

    def shared_bytes(self, kind: str) -> int:
        """Dynamic shared memory per block of kernel ``kind`` (``monarch_smem_bytes``)."""
        if kind in ("conv", "grad"):
            return monarch_smem_bytes(self.M, self.real, kind, roots=self.roots)
        if kind == "cluster":
            return monarch_smem_bytes(self.M, self.real, kind, roots=self.roots, cluster=self.cluster)
        return monarch_smem_bytes(self.M, self.real, kind, outer=self.outer, columns=self.columns)

    def blocks_per_row(self, kind: str) -> int:
        """Thread blocks one row takes in kernel ``kind`` (the grid is rows x this)."""
        if kind in ("conv", "grad"):
            return 1
        if kind == "cluster":
            return self.cluster
        if kind in ("inner", "inner_spectrum"):
            return self.outer // 2
        return self.inner // self.columns

    def program_args(self, kind: str) -> dict:
        """Keyword arguments of ``monarch_program`` for kernel ``kind`` of this plan. The inner
        kernels depend on ``inner`` only (``outer`` is a launch argument): one compiled kernel
        serves every row length with the same inner size."""
        nt = self.kernel_threads(kind)
        base = dict(block=self.block, real=self.real, kind=kind, threads=nt)
        if kind in ("conv", "grad"):
            return dict(M=self.M, roots=check_roots(self.M, self.roots), **base)
        if kind == "cluster":
            return dict(M=self.M, cluster=self.cluster,
                        roots=check_roots(self.M // self.cluster, self.roots), **base)
        if kind in ("inner", "inner_spectrum"):
            return dict(M=2 * self.inner, outer=2, **base)
        return dict(M=self.M, outer=self.outer, columns=self.columns, **base)


def _largest_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


def _three_pass_plan(N: int, real, smem_bytes: int, block: int, threads) -> MonarchPlan | None:
    """The three-pass plan of FFT size N under ``smem_bytes``, or None if none fits: the largest
    inner size whose pass-2 block fits (so the fewest outer rows), then a tile of columns of
    about _OUTER_TILE values, at least a 32-byte sector wide, shrunk to fit."""
    M, s = N // 2, np.dtype(real).itemsize
    inner = min(_largest_pow2(smem_bytes // (10 * s)), M // 2)
    if inner < 2:
        return None
    outer = M // inner
    cmin = min(max(1, _SECTOR // s), inner)
    cols = min(inner, max(cmin, _OUTER_TILE // outer))
    while cols > cmin and monarch_smem_bytes(M, real, "outer", outer=outer, columns=cols) > smem_bytes:
        cols //= 2
    if monarch_smem_bytes(M, real, "outer", outer=outer, columns=cols) > smem_bytes:
        return None
    return MonarchPlan(N, outer, inner, cols, real, block, threads)


def _monarch_plan_or_none(N: int, real, smem_bytes: int, block: int, threads, cluster: int = 1):
    """Fused if the row fits one block; else a cluster of the fewest C <= ``cluster`` blocks
    whose M/C values each fit; else three passes; else None."""
    M = N // 2
    Q = monarch_roots(M, real, smem_bytes, "conv", block)
    if Q is not None:
        return MonarchPlan(N, 1, M, 1, real, block, threads, Q)
    C = 2
    while C <= cluster and M // C >= 2:
        Q = monarch_roots(M // C, real, smem_bytes, "conv", block)
        if Q is not None:
            return MonarchPlan(N, 1, M, 1, real, block, threads, Q, C)
        C *= 2
    return _three_pass_plan(N, real, smem_bytes, block, threads)


def fused_backward_plan(plan: MonarchPlan, smem_bytes: int) -> MonarchPlan | None:
    """The plan of the fused backward ("grad": one block per channel) for the rows of ``plan``
    under ``smem_bytes``, with its own root table (``monarch_roots(..., "grad")``), or None
    when it does not fit (the backward then takes the three passes)."""
    if plan.passes != 1 or plan.cluster > 1:
        return None
    Q = monarch_roots(plan.M, plan.real, smem_bytes, "grad", plan.block)
    if Q is None:
        return None
    return MonarchPlan(plan.N, 1, plan.M, 1, plan.real, plan.block, plan.threads, Q)


def _monarch_max_length(real, smem_bytes: int) -> int:
    top, M = 0, 1                       # L <= M has FFT size 2M
    while M <= 1 << 40 and _monarch_plan_or_none(2 * M, real, smem_bytes, default_block(M), None):
        top, M = M, 2 * M
    return top


def monarch_plan(L: int, real, *, smem_bytes: int, block: int | None = None,
                 threads: int | None = None, name: str = "u", cluster: int = 1) -> MonarchPlan:
    """The plan ``cuda_conv`` uses for rows of length L: fused if a row (N/2 complex values,
    transformed in place, and the smallest root tables) fits ``smem_bytes``, with the largest
    root table that fits (``monarch_roots``), else, where ``cluster`` > 1 allows it (thread
    block clusters: sm_90), a cluster of the fewest C <= ``cluster`` blocks whose N/(2C)
    values fit, else the three-pass scheme.
    Lengths no plan fits raise ValueError naming ``name`` and the longest L this budget allows.
    """
    L = check_int(L, "L", min=1)
    if real not in _NUMBA_NAME:
        raise TypeError(f"real must be np.float32 or np.float64, got {real!r}")
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=1)
    N = fft_size(L)
    block = default_block(max(N // 2, 1)) if block is None else check_block(block)
    if threads is not None:
        threads = check_int(threads, "threads", min=1, max=1024, power_of_two=True)
    cluster = check_cluster(cluster)
    plan = _monarch_plan_or_none(N, real, smem_bytes, block, threads, cluster)
    if plan is None:
        top = max_length(real, smem_bytes, kernel="monarch")
        raise ValueError(
            f"{name} has length L={L}: FFT size {N} does not fit the Monarch kernel's fast memory "
            f"in one launch or in three passes with smem_bytes={smem_bytes} "
            f"({np.dtype(real).name}); with this budget it supports L <= {top}; use "
            f"backend='fft' for longer rows")
    return plan


# ---------------------------------------------------------------------------- host side
def monarch_tables(M: int, real, outer: int = 1, *, roots: int | None = None,
                   cluster: int = 1) -> dict:
    """The constant tables the Monarch kernels read, each (2, n) (re, im), computed in float64
    and rounded once to ``real`` (N = 2M):

    outer == 1 (fused): "roots" W_Q^t (t < Q = ``roots``, None: M) and "roots_fine" W_M^t
    (t < M/Q; the single value 1 when Q = M, then unused) for the factors' twiddles,
    "twiddles" W_N^k for the real-input split in pair order: entry e1 is W_N^rev(i) for the
    first position i of pair e1 (``monarch_pairs``; rev(i) = i's log2 M bits reversed; 1 for
    pair 0), max(M/2, 1) values.
    outer > 1 (three passes, M = outer x inner): "roots_outer" W_outer^t, "roots_inner"
    W_inner^t, "twiddles_outer" W_M^(k1 b) at k1 inner + b (pass 1 and, conjugated, pass 3),
    "twiddles_split" W_N^k at the position of Z[k], k = k1 + outer k2 at k1 inner + k2.
    cluster = C > 1 (the cluster kernel, outer == 1): "roots" and "roots_fine" of the local
    M/C-point transform (Q = ``roots`` for M/C), "cluster_split" W_N^k for the frequency k at
    each index of ``_cluster_order`` (M values) and "cluster_roots" W_M^t (t < M).
    The arrays are read-only and shared between calls.
    """
    M = check_int(M, "M", min=1, power_of_two=True)
    if real not in _NUMBA_NAME:
        raise TypeError(f"real must be np.float32 or np.float64, got {real!r}")
    outer = check_int(outer, "outer", min=1, max=max(1, M // 2), power_of_two=True)
    cluster = check_int(cluster, "cluster", min=1, max=8, power_of_two=True)
    if outer > 1:
        if cluster > 1:
            raise ValueError(f"cluster={cluster} needs outer=1 (a cluster holds the whole row), "
                             f"got outer={outer}")
        return _tables_np(M, real, outer, None)
    if cluster > 1:
        check_int(M, "M", min=2 * cluster)
        return _cluster_tables_np(M, real, cluster, check_roots(M // cluster, roots))
    return _tables_np(M, real, 1, check_roots(M, roots))


@functools.cache
def _cluster_tables_np(M: int, real, C: int, Q: int) -> dict:
    t = dict(_tables_np(M // C, real, 1, Q))
    del t["twiddles"]                                  # the local pairs' table: not used
    k = _cluster_order(M, C)[:M]
    t["cluster_split"] = _planes(np.exp(-2j * np.pi * k / (2 * M)), real)
    t["cluster_roots"] = _planes(np.exp(-2j * np.pi * np.arange(M) / M), real)
    return t


def _planes(z: np.ndarray, real) -> np.ndarray:
    """Complex float64 values as a read-only (2, n) table of ``real`` (re, im), rounded once."""
    a = np.ascontiguousarray(np.stack([z.real, z.imag]).astype(real))
    a.flags.writeable = False
    return a


@functools.cache
def _tables_np(M: int, real, outer: int, Q) -> dict:
    planes = functools.partial(_planes, real=real)
    if outer == 1:
        first, _ = monarch_pairs(M)
        k = bit_reversal_permutation(M).numpy()[first]               # pair 0: k = 0, W = 1
        return {"roots": planes(np.exp(-2j * np.pi * np.arange(Q) / Q)),
                "roots_fine": planes(np.exp(-2j * np.pi * np.arange(M // Q) / M)),
                "twiddles": planes(np.exp(-2j * np.pi * k / (2 * M)))}
    inner = M // outer
    k1, b = np.divmod(np.arange(M), inner)              # position k1 inner + b
    return {"roots_outer": planes(np.exp(-2j * np.pi * np.arange(outer) / outer)),
            "roots_inner": planes(np.exp(-2j * np.pi * np.arange(inner) / inner)),
            "twiddles_outer": planes(np.exp(-2j * np.pi * ((k1 * b) % M) / M)),
            "twiddles_split": planes(np.exp(-2j * np.pi * (k1 + outer * b) / (2 * M)))}


@functools.cache
def _fused_order(M: int) -> np.ndarray:
    """Index i of the fused kernel's spectrum -> frequency k: rev(i) (bit reversal) for i < M, M at M."""
    return np.append(bit_reversal_permutation(M).numpy(), M)


@functools.cache
def _outer_inner_order(M: int, outer: int) -> np.ndarray:
    """Index i of the three-pass layout -> frequency k: k1 + outer k2 at i = k1 inner + k2; M at M."""
    inner = M // outer
    i = np.arange(M)
    return np.append(i // inner + outer * (i % inner), M)


_SPECTRA: dict = {}
_SPECTRUM_CACHE_SIZE = 16


def spectrum_pad(real) -> int:
    """Values after the M + 1 of each plane of a Monarch spectrum: its planes are M + this long
    (a whole 32-byte sector more than M), so each starts on a sector, as the kernels' reads
    (pass 2's, the fused kernel's pairs) assume."""
    return max(1, _SECTOR // np.dtype(real).itemsize)


def half_spectrum(k: torch.Tensor, N: int, outer: int = 1, cluster: int = 1) -> torch.Tensor:
    """The kernel spectrum the Monarch kernels multiply by: rfft(k, n=N) as a real tensor
    (H, 2, N/2 + ``spectrum_pad(real)``) (re, im; each plane padded with zeros so that both
    start on a 32-byte sector), in the order the kernel holds its row: for the fused kernel
    (outer == 1) K[rev(i)] at i < N/2 (rev: bit reversal of log2(N/2) bits, the order its
    in-place forward factors leave), for the three-pass kernels (outer > 1) K[k1 + outer k2] at
    k1 inner + k2, so that pass 2 reads it in order, for the cluster kernel (cluster = C > 1)
    K[C rev(i) + r] at r N/(2C) + i (``_cluster_order``); K[N/2] at N/2 in all. Cached on the kernel
    tensor's identity and version (``k._version`` changes on every in-place update, e.g. an
    optimizer step), so repeated forwards compute it once."""
    key = (id(k), k.data_ptr(), k._version, tuple(k.shape), N, outer, cluster, k.dtype,
           str(k.device))
    hit = _SPECTRA.get(key)
    if hit is not None:
        return hit
    kf = torch.fft.rfft(k.detach(), n=N)
    spec = torch.stack([kf.real, kf.imag], dim=1)
    order = (_outer_inner_order(N // 2, outer) if outer > 1 else
             _cluster_order(N // 2, cluster) if cluster > 1 else _fused_order(N // 2))
    pad = spectrum_pad(REAL_OF[k.dtype])
    spec = torch.nn.functional.pad(spec[:, :, torch.from_numpy(order).to(k.device)], (0, pad - 1))
    spec = spec.contiguous()
    if len(_SPECTRA) >= _SPECTRUM_CACHE_SIZE:
        _SPECTRA.pop(next(iter(_SPECTRA)))
    _SPECTRA[key] = spec
    return spec


_SIGS = {  # the kernels' arguments: a = 2-D array, s = 3-D array (spectra), i = int64, r = real
    "conv": "asaaaaiirr", "grad": "aasaaaaaiiiir", "outer": "aaaai", "inner": "aasaair",
    "inner_spectrum": "asaai", "outer_inverse": "aaaair", "cluster": "asaaaaaiirr"}


def _monarch_sig(kind: str, real) -> str:
    t = _NUMBA_NAME[real]
    names = {"a": f"{t}[:, ::1]", "s": f"{t}[:, :, ::1]", "i": "int64", "r": t}
    return f"void({', '.join(names[c] for c in _SIGS[kind])})"


@functools.cache
def _monarch_compiled(M: int, block: int, real, kind: str, threads: int, outer: int = 1,
                      columns: int = 1, roots: int | None = None, cluster: int = 2):
    from numba import cuda as ncuda

    from . import dsmem
    sim = simulator_active()
    fn = bind_cuda(monarch_program(M, block, real, kind, threads, outer=outer, columns=columns,
                                   roots=roots, cluster=cluster, emulate=sim), ncuda)
    if sim:                                         # the simulator's jit takes no launch bounds
        return ncuda.jit(_monarch_sig(kind, real))(fn)
    with dsmem.cluster_dims(cluster if kind == "cluster" else 1):
        return ncuda.jit(_monarch_sig(kind, real), launch_bounds=(threads,))(fn)


def device_smem_optin(device_index: int = 0) -> int:
    """The largest dynamic shared memory one block may opt in to on this GPU
    (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN); without a GPU: the H100's 227 KiB."""
    if simulator_active():
        return H100_SMEM_OPTIN
    from numba import cuda as ncuda
    if not ncuda.is_available():
        return H100_SMEM_OPTIN
    return int(ncuda.gpus[device_index].MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)


def default_cluster_max(cc) -> int:
    """The largest thread block cluster a Monarch plan takes by default on compute capability
    ``cc``: 8 (CUDA's portable maximum) from 9.0 on, else 1 (no clusters)."""
    from .ptx import check_cc
    return 8 if check_cc(cc) >= (9, 0) else 1


def device_cluster_max(device_index: int = 0) -> int:
    """``default_cluster_max`` of this device; 1 in the simulator and without a GPU."""
    device_index = check_int(device_index, "device_index", min=0)
    if simulator_active():
        return 1
    from numba import cuda as ncuda
    if not ncuda.is_available():
        return 1
    return default_cluster_max(tuple(ncuda.gpus[device_index].compute_capability))


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


_DEVICE_TABLES: dict = {}


class _MonarchExecutor(_NumbaExecutor):
    """Launches Monarch kernels with their dynamic shared memory (opted in above 48 KiB)."""

    def array(self, a: np.ndarray, label: str = ""):
        """A constant host table on this executor's device (copied once, then cached)."""
        key = (id(a), str(self.device))
        if key not in _DEVICE_TABLES:
            _DEVICE_TABLES[key] = (a, torch.from_numpy(np.array(a)).to(self.device))
        return _DEVICE_TABLES[key][1]

    def launch_monarch(self, plan: MonarchPlan, kind: str, grid, *args):
        """grid: for kind "cluster", rows: the GPU runs C blocks per row (one cluster), the
        simulator one block of C x threads (``kernels.dsmem``: the emulation)."""
        pa = plan.program_args(kind)
        C = pa.get("cluster", 1)
        k = _monarch_compiled(pa["M"], pa["block"], pa["real"], kind, pa["threads"],
                              pa.get("outer", 1), pa.get("columns", 1), pa.get("roots"),
                              pa.get("cluster", 2))
        smem = plan.shared_bytes(kind)
        args = [self._view(a) for a in args]
        if self.sim:
            k[grid, C * pa["threads"], 0, C * smem](*args)
            return
        grid = (grid[0] * C, *grid[1:])
        idx = self.device.index or 0
        stream = self.cuda.external_stream(torch.cuda.current_stream(self.device).cuda_stream)
        with self.cuda.gpus[idx]:
            _opt_in(k, smem, idx)
            k[grid, pa["threads"], stream, smem](*args)


# ---------------------------------------------------------------------------- the launches
# Written against an executor ``ex`` with ex.empty(rows, cols, real, label), ex.array(table,
# label) and ex.launch_monarch(plan, kind, grid, *args): numba here, the tracer in kernels.trace.
def _device_tables(ex, plan: MonarchPlan) -> dict:
    roots = plan.roots if plan.passes == 1 else None
    return {name: ex.array(a, name)
            for name, a in monarch_tables(plan.M, plan.real, plan.outer, roots=roots,
                                          cluster=plan.cluster).items()}


def run_monarch(ex, x, spec, conj: bool, plan: MonarchPlan, out) -> None:
    """out[:, :n_out] = the first n_out of IFFT(FFT(x row) K) (conj(K) if conj): one fused
    launch, or the three passes through an intermediate w (R, 2M) in global memory.

    x (R, Lx) real rows; spec (S, 2, M + pad) = ``half_spectrum(k, N, plan.outer)``, row r uses
    spec row r % S; out (R, n_out).
    """
    R, Lx = x.shape
    r = plan.real
    sign = r(-1 if conj else 1)
    t = _device_tables(ex, plan)
    if plan.cluster > 1:                          # one cluster of C blocks per row (sm_90)
        ex.launch_monarch(plan, "cluster", (R,), x, spec, t["roots"], t["roots_fine"],
                          t["cluster_split"], t["cluster_roots"], out, Lx, out.shape[1], sign,
                          r(1.0 / plan.M))
        return
    if plan.passes == 1:
        ex.launch_monarch(plan, "conv", (R,), x, spec, t["roots"], t["roots_fine"], t["twiddles"],
                          out, Lx, out.shape[1], sign, r(1.0 / plan.M))
        return
    w = ex.empty(R, 2 * plan.M, r, "w")
    _pass_outer(ex, x, plan, w, t)
    _pass_inner(ex, w, w, spec, sign, plan, t)
    _pass_outer_inverse(ex, w, plan, out, t)


def _pass_outer(ex, x, plan, w, t):
    ex.launch_monarch(plan, "outer", (x.shape[0], plan.blocks_per_row("outer")), x, w,
                      t["roots_outer"], t["twiddles_outer"], x.shape[1])


def _pass_inner(ex, w_in, w_out, spec, sign, plan, t):
    ex.launch_monarch(plan, "inner", (w_in.shape[0], plan.blocks_per_row("inner")), w_in, w_out,
                      spec, t["roots_inner"], t["twiddles_split"], plan.outer, sign)


def _pass_outer_inverse(ex, w, plan, out, t):
    ex.launch_monarch(plan, "outer_inverse", (w.shape[0], plan.blocks_per_row("outer_inverse")),
                      w, out, t["roots_outer"], t["twiddles_outer"], out.shape[1],
                      plan.real(1.0 / plan.M))


def _run_monarch_backward(ex, g, u, spec, plan: MonarchPlan, grad_u, grad_k_rows) -> None:
    """The three-pass backward: grad_u = first L of IFFT(FFT(g) conj(K)); grad_k_rows[r] = first
    Lk of IFFT(FFT(g_r) conj(U_r)) (the caller sums them over the batch). Pass 1 of g is shared
    by both; U_r comes from pass 1 and the "inner_spectrum" kernel on u."""
    R, r = g.shape[0], plan.real
    t = _device_tables(ex, plan)
    wg = ex.empty(R, 2 * plan.M, r, "w.g")
    _pass_outer(ex, g, plan, wg, t)
    if grad_u is not None:
        w1 = ex.empty(R, 2 * plan.M, r, "w.gu") if grad_k_rows is not None else wg
        _pass_inner(ex, wg, w1, spec, r(-1), plan, t)
        _pass_outer_inverse(ex, w1, plan, grad_u, t)
    if grad_k_rows is not None:
        wu = ex.empty(R, 2 * plan.M, r, "w.u")
        _pass_outer(ex, u, plan, wu, t)
        mp = plan.M + spectrum_pad(r)
        U = ex.empty(R, 2 * mp, r, "U").reshape(R, 2, mp)
        ex.launch_monarch(plan, "inner_spectrum", (R, plan.blocks_per_row("inner_spectrum")), wu,
                          U, t["roots_inner"], t["twiddles_split"], plan.outer)
        _pass_inner(ex, wg, wg, U, r(-1), plan, t)
        _pass_outer_inverse(ex, wg, plan, grad_k_rows, t)


class _MonarchConv(torch.autograd.Function):
    """Forward: the Monarch kernels (fused, a cluster, or three passes). Backward: the fused
    kernel (one block per channel, one FFT of g per row shared by grad_u and grad_k, grad_k
    accumulated in shared memory over the batch) where it fits ``smem_bytes``, else the three
    passes with conjugated spectra; where the forward took a cluster, grad_u (a correlation with
    k) takes the cluster kernel with conj(K), and only grad_k the three passes."""

    @staticmethod
    def forward(ctx, u, k, plan, smem_bytes):
        B, H, L = u.shape
        ex = _MonarchExecutor(u.device)
        spec = half_spectrum(k, plan.N, plan.outer, plan.cluster)
        y = torch.empty(B * H, L, dtype=u.dtype, device=u.device)
        run_monarch(ex, u.view(B * H, L), spec, False, plan, y)
        ctx.save_for_backward(u, k)
        ctx.cfg = (plan, smem_bytes)
        return y.view(B, H, L)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, k = ctx.saved_tensors
        plan, smem_bytes = ctx.cfg
        B, H, L = u.shape
        Lk = k.shape[1]
        ex = _MonarchExecutor(u.device)
        g = gy.contiguous().view(B * H, L)
        bp = fused_backward_plan(plan, smem_bytes)
        if bp is not None:                               # the fused backward
            spec = half_spectrum(k, plan.N)
            t = _device_tables(ex, bp)
            gu = torch.empty(B * H, L, dtype=u.dtype, device=u.device)
            gk = torch.empty(H, Lk, dtype=u.dtype, device=u.device)
            ex.launch_monarch(bp, "grad", (H,), g, u.view(B * H, L), spec, t["roots"],
                              t["roots_fine"], t["twiddles"], gu, gk, B, H, L, Lk,
                              plan.real(1.0 / plan.M))
            return gu.view(B, H, L), gk, None, None
        need_u, need_k = ctx.needs_input_grad[:2]
        gu = torch.empty(B * H, L, dtype=u.dtype, device=u.device) if need_u else None
        gk = torch.empty(B * H, Lk, dtype=u.dtype, device=u.device) if need_k else None
        if plan.cluster > 1 and need_u:                  # grad_u: the cluster kernel, conj(K)
            run_monarch(ex, g, half_spectrum(k, plan.N, 1, plan.cluster), True, plan, gu)
            gu_three = None
        else:
            gu_three = gu
        if plan.passes == 1:                    # fused or cluster forward, three-pass backward
            plan = _three_pass_plan(plan.N, plan.real, smem_bytes, plan.block, plan.threads)
        if gu_three is not None or need_k:
            _run_monarch_backward(ex, g, u.view(B * H, L), half_spectrum(k, plan.N, plan.outer),
                                  plan, gu_three, gk)
        return (gu.view(B, H, L) if need_u else None,
                gk.view(B, H, Lk).sum(0) if need_k else None, None, None)


def check_cluster(cluster) -> int:
    """The largest thread block cluster a plan may use: 1 (none), 2, 4 or 8 (CUDA's portable
    maximum)."""
    return check_int(cluster, "cluster", min=1, max=8, power_of_two=True)


def check_block(block) -> int:
    block = check_int(block, "block", min=2, max=64, power_of_two=True)
    return block


def cuda_conv(u: torch.Tensor, k: torch.Tensor, *, smem_bytes: int | None = None,
              threads: int | None = None, block: int | None = None,
              cluster: int | None = None) -> torch.Tensor:
    """Causal long convolution by the Monarch FlashButterfly kernels (differentiable).

    u: (B, H, L), k: (H, Lk) with 1 <= Lk <= L; float32 or float64, contiguous, same device
    (CUDA tensors on a GPU, CPU tensors under NUMBA_ENABLE_CUDASIM=1). Returns y (B, H, L),
    y[b,h,t] = sum_s k[h,s] u[b,h,t-s].

    smem_bytes: fast memory one block may use; default: the device's opt-in maximum (227 KiB on
    an H100, 163 KiB on an A100; 227 KiB without a GPU). A row runs fused if its N/2 complex
    values and the smallest root tables fit (``monarch_plan``; float32: L <= 16384 on an H100
    and on an A100), else in the Monarch three-pass scheme (float32 up to L = 4M with either
    budget); the backward is fused where ``fused_backward_plan`` fits (float32: L <= 8192 on
    an H100, 4096 on an A100).
    block: Monarch block size p (DFT blocks of p x p), a power of two 2..64. threads: threads per
    block, a power of two <= 1024 (default: chosen per kernel, ``monarch_threads``).
    cluster: the largest thread block cluster a row too long for one block may take (1, 2, 4
    or 8; ``monarch_plan``); default ``device_cluster_max``: 8 on sm_90 and later (float32 on
    an H100: L = 32K in clusters of 2, 64K of 4), 1 elsewhere and in the simulator, where an
    explicit value runs the cluster kernel's one-block emulation.
    """
    check_conv_inputs(u, k)
    _check_contiguous(u, "u")
    _check_contiguous(k, "k")
    real = REAL_OF[u.dtype]
    limit = device_smem_optin(u.device.index or 0 if u.device.type == "cuda" else 0)
    if smem_bytes is None:
        smem_bytes = limit
    low = monarch_smem_bytes(1, real)                 # M = 1: one value and one root
    if isinstance(smem_bytes, int) and not isinstance(smem_bytes, bool) and not low <= smem_bytes <= limit:
        raise ValueError(f"smem_bytes={smem_bytes} cannot be granted: on this device one block may "
                         f"use {low} to {limit} bytes of shared memory ({limit} = its "
                         f"MAX_SHARED_MEMORY_PER_BLOCK_OPTIN; {low} = the smallest Monarch block, "
                         f"one complex {np.dtype(real).name} value and a root); "
                         f"omit smem_bytes for the maximum")
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=low)
    if threads is not None:
        threads = check_int(threads, "threads", min=1, max=1024, power_of_two=True)
    block = None if block is None else check_block(block)
    top = device_cluster_max(u.device.index or 0 if u.device.type == "cuda" else 0)
    if cluster is None:
        cluster = top
    cluster = check_cluster(cluster)
    if cluster > top and not simulator_active():      # the simulator runs any C, emulated
        raise ValueError(f"cluster={cluster} needs thread block clusters (compute capability "
                         f"9.0 or later); this device allows cluster <= {top}")
    plan = monarch_plan(u.shape[2], real, smem_bytes=smem_bytes, block=block, threads=threads,
                        cluster=cluster)
    block = plan.block
    if (torch.is_grad_enabled() and (u.requires_grad or k.requires_grad) and plan.passes == 1
            and fused_backward_plan(plan, smem_bytes) is None
            and _three_pass_plan(plan.N, real, smem_bytes, block, threads) is None):
        need = monarch_smem_bytes(plan.M, real, "grad", roots=least_roots(plan.M))
        raise ValueError(f"smem_bytes={smem_bytes} fits the forward of L={u.shape[2]} but not its "
                         f"backward: the fused backward needs at least {need} bytes and a row "
                         f"this short has no three-pass plan; give at least that, or omit "
                         f"smem_bytes")
    _executor(u)                                                             # device check
    return _MonarchConv.apply(u, k, plan, smem_bytes)


# ============================================================================ PTX, SASS, resources
# The compiler tools (ptxas, nvdisasm) live in ``kernels.ptx``; this section compiles *these*
# kernels with numba (no GPU needed) and reads what the tools say about them.
@dataclass
class KernelResources:
    """One compiled radix-2 kernel: its program, target, static shared memory, registers."""
    program: str
    cc: tuple
    threads: int
    shared_bytes: int
    registers: int | None
    note: str
    ptx: str


def ptxas_path() -> str | None:
    """``kernels.ptx.ptxas_path`` (kept here for callers of the older name)."""
    from .ptx import ptxas_path as _path
    return _path()


def _ptxas_registers(ptx_text: str, cc) -> tuple[int | None, str]:
    from . import ptx
    try:
        _, res = ptx.assemble(ptx_text, cc)
    except ptx.ToolMissing as e:
        return None, str(e)
    except RuntimeError as e:
        return None, str(e).splitlines()[0]
    return res[0].registers, f"ptxas -arch=sm_{cc[0]}{cc[1]}"


def _radix2_sig(real) -> str:
    t = _NUMBA_NAME[real]
    return f"void({', '.join([t + '[:, ::1]'] * 6)}, int64, int64, int64, int64, {t}, {t})"


def _radix2_programs(plan: Plan) -> list[Program]:
    """The block programs a forward convolution launches under ``plan`` (fused: one)."""
    r = plan.real
    if plan.passes == 1:
        return [Program(n=plan.N, real=r)]
    return [Program(n=plan.outer, real=r, load="real", forward=True, multiply=False,
                    inverse=False, store="complex"),
            Program(n=plan.inner, real=r, load="complex", forward=True, multiply=True,
                    inverse=True, store="complex"),
            Program(n=plan.outer, real=r, load="complex", forward=False, multiply=False,
                    inverse=True, store="real")]


def kernel_resources(L: int, *, dtype: torch.dtype = torch.float32, cc=(8, 0),
                     smem_bytes: int = DEFAULT_SMEM_BYTES, threads: int = DEFAULT_THREADS,
                     registers: bool = True) -> list[KernelResources]:
    """Compile (no GPU needed) the radix-2 kernels the forward pass launches for length L.

    Uses numba.cuda.compile_ptx for compute capability ``cc``; shared bytes per block are read
    from the PTX's .shared declarations; registers per thread come from ``ptxas -v`` when it is
    available (registers=False skips it). Under the simulator (which cannot compile) the work is
    done in a child Python process started without NUMBA_ENABLE_CUDASIM. For the Monarch kernel
    (the registered backend) see ``sass_report``.
    """
    from .ptx import check_cc
    L = check_int(L, "L", min=1)
    if dtype not in REAL_OF:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    cc = check_cc(cc)
    real = REAL_OF[dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
    if simulator_active():         # the simulator cannot compile: ask a process without it
        return [r for *_, r in resource_table((L,), dtypes=(dtype,), ccs=(cc,),
                                              smem_bytes=smem_bytes, threads=threads,
                                              registers=registers)]
    return [_resources(p, cc, plan.block(p.n), registers) for p in _radix2_programs(plan)]


@functools.cache
def _radix2_ptx(p: Program, cc) -> str:
    from numba import cuda as ncuda
    return ncuda.compile_ptx(bind_cuda(block_program(p), ncuda), _radix2_sig(p.real), cc=cc)[0]


@functools.cache
def _resources(p: Program, cc, threads: int, registers: bool) -> KernelResources:
    from .ptx import shared_decl_bytes
    text = _radix2_ptx(p, cc)
    regs, note = _ptxas_registers(text, cc) if registers else (None, "registers not requested")
    return KernelResources(p.name, cc, threads, shared_decl_bytes(text), regs, note, text)


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


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _table_in_child(lengths, dtype_names, ccs, smem_bytes, threads, registers) -> list[tuple]:
    import json
    import sys
    code = ("import json, torch; from longconv_edu.kernels.cuda import resource_table; "
            f"rows = resource_table({lengths!r}, dtypes=[getattr(torch, n) for n in {dtype_names!r}], "
            f"ccs={ccs!r}, smem_bytes={smem_bytes}, threads={threads}, registers={registers}); "
            "print(json.dumps([(d, c, L, r.__dict__) for d, c, L, r in rows]))")
    r = subprocess.run([sys.executable, "-c", code], env=_child_env(), capture_output=True,
                       text=True)
    if r.returncode:
        raise RuntimeError(f"compiling the kernels in a child process failed:\n{r.stderr[-2000:]}")
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    return [(d, tuple(c), L, KernelResources(**{**kr, "cc": tuple(kr["cc"])}))
            for d, c, L, kr in rows]


# ---------------------------------------------------------------------------- SASS per element
# How the count per output element is made (``sass_counts``):
#  1. compile the kernel to PTX (numba, no GPU), assemble it with ptxas for sm_80 / sm_90 and
#     disassemble the cubin with nvdisasm: the SASS the GPU would run;
#  2. find the loops (a backward branch closes one) and, for each innermost loop, the
#     instructions on the shortest path through one iteration (``ptx.Sass.min_path``: slow
#     paths such as the sin/cos argument reduction are left out, which favours the radix-2
#     kernel);
#  3. map the SASS loops to the source loops, in program order: every source loop is a
#     thread-strided ``for m in range(tid, X, T)`` whose X items per row and stores per item
#     (sigma) are known from the source; the compiler may unroll it u times (u = stores in the
#     SASS body / sigma), with a remainder loop before it, so one or two SASS loops per source
#     loop; the unrolled one is the main loop;
#  4. dynamic instructions per row = sum over source loops of X * path / u (thread
#     instructions, i.e. 32 per warp instruction); per output element = that / L (for the
#     Monarch kernel M = N/2 complex values per row; for the radix-2 kernel N per tile).
#     Code outside the loops (set-up, barriers) runs once per thread and is reported apart
#     (``setup``: instructions x threads / L).
# A SASS loop that does not match the next source loop raises: the test notices a compiler
# that changes the loop structure.
_LOOP_CLASSES = {  # (global load, shared load, shared store, global store) present?
    "load": (True, False, True, False), "shared": (False, True, True, False),
    "mixed": (True, True, True, False), "store": (None, True, False, True),
    "fill": (False, False, True, False),
    # the cluster kernel's outputs: other CTAs' shared memory read through DSMEM (generic LD)
    "dsmem_store": (None, False, False, True),
}


def _loop_class(c: dict) -> str | None:
    have = (c["global_load"] > 0, c["shared_load"] > 0, c["shared_store"] > 0,
            c["global_store"] > 0)
    for name, want in _LOOP_CLASSES.items():
        if all(w is None or w == h for w, h in zip(want, have)):
            return name
    return None


def _match_loops(sass, plan: list[tuple]) -> list[dict]:
    """[(name, class, sigma, items per row, most SASS loops)] source loops, in program order ->
    per-loop path, unroll and instruction count per row.

    A source loop matches the consecutive SASS loops of its class whose stores are a multiple of
    sigma, at most ``most`` of them: one loop, a remainder loop (u = 1) and its unrolled main loop,
    or, where the compiler unrolled an enclosing loop of known trip count (the radix-2 stages of
    a small tile), one such group per copy, which then shares the items equally. None matched:
    the loop was unrolled completely into straight-line code (counted in ``setup``).
    """
    if BARRIER in plan:
        return _match_segments(sass, plan)
    loops = [lp for lp in sass.loops if lp.inner]
    out, j = [], 0
    for name, cls, sigma, items, most in plan:
        got = []
        while j < len(loops) and len(got) < most:
            c = sass.count(loops[j].start, loops[j].end)
            stores = c["shared_store"] + c["global_store"]
            if _loop_class(c) != cls or stores % sigma:
                break
            got.append((loops[j], stores // sigma))
            j += 1
        if not got:
            out.append({"loop": name, "items": items, "unroll": "full", "path": None,
                        "per_item": None, "instructions": 0.0})
            continue
        groups, i = [], 0                      # (remainder, main) pairs or single loops
        while i < len(got):
            if got[i][1] == 1 and i + 1 < len(got) and got[i + 1][1] > 1:
                groups.append(got[i + 1])
                i += 2
            else:
                groups.append(got[i])
                i += 1
        share = items / len(groups)
        total, paths = 0.0, []
        for lp, u in groups:
            path = sass.min_path(lp)
            paths.append(path)
            total += share * path / u
        u0 = groups[0][1]
        out.append({"loop": name, "items": items, "unroll": u0, "copies": len(groups),
                    "path": max(paths), "per_item": total / items, "instructions": total})
    if j != len(loops):
        raise RuntimeError(f"{len(loops) - j} SASS loops of {sass.name[:60]} left unmatched")
    return out


def _shared_store_words(sass, start: int = 0, end: int | None = None, outside: bool = False) -> int:
    """Words (4 bytes) stored to shared memory by one pass over ops[start:end+1] (STS.64: 2,
    STS.128: 4); outside=True: only the straight-line code (no loop's instructions)."""
    inside = sass.in_loops() if outside else set()
    end = len(sass.ops) - 1 if end is None else end
    return sum(4 if o.endswith(".128") else 2 if o.endswith(".64") else 1
               for i, o in enumerate(sass.ops[start:end + 1], start)
               if o.split(".")[0] == "STS" and i not in inside)


#: A plan entry: a barrier (``cuda.syncthreads()``, BAR in SASS) between two source loops.
BARRIER = ("barrier",)


def _units(sass, loops, entry_ok):
    """Consecutive loops of one segment as units: a remainder loop (one item per iteration)
    and the unrolled main loop after it are one unit, any other loop is one."""
    units, i = [], 0
    while i < len(loops):
        if (i + 1 < len(loops) and entry_ok(loops[i]) == 1 and (entry_ok(loops[i + 1]) or 0) > 1):
            units.append((loops[i], loops[i + 1]))
            i += 2
        else:
            units.append((loops[i],))
            i += 1
    return units


def _match_segments(sass, plan: list) -> list[dict]:
    """``_match_loops`` for plans whose barriers are marked (``BARRIER``): the SASS is cut at its
    BAR instructions into segments, which must be as many as the plan's, and each segment's loops
    are matched to that segment's source loops only. Within a segment a loop (or a remainder and
    its main loop) goes to a source loop of its class whose stores per item divide its stores, in
    program order; where the compiler unrolled some loops of a segment completely, the loops left
    are given to the source loops with the most items (the compiler unrolls short trip counts)."""
    bars = [i for i, o in enumerate(sass.ops) if o.split(".")[0] == "BAR"]
    segs = [[]]
    for e in plan:
        if e == BARRIER:
            segs.append([])
        else:
            segs[-1].append(e)
    if len(bars) != len(segs) - 1:
        raise RuntimeError(f"{sass.name[:60]}: {len(bars)} BAR instructions in the SASS, but the "
                           f"source has {len(segs) - 1} barriers: the loop map would be a guess")
    inner = [lp for lp in sass.loops if lp.inner]
    if any(lp.start <= b <= lp.end for lp in inner for b in bars):
        raise RuntimeError(f"{sass.name[:60]}: a loop contains a barrier")
    out = []
    for k, entries in enumerate(segs):
        lo = bars[k - 1] if k else -1
        hi = bars[k] if k < len(bars) else len(sass.ops)
        loops = [lp for lp in inner if lo < lp.start < hi]

        def per_item(lp, e):                       # items per iteration, or None if e cannot be lp
            c = sass.count(lp.start, lp.end)
            if _loop_class(c) != e[1]:
                return None
            st = c["shared_store"] + c["global_store"]
            if st and st % e[2]:                   # a checked slow path with its own stores:
                path = sass.min_path_ops(lp) or []     # count the common (shorter) path's
                st = sum(1 for i in path if sass.ops[i].split(".")[0] in ("STS", "STG"))
            return st // e[2] if st and st % e[2] == 0 else None
        best = None
        for chosen in itertools.combinations(range(len(entries)), min(len(entries), len(loops))):
            # the chosen entries take the loops in order (a remainder + main pair, or versions)
            assign, j, ok = {}, 0, True
            for ci, ei in enumerate(chosen):
                if j >= len(loops):
                    break
                e = entries[ei]
                u0 = per_item(loops[j], e)
                if u0 is None:
                    ok = False
                    break
                group = [(loops[j], u0)]
                j += 1
                left = len(chosen) - ci - 1
                if (u0 == 1 and j < len(loops) and len(loops) - j > left
                        and (per_item(loops[j], e) or 0) > 1):
                    group = [(loops[j], per_item(loops[j], e))]   # remainder + main
                    j += 1
                while left == 0 and j < len(loops) and per_item(loops[j], e):
                    group.append((loops[j], per_item(loops[j], e)))   # versions of the
                    j += 1           # loop (unswitched on a block-uniform branch)
                assign[ei] = group
            if not ok or j != len(loops):
                continue
            score = sum(entries[ei][3] for ei in assign)
            if best is None or score > best[0]:
                best = (score, assign)
        if loops and best is None:
            raise RuntimeError(f"{sass.name[:60]}: the {len(loops)} loops of segment {k} match no "
                               f"source loops of {[e[0] for e in entries]}")
        assign = best[1] if best else {}
        for ei, (name, _cls, _sigma, items, _most) in enumerate(entries):
            if ei not in assign:
                out.append({"loop": name, "items": items, "unroll": "full", "path": None,
                            "per_item": None, "instructions": 0.0})
                continue
            group = assign[ei]                   # a remainder's few items are left out; versions
            per = [sass.min_path(lp) / u for lp, u in group]   # of a loop share its items
            sts = [_shared_store_words(sass, lp.start, lp.end) / u for lp, u in group]
            out.append({"loop": name, "items": items, "unroll": group[0][1], "copies": len(group),
                        "at": [lp.start for lp, _ in group],
                        "path": max(sass.min_path(lp) for lp, _ in group),
                        "per_item": sum(per) / len(per), "instructions": items * sum(per) / len(per),
                        "shared_stores": items * sum(sts) / len(sts)})
    return out


def _rank_branch(sass, loops: list, NT: int, C: int) -> dict:
    """The cluster kernel's pairs phase as its SMs spend it. Between the first cluster barrier's
    wait and the second's arrive, a branch on the rank sends CTA 0 to its local pairs and the
    other CTAs to their pairs through DSMEM (the side with the DSMEM stores, ``ST``); the row's
    C SMs all wait at the second barrier, so the phase costs C x the longer of the two sides.
    ``hot`` + ``setup`` charge instead each side's straight-line code to every CTA and each
    side's loops to the CTAs that run them: the sum of the two sides, not the longer. Returns
    each side's instructions per CTA ("cta0", "others"), what hot + setup charge the phase per
    row ("charged") and C x the longer side ("critical"); raises if the SASS does not have
    this shape (the count would be a guess)."""
    waits = [i for i, o in enumerate(sass.ops) if o.startswith("UCGABAR_WAIT")]
    arrives = [i for i, o in enumerate(sass.ops) if o.startswith("UCGABAR_ARV")]
    if len(waits) != 4 or len(arrives) != 4:
        raise RuntimeError(f"{sass.name[:60]}: {len(waits)} cluster barrier waits and "
                           f"{len(arrives)} arrives, not the source's 4")
    lo, hi = waits[0], arrives[1]
    br = next((i for i in range(lo, hi) if sass.ops[i].startswith("BRA") and sass.guarded[i]
               and lo < sass.targets.get(i, -1) < hi), None)
    if br is None:
        raise RuntimeError(f"{sass.name[:60]}: no branch on the rank before the pairs")
    t = sass.targets[br]                       # the taken side starts at t; the side that falls
    join = t - 1                               # through ends with a jump over it
    if not (sass.ops[join].startswith("BRA") and not sass.guarded[join]
            and t < sass.targets.get(join, -1) <= hi):
        raise RuntimeError(f"{sass.name[:60]}: the rank branch's two sides are not laid out "
                           f"as [fall-through, jump][taken]")
    sides = {"fall": range(br + 1, join + 1), "taken": range(t, sass.targets[join])}
    inside = sass.in_loops()
    cost, dsmem = {}, []
    for side, rng in sides.items():
        straight = sum(1 for i in rng if i not in inside and sass.ops[i] != "NOP")
        looped = sum(x["instructions"] for x in loops if any(a in rng for a in x.get("at", ())))
        cost[side] = (straight, looped)
        if any(sass.ops[i].split(".")[0] == "ST" for i in rng):   # st.shared::cluster
            dsmem.append(side)
    if len(dsmem) != 1:
        raise RuntimeError(f"{sass.name[:60]}: DSMEM stores on {len(dsmem)} sides of the rank "
                           f"branch, not on one (the other CTAs' side)")
    dsmem_side = dsmem[0]
    (s_o, l_o), (s_0, l_0) = cost[dsmem_side], cost["taken" if dsmem_side == "fall" else "fall"]
    others = s_o * NT + l_o / (C - 1)          # loops: per row (the C - 1 CTAs that run them)
    cta0 = s_0 * NT + l_0
    charged = (s_o + s_0) * NT * C + l_o + l_0
    return {"cta0": cta0, "others": others, "charged": charged, "critical": C * max(cta0, others)}


def _with_barriers(facs: list) -> list:
    """Each factor's source loop followed by its barrier."""
    return [x for f in facs for x in (f, BARRIER)]


def _monarch_loop_plan(plan: MonarchPlan, kind: str) -> list[tuple]:
    """The thread-strided loops of Monarch kernel ``kind``, in program order, with their items
    per thread block (for the fused kernel a block is a row; for the cluster kernel the mean
    over its C blocks, since CTA 0 does the local pairs and the others the DSMEM pairs)."""
    if kind == "cluster":
        C = plan.cluster
        Ml, Q = plan.M // C, check_roots(plan.M // C, plan.roots)
        NT = plan.kernel_threads(kind)
        facs = [("factor", "shared", 2 * p, Ml // p, 2) for p in monarch_factors(Ml, plan.block)]
        fine = [("fine roots", "load", 2, Ml // Q, 2)] if Q < Ml else []
        octaves, H = [], NT
        while H <= Ml // 4:
            octaves.append((f"CTA 0: split x K merge, octave {2 * H}", "mixed", 4, H / C, 2))
            H *= 2
        # the pairs end with a cluster barrier, not a BAR: they share a segment with the first
        # inverse factor
        return [("roots", "load", 2, Q, 2), *fine, ("load, x W_M^(r n)", "load", 2, Ml, 2), BARRIER,
                *_with_barriers(facs), *octaves,
                ("CTAs r > 0: split x K merge via DSMEM", "mixed", 2, (C - 1) / C * Ml / 2, 2),
                *_with_barriers(facs[::-1]), ("outputs: C values via DSMEM", "dsmem_store", C, Ml / C, 2)]
    if kind in ("conv", "grad"):
        if kind != "conv":
            raise ValueError("per-element SASS counts are made for kind='conv' (the forward)")
        M, Q = plan.M, check_roots(plan.M, plan.roots)
        NT = plan.kernel_threads(kind)
        facs = [("factor", "shared", 2 * p, M // p, 2) for p in monarch_factors(M, plan.block)]
        fine = [("fine roots", "load", 2, M // Q, 2)] if Q < M else []
        # the pairs: a first pass of straight-line code (NT pairs), then one loop per octave
        # [2H, 4H) of positions with H >= NT, H pairs each (``_pair_source``)
        octaves = []
        H = NT
        while H <= M // 4:
            octaves.append((f"split x K merge, octave {2 * H}", "mixed", 4, H, 2))
            H *= 2
        return [("roots", "load", 2, Q, 2), *fine, ("load", "load", 2, M, 2), BARRIER,
                *_with_barriers(facs), *octaves, BARRIER,
                *_with_barriers(facs[::-1]), ("store", "store", 2, M, 2)]   # inverse: reversed
    O, I, C = plan.outer, plan.inner, plan.columns
    if kind == "inner":
        facs = [("factor", "shared", 2 * p, 2 * I // p, 2) for p in monarch_factors(I, plan.block)]
        return [("roots", "load", 2, I, 2), ("load", "load", 2, 2 * I, 2), BARRIER,
                *_with_barriers(facs), ("split x K merge", "mixed", 4, I, 2), BARRIER,
                *_with_barriers(facs), ("store", "store", 2, 2 * I, 2)]
    facs = [("factor", "shared", 2 * p, C * O // p, 2) for p in monarch_factors(O, plan.block)]
    if kind == "outer":
        return [("roots", "load", 2, O, 2), ("load", "load", 1, O * C, 2),
                ("zero padding", "fill", 2, O * C // 2, 2), BARRIER, *_with_barriers(facs),
                ("x twiddle, store", "store", 2, O * C, 2)]
    if kind == "outer_inverse":
        return [("roots", "load", 2, O, 2), ("load, x twiddle", "load", 2, O * C, 2), BARRIER,
                *_with_barriers(facs), ("store", "store", 1, O * C, 2)]
    raise ValueError(f"per-element SASS counts are made for the forward's kernels "
                     f"{plan.kernels()}, not {kind!r}")


def _radix2_loop_plan(p: Program, tiles: int) -> list[tuple]:
    n, st = p.n, p.n.bit_length() - 1
    out = [("load", "load", 2, tiles * n, 2)]
    if p.forward:
        out.append(("butterflies (forward)", "shared", 4, tiles * n // 2 * st, 2 * st))
    if p.multiply:
        out.append(("multiply", "mixed", 2, tiles * n, 2))
    if p.inverse:
        out.append(("butterflies (inverse)", "shared", 4, tiles * n // 2 * st, 2 * st))
    out.append(("store", "store", 1 if p.store == "real" else 2, tiles * n, 2))
    return out




@functools.cache
def _compiled_sass(kernel: str, key: tuple, cc: tuple):
    """(ptxas Resources, ptx.Sass) of one kernel; key = the sorted items of
    ``MonarchPlan.program_args`` or (Program,)."""
    from numba import cuda as ncuda

    from . import ptx
    if kernel == "monarch":
        from . import dsmem
        pa = dict(key)
        fn = bind_cuda(monarch_program(**pa), ncuda)
        with dsmem.cluster_dims(pa.get("cluster", 1) if pa["kind"] == "cluster" else 1):
            text = ncuda.compile_ptx(fn, _monarch_sig(pa["kind"], pa["real"]), cc=cc,
                                     launch_bounds=(pa["threads"],))[0]
    else:
        (p,) = key
        text = _radix2_ptx(p, cc)
    cubin, res = ptx.assemble(text, cc)
    (sass,) = ptx.parse_sass(ptx.disassemble(cubin)).values()
    return res[0], sass


#: The opt-in shared memory per block of the GPUs the report and the model are made for, by
#: compute capability: A100 (8.0) 163 KiB, H100 (9.0) 227 KiB (CUDA C++ Programming Guide).
REPORT_SMEM = {(8, 0): 163 * 1024, (9, 0): H100_SMEM_OPTIN}


def sass_counts(kernel: str, L: int, *, dtype: torch.dtype = torch.float32, cc=(9, 0),
                block: int | None = None, kind: str = "conv", threads: int | None = None,
                smem_bytes: int | None = None, cluster: int | None = None) -> dict:
    """SASS instructions per output element of one forward convolution row of length L.

    kernel: "monarch" (the registered ``cuda`` backend: fused where the row fits ``smem_bytes``,
    else a thread block cluster or its three passes; default budget: the opt-in maximum of the GPU
    of compute capability ``cc``, ``REPORT_SMEM``) or "radix2" (the "before" kernel, fused or
    three passes under its 48 KiB default). cluster: the largest cluster the Monarch plan may
    take (``monarch_plan``; default 8 on sm_90 and later, else 1; cluster=1 gives sm_90's
    three-pass rows). Returns {"kernel", "L", "cc", "dtype", "block", "kind", "passes",
    "per_element" (hot loops + setup, + the rank branch's correction for a cluster row), "hot",
    "setup", "loops": [...], "resources": [...], cluster rows: "rank_branch" ({"cta0", "others":
    the pairs phase's instructions per thread of CTA 0 and of the other CTAs, "per_element": the
    correction that charges the phase at the longer of the two, ``_rank_branch``)}; one
    resources entry per launch, with its registers, spills, shared memory and (Monarch) its own
    "per_element", "threads" and "blocks_per_row"; Monarch: "shared_store_words", the 4-byte
    words stored to shared memory per row by the same loop map (its check: the tracer counts the
    kernel's shared writes independently, and they agree to a few per cent). kind "grad" (the fused backward) gives
    resources and the static instruction count only. The method is described above this
    function in the source (and in course page 05). Compiling takes seconds per kernel; results
    are cached per process.
    """
    from .ptx import check_cc
    check_choice(kernel, "kernel", ("monarch", "radix2"))
    L = check_int(L, "L", min=1)
    if dtype not in REAL_OF:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    cc = check_cc(cc)
    block = None if block is None else check_block(block)
    check_choice(kind, "kind", ("conv", "grad"))
    real = REAL_OF[dtype]
    if threads is not None:
        threads = check_int(threads, "threads", min=1, max=1024, power_of_two=True)
    if smem_bytes is not None:
        smem_bytes = check_int(smem_bytes, "smem_bytes", min=1)
    if simulator_active():
        raise RuntimeError("sass_counts compiles real kernels, which numba's simulator cannot: "
                           "call it in a process without NUMBA_ENABLE_CUDASIM (the notebook "
                           "reads the committed report, course/results/cuda/sass_report.json)")
    out = {"kernel": kernel, "L": L, "cc": list(cc), "dtype": str(dtype).split(".")[-1],
           "block": block if kernel == "monarch" else 2, "kind": kind, "threads": threads}
    if cluster is not None:
        cluster = check_cluster(cluster)
    launches = []          # (resources, sass, loop plan or None, threads per row, extra info)
    if kernel == "monarch":
        if smem_bytes is None:
            if cc not in REPORT_SMEM:
                raise ValueError(f"cc={cc}: give smem_bytes (the default budget is known for "
                                 f"{sorted(REPORT_SMEM)} only)")
            smem_bytes = REPORT_SMEM[cc]
        if cluster is None:                     # thread block clusters from sm_90 on
            cluster = default_cluster_max(cc)
        out["cluster_max"] = cluster
        plan = monarch_plan(L, real, smem_bytes=smem_bytes, block=block, threads=threads, name="L",
                            cluster=cluster)
        out["block"] = plan.block
        if kind == "grad":
            bp = fused_backward_plan(plan, smem_bytes)
            if bp is None:
                need = monarch_smem_bytes(plan.M, real, "grad", roots=least_roots(plan.M))
                raise ValueError(f"L={L}: the fused Monarch grad kernel needs at least {need} "
                                 f"bytes of shared memory, more than smem_bytes={smem_bytes} "
                                 f"(or the forward takes three passes); there the backward "
                                 f"takes the three passes (counted with kind='conv')")
            plan = bp
        kinds = ("grad",) if kind == "grad" else plan.kernels()
        for kd in kinds:
            pa = plan.program_args(kd)
            res, sass = _compiled_sass("monarch", tuple(sorted(pa.items(), key=str)), cc)
            nb = plan.blocks_per_row(kd)
            launches.append((res, sass, None if kd == "grad" else _monarch_loop_plan(plan, kd),
                             nb, pa["threads"], {"kind": kd, "threads": pa["threads"],
                                                 "blocks_per_row": nb,
                                                 "dynamic_shared": plan.shared_bytes(kd)}))
        out.update(threads=plan.kernel_threads(kinds[0]), passes=plan.passes, smem_bytes=smem_bytes)
        if plan.passes == 3:
            out["plan"] = {"outer": plan.outer, "inner": plan.inner, "columns": plan.columns}
        else:
            out["plan"] = {"roots": plan.roots, "cluster": plan.cluster}
    else:
        if kind != "conv":
            raise ValueError("kernel='radix2' has no fused backward kernel: kind must be 'conv'")
        plan = make_plan(L, real, smem_bytes=DEFAULT_SMEM_BYTES if smem_bytes is None
                         else smem_bytes, threads=threads or DEFAULT_THREADS)
        out.update(threads=plan.threads, passes=plan.passes)
        for p in _radix2_programs(plan):
            res, sass = _compiled_sass("radix2", (p,), cc)
            tiles = plan.N // p.n
            launches.append((res, sass, _radix2_loop_plan(p, tiles), 1, plan.block(p.n) * tiles, {}))
    loops, hot, setup, rank, resources, stores = [], 0.0, 0.0, 0.0, [], 0.0
    for res, sass, lplan, nb, nthreads, info in launches:
        entry = {"kernel": sass.name[:60], "registers": res.registers,
                 "spill_stores": res.spill_stores, "spill_loads": res.spill_loads,
                 "stack": res.stack, "static_shared": res.shared,
                 "instructions": sass.count()["total"], **info}
        resources.append(entry)
        if lplan is None:
            continue
        ls = _match_loops(sass, lplan)          # per thread block (radix-2: per row)
        for x in ls:
            x["instructions"] *= nb
            if "shared_stores" in x:
                x["shared_stores"] *= nb
        loops += ls
        if kernel == "monarch":                  # the same loop map, counting shared stores
            stores += (sum(x.get("shared_stores", 0.0) for x in ls)
                       + _shared_store_words(sass, outside=True) * nthreads * nb)
        hot_l = sum(x["instructions"] for x in ls) / L
        inside = sass.in_loops()
        outside = sum(1 for i, o in enumerate(sass.ops) if i not in inside and o != "NOP")
        setup_l = outside * nthreads * nb / L
        balance = 0.0
        if info.get("kind") == "cluster":       # the pairs phase at its longer side
            rb = _rank_branch(sass, ls, nthreads, nb)
            balance = (rb["critical"] - rb["charged"]) / L
            out["rank_branch"] = {"cta0": rb["cta0"] / nthreads, "others": rb["others"] / nthreads,
                                  "per_element": balance}
        hot, setup, rank = hot + hot_l, setup + setup_l, rank + balance
        if kernel == "monarch":
            entry["per_element"] = hot_l + setup_l + balance
    out.update(resources=resources)
    if kind == "conv":
        out.update(per_element=hot + setup + rank, hot=hot, setup=setup, loops=loops)
        if kernel == "monarch":
            out["shared_store_words"] = stores
    return out


# ---------------------------------------------------------------------------- the committed report
#: Where ``write_sass_report`` puts its JSON and ``sass_report`` reads it (the notebook's table).
SASS_REPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "course", "results", "cuda", "sass_report.json")
REPORT_CCS = ((8, 0), (9, 0))
#: Lengths of the performance model: the Monarch kernel runs fused up to 16384 (float32, H100
#: and A100: the row in place); beyond, in clusters of 2 and 4 on sm_90, in three passes on sm_80.
MODEL_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)


def report_configurations(quick: bool = False) -> list[dict]:
    """Every configuration ``write_sass_report`` compiles (keyword arguments of sass_counts).

    The Monarch forward and the radix-2 kernel at every model length on sm_80 and sm_90: the
    Monarch kernel with its default block (``default_block``) and with the other of p = 4 and
    p = 8 (the rows the choice of p is made from), under that GPU's budget (``REPORT_SMEM``:
    fused up to L = 16384 on both; beyond, three passes on sm_80 and thread block clusters on
    sm_90, whose three-pass rows are compiled too, with cluster=1), the radix-2 kernel under its 48 KiB
    (fused to L = 2048, three passes beyond). At L = 1024 (M = 1024): the Monarch forward for
    block 16 (float32) and 4, 8, 16 (float64), its fused backward for blocks 4, 8 and 16
    (float32); the fused backward at the longest L each GPU keeps it fused (float32: 4096 on
    sm_80, 8192 on sm_90); blocks 32 and 64 on sm_90 (float32). quick=True: one configuration
    of each kernel.
    """
    if quick:
        return [dict(kernel="monarch", L=1024, cc=(9, 0)),
                dict(kernel="radix2", L=1024, cc=(9, 0))]
    out = []
    for cc in REPORT_CCS:
        for L in MODEL_LENGTHS:
            out.append(dict(kernel="monarch", L=L, cc=cc))
            out.append(dict(kernel="radix2", L=L, cc=cc))
            other = 8 if default_block(L) == 4 else 4        # M = L for these powers of two
            out.append(dict(kernel="monarch", L=L, cc=cc, block=other))
            if cc >= (9, 0) and L > 16384:                   # clusters' rows; and without them
                out.append(dict(kernel="monarch", L=L, cc=cc, cluster=1))
    for cc in REPORT_CCS:
        out.append(dict(kernel="monarch", L=1024, cc=cc, block=16))
        for b in (4, 8, 16):
            out.append(dict(kernel="monarch", L=1024, cc=cc, block=b, dtype=torch.float64))
        for b in (4, 8, 16):
            out.append(dict(kernel="monarch", L=1024, cc=cc, block=b, kind="grad"))
        out.append(dict(kernel="monarch", L={(8, 0): 4096, (9, 0): 8192}[cc], cc=cc,
                        kind="grad"))
    for b in (32, 64):
        out.append(dict(kernel="monarch", L=1024, cc=(9, 0), block=b))
    return out


def write_sass_report(path: str = SASS_REPORT, *, quick: bool = False, log=print) -> list[dict]:
    """Compile every configuration (``report_configurations``), count, and write the JSON that
    ``sass_report`` reads. Minutes of compiling (NVVM and ptxas): run it as
    ``python -m longconv_edu.kernels.cuda --sass-report``. A configuration that fails to
    compile is recorded with its error (so the table shows it), not skipped."""
    rows = []
    for cfg in report_configurations(quick):
        t0 = __import__("time").perf_counter()
        try:
            row = sass_counts(**cfg)
        except (RuntimeError, ValueError) as e:
            row = {**{k: (list(v) if isinstance(v, tuple) else str(v).split(".")[-1]
                          if isinstance(v, torch.dtype) else v) for k, v in cfg.items()},
                   "error": str(e)[:500]}
        row["compile_s"] = round(__import__("time").perf_counter() - t0, 1)
        rows.append(row)
        _dump_report(path, rows)                  # after every row: a long run keeps its rows
        if log:
            log(f"{row['kernel']:>7} L={row['L']:>6} p={row.get('block', '')!s:>3} "
                f"{row.get('dtype', 'float32')} {row.get('kind', 'conv')} sm_{row['cc'][0]}{row['cc'][1]}: "
                + (f"{row['per_element']:.0f} SASS/element" if "per_element" in row
                   else row.get("error", "resources only")))
    return rows


def _dump_report(path: str, rows: list) -> None:
    import json
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"method": "kernels.cuda.sass_counts (see its docstring)",
                   "tools": _tool_versions(), "rows": rows}, f, indent=1)


def _tool_versions() -> dict:
    from . import ptx
    out = {}
    for name in ("ptxas", "nvdisasm"):
        exe = ptx.tool_path(name)
        if exe:
            r = subprocess.run([exe, "--version"], capture_output=True, text=True)
            out[name] = (r.stdout.strip().splitlines() or [""])[-1]
    import numba_cuda
    out["numba-cuda"] = getattr(numba_cuda, "__version__", "?")
    return out


def sass_report(path: str = SASS_REPORT) -> list[dict]:
    """The committed SASS report (rows of ``sass_counts``), read from JSON: instant, no compiler.

    Regenerate it with ``python -m longconv_edu.kernels.cuda --sass-report``.
    """
    import json
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a path to the JSON report, got {type(path).__name__}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no SASS report at {path}: run python -m longconv_edu.kernels.cuda "
                                f"--sass-report to make it")
    with open(path) as f:
        return json.load(f)["rows"]


def sass_table(rows) -> str:
    """The report as a text table: kernel, L, block, dtype, kind, target, passes (launches per
    row; "1 C2": one launch, a cluster of 2 blocks per row), SASS per element (and the part of
    it in loops), registers (one per launch: the
    three-pass paths launch three kernels), spill bytes, stack bytes, shared memory per block
    (dynamic + static, the largest launch)."""
    if not isinstance(rows, list):
        raise TypeError(f"rows must be a list of report rows (from sass_report), got {type(rows).__name__}")
    head = (f"{'kernel':<8}{'L':>6}{'p':>4} {'dtype':<8}{'kind':<5}{'arch':<6}{'passes':>6}{'SASS/elt':>9}"
            f"{'in loops':>9}{'regs':>12}{'spill B':>8}{'stack':>6}{'smem B':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        res = r.get("resources") or [{}]
        regs = "/".join(str(x.get("registers", "?")) for x in res)
        spill = sum(x.get("spill_stores", 0) + x.get("spill_loads", 0) for x in res)
        stack = max(x.get("stack", 0) for x in res)
        smem = max(x.get("dynamic_shared", 0) + x.get("static_shared", 0) for x in res)
        per = f"{r['per_element']:.0f}" if "per_element" in r else ("error" if "error" in r else "-")
        hot = f"{r['hot']:.0f}" if "hot" in r else "-"
        C = (r.get("plan") or {}).get("cluster", 1)
        passes = f"{r.get('passes', 1)} C{C}" if C > 1 else str(r.get("passes", 1))
        lines.append(f"{r['kernel']:<8}{r['L']:>6}{r.get('block', ''):>4} {r.get('dtype', 'float32'):<8}"
                     f"{r.get('kind', 'conv'):<5}sm_{r['cc'][0]}{r['cc'][1]:<2}{passes:>6}{per:>9}"
                     f"{hot:>9}{regs:>12}{spill:>8}{stack:>6}{smem:>8}")
    return "\n".join(lines)


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


if __name__ == "__main__":   # python -m longconv_edu.kernels.cuda --check --bench --out DIR
    import sys

    from longconv_edu.kernels.cuda_check import main
    sys.exit(main())
