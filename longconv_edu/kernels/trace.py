"""Rung 5a: measure the CUDA kernels' memory traffic, coalescing and races by running their own code.

The IO model (``io_model``) *predicts* how many bytes each schedule moves to and from slow
memory. This tracer *measures* it: it runs the very kernel bodies of ``kernels.cuda`` (the
radix-2 ``block_program`` and the Monarch ``monarch_program``, not re-descriptions of them) with
its own ``cuda`` object, in the way GPU-Puzzles lets one run CUDA-style Python: each thread block
is a group of Python threads that meet at ``cuda.syncthreads()`` (a ``threading.Barrier``), and
every array the kernel touches, global or shared, is a ``CountingArray`` that counts (and
bounds-checks) each element read and written, per thread block. So the tracer also proves the
kernel never indexes out of bounds: an index outside an array raises ``IndexError`` naming the
array, where NumPy (and the simulator) would wrap a negative index silently.

What it reports, per thread block, per launch and per array:

* **bytes requested**: itemsize times the number of element reads and writes;
* **32-byte transactions** (sectors): a GPU serves a warp's (32 consecutive threads') load or
  store instruction in 32-byte sectors. For every global access the tracer knows the static
  instruction (the bytecode offset of the subscript in the kernel's code) and how many times the
  thread has executed it, so it groups the addresses the lanes of one warp touch in one execution
  of one instruction, and counts distinct sectors. Bytes moved = 32 x sectors; **coalescing
  efficiency** = bytes requested / bytes moved (1 when a warp reads 32 consecutive floats; 1/8
  for float32 read with a stride of 8 elements or more). Arrays start at 256-byte boundaries (as
  cudaMalloc's do); caches are not modelled: two instructions touching one sector count it twice.
  Warps need 32 threads: trace with ``threads=32`` to see a GPU's coalescing (fewer threads per
  block make every warp partial);
* **races**: every shared-memory access is recorded with its thread and barrier phase; two
  different threads touching the same shared address in the same phase (no barrier between),
  at least one of them writing, is a race, whatever order the Python threads happened to run in.
  ``drop_barriers`` builds the variant of a kernel without some of its barriers (the k-th
  ``cuda.syncthreads()`` each thread reaches does nothing), so a missing barrier can be shown.
  The threads of a block run one at a time, in thread order, from one barrier to the next: a
  fixed schedule, so every traced run (a racy one too) gives the same output.

Schedules of ``trace_conv``:

* kernel ``"radix2"``, scheme ``"flashbutterfly"``: what ``radix2_conv`` launches: one fused
  kernel when a row fits the shared-memory budget, the three-pass scheme otherwise;
* kernel ``"radix2"``, scheme ``"naive"``: the unfused three-kernel FFT convolution a first CUDA
  port would write: an FFT kernel (u -> U in global memory), a multiply kernel (U * K -> global),
  an inverse-FFT kernel (-> y). Per row, with s bytes per real and complex spectra of N values: it
  reads (L + 6N) s bytes and writes (4N + L) s bytes, against (L + 2N) s and L s fused;
* kernel ``"monarch"``: what ``cuda_conv`` (the registered ``cuda`` backend) launches: the fused
  Monarch kernel (real-input trick, dense DFT blocks applied in place, its root tables staged
  into shared memory from global memory, the cached half spectrum; the kernel's count-leading-
  zeros, ``cuda.clz``, is the tracer's too) for a row that fits ``smem_bytes``, else the
  Monarch three passes (``monarch_plan``: outer factors over tiles of columns, inner Monarch
  convolutions, outer inverse, through the intermediate row ``w`` in global memory).

(PyTorch's ``fft_conv`` is a different unfused schedule, five kernels with rfft's N/2 + 1 bins:
``io_model.unfused_fft_conv`` models that one.)

The kernel spectrum: ``radix2_conv`` recomputes it with the kernel's own forward stages on every
forward call; those launches are traced too and kept apart (``Trace.spectrum``, counted in
``Trace.with_spectrum``), so ``Trace.total`` is the convolution's own launches, as the IO model
counts them. ``cuda_conv`` caches the half spectrum (``torch.fft.rfft``, once per kernel tensor
version): no kernel of ours to trace, ``Trace.spectrum`` is empty.
"""
from __future__ import annotations

import bisect
import dis
import itertools
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from .._checks import check_bool, check_choice, check_conv_inputs, check_int
from .cuda import (
    DEFAULT_SMEM_BYTES,
    REAL_OF,
    MonarchPlan,
    Plan,
    Program,
    bind_cuda,
    block_program,
    check_block,
    check_cluster,
    check_launch_params,
    half_spectrum,
    make_plan,
    monarch_factors,
    monarch_plan,
    monarch_program,
    run_conv,
    run_monarch,
    run_spectrum,
)

__all__ = ["Counts", "Race", "LaunchTrace", "Trace", "CountingArray", "trace_conv", "trace_kernel",
           "traffic_rows", "butterfly_schedule", "SECTOR_BYTES", "WARP"]

#: A GPU moves global memory in 32-byte sectors (four to a 128-byte cache line).
SECTOR_BYTES = 32
#: Threads per warp: the threads whose accesses one load or store instruction serves together.
WARP = 32


@dataclass
class Counts:
    """What one thread block (or a launch, an array, a whole run) moved, by memory space.

    Bytes requested (itemsize x accesses) for global and shared memory, and the 32-byte sectors
    the warps' global load and store instructions touched.
    """
    global_read: int = 0
    global_write: int = 0
    shared_read: int = 0
    shared_write: int = 0
    global_read_sectors: int = 0
    global_write_sectors: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Counts)))

    def astuple(self):
        """The bytes requested: (global read, global written, shared read, shared written)."""
        return (self.global_read, self.global_write, self.shared_read, self.shared_write)

    @property
    def global_moved(self) -> int:
        """Bytes of global memory the sectors carry: 32 x (read + write sectors)."""
        return SECTOR_BYTES * (self.global_read_sectors + self.global_write_sectors)

    @property
    def coalescing(self) -> float:
        """Global bytes requested / bytes moved in sectors (1.0: fully coalesced; NaN: no access)."""
        moved = self.global_moved
        return (self.global_read + self.global_write) / moved if moved else float("nan")


@dataclass(frozen=True)
class Race:
    """Two threads of one block touch one shared address between the same two barriers, one writing.

    phase: how many barriers the threads had passed; array, index: the shared array (or the
    slice of dynamic shared memory) and the element; writers, readers: the thread ids.
    """
    launch: str
    block: tuple
    phase: int
    array: str
    index: int
    writers: tuple
    readers: tuple


@dataclass
class LaunchTrace:
    """One kernel launch: its program, grid, threads per block, counts per block and per array."""
    program: str
    prog: object                                     # the radix-2 Program, or None
    grid: tuple
    threads: int
    part: str = "conv"                               # "conv" or "spectrum"
    blocks: dict = field(default_factory=dict)       # block index tuple -> Counts
    by_array: dict = field(default_factory=dict)     # global array name -> Counts
    events: list = field(default_factory=list)       # (block, thread, phase, space, op, array, index)
    races: list = field(default_factory=list)        # Race, ...
    barriers: int = 0                                # barriers each thread passed (per block)
    dropped: tuple = ()                              # barrier ordinals that were left out

    @property
    def total(self) -> Counts:
        return sum(self.blocks.values(), Counts())


@dataclass
class Trace:
    """A traced convolution: its output y (B, H, L), the plan, and every launch's counts.

    ``launches``: the convolution's own kernels; ``spectrum``: the kernel-spectrum launches the
    radix-2 forward also runs (empty for the Monarch kernel, whose spectrum is cached).
    """
    y: torch.Tensor
    scheme: str
    plan: Plan
    launches: list
    kernel: str = "radix2"
    spectrum: list = field(default_factory=list)

    @property
    def total(self) -> Counts:
        return sum((lt.total for lt in self.launches), Counts())

    @property
    def with_spectrum(self) -> Counts:
        """The convolution's launches plus the kernel-spectrum launches of one forward call."""
        return self.total + sum((lt.total for lt in self.spectrum), Counts())

    @property
    def races(self) -> list:
        """Every shared-memory race found, in every launch (an empty list for a correct kernel)."""
        return [r for lt in self.spectrum + self.launches for r in lt.races]

    def per_row(self) -> Counts:
        """Counts summed over the launches, for the blocks of row 0 (every row is alike)."""
        out = Counts()
        for lt in self.launches:
            for blk, c in lt.blocks.items():
                if blk[0] == 0:
                    out = out + c
        return out


class CountingArray:
    """A NumPy array seen through the kernel: every element access is bounds-checked and counted.

    A 1-D slice ``a[i:j]`` (how the Monarch kernel carves its dynamic shared memory) is a view:
    a CountingArray over the same memory, whose accesses count as the parent's elements.
    """

    def __init__(self, data: np.ndarray, space: str, name: str, tracer: _Tracer,
                 root=None, offset: int = 0):
        self.data, self.space, self.name, self._t = data, space, name, tracer
        self.shape = data.shape
        self._root = self if root is None else root
        self._offset = offset
        self._strides = tuple(s // data.itemsize for s in data.strides)

    def __len__(self):
        return self.shape[0]

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

    def _flat(self, idx) -> int:
        return self._offset + sum(int(i) * s for i, s in zip(idx, self._strides))

    def _view(self, sl: slice) -> CountingArray:
        if self.data.ndim != 1:
            raise IndexError(f"{self.name}: only 1-D arrays can be sliced in a kernel")
        start, stop, step = sl.indices(self.shape[0])
        if step != 1:
            raise IndexError(f"{self.name}: slice step must be 1, got {step}")
        return CountingArray(self.data[start:stop], self.space,
                             f"{self._root.name}[{self._offset + start}:{self._offset + stop}]",
                             self._t, self._root, self._offset + start)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._view(idx)
        idx = self._check(idx)
        self._t.count(self, "read", idx, sys._getframe(1))
        return self.data[idx]

    def __setitem__(self, idx, value):
        idx = self._check(idx)
        self._t.count(self, "write", idx, sys._getframe(1))
        self.data[idx] = value


class _Dim3:
    def __init__(self, x=0, y=0, z=0):
        self.x, self.y, self.z = x, y, z


class _Shared:
    def __init__(self, tracer):
        self._t = tracer

    def array(self, shape, dtype):
        return self._t.shared_array(shape, dtype)


def _np_dtype(dtype):
    try:
        return np.dtype(dtype)
    except TypeError:                    # a numba type (numba.float32): its name is NumPy's
        return np.dtype(str(dtype))


class _Turns:
    """The block's barrier, and a fixed schedule: its threads run one at a time, in thread order,
    from one barrier to the next (thread 0 to its next barrier, then thread 1, ...). So a traced
    run is deterministic, races included (the GPU's order is not: the race detector does not
    depend on the order)."""

    def __init__(self, n: int):
        self.n, self.cv = n, threading.Condition()
        self.turn, self.arrived, self.generation = 0, 0, 0
        self.done, self.aborted = set(), False

    def _wait(self, ready):
        if not self.cv.wait_for(lambda: ready() or self.aborted, timeout=60):
            self.aborted = True
            self.cv.notify_all()
            raise RuntimeError("a thread block's threads did not meet at a barrier within 60 s: "
                               "do they all reach the same cuda.syncthreads() calls?")
        if self.aborted:
            raise threading.BrokenBarrierError

    def _pass(self, tid):
        for d in range(1, self.n + 1):                 # the next thread that has not finished
            t = (tid + d) % self.n
            if t not in self.done:
                self.turn = t
                break
        self.cv.notify_all()

    def start(self, tid):
        with self.cv:
            self._wait(lambda: self.turn == tid)

    def wait(self, tid):
        with self.cv:
            gen = self.generation
            self.arrived += 1
            if self.arrived == self.n - len(self.done):
                self.arrived, self.generation = 0, gen + 1
            self._pass(tid)
            self._wait(lambda: self.generation > gen and self.turn == tid)

    def finish(self, tid):
        with self.cv:
            self.done.add(tid)
            if self.arrived and self.arrived == self.n - len(self.done):
                self.arrived, self.generation = 0, self.generation + 1
            self._pass(tid)

    def abort(self):
        with self.cv:
            self.aborted = True
            self.cv.notify_all()


class _Tracer:
    """The ``cuda`` the kernel body sees: thread and block indices, shared arrays, barriers."""

    def __init__(self, record: bool):
        self.record = record
        self.shared = _Shared(self)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.counting = True
        self.part = "conv"
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

    @staticmethod
    def clz(val):
        """Leading zero bits of a 32-bit unsigned value (CUDA's __clz on a uint32)."""
        v = int(val)
        if not 0 <= v < 1 << 32:
            raise ValueError(f"clz takes a 32-bit unsigned value, got {v}")
        return 32 - v.bit_length()

    def syncthreads(self):
        loc = self._local
        k = loc.nsync
        loc.nsync += 1
        if k in self._drop:             # this barrier is left out of the variant being traced
            return
        if loc.barrier is not None:
            loc.barrier.wait(loc.tid)
        loc.phase += 1

    def shared_array(self, shape, dtype):
        # the k-th shared.array call of every thread of a block returns the block's k-th array;
        # shape 0 is the dynamic shared memory of the launch (every such call: the same memory)
        dt = _np_dtype(dtype)
        dynamic = shape == 0 or shape == (0,)
        k = "dynamic" if dynamic else self._local.shared_calls
        if not dynamic:
            self._local.shared_calls += 1
        with self._lock:
            arrs = self._block_shared
            if k not in arrs:
                if dynamic:
                    data = np.full(self._smem_bytes // dt.itemsize, np.nan, dtype=dt)
                    name = "dynamic shared"
                else:
                    data = np.full(shape, np.nan, dtype=dt)       # uninitialised: NaN
                    name = f"shared array {k}"
                arrs[k] = CountingArray(data, "shared", name, self)
            return arrs[k]

    # --- counting
    def count(self, arr: CountingArray, op: str, idx, frame):
        if not self.counting:
            return
        loc = self._local
        nbytes = arr.data.itemsize
        flat = arr._flat(idx)
        if arr.space == "global":
            site = _instruction(frame)                 # the instruction: its place in the code
            n = loc.executed.get(site, 0)              # the how-many-th time this thread runs it
            loc.executed[site] = n + 1
        with self._lock:
            lt = self._current
            c = self._block_counts
            attr = f"{arr.space}_{op}"
            setattr(c, attr, getattr(c, attr) + nbytes)
            if arr.space == "global":
                a = lt.by_array.setdefault(arr._root.name, Counts())
                setattr(a, attr, getattr(a, attr) + nbytes)
                sector = (flat * nbytes) // SECTOR_BYTES
                group = self._groups.setdefault((id(arr._root), site, n, loc.tid // WARP, op),
                                                set())
                if sector not in group:               # a new 32-byte sector for this instruction
                    group.add(sector)
                    setattr(c, attr + "_sectors", getattr(c, attr + "_sectors") + 1)
                    setattr(a, attr + "_sectors", getattr(a, attr + "_sectors") + 1)
            else:
                who = self._shared_seen.setdefault((loc.phase, id(arr._root), flat),
                                                   [set(), set(), arr._root.name])
                who[0 if op == "write" else 1].add(loc.tid)
            if self.record:
                lt.events.append((loc.block, loc.tid, loc.phase, arr.space, op, arr.name, idx))

    # --- running a launch
    def run(self, fn, name, prog, grid, nthreads, args, smem_bytes=0, drop=()):
        grid = tuple(grid)
        self._current = LaunchTrace(name, prog, grid, nthreads, part=self.part,
                                    dropped=tuple(sorted(drop)))
        self._smem_bytes, self._drop = smem_bytes, frozenset(drop)
        for block in itertools.product(*(range(g) for g in grid)):
            self._block_shared = {}
            self._block_counts = Counts()
            self._groups = {}
            self._shared_seen = {}
            nsync = self._run_block(fn, grid, block, nthreads, args)
            self._current.barriers = nsync
            if self.counting:
                self._current.blocks[block] = self._block_counts
                self._current.races += _races(name, block, self._shared_seen)
        if self.counting:
            self.launches.append(self._current)
        return self._current

    def _run_block(self, fn, grid, block, nthreads, args):
        barrier = _Turns(nthreads) if nthreads > 1 else None
        errors, nsync = [], [0]

        def thread(tid):
            loc = self._local
            loc.tid, loc.block, loc.grid, loc.nthreads = tid, block, grid, nthreads
            loc.barrier, loc.phase, loc.shared_calls, loc.nsync = barrier, 0, 0, 0
            loc.executed = {}
            try:
                if barrier is not None:
                    barrier.start(tid)
                fn(*args)
                if barrier is not None:
                    barrier.finish(tid)
            except threading.BrokenBarrierError:
                pass
            except BaseException as e:          # noqa: BLE001 - re-raised in the caller
                errors.append(e)
                if barrier is not None:
                    barrier.abort()
            if tid == 0:
                nsync[0] = loc.nsync

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
        return nsync[0]


_OFFSETS: dict = {}


def _instruction(frame):
    """(code, offset) of the bytecode instruction a frame is executing. f_lasti alone is not
    enough: once CPython specialises a subscript it reports an offset inside the instruction's
    inline cache, so it is mapped back to the instruction's start."""
    code = frame.f_code
    offs = _OFFSETS.get(code)
    if offs is None:
        offs = _OFFSETS[code] = [ins.offset for ins in dis.get_instructions(code)]
    return code, offs[bisect.bisect_right(offs, frame.f_lasti) - 1]


def _races(launch, block, seen) -> list:
    out = []
    for (phase, _root, flat), (writers, readers, name) in sorted(
            seen.items(), key=lambda kv: (kv[0][0], kv[1][2], kv[0][2])):
        if writers and (len(writers) > 1 or readers - writers):
            out.append(Race(launch, block, phase, name, flat, tuple(sorted(writers)),
                            tuple(sorted(readers))))
    return out


class _TracingExecutor:
    """The executor interface of ``kernels.cuda`` (empty, dummy, launch) over the tracer."""

    def __init__(self, tracer: _Tracer, drop_barriers=None):
        self.t = tracer
        self._names = {}
        self.scratch = []                    # labels for the next arrays empty() makes
        self.drop = drop_barriers            # None, "forward", or a tuple of barrier ordinals

    def empty(self, rows, cols, real, label: str = ""):
        a = np.full((rows, cols), np.nan, dtype=real)         # NaN: a read before a write shows
        if label or self.scratch:
            self.name(a, label or self.scratch.pop(0))
        return a

    def array(self, table: np.ndarray, label: str = ""):
        """A constant host table, as the kernels see it (global memory, named ``label``)."""
        a = np.array(table)
        self.name(a, label)
        return a

    def dummy(self, real):
        return np.zeros((1, 1), dtype=real)

    def name(self, arr, label):
        self._names[id(arr)] = label

    def _wrap(self, fn, args):
        params = fn.__code__.co_varnames[:fn.__code__.co_argcount]
        return [CountingArray(a, "global", self._names.get(id(a), params[i]), self.t)
                if isinstance(a, np.ndarray) else a for i, a in enumerate(args)]

    def _dropped(self, n_forward):
        if self.drop == "forward":           # the barrier after each forward stage / factor
            return tuple(range(1, 1 + n_forward))
        return tuple(self.drop or ())

    def launch(self, p: Program, grid, block, *args):
        fn = bind_cuda(block_program(p), self.t)
        drop = self._dropped(p.n.bit_length() - 1 if p.forward else 0)
        self.t.run(fn, p.name, p, grid, block, self._wrap(fn, args), drop=drop)

    def launch_monarch(self, plan: MonarchPlan, kind: str, grid, *args):
        pa = plan.program_args(kind)          # threads: a compile-time constant of the kernel
        C = pa.get("cluster", 1)              # a cluster: its one-block emulation (kernels.dsmem)
        fn = bind_cuda(monarch_program(**pa, emulate=C > 1), self.t)
        n = {"conv": plan.M, "grad": plan.M, "outer": plan.outer, "inner": plan.inner,
             "inner_spectrum": plan.inner, "outer_inverse": 1, "cluster": plan.M // C}[kind]
        drop = self._dropped(len(monarch_factors(n, plan.block)))
        self.t.run(fn, fn.__name__, None, grid, C * pa["threads"], self._wrap(fn, args),
                   smem_bytes=C * plan.shared_bytes(kind), drop=drop)


def _check_drop(drop_barriers):
    if drop_barriers is None or drop_barriers == "forward":
        return drop_barriers
    if isinstance(drop_barriers, str) or not isinstance(drop_barriers, (tuple, list)):
        raise TypeError(f"drop_barriers must be None, 'forward' or a tuple of barrier numbers "
                        f"(0 = the first cuda.syncthreads() a thread reaches), got "
                        f"{drop_barriers!r}")
    return tuple(check_int(b, "drop_barriers[i]", min=0) for b in drop_barriers)


def trace_kernel(kernel, grid, threads: int, *args, smem_bytes: int = 0, names=None,
                 drop_barriers=(), record: bool = False) -> LaunchTrace:
    """Run one CUDA-style kernel body under the tracer: kernel[grid, threads, 0, smem_bytes](*args).

    kernel: a plain Python function written against a module-level name ``cuda`` (as the bodies
    of ``kernels.cuda`` are; ``bind_cuda`` gives it the tracer's). grid: blocks, an int or a
    tuple of 1 or 2 ints. threads: threads per block (1..1024). args: NumPy arrays (global
    memory, 1-D or more; written in place) and scalars. smem_bytes: the dynamic shared memory
    (``cuda.shared.array(0, dtype)``). names: labels of the arrays (default: the kernel's
    parameter names). drop_barriers: barrier ordinals to leave out. record: keep every access.
    Returns the LaunchTrace (counts per block and per array, races, recorded events).
    """
    if not callable(kernel) or not hasattr(kernel, "__code__"):
        raise TypeError(f"kernel must be a Python function (a CUDA-style kernel body), got "
                        f"{type(kernel).__name__}")
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        grid = (grid,)
    if not (isinstance(grid, tuple) and 1 <= len(grid) <= 2):
        raise TypeError(f"grid must be an int or a tuple of 1 or 2 ints, got {grid!r}")
    grid = tuple(check_int(g, "grid[i]", min=1) for g in grid)
    threads = check_int(threads, "threads", min=1, max=1024)
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=0)
    drop = _check_drop(drop_barriers)
    if drop == "forward":
        raise ValueError("drop_barriers='forward' names the forward stages of trace_conv's "
                         "kernels; for trace_kernel give the barrier numbers, e.g. (1,)")
    record = check_bool(record, "record")
    n_arrays = sum(isinstance(a, np.ndarray) for a in args)
    if names is not None:
        if not (isinstance(names, (tuple, list)) and len(names) == n_arrays
                and all(isinstance(n, str) for n in names)):
            raise TypeError(f"names must be a tuple of {n_arrays} strings (one per array "
                            f"argument), got {names!r}")
    tracer = _Tracer(record)
    ex = _TracingExecutor(tracer, drop)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    for a, label in zip(arrays, names or ()):
        ex.name(a, label)
    fn = bind_cuda(kernel, tracer)
    return tracer.run(fn, kernel.__name__, None, grid, threads, ex._wrap(fn, args),
                      smem_bytes=smem_bytes, drop=drop or ())


def trace_conv(u: torch.Tensor, k: torch.Tensor, *, kernel: str = "radix2",
               scheme: str = "flashbutterfly", smem_bytes: int = DEFAULT_SMEM_BYTES,
               threads: int = 2, block: int | None = None, record: bool = False,
               drop_barriers=None, cluster: int = 1) -> Trace:
    """Run the convolution of u (B, H, L) with k (H, Lk) under the tracer; count its traffic.

    CPU tensors, float32 or float64 (use tiny sizes: one Python thread per CUDA thread).
    kernel "radix2" (``radix2_conv``: scheme "flashbutterfly", fused or three-pass when
    2*N*s > smem_bytes, or "naive", three kernels through global memory) or "monarch" (what
    ``cuda_conv`` launches with this ``smem_bytes``: its fused kernel, or its three passes,
    Monarch block size ``block``; ``Trace.plan`` is then the ``MonarchPlan``). threads: threads
    per block (byte counts per block do not depend on it; sectors do: use 32 for full warps).
    record=True keeps every access (for ``butterfly_schedule``). drop_barriers: None,
    "forward" (leave out the barrier after each forward stage or factor: the variant without
    the forward-stage ``cuda.syncthreads()``), or a tuple of barrier ordinals left out of every
    launch. cluster (kernel "monarch"): the largest thread block cluster the plan may take
    (``monarch_plan``); a cluster runs as its one-block emulation (``kernels.dsmem``), so its
    accesses to the other blocks' shared memory count as shared accesses.
    Returns a Trace whose y is the traced run's output (so it is checked too).
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    check_choice(kernel, "kernel", ["radix2", "monarch"])
    check_choice(scheme, "scheme", ["flashbutterfly", "naive"])
    if u.device.type != "cpu":
        raise ValueError(f"u is on device {u.device}; the tracer runs on CPU tensors (.cpu())")
    real = REAL_OF[u.dtype]
    smem_bytes, threads = check_launch_params(real, smem_bytes, threads)
    block = None if block is None else check_block(block)
    record = check_bool(record, "record")
    drop = _check_drop(drop_barriers)
    tracer = _Tracer(record)
    ex = _TracingExecutor(tracer, drop)
    x = u.detach().contiguous().numpy().reshape(B * H, L).copy()
    kk = k.detach().contiguous().numpy().copy()
    y = np.full((B * H, L), np.nan, dtype=real)
    if kernel == "monarch":
        if scheme != "flashbutterfly":
            raise ValueError(f"scheme {scheme!r} is a radix-2 schedule; kernel 'monarch' has one "
                             f"schedule, 'flashbutterfly' (fused, or three passes when a row "
                             f"does not fit smem_bytes)")
        plan = monarch_plan(L, real, smem_bytes=smem_bytes, block=block, threads=threads,
                            cluster=check_cluster(cluster))
        spec = half_spectrum(torch.from_numpy(kk), plan.N, plan.outer, plan.cluster).numpy().copy()
        for a, label in ((x, "u"), (spec, "k_f"), (y, "y")):
            ex.name(a, label)
        run_monarch(ex, x, spec, False, plan, y)
        return Trace(torch.from_numpy(y.reshape(B, H, L)), scheme, plan, tracer.launches,
                     kernel="monarch")
    plan = make_plan(L, real, smem_bytes=smem_bytes, threads=threads)
    if scheme == "naive" and plan.passes != 1:
        raise ValueError(f"scheme 'naive' runs one FFT per thread block, so N = {plan.N} must fit "
                         f"smem_bytes = {smem_bytes} (needs {2 * plan.N * np.dtype(real).itemsize})")
    kf_re, kf_im = ex.empty(H, plan.N, real), ex.empty(H, plan.N, real)
    for a, label in ((x, "u"), (kk, "k"), (kf_re, "k_f.re"), (kf_im, "k_f.im"), (y, "y")):
        ex.name(a, label)
    tracer.part = "spectrum"                 # radix2_conv computes it on every forward call
    run_spectrum(ex, kk, plan, kf_re, kf_im)
    n_spec = len(tracer.launches)
    tracer.part = "conv"
    if scheme == "flashbutterfly":
        ex.scratch = ["w.re", "w.im"]           # three-pass: the row between the passes
        run_conv(ex, x, kf_re, kf_im, False, plan, y)
    else:
        _run_naive(ex, x, kf_re, kf_im, plan, y)
    return Trace(torch.from_numpy(y.reshape(B, H, L)), scheme, plan, tracer.launches[n_spec:],
                 kernel="radix2", spectrum=tracer.launches[:n_spec])


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


def traffic_rows(trace: Trace, *, spectrum: bool = True) -> list[dict]:
    """One row per (launch, global array) of a Trace: what the warps asked for and what moved.

    Each row: {"part", "launch", "array", "bytes read", "bytes written", "sectors", "bytes
    moved", "coalescing"} (coalescing = bytes requested / bytes moved). spectrum=False leaves
    the kernel-spectrum launches out.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace (from trace_conv), got {type(trace).__name__}")
    spectrum = check_bool(spectrum, "spectrum")
    rows = []
    for lt in (trace.spectrum if spectrum else []) + trace.launches:
        for name, c in lt.by_array.items():
            rows.append({"part": lt.part, "launch": lt.program, "array": name,
                         "bytes read": c.global_read, "bytes written": c.global_write,
                         "sectors": c.global_read_sectors + c.global_write_sectors,
                         "bytes moved": c.global_moved, "coalescing": c.coalescing})
    return rows


def butterfly_schedule(trace: Trace, launch: int = 0, block=(0, 0)):
    """Which thread did which butterfly at each stage of one block: from a record=True trace.

    Returns [(label, [(thread, top, bottom), ...]), ...], one entry per butterfly stage of the
    launch's program, in execution order (labels like "forward, span 4"). Read off the recorded
    writes to the block's first shared array (the real plane): each butterfly writes its top
    wing, then its bottom wing; the stages are told apart by the barrier phase they ran in
    (phase 0 is the load, then one phase per forward stage, one for the multiply, one per
    inverse stage). Radix-2 traces only.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace (from trace_conv), got {type(trace).__name__}")
    if trace.kernel != "radix2":
        raise ValueError(f"butterfly_schedule reads radix-2 butterflies; trace.kernel is "
                         f"{trace.kernel!r} (trace with kernel='radix2')")
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
