"""Rung 5a: the tracer's 32-byte transactions, its race detector, and its run of the Monarch kernel.

Oracles, each independent of the tracer's code:
* sectors: hand counts for tiny kernels (a warp reading 32 consecutive float32 is 128 bytes, 4
  sectors of 32 bytes; a stride of 8 or more floats puts every lane in a sector of its own);
* races: the thread that owns each position in each radix-2 stage (the butterfly map of
  ``course/exercises/rung5.thread_butterflies``, written out here) says exactly which positions two
  threads share once the barrier between two stages is gone;
* outputs: numpy.convolve in float64 (1e-10, as in test_conv.py); byte counts: io_model's
  formulas, or the count of the kernel's loops written out by hand.
(The io_model equalities of the radix-2 kernel are in tests/test_kernels_cuda.py.)
"""
import numpy as np
import pytest
import torch
from oracles import causal_conv_np, rel_err

from longconv_edu import io_model
from longconv_edu.kernels import cuda as kc
from longconv_edu.kernels.trace import (
    SECTOR_BYTES,
    WARP,
    butterfly_schedule,
    trace_conv,
    trace_kernel,
    traffic_rows,
)

cuda = None          # the tiny kernels below are CUDA-style bodies: trace_kernel binds this name


def make(B, H, L, Lk, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, generator=g, dtype=dtype),
            torch.randn(H, Lk, generator=g, dtype=dtype))


# ----------------------------------------------------------------------------- tiny kernels: sectors
def strided_copy(x, y, stride, offset):
    t = cuda.threadIdx.x
    y[t] = x[offset + t * stride]


@pytest.mark.parametrize("dtype, stride, offset, threads, read_sectors", [
    (np.float32, 1, 0, 32, 4),       # 128 contiguous bytes, aligned: 4 sectors
    (np.float32, 1, 4, 32, 5),       # the same 128 bytes starting 16 bytes into a sector: 5
    (np.float32, 2, 0, 32, 8),       # every other float: 256 bytes spanned, 8 sectors
    (np.float32, 8, 0, 32, 32),      # 32 bytes apart: one sector per lane
    (np.float32, 33, 0, 32, 32),     # far apart: still one sector per lane
    (np.float64, 1, 0, 32, 8),       # 256 contiguous bytes: 8 sectors
    (np.float64, 4, 0, 32, 32),
    (np.float32, 1, 0, 64, 8),       # two warps, 4 sectors each
    (np.float32, 1, 0, 8, 1),        # one partial warp of 8 lanes: 32 bytes, one sector
    (np.float32, 0, 0, 64, 2),       # every lane reads x[0]: one sector per warp (a broadcast)
])
def test_sectors_match_a_hand_count(dtype, stride, offset, threads, read_sectors):
    x = np.arange(offset + stride * threads + 1, dtype=dtype)
    y = np.zeros(threads, dtype=dtype)
    lt = trace_kernel(strided_copy, 1, threads, x, y, stride, offset)
    s = np.dtype(dtype).itemsize
    assert np.array_equal(y, x[offset + stride * np.arange(threads)])       # it ran the kernel
    c = lt.total
    assert (c.global_read, c.global_write) == (threads * s, threads * s)     # bytes requested
    assert c.global_read_sectors == read_sectors
    assert c.global_write_sectors == -(-threads * s // SECTOR_BYTES)        # y: contiguous
    assert lt.by_array["x"].global_read_sectors == read_sectors
    assert lt.by_array["x"].coalescing == pytest.approx(threads * s / (32 * read_sectors))


def two_reads(x, y):
    t = cuda.threadIdx.x
    a = x[2 * t]            # two load instructions, each touching every other float ...
    b = x[2 * t + 1]
    y[t] = a + b            # ... so each is 50% coalesced, and they count their sectors apart


def test_each_instruction_counts_its_own_sectors():
    x, y = np.arange(64, dtype=np.float32), np.zeros(32, dtype=np.float32)
    lt = trace_kernel(two_reads, 1, 32, x, y, names=("x", "y"))
    assert lt.by_array["x"].global_read_sectors == 8 + 8
    assert lt.by_array["x"].coalescing == 0.5
    assert lt.by_array["y"].coalescing == 1.0


def loop_copy(x, y, n):
    t = cuda.threadIdx.x
    for m in range(t, n, cuda.blockDim.x):    # iteration j of every lane is one instruction run
        y[m] = x[m]


def test_loop_iterations_are_separate_instructions():
    n = 100                                 # 32 threads: iterations of 32, 32, 32 and 4 lanes
    x, y = np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    lt = trace_kernel(loop_copy, 1, 32, x, y, n)
    assert np.array_equal(x, y)
    assert lt.total.global_read_sectors == 4 + 4 + 4 + 1


# ----------------------------------------------------------------------------- tiny kernels: races
def neighbour_sum(x, y, with_barrier):
    s = cuda.shared.array(8, np.float64)
    t = cuda.threadIdx.x
    s[t] = x[t]
    if with_barrier:
        cuda.syncthreads()
    y[t] = s[t] + s[(t + 1) % 8]            # reads the neighbour's write


def test_race_detector_on_a_neighbour_read():
    x, y = np.arange(8.0), np.zeros(8)
    assert trace_kernel(neighbour_sum, 1, 8, x, y, True).races == []
    assert np.array_equal(y, x + np.roll(x, -1))
    races = trace_kernel(neighbour_sum, 1, 8, x, np.zeros(8), False).races
    # position p is written by thread p and read by threads p and p - 1
    assert [(r.index, r.writers, r.readers) for r in races] == \
        [(p, (p,), tuple(sorted({p, (p - 1) % 8}))) for p in range(8)]
    # the same kernel with its barrier dropped by the tracer: the same races
    dropped = trace_kernel(neighbour_sum, 1, 8, x, np.zeros(8), True, drop_barriers=(0,))
    assert dropped.races == [r for r in races] and dropped.dropped == (0,)


def own_cell(x):
    s = cuda.shared.array(4, np.float64)
    t = cuda.threadIdx.x
    s[t] = x[t]
    s[t] = s[t] * 2                          # the same thread reads and writes: no race
    x[t] = s[t]


def test_one_thread_rewriting_its_cell_is_not_a_race():
    x = np.arange(4.0)
    assert trace_kernel(own_cell, 1, 4, x).races == []
    assert np.array_equal(x, 2 * np.arange(4.0))


# ----------------------------------------------------------------------------- the real kernels: races
def _owner(p, h, T):
    """The thread that owns position p in the radix-2 stage of span h (T threads, butterflies
    t, t+T, ...): butterfly q = (p // 2h) * h + p % h."""
    return ((p // (2 * h)) * h + p % h) % T


@pytest.mark.parametrize("kernel, block, smem", [
    ("radix2", 16, 48 * 1024), ("radix2", 16, 128),      # fused; three passes, tiles of 8
    ("monarch", 2, 48 * 1024), ("monarch", 4, 48 * 1024), ("monarch", 16, 48 * 1024)])
@pytest.mark.parametrize("L", [1, 5, 16])
def test_the_correct_kernels_have_no_races(kernel, block, smem, L):
    u, k = make(2, 1, L, max(1, L // 2), seed=L)
    for threads in (1, 2, 8):
        tr = trace_conv(u, k, kernel=kernel, block=block, smem_bytes=smem, threads=threads)
        assert tr.races == []
        assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10


def test_the_naive_schedule_has_no_races():
    u, k = make(1, 2, 7, 3, seed=0)
    assert trace_conv(u, k, scheme="naive", threads=4).races == []


@pytest.mark.parametrize("j", [1, 2, 3])
def test_dropping_a_radix2_stage_barrier_races_exactly_where_two_threads_share_a_position(j):
    # N = 16, T = 4: barrier j (0 is the load's) ends forward stage j, span 16 >> j; without it,
    # stage j and stage j + 1 run in one phase
    u, k = make(1, 1, 8, 3, seed=j)
    tr = trace_conv(u, k, threads=4, drop_barriers=(j,))
    N, T = 16, 4
    h = N >> j
    want = sorted(p for p in range(N) if _owner(p, h, T) != _owner(p, h // 2, T))
    conv = tr.launches[0]
    got = sorted({r.index for r in conv.races if r.array == "shared array 0"})
    assert got == want
    assert all(r.phase == j for r in conv.races)
    assert all(len(set(r.writers) | set(r.readers)) >= 2 and r.writers for r in conv.races)
    # span 8 and span 4 are multiples of T: each position stays with its thread, no race
    assert (want == []) == (j == 1)


@pytest.mark.parametrize("kernel, block", [("radix2", 16), ("monarch", 16), ("monarch", 2)])
def test_without_the_forward_stage_barrier_both_kernels_are_flagged(kernel, block):
    u, k = make(1, 1, 8, 3, seed=4)
    tr = trace_conv(u, k, kernel=kernel, block=block, threads=4, drop_barriers="forward")
    conv = tr.launches[0]
    S = 4 if kernel == "radix2" else len(kc.monarch_factors(8, block))
    assert conv.dropped == tuple(range(1, S + 1))
    assert conv.races, "a kernel without its forward-stage barrier must be flagged"
    ok = trace_conv(u, k, kernel=kernel, block=block, threads=4)
    assert ok.races == [] and ok.launches[0].barriers == conv.barriers == 2 * S + 2


# ----------------------------------------------------------------------------- the Monarch kernel
@pytest.mark.parametrize("L, Lk", [(1, 1), (2, 1), (7, 7), (16, 5), (33, 33)])
@pytest.mark.parametrize("block", [2, 4, 16])
def test_monarch_trace_computes_the_convolution_and_counts_its_loops(L, Lk, block):
    B, H = 2, 2
    u, k = make(B, H, L, Lk, seed=L * block)
    tr = trace_conv(u, k, kernel="monarch", block=block, threads=4)
    assert tr.kernel == "monarch" and tr.spectrum == [] and len(tr.launches) == 1
    assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    # per row, by the kernel's loops: u once (L), the root table (2 x M: 48 KiB holds Q = M),
    # the split's twiddles once per pair (pair 0 and pairs 2..M/2: k = M/2, its own partner,
    # needs none), the half spectrum once (M + 1 complex values), y once
    M = kc.fft_size(L) // 2
    s = 8
    assert tr.plan.roots == M
    per = tr.launches[0].by_array
    assert per["u"].global_read == B * H * L * s
    assert per["roots"].global_read == B * H * 2 * M * s
    assert "roots_fine" not in per                      # Q = M: no second table
    assert per["twiddles"].global_read == B * H * 2 * max(M // 2, 1) * s
    assert per["k_f"].global_read == B * H * 2 * (M + 1) * s
    assert per["y"].global_write == B * H * L * s
    assert tr.total.global_write == B * H * L * s
    # the data arrays (u, the half spectrum, y): io_model's fused real-input traffic, exactly
    m = io_model.fused_conv(B, H, L, dtype_bytes=s, real_input=True)
    assert (sum(per[a].global_read for a in ("u", "k_f", "y")),
            sum(per[a].global_write for a in ("u", "k_f", "y"))) == (m.bytes_read, m.bytes_written)


def test_monarch_takes_three_passes_below_its_fused_budget():
    u, k = make(1, 1, 20, 4, seed=0)
    # M = 32 float64: the row in place (2 M) and the smallest tables (Q = 8: 2 x 8 + 2 x 4)
    need = kc.monarch_smem_bytes(32, np.float64, roots=kc.least_roots(32))
    assert need == (2 * 32 + 16 + 8) * 8
    fused = trace_conv(u, k, kernel="monarch", smem_bytes=need)
    three = trace_conv(u, k, kernel="monarch", smem_bytes=need - 8)   # 4 x 8 fits in 576 bytes
    assert fused.plan.passes == 1 and len(fused.launches) == 1 and fused.plan.roots == 8
    assert three.plan.passes == 3 and [lt.program.split("_O")[0].split("_I")[0] for lt in
                                       three.launches] == ["monarch_outer", "monarch_inner",
                                                           "monarch_outer_inverse"]
    for tr in (fused, three):
        assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    # 64 bytes: the fused kernel up to M = 2 (2 x 2 values and 2 roots: 8 float64), no three passes
    with pytest.raises(ValueError, match=r"^u has length L=20: .*smem_bytes=64 .* supports L <= 2;"):
        trace_conv(u, k, kernel="monarch", smem_bytes=64)
    with pytest.raises(ValueError, match="^scheme 'naive' is a radix-2 schedule"):
        trace_conv(u, k, kernel="monarch", scheme="naive")
    with pytest.raises(ValueError, match="^butterfly_schedule reads radix-2"):
        butterfly_schedule(trace_conv(u, k, kernel="monarch", record=True))


@pytest.mark.parametrize("block", [2, 4, 8])
def test_monarch_fused_with_two_level_twiddles_has_no_races(block):
    # M = 64 float64 under 1280 bytes: the row in place (2 x 64) and the smallest tables, Q = 8:
    # W_8^t and W_64^t for t < 8; every factor of span > 8 multiplies two table entries
    L, M = 64, 64
    u, k = make(2, 1, L, 40, seed=block)
    smem = kc.monarch_smem_bytes(M, np.float64, roots=8)
    assert smem == (2 * M + 2 * 8 + 2 * 8) * 8 == 1280
    for threads in (1, 4, 32):
        tr = trace_conv(u, k, kernel="monarch", block=block, smem_bytes=smem, threads=threads)
        assert tr.plan.passes == 1 and tr.plan.roots == 8
        assert tr.races == []
        assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
        per = tr.launches[0].by_array                     # 2 rows, both tables staged by each
        assert per["roots"].global_read == per["roots_fine"].global_read == 2 * 2 * 8 * 8
    bad = trace_conv(u, k, kernel="monarch", block=block, smem_bytes=smem, threads=4,
                     drop_barriers="forward")
    assert bad.launches[0].races and bad.launches[0].dropped == tuple(
        range(1, len(kc.monarch_factors(M, block)) + 1))


# ----------------------------------------------------------------------------- coalescing of the kernels
def test_fused_radix2_is_coalesced_and_the_three_pass_outer_passes_are_not():
    u, k = make(1, 1, 128, 128, seed=1, dtype=torch.float32)
    fused = trace_conv(u, k, threads=32)
    assert fused.total.coalescing == 1.0                 # every array read and written in order
    tp = trace_conv(u, k, threads=32, smem_bytes=128)    # tiles of 16: N = 256 = 16 x 16
    assert (tp.plan.outer, tp.plan.inner) == (16, 16)
    m = io_model.three_pass_traffic(1, 1, 128, dtype_bytes=4)
    assert (tp.total.global_read, tp.total.global_write) == (m.bytes_read, m.bytes_written)
    p1, p2, p3 = tp.launches
    # passes 1 and 3: lane t of a column block touches element t * inner: 64 bytes apart, so
    # each float its own sector (1/8); pass 2: contiguous tiles of 16 floats, 2 sectors each
    assert p1.by_array["u"].global_read_sectors == 128
    assert p1.by_array["u"].coalescing == p3.by_array["y"].coalescing == 1 / 8
    assert p1.by_array["w.re"].coalescing == p3.by_array["w.im"].coalescing == 1 / 8
    assert p2.total.coalescing == 1.0
    assert p2.by_array["w.re"].global_read_sectors == 16 * 2


# The Monarch three passes (float32, 32 threads: full warps). L = 1024 with a 2560-byte budget:
# M = 1024 = 16 outer x 64 inner, pass-1/3 tiles of 16 x 8 columns (8 floats: one sector per
# tile row and plane). Pass 1 reads u as 2 x 8 consecutive floats per tile row, pass 3 writes
# y the same way, both read and write w by tile rows of 8 consecutive floats: whole sectors,
# coalescing 1. The radix-2 three passes at the same kind of budget: 1/8 (test above).
THREE = dict(kernel="monarch", threads=32, smem_bytes=2560)


@pytest.fixture(scope="module")
def monarch_three_pass():
    u, k = make(1, 1, 1024, 1024, seed=7, dtype=torch.float32)
    return u, k, trace_conv(u, k, **THREE)


def test_monarch_three_pass_outer_passes_are_coalesced(monarch_three_pass):
    u, k, tr = monarch_three_pass
    assert (tr.plan.outer, tr.plan.inner, tr.plan.columns) == (16, 64, 8)
    p1, p2, p3 = tr.launches
    for lt, arrays in ((p1, ("u", "w", "twiddles_outer")), (p3, ("w", "y", "twiddles_outer"))):
        for a in arrays:
            assert lt.by_array[a].coalescing == 1.0, (lt.program, a)
    assert p1.total.coalescing == p3.total.coalescing == 1.0
    # pass 2: its rows in order (1.0); the spectrum and the split twiddles are read at the
    # pairs (k, M - k): whole sectors but for the first pair of row 0 (K[M] at the end)
    assert p2.by_array["w"].coalescing == 1.0
    assert p2.by_array["k_f"].coalescing > 0.9 and p2.total.coalescing > 0.95
    assert tr.races == []
    assert rel_err(tr.y.double().numpy(), causal_conv_np(u.double().numpy(),
                                                         k.double().numpy())) < 2e-4


def test_monarch_three_pass_bytes_equal_the_io_model(monarch_three_pass):
    # the data arrays of each pass, requested bytes: io_model's real-input three passes exactly
    u, k, tr = monarch_three_pass
    m = io_model.three_pass_traffic(1, 1, 1024, dtype_bytes=4, outer=tr.plan.outer, real_input=True)
    for lt, (_, rd, wr) in zip(tr.launches, m.passes):
        data = [c for name, c in lt.by_array.items() if name in ("u", "w", "k_f", "y")]
        assert (sum(c.global_read for c in data), sum(c.global_write for c in data)) == (rd, wr)
    # the constant tables on top, per row: each block of a pass reads its share
    M = 1024
    t1 = tr.launches[0].by_array
    assert t1["twiddles_outer"].global_read == 2 * M * 4
    assert t1["roots_outer"].global_read == (M // 16 // 8) * 2 * 16 * 4      # per block


# budgets below the fused kernel's least (M = 32 float64: 704 bytes; M = 64: 1280) that hold
# the three passes (4 x 8, tiles of 4 columns: 576 bytes; 8 x 8: 1152)
@pytest.mark.parametrize("L, Lk, smem, block", [(20, 13, 640, 4), (32, 32, 640, 2), (17, 5, 680, 4),
                                                (33, 20, 1152, 4), (64, 64, 1152, 16)])
def test_monarch_three_pass_has_no_races_and_flags_missing_barriers(L, Lk, smem, block):
    u, k = make(2, 1, L, Lk, seed=L)
    for threads in (1, 2, 8):
        tr = trace_conv(u, k, kernel="monarch", block=block, smem_bytes=smem, threads=threads)
        assert tr.plan.passes == 3 and len(tr.launches) == 3
        assert tr.races == []
        assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    bad = trace_conv(u, k, kernel="monarch", block=block, smem_bytes=smem, threads=4,
                     drop_barriers="forward")
    # pass 2's pairs (k, M - k) join values other threads' factors wrote: flagged whenever
    # its forward barriers go (pass 1 only where its outer factors hand data between threads)
    assert bad.launches[1].races


def test_monarch_reads_u_at_half_coalescing():
    # the real-input trick reads u[2m] and u[2m+1] as two loads: each spans twice its bytes
    u, k = make(1, 1, 64, 64, seed=2, dtype=torch.float32)
    tr = trace_conv(u, k, kernel="monarch", threads=32)
    per = tr.launches[0].by_array
    assert per["u"].coalescing == per["y"].coalescing == 0.5
    assert per["roots"].coalescing == 1.0
    assert rel_err(tr.y.double().numpy(), causal_conv_np(u.double().numpy(),
                                                         k.double().numpy())) < 1e-5


def test_radix2_spectrum_launches_are_counted_apart():
    B, H, L, Lk = 2, 3, 12, 5
    u, k = make(B, H, L, Lk, seed=3)
    tr = trace_conv(u, k, threads=2)
    N, s = tr.plan.N, 8
    spec = sum((lt.total for lt in tr.spectrum), type(tr.total)())
    assert len(tr.spectrum) == 1 and tr.spectrum[0].part == "spectrum"
    assert (spec.global_read, spec.global_write) == (H * Lk * s, H * 2 * N * s)
    assert tr.with_spectrum.global_read == tr.total.global_read + H * Lk * s
    m = io_model.fused_conv(B, H, L, dtype_bytes=s)
    assert (tr.total.global_read, tr.total.global_write) == (m.bytes_read, m.bytes_written)
    rows = traffic_rows(tr)
    assert {r["part"] for r in rows} == {"spectrum", "conv"}
    assert sum(r["bytes read"] for r in rows) == tr.with_spectrum.global_read
    assert sum(r["bytes read"] for r in traffic_rows(tr, spectrum=False)) == tr.total.global_read


def test_warp_constants():
    assert (WARP, SECTOR_BYTES) == (32, 32)


# ----------------------------------------------------------------------------- bad input
def test_bad_tracer_arguments_name_the_argument():
    u, k = make(1, 1, 4, 2, seed=0)
    x = np.zeros(4)
    with pytest.raises(ValueError, match="^kernel must be one of"):
        trace_conv(u, k, kernel="fft")
    with pytest.raises(TypeError, match="^record must be True or False"):
        trace_conv(u, k, record="yes")
    with pytest.raises(TypeError, match="^drop_barriers must be None, 'forward' or a tuple"):
        trace_conv(u, k, drop_barriers="all")
    with pytest.raises(ValueError, match=r"^drop_barriers\[i\] must be >= 0"):
        trace_conv(u, k, drop_barriers=(-1,))
    with pytest.raises(ValueError, match="^block must be a power of two"):
        trace_conv(u, k, kernel="monarch", block=6)
    with pytest.raises(TypeError, match="^kernel must be a Python function"):
        trace_kernel("copy", 1, 1, x)
    with pytest.raises(TypeError, match="^grid must be an int or a tuple"):
        trace_kernel(own_cell, [1], 1, x)
    with pytest.raises(ValueError, match=r"^threads must be <= 1024"):
        trace_kernel(own_cell, 1, 2048, x)
    with pytest.raises(TypeError, match="^names must be a tuple of 1 strings"):
        trace_kernel(own_cell, 1, 4, x, names=("a", "b"))
    with pytest.raises(ValueError, match="^drop_barriers='forward' names"):
        trace_kernel(own_cell, 1, 4, x, drop_barriers="forward")
    with pytest.raises(TypeError, match="^trace must be a Trace"):
        traffic_rows("trace")
