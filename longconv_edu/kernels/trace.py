"""Rung 5a: count the memory traffic of the FlashButterfly kernel by running its own code.

The IO model (``io_model``) *predicts* how many bytes each schedule moves to and from slow
memory. This tracer *measures* it: it runs the very kernel body of ``kernels.cuda`` (the
``block_program`` functions, not a re-description of them) with its own ``cuda`` object, in the
way GPU-Puzzles lets one run CUDA-style Python: each thread block is a group of Python threads
that meet at ``cuda.syncthreads()`` (a ``threading.Barrier``), and every array the kernel
touches, global or shared, is a ``CountingArray`` that counts (and bounds-checks) each element
read and written, per thread block. So the tracer also proves the kernel never indexes out of
bounds: an index outside an array raises ``IndexError`` naming the array, where NumPy (and the
simulator) would wrap a negative index silently.

Two schedules, on the same block program:

* ``"flashbutterfly"``: what ``cuda_conv`` launches: one fused kernel when a row fits the
  shared-memory budget, the three-pass scheme otherwise;
* ``"naive"``: the unfused three-kernel FFT convolution a first CUDA port would write: an FFT
  kernel (u -> U in global memory), a multiply kernel (U * K -> global), an inverse-FFT kernel
  (-> y). Per row, with s bytes per real and complex spectra of N values: it reads
  (L + 6N) s bytes and writes (4N + L) s bytes, against (L + 2N) s and L s fused.

(PyTorch's ``fft_conv`` is a different unfused schedule, five kernels with rfft's N/2 + 1 bins:
``io_model.unfused_fft_conv`` models that one.)

The kernel spectrum is computed (by the same stages) before tracing starts, as the fused kernel
assumes it precomputed: only the convolution's own launches are counted.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_choice, check_conv_inputs, check_int
from .cuda import (
    DEFAULT_SMEM_BYTES,
    REAL_OF,
    Plan,
    Program,
    bind_cuda,
    block_program,
    check_launch_params,
    make_plan,
    run_conv,
    run_spectrum,
)

__all__ = ["Counts", "LaunchTrace", "Trace", "CountingArray", "trace_conv", "butterfly_schedule"]


@dataclass
class Counts:
    """Bytes one thread block (or a whole launch, or a whole run) moved, by memory space."""
    global_read: int = 0
    global_write: int = 0
    shared_read: int = 0
    shared_write: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self):
        return (self.global_read, self.global_write, self.shared_read, self.shared_write)


@dataclass
class LaunchTrace:
    """One kernel launch: its program, grid, threads per block and the counts of every block."""
    program: str
    prog: Program
    grid: tuple
    threads: int
    blocks: dict = field(default_factory=dict)       # (bx, by) -> Counts
    events: list = field(default_factory=list)       # (block, thread, phase, space, op, array, index)

    @property
    def total(self) -> Counts:
        return sum(self.blocks.values(), Counts())


@dataclass
class Trace:
    """A traced convolution: its output y (B, H, L), the plan, and every launch's counts."""
    y: torch.Tensor
    scheme: str
    plan: Plan
    launches: list

    @property
    def total(self) -> Counts:
        return sum((l.total for l in self.launches), Counts())

    def per_row(self) -> Counts:
        """Counts summed over the launches, for the blocks of row 0 (every row is alike)."""
        out = Counts()
        for l in self.launches:
            for (bx, _by), c in l.blocks.items():
                if bx == 0:
                    out = out + c
        return out


class CountingArray:
    """A NumPy array seen through the kernel: every element access is bounds-checked and counted."""

    def __init__(self, data: np.ndarray, space: str, name: str, tracer: _Tracer):
        self.data, self.space, self.name, self._t = data, space, name, tracer
        self.shape = data.shape

    def _check(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        if len(idx) != self.data.ndim:
            raise IndexError(f"{self.name}: index {idx} has {len(idx)} entries for a "
                             f"{self.data.ndim}-D array of shape {self.shape}")
        for i, n in zip(idx, self.shape):
            if not 0 <= int(i) < n:
                raise IndexError(f"{self.name}: index {idx} is outside shape {self.shape} "
                                 f"(the kernel would read or write out of bounds)")
        return idx

    def __getitem__(self, idx):
        idx = self._check(idx)
        self._t.count(self, "read", idx)
        return self.data[idx]

    def __setitem__(self, idx, value):
        idx = self._check(idx)
        self._t.count(self, "write", idx)
        self.data[idx] = value


class _Dim3:
    def __init__(self, x=0, y=0, z=0):
        self.x, self.y, self.z = x, y, z


class _Shared:
    def __init__(self, tracer):
        self._t = tracer

    def array(self, shape, dtype):
        return self._t.shared_array(shape, dtype)


class _Tracer:
    """The ``cuda`` the kernel body sees: thread and block indices, shared arrays, barriers."""

    def __init__(self, record: bool):
        self.record = record
        self.shared = _Shared(self)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.counting = True
        self.launches: list[LaunchTrace] = []

    # --- what the kernel reads: cuda.threadIdx.x, cuda.blockIdx.y, cuda.blockDim.x, ...
    @property
    def threadIdx(self):
        return _Dim3(self._local.tid)

    @property
    def blockIdx(self):
        return _Dim3(*self._local.block)

    @property
    def blockDim(self):
        return _Dim3(self._local.nthreads, 1, 1)

    @property
    def gridDim(self):
        return _Dim3(*self._local.grid)

    def syncthreads(self):
        if self._local.barrier is not None:
            self._local.barrier.wait(timeout=60)
        self._local.phase += 1

    def shared_array(self, shape, dtype):
        # the k-th shared.array call of every thread of a block returns the block's k-th array
        k = self._local.shared_calls
        self._local.shared_calls += 1
        with self._lock:
            arrs = self._block_shared
            if k == len(arrs):
                data = np.full(shape, np.nan, dtype=np.dtype(dtype))   # uninitialised: NaN
                arrs.append(CountingArray(data, "shared", f"shared array {k}", self))
            return arrs[k]

    # --- counting
    def count(self, arr: CountingArray, op: str, idx):
        if not self.counting:
            return
        nbytes = arr.data.itemsize
        with self._lock:
            c = self._current.blocks.setdefault(self._local.block, Counts())
            attr = f"{arr.space}_{op}"
            setattr(c, attr, getattr(c, attr) + nbytes)
            if self.record:
                self._current.events.append((self._local.block, self._local.tid, self._local.phase,
                                             arr.space, op, arr.name, idx))

    # --- running a launch
    def run(self, fn, p, grid, nthreads, args):
        self._current = LaunchTrace(p.name, p, tuple(grid), nthreads)
        for bx in range(grid[0]):
            for by in range(grid[1]):
                self._block_shared = []
                self._run_block(fn, grid, (bx, by), nthreads, args)
        if self.counting:
            self.launches.append(self._current)

    def _run_block(self, fn, grid, block, nthreads, args):
        barrier = threading.Barrier(nthreads) if nthreads > 1 else None
        errors = []

        def thread(tid):
            loc = self._local
            loc.tid, loc.block, loc.grid, loc.nthreads = tid, block, grid, nthreads
            loc.barrier, loc.phase, loc.shared_calls = barrier, 0, 0
            try:
                fn(*args)
            except threading.BrokenBarrierError:
                pass
            except BaseException as e:          # noqa: BLE001 - re-raised in the caller
                errors.append(e)
                if barrier is not None:
                    barrier.abort()

        if nthreads == 1:
            thread(0)
        else:
            ts = [threading.Thread(target=thread, args=(t,)) for t in range(nthreads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        if errors:
            raise errors[0]


class _TracingExecutor:
    """The executor interface of ``kernels.cuda`` (empty, dummy, launch) over the tracer."""

    def __init__(self, tracer: _Tracer):
        self.t = tracer
        self._names = {}

    def empty(self, rows, cols, real):
        return np.full((rows, cols), np.nan, dtype=real)      # NaN: a read before a write shows

    def dummy(self, real):
        return np.zeros((1, 1), dtype=real)

    def name(self, arr, label):
        self._names[id(arr)] = label

    def launch(self, p: Program, grid, block, *args):
        wrapped = [CountingArray(a, "global", self._names.get(id(a), f"arg {i}"), self.t)
                   if isinstance(a, np.ndarray) else a for i, a in enumerate(args)]
        fn = bind_cuda(block_program(p), self.t)
        self.t.run(fn, p, grid, block, wrapped)


def trace_conv(u: torch.Tensor, k: torch.Tensor, *, scheme: str = "flashbutterfly",
               smem_bytes: int = DEFAULT_SMEM_BYTES, threads: int = 2,
               record: bool = False) -> Trace:
    """Run the convolution of u (B, H, L) with k (H, Lk) under the tracer; count its traffic.

    CPU tensors, float32 or float64 (use tiny sizes: one Python thread per CUDA thread).
    scheme "flashbutterfly" (fused, or three-pass when 2*N*s > smem_bytes) or "naive"
    (three kernels through global memory). threads: threads per block (the counts per block do
    not depend on it). record=True keeps every access (for ``butterfly_schedule``).
    Returns a Trace whose y equals the convolution (so the traced run is checked too).
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    check_choice(scheme, "scheme", ["flashbutterfly", "naive"])
    if u.device.type != "cpu":
        raise ValueError(f"u is on device {u.device}; the tracer runs on CPU tensors (.cpu())")
    real = REAL_OF[u.dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    if not isinstance(record, bool):
        raise TypeError(f"record must be True or False, got {record!r}")
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
    if scheme == "naive" and plan.passes != 1:
        raise ValueError(f"scheme 'naive' runs one FFT per thread block, so N = {plan.N} must fit "
                         f"smem_bytes = {smem_bytes} (needs {2 * plan.N * np.dtype(real).itemsize})")
    tracer = _Tracer(record)
    ex = _TracingExecutor(tracer)
    x = u.detach().contiguous().numpy().reshape(B * H, L).copy()
    kk = k.detach().contiguous().numpy().copy()
    kf_re, kf_im = ex.empty(H, plan.N, real), ex.empty(H, plan.N, real)
    tracer.counting = False                                   # the precomputed spectrum
    run_spectrum(ex, kk, plan, kf_re, kf_im)
    tracer.counting = True
    y = np.full((B * H, L), np.nan, dtype=real)
    for a, label in ((x, "u"), (kf_re, "k_f.re"), (kf_im, "k_f.im"), (y, "y")):
        ex.name(a, label)
    if scheme == "flashbutterfly":
        run_conv(ex, x, kf_re, kf_im, False, plan, y)
    else:
        _run_naive(ex, x, kf_re, kf_im, plan, y)
    return Trace(torch.from_numpy(y.reshape(B, H, L)), scheme, plan, tracer.launches)


def _run_naive(ex, x, kf_re, kf_im, plan: Plan, y) -> None:
    """The unfused three-kernel FFT convolution, from the same block program with steps left out."""
    R, L = x.shape
    r, z, N = plan.real, ex.dummy(plan.real), plan.N
    U_re, U_im = ex.empty(R, N, r), ex.empty(R, N, r)
    P_re, P_im = ex.empty(R, N, r), ex.empty(R, N, r)
    for a, label in ((U_re, "U.re"), (U_im, "U.im"), (P_re, "UK.re"), (P_im, "UK.im")):
        ex.name(a, label)
    fft = Program(N, r, "real", True, False, False, "complex")
    mul = Program(N, r, "complex", False, True, False, "complex")
    ifft = Program(N, r, "complex", False, False, True, "real")
    ex.launch(fft, (R, 1), plan.block(N), x, z, z, z, U_re, U_im, L, 0, 0, 1, r(1), r(1))
    ex.launch(mul, (R, 1), plan.block(N), U_re, U_im, kf_re, kf_im, P_re, P_im,
              0, 0, 0, 1, r(1), r(1))
    ex.launch(ifft, (R, 1), plan.block(N), P_re, P_im, z, z, y, z, 0, L, 0, 1, r(1), r(1.0 / N))


def butterfly_schedule(trace: Trace, launch: int = 0, block=(0, 0)):
    """Which thread did which butterfly at each stage of one block: from a record=True trace.

    Returns [(label, [(thread, top, bottom), ...]), ...], one entry per butterfly stage of the
    launch's program, in execution order (labels like "forward, span 4"). Read off the recorded
    writes to the block's first shared array (the real plane): each butterfly writes its top
    wing, then its bottom wing; the stages are told apart by the barrier phase they ran in
    (phase 0 is the load, then one phase per forward stage, one for the multiply, one per
    inverse stage).
    """
    check_int(launch, "launch", min=0, max=len(trace.launches) - 1)
    lt = trace.launches[launch]
    if not lt.events:
        raise ValueError("trace has no recorded accesses: run trace_conv(..., record=True)")
    p = lt.prog
    S = p.n.bit_length() - 1
    labels, phase = {}, 1
    if p.forward:
        for j in range(S):
            labels[phase + j] = f"forward, span {p.n >> (j + 1)}"
        phase += S
    if p.multiply:
        phase += 1
    if p.inverse:
        for j in range(S):
            labels[phase + j] = f"inverse, span {1 << j}"
    writes = defaultdict(list)              # (phase, thread) -> indices written, in order
    for blk, tid, ph, space, op, name, idx in lt.events:
        if blk == tuple(block) and ph in labels and space == "shared" and op == "write" \
                and name == "shared array 0":
            writes[(ph, tid)].append(int(idx[0]))
    stages = defaultdict(list)
    for (ph, tid), idxs in sorted(writes.items()):
        stages[ph].extend((tid, a, b) for a, b in zip(idxs[0::2], idxs[1::2]))
    return [(labels[ph], stages[ph]) for ph in sorted(labels)]
