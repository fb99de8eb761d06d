"""Rung 5a: the FlashButterfly CUDA kernel without a GPU: PTX, tracer, bad input, simulator.

Four kinds of evidence, none needing a GPU:
* the simulator suite (tests/test_kernels_cuda_sim.py: forward and backward against numpy and
  torch.fft autograd), run here in a child process with NUMBA_ENABLE_CUDASIM=1 (numba reads that
  variable once, at import, and this process imports numba normally);
* the real kernels compiled to PTX for compute capabilities 8.0 and 9.0, with shared memory per
  block read from the PTX and registers per thread from ptxas;
* the tracer, which runs the kernel's own code with counting, bounds-checking arrays: its output
  against numpy.convolve (float64, 1e-10 as in test_conv.py) and its global-memory bytes against
  io_model's formulas, exactly (integers);
* bad input: each case asserts the exception type and that the message names the argument.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import causal_conv_np, rel_err

from longconv_edu import io_model, long_conv
from longconv_edu.kernels import cuda as kc
from longconv_edu.kernels.trace import butterfly_schedule, trace_conv

ROOT = Path(__file__).resolve().parents[1]
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def make(B, H, L, Lk, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, generator=g, dtype=dtype),
            torch.randn(H, Lk, generator=g, dtype=dtype))


# ----------------------------------------------------------------------------- the simulator suite
@pytest.mark.skipif(SIM, reason="this process is already the simulator: the suite runs directly")
def test_simulator_suite():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_kernels_cuda_sim.py")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, f"simulator suite failed:\n{tail}"
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail


# ----------------------------------------------------------------------------- PTX and resources
needs_compiler = pytest.mark.skipif(SIM, reason="compile_ptx is not available in the simulator")


@needs_compiler
@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_compiles_to_ptx(cc, dtype):
    (res,) = kc.kernel_resources(1000, dtype=dtype, cc=cc)       # N = 2048: one fused kernel
    s = 4 if dtype == torch.float32 else 8
    assert f".target sm_{cc[0]}{cc[1]}" in res.ptx
    assert "bar.sync" in res.ptx                                 # cuda.syncthreads between stages
    assert res.shared_bytes == 2 * 2048 * s                      # re and im planes of the row
    assert res.threads == kc.DEFAULT_THREADS
    print(f"\ncc {cc} {dtype}: {res.program}: {res.shared_bytes} B shared/block, "
          f"{res.registers} registers/thread ({res.note})")
    if kc.ptxas_path() is not None:                              # pinned: nvidia-cuda-nvcc
        assert isinstance(res.registers, int) and 8 <= res.registers <= 255, res.note


@needs_compiler
def test_three_pass_kernels_compile_with_the_tiles_they_use():
    res = kc.kernel_resources(1 << 14, cc=(9, 0), registers=False)   # N = 32768 > 6144 floats
    assert [r.shared_bytes for r in res] == [2 * 128 * 4, 2 * 256 * 4, 2 * 128 * 4]
    assert all(r.registers is None for r in res)


# ----------------------------------------------------------------------------- the tracer
@st.composite
def small_case(draw, max_L=40):
    B = draw(st.integers(1, 2))
    H = draw(st.integers(1, 2))
    L = draw(st.one_of(st.just(1), st.integers(1, max_L), st.sampled_from([n for n in (2, 8, 9, 16, 17, 32, 33) if n <= max_L])))
    Lk = draw(st.integers(1, L))
    return B, H, L, Lk, draw(st.integers(0, 2**31 - 1))


@given(small_case(), st.sampled_from([1, 2, 4]))
def test_tracer_fused_counts_equal_the_io_model(case, threads):
    B, H, L, Lk, seed = case
    u, k = make(*case)
    tr = trace_conv(u, k, threads=threads)
    assert tr.plan.passes == 1
    assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    m = io_model.fused_conv(B, H, L, dtype_bytes=8)
    assert (tr.total.global_read, tr.total.global_write) == (m.bytes_read, m.bytes_written)
    # shared memory, by counting the code: load writes 2N; each of the 2 log2 N stages reads and
    # writes 2N; the product reads and writes 2N; the store reads the L kept real parts
    N, S = tr.plan.N, tr.plan.N.bit_length() - 1
    row = tr.per_row()
    assert row.shared_write == 8 * (2 * N + 2 * S * 2 * N + 2 * N)
    assert row.shared_read == 8 * (2 * S * 2 * N + 2 * N + L)


@given(small_case(max_L=32))
def test_tracer_three_pass_counts_equal_the_io_model(case):
    B, H, L, Lk, seed = case
    u, k = make(*case, dtype=torch.float32)
    tr = trace_conv(u, k, smem_bytes=64, threads=2)      # tiles of 8 float32: three passes if N > 8
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    assert rel_err(tr.y.numpy(), ref) < 2e-4
    m = (io_model.three_pass_traffic if tr.plan.passes == 3 else io_model.fused_conv)(
        B, H, L, dtype_bytes=4)
    assert (tr.total.global_read, tr.total.global_write) == (m.bytes_read, m.bytes_written)
    assert len(tr.launches) == tr.plan.passes


@given(small_case(max_L=20))
def test_tracer_naive_three_kernels_move_more(case):
    B, H, L, Lk, seed = case
    u, k = make(*case)
    naive, fused = trace_conv(u, k, scheme="naive"), trace_conv(u, k)
    N, R = naive.plan.N, B * H
    assert rel_err(naive.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    assert naive.total.global_read == 8 * R * (L + 6 * N)    # u; U and K; U*K
    assert naive.total.global_write == 8 * R * (4 * N + L)   # U; U*K; y
    assert naive.total.global_read > fused.total.global_read
    assert naive.total.global_write > fused.total.global_write


@pytest.mark.parametrize("L", [1, 2, 3, 7, 8, 9, 16, 17, 32])
@pytest.mark.parametrize("smem", [48 * 1024, 128])
def test_edges_stay_in_bounds(L, smem):
    # every access goes through a bounds-checking CountingArray (an IndexError would fail this);
    # Lk = L and Lk = 1 at each edge length, fused (48 KiB) and three-pass (tiles of 8 float64)
    for Lk in {1, L}:
        u, k = make(1, 1, L, Lk, seed=L)
        tr = trace_conv(u, k, smem_bytes=smem, threads=2)
        assert rel_err(tr.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
        m = (io_model.fused_conv if tr.plan.passes == 1 else io_model.three_pass_traffic)(
            1, 1, L, dtype_bytes=8)
        assert (tr.total.global_read, tr.total.global_write) == (m.bytes_read, m.bytes_written)


def test_every_row_moves_the_same_bytes():
    u, k = make(2, 3, 10, 4, seed=1)
    tr = trace_conv(u, k, threads=4)
    counts = {c.astuple() for c in tr.launches[0].blocks.values()}
    assert len(tr.launches[0].blocks) == 6 and len(counts) == 1


def test_butterfly_schedule_covers_every_pair_once_per_stage():
    u, k = make(1, 1, 8, 3, seed=2)                     # N = 16, 4 threads
    stages = butterfly_schedule(trace_conv(u, k, threads=4, record=True))
    assert [lab for lab, _ in stages] == ["forward, span 8", "forward, span 4", "forward, span 2",
                                          "forward, span 1", "inverse, span 1", "inverse, span 2",
                                          "inverse, span 4", "inverse, span 8"]
    for lab, pairs in stages:
        span = int(lab.split()[-1])
        assert sorted(i for _, a, b in pairs for i in (a, b)) == list(range(16))
        assert all(b - a == span for _, a, b in pairs)
        assert {t for t, _, _ in pairs} == {0, 1, 2, 3}
        assert all(sum(1 for t2, _, _ in pairs if t2 == t) == 2 for t in range(4))


def test_tracer_catches_out_of_bounds_access():
    # give the block program a too-short output: the tracer must refuse, not write past the end
    from longconv_edu.kernels.trace import _Tracer, _TracingExecutor
    ex = _TracingExecutor(_Tracer(record=False))
    p = kc.Program(n=8, real=np.float64, load="real", forward=True, multiply=False, inverse=False,
                   store="complex")
    x, out = np.ones((1, 4)), np.zeros((1, 6))
    with pytest.raises(IndexError, match="outside shape"):
        ex.launch(p, (1, 1), 2, x, ex.dummy(np.float64), ex.dummy(np.float64),
                  ex.dummy(np.float64), out, out, 4, 0, 0, 1, 1.0, 1.0)


# ----------------------------------------------------------------------------- plans
def test_plan_fused_three_pass_and_limit():
    f32 = np.float32
    assert kc.make_plan(1, f32).N == 2 and kc.make_plan(1, f32).passes == 1
    assert kc.make_plan(4096, f32).N == 8192 and kc.make_plan(4096, f32).passes == 3
    assert kc.make_plan(2048, f32).passes == 1              # N = 4096 fits 48 KiB as float32
    assert kc.make_plan(2049, f32).passes == 3              # one above: N = 8192 does not
    p = kc.make_plan(4096, f32)
    assert p.outer * p.inner == p.N and max(p.outer, p.inner) <= 4096
    assert kc.max_length(f32) == 4096 * 4096 // 2


# ----------------------------------------------------------------------------- bad input
@pytest.mark.skipif(SIM, reason="checks the error given when the simulator is off")
def test_cpu_tensors_without_gpu_or_simulator_say_how_to_simulate():
    u, k = make(1, 1, 4, 2, seed=0)
    with pytest.raises(ValueError, match=r"u is on device cpu.*NUMBA_ENABLE_CUDASIM=1"):
        kc.cuda_conv(u, k)
    with pytest.raises(ValueError, match="NUMBA_ENABLE_CUDASIM"):
        long_conv(u, k, backend="cuda")


@pytest.mark.skipif(SIM, reason="checks the error given when the simulator is off")
def test_setting_the_variable_too_late_is_explained(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    u, k = make(1, 1, 4, 2, seed=0)
    with pytest.raises(ValueError, match="imported before it was set"):
        kc.cuda_conv(u, k)


def test_non_contiguous_input_is_refused():
    u, k = make(1, 2, 6, 3, seed=0)
    with pytest.raises(ValueError, match=r"^u must be contiguous"):
        kc.cuda_conv(torch.randn(1, 2, 12, dtype=torch.float64)[..., ::2], k)   # strided view
    with pytest.raises(ValueError, match=r"^k must be contiguous"):
        kc.cuda_conv(u, torch.randn(3, 2, dtype=torch.float64).t())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.complex64])
def test_unsupported_dtype_is_refused(dtype):
    u = torch.zeros(1, 1, 4, dtype=dtype)
    k = torch.zeros(1, 2, dtype=dtype)
    with pytest.raises(TypeError, match=r"^u must have dtype"):
        kc.cuda_conv(u, k)


def test_too_long_sequence_is_refused():
    u, k = make(1, 1, 9, 2, seed=0)
    with pytest.raises(ValueError, match=r"^u has length L=9: .*smem_bytes=96 \(float64\); with "
                                         r"this budget it supports L <= 2;"):
        kc.cuda_conv(u, k, smem_bytes=96)       # fused: (2 M + 2 Q) float64 <= 96 for M <= 2
    assert kc.max_length(np.float64, 96, kernel="monarch") == 2          # no three passes either
    assert kc.max_length(np.float64, 32) == 2                           # radix-2: tiles of 2


def test_kernel_and_input_on_different_devices():
    u, _ = make(1, 1, 4, 2, seed=0)
    with pytest.raises(ValueError, match=r"^k is on device meta but u is on device cpu"):
        kc.cuda_conv(u, torch.empty(1, 2, dtype=torch.float64, device="meta"))


def test_wrong_device_is_refused():
    u = torch.empty(1, 1, 4, device="meta")
    k = torch.empty(1, 2, device="meta")
    with pytest.raises(ValueError, match=r"^u is on device meta"):
        kc.cuda_conv(u, k)


@pytest.mark.parametrize("kw,exc,name", [
    ({"smem_bytes": 1.5}, TypeError, "smem_bytes"),
    ({"threads": 3}, ValueError, "threads"), ({"threads": 2048}, ValueError, "threads"),
    ({"threads": True}, TypeError, "threads")])
def test_bad_launch_parameters(kw, exc, name):
    u, k = make(1, 1, 4, 2, seed=0)
    with pytest.raises(exc, match=f"^{name} must"):
        kc.cuda_conv(u, k, **kw)


def test_shapes_are_checked_first():
    u, k = make(1, 2, 4, 2, seed=0)
    with pytest.raises(ValueError, match=r"^k has H=3 channels"):
        kc.cuda_conv(u, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^k must have length 1 <= Lk <= L"):
        kc.cuda_conv(u, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^u must be 3-D"):
        kc.cuda_conv(u[0], k)


def test_bad_tracer_and_resource_arguments():
    u, k = make(1, 1, 4, 2, seed=0)
    with pytest.raises(ValueError, match="^scheme must be one of"):
        trace_conv(u, k, scheme="fast")
    with pytest.raises(ValueError, match="^scheme 'naive'"):
        trace_conv(u, k, scheme="naive", smem_bytes=64)      # N = 8 > tiles of 4
    with pytest.raises(TypeError, match="^record must be"):
        trace_conv(u, k, record=1)
    with pytest.raises(TypeError, match="^cc must be"):
        kc.kernel_resources(16, cc="sm_80")
    with pytest.raises(TypeError, match="^dtype must be"):
        kc.kernel_resources(16, dtype=torch.float16)
    with pytest.raises(ValueError, match="^L must be >= 1"):
        kc.kernel_resources(0)


# ----------------------------------------------------------------------------- layout, plots, exercises
def test_bit_reversed_spectrum_reference_matches_an_explicit_permutation():
    k = torch.randn(2, 3, dtype=torch.float64)
    N = 8
    rev = [int(format(i, "03b")[::-1], 2) for i in range(N)]        # 0 4 2 6 1 5 3 7
    want = np.fft.fft(np.pad(k.numpy(), ((0, 0), (0, N - 3))), axis=-1)[:, rev]
    assert np.allclose(kc.bit_reversed_spectrum(k, N).numpy(), want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="^N must be a power of two"):
        kc.bit_reversed_spectrum(k, 6)


def test_plots_return_figures():
    import matplotlib
    matplotlib.use("Agg")
    from longconv_edu.lab import viz
    u, k = make(1, 1, 4, 2, seed=0)
    tr = trace_conv(u, k, threads=2, record=True)
    f1 = viz.plot_butterfly_schedule(butterfly_schedule(tr), tr.plan.N)
    f2 = viz.plot_memory_traffic({"fused": (10, 2), "naive": (30, 20)}, {"fused": (10, 2)})
    assert len(f1.axes) == 1 and len(f2.axes) == 1
    labels = f2.axes[0].get_legend_handles_labels()[1]
    assert "IO model (outline)" in labels


def test_exercises_accept_the_reference_and_reject_a_wrong_answer():
    from longconv_edu.course.exercises import check
    assert check("bit_reversed_spectrum", kc.bit_reversed_spectrum, verbose=False)
    assert not check("bit_reversed_spectrum", lambda k, N: torch.fft.fft(k, n=N), verbose=False)
    assert check("fused_kernel_traffic", lambda B, H, L, s: (
        B * H * (L + 2 * kc.fft_size(L)) * s, B * H * L * s), verbose=False)
    assert not check("fused_kernel_traffic", lambda B, H, L, s: (B * H * L * s, B * H * L * s),
                     verbose=False)


@pytest.mark.parametrize("smem", [16, 10**9])
def test_a_budget_the_device_cannot_grant_says_what_it_may_be(smem):
    u, k = make(1, 1, 4, 2, seed=0)
    limit = kc.device_smem_optin()
    low = (2 + 2) * 8                   # M = 1 float64: one value and one root, re and im
    assert kc.monarch_smem_bytes(1, np.float64) == low
    with pytest.raises(ValueError, match=rf"^smem_bytes={smem} cannot be granted: on this device one "
                                         rf"block may use {low} to {limit} bytes"):
        kc.cuda_conv(u, k, smem_bytes=smem)


@pytest.mark.parametrize("block", [3, 128, 1])
def test_bad_block_is_refused(block):
    u, k = make(1, 1, 4, 2, seed=0)
    with pytest.raises(ValueError, match="^block must"):
        kc.cuda_conv(u, k, block=block)


@pytest.mark.parametrize("M,exc,match", [(0, ValueError, r"^M must be >= 1, got 0$"),
                                         (1024.0, TypeError, r"^M must be an int, got ")])
def test_bad_default_block_argument_is_refused(M, exc, match):
    with pytest.raises(exc, match=match):
        kc.default_block(M)


def test_monarch_source_is_straight_line_per_factor():
    # M = 64, blocks of 4: three factors each way; every index is an unsigned literal; the DFT
    # entries 0 and +-1 of a 4-point block are additions (no constant K<j> needed)
    src = kc.monarch_source(64, 4, np.float32, threads=16)
    assert src.count("# factor") == 6 and not re.search(r"\* K\d+", src)
    assert "range(tid" not in src and "cuda.blockDim" not in src     # threads: a constant
    src8 = kc.monarch_source(64, 8, np.float32, threads=16)
    assert re.search(r"\* K\d+", src8)                              # W_8 has 1/sqrt(2) entries
    assert kc.monarch_threads(8192) == 1024 and kc.monarch_threads(1024) == 256
    assert kc.monarch_threads(16, 256) == 16
    # the fused forward: two p-point groups per thread and factor, 256 to 1024 threads
    assert kc.monarch_threads(8192, block=8) == 512 and kc.monarch_threads(16384, block=8) == 1024
    assert kc.monarch_threads(8192, kind="inner", block=8) == 1024     # three passes: M/8
    assert [kc.default_block(M) for M in (1, 512, 1024, 2048, 1 << 20)] == [4, 4, 4, 8, 8]


@pytest.mark.parametrize("p", kc.MONARCH_BLOCKS)
@pytest.mark.parametrize("sgn", [1, -1])
def test_dft_block_source_is_the_dft_matrix(p, sgn):
    # the generated p-point block (dense sums for p <= 4, its own factorisation in registers
    # beyond) run as plain Python on float64 values, against numpy's FFT (the oracle): the
    # forward block is fft, the unscaled inverse is p * ifft; rounding only (1e-13 relative)
    consts = {}
    lines, outs = kc._dft_lines(p, sgn, consts, np.float64, "")
    assert (lines == []) == (p <= kc.DENSE_BLOCK_MAX)
    rng = np.random.default_rng(p)
    x = rng.standard_normal(p) + 1j * rng.standard_normal(p)
    env = {**consts, "ZERO": 0.0}
    env.update({f"t{r}r": x[r].real for r in range(p)})
    env.update({f"t{r}i": x[r].imag for r in range(p)})
    for line in lines:
        exec(line, env)
    y = np.array([eval(er, env) + 1j * eval(ei, env) for er, ei in outs])
    ref = np.fft.fft(x) if sgn > 0 else p * np.fft.ifft(x)
    assert np.abs(y - ref).max() <= 1e-13 * np.abs(ref).max()
    # the factorised block is cheaper than the dense sum it replaces (p >= 8): count the
    # arithmetic operators in the generated code
    if p >= 8:
        def ops(exprs):
            return sum(e.count(" + ") + e.count(" - ") + e.count(" * ") for e in exprs)
        dense = ops([e for pair in kc._dft_terms(p, sgn, {}, np.float64) for e in pair])
        nested = ops([ln.split("=", 1)[1] for ln in lines] + [e for pair in outs for e in pair])
        assert nested < 0.4 * dense
        # the counts course page 05 and notebook 05 quote ("Choosing p")
        assert {8: (208, 76), 16: (1248, 240)}.get(p, (dense, nested)) == (dense, nested)


# ----------------------------------------------------------------------------- SASS and the model
def test_parse_sass_finds_loops_and_the_shortest_path():
    from longconv_edu.kernels import ptx
    text = """
\t.text.kern:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   LDS R2, [R0] ;
        /*0020*/              @P0 BRA `(.L_x_1) ;
        /*0030*/                   FADD R2, R2, R2 ;
        /*0040*/                   FADD R2, R2, R2 ;
.L_x_1:
        /*0050*/                   STS [R0], R2 ;
        /*0060*/              @P1 BRA `(.L_x_0) ;
        /*0070*/                   EXIT ;
.L_x_2:
        /*0080*/                   BRA `(.L_x_2);
"""
    (s,) = ptx.parse_sass(text).values()
    assert [(lp.start, lp.end, lp.inner) for lp in s.loops] == [(1, 6, True)]
    assert s.min_path(s.loops[0]) == 4                 # LDS, BRA, STS, BRA: the FADDs skipped
    assert s.min_path_ops(s.loops[0]) == [1, 2, 5, 6]
    assert s.in_loops() == set(range(1, 7))
    for bad in ((1, 6), None):
        for f in (s.min_path, s.min_path_ops):
            with pytest.raises(TypeError, match=r"^loop must be a SassLoop \(from Sass.loops\), got"):
                f(bad)
    c = s.count(1, 6)
    assert (c["shared_load"], c["shared_store"], c["float"], c["total"]) == (1, 1, 2, 6)
    log = ("ptxas info    : Compiling entry function 'kern' for 'sm_90'\n"
           "ptxas info    : Function properties for kern\n"
           "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 40 registers, 1024 bytes smem, 380 bytes cmem[0]\n")
    (r,) = ptx.parse_ptxas(log)
    assert (r.registers, r.stack, r.spill_stores, r.spill_loads, r.shared, r.constant) == \
        (40, 16, 8, 4, 1024, 380) and r.spills


@needs_compiler
def test_sass_recount_of_one_configuration_matches_the_committed_report():
    from longconv_edu.kernels import ptx
    if ptx.nvdisasm_path() is None or ptx.ptxas_path() is None:
        pytest.skip("ptxas/nvdisasm not installed (requirements.txt pins both wheels)")
    report = kc.sass_report()
    mon = kc.sass_counts("monarch", 1024, cc=(9, 0))
    r2 = kc.sass_counts("radix2", 1024, cc=(9, 0))
    for got in (mon, r2):
        want = next(r for r in report if r["kernel"] == got["kernel"] and r["L"] == 1024
                    and r["cc"] == [9, 0] and r.get("dtype") == "float32" and r.get("kind") == "conv"
                    and r.get("block") == got["block"])
        assert got["per_element"] == pytest.approx(want["per_element"], rel=1e-9)
        assert got["resources"][0]["registers"] == want["resources"][0]["registers"]
    # the targets: >= 5x fewer SASS instructions per element than the radix-2 kernel's
    # loops alone (its set-up code left out: in its favour), and no spills
    assert r2["hot"] / mon["per_element"] >= 5
    assert all(not (x["spill_stores"] or x["spill_loads"]) for x in mon["resources"])


def test_committed_report_compiles_every_configuration_without_spills():
    rows = kc.sass_report()
    assert {tuple(r["cc"]) for r in rows} == {(8, 0), (9, 0)}
    blocks = {r["block"] for r in rows if r["kernel"] == "monarch" and "per_element" in r}
    assert {4, 8, 16} <= blocks
    for r in rows:
        if "error" in r:
            continue
        for res in r["resources"]:
            assert res["spill_stores"] == 0 and res["spill_loads"] == 0, (r["kernel"], r["L"], res)
    assert "SASS/elt" in kc.sass_table(rows)


def test_perf_model_by_hand():
    from longconv_edu.kernels import perf_model as pm
    h = pm.GPUS["H100"]
    # 256 threads x 64 registers = 16384 registers per block: 4 fit 65536; 24 KiB + 1 KiB each: 9
    assert pm.occupancy("H100", threads=256, registers=64, smem_bytes=24 * 1024) == 4
    assert pm.occupancy("H100", threads=1024, registers=64, smem_bytes=192 * 1024) == 1
    assert pm.occupancy("A100", threads=256, registers=32, smem_bytes=192 * 1024) == 0
    # 256 rows on 132 SMs: 2 blocks on the busiest, both resident (16 warps: full issue rate)
    t = pm.kernel_time("H100", rows=256, L=1024, sass_per_element=100.0, threads=256,
                       registers=64, smem_bytes=24 * 1024, hbm_bytes=1e6)
    want = 2 * 100.0 * 1024 / 32 / (4 * h.clock_hz)
    assert t["issue"] == pytest.approx(want) and t["hbm"] == pytest.approx(1e6 / h.hbm_bytes_per_s)
    assert t["time"] == max(t["issue"], t["hbm"]) and t["waves"] == 1 and t["warps"] == 16
    # a partial last wave: 256 rows on 108 A100 SMs are 3 blocks on the busiest SM; 64 KiB
    # blocks fit 2 at a time (2 x 65 KiB of 164), so a wave of 2 (32 warps) and a wave of 1 (16
    # warps, still the full issue rate): 3 blocks' instructions, not 4
    a = pm.GPUS["A100"]
    assert pm.occupancy("A100", threads=512, registers=32, smem_bytes=64 * 1024) == 2
    t = pm.kernel_time("A100", rows=256, L=4096, sass_per_element=100.0, threads=512,
                       registers=32, smem_bytes=64 * 1024, hbm_bytes=0.0)
    assert t["waves"] == 2 and t["issue"] == pytest.approx(3 * 100.0 * 4096 / 32 / (4 * a.clock_hz))
    # ... and a last wave below 16 warps issues proportionally slower: 3 blocks of 8 warps, 2 at
    # a time (16 warps: full rate), then 1 (8 warps: half rate)
    t = pm.kernel_time("A100", rows=256, L=4096, sass_per_element=100.0, threads=256,
                       registers=32, smem_bytes=64 * 1024, hbm_bytes=0.0)
    assert t["issue"] == pytest.approx((2 + 2) * 100.0 * 4096 / 32 / (4 * a.clock_hz))
    assert pm.fft_conv_bound("H100", 4, 64, 1024) == pytest.approx(
        io_model.unfused_fft_conv(4, 64, 1024).bytes / 3350e9)
    rows = pm.model_rows()
    assert {r["gpu"] for r in rows} == {"A100", "H100"} and "speedup" in pm.model_table(rows)
    with pytest.raises(ValueError, match="^gpu must be one of"):
        pm.occupancy("V100", threads=32, registers=32, smem_bytes=0)


def test_perf_model_counts_the_three_passes_and_the_clusters():
    from longconv_edu.kernels import perf_model as pm
    rows = pm.model_rows()
    h = {r["L"]: r for r in rows if r["gpu"] == "H100"}
    a = {r["L"]: r for r in rows if r["gpu"] == "A100"}
    # the row in place: both GPUs fuse float32 rows up to L = 16384 (128 KiB + the tables);
    # beyond, the H100 holds a row in a cluster of 2 or 4 blocks, the A100 takes three passes
    for g in (h, a):
        assert g[16384]["path"] == "monarch fused"
    assert (h[32768]["path"], h[65536]["path"]) == ("monarch cluster of 2", "monarch cluster of 4")
    assert a[32768]["path"] == a[65536]["path"] == "monarch three-pass"
    H100 = pm.GPUS["H100"]
    for L in (32768, 65536):
        r = a[L]
        assert len(r["pass_s"]) == 3 and r["cuda_s"] == pytest.approx(sum(r["pass_s"]))
        # no pass is faster than its HBM bytes (io_model's real-input three passes) allow, and
        # the whole can beat torch.fft's bound by at most its bytes' ratio (12L against ~14.3L)
        outer = kc.monarch_plan(L, np.float32, smem_bytes=163 * 1024).outer
        m = io_model.three_pass_traffic(4, 64, L, real_input=True, outer=outer)
        for t, (_, rd, wr) in zip(r["pass_s"], m.passes):
            assert t >= (rd + wr) / pm.GPUS["A100"].hbm_bytes_per_s
        assert r["speedup"] <= pm.fft_conv_bound("A100", 4, 64, L) * pm.GPUS["A100"].hbm_bytes_per_s / m.bytes
        # the H100's cluster: one kernel with the fused kernel's bytes, so its cap is the
        # fused bytes' ratio; the three passes it replaces are kept for comparison, capped at 12L
        c = h[L]
        assert len(c["pass_s"]) == 1 and c["cuda_s"] >= io_model.fused_conv(
            4, 64, L, real_input=True).bytes / H100.hbm_bytes_per_s
        m = io_model.three_pass_traffic(4, 64, L, real_input=True, outer=outer)
        assert c["three_pass_speedup"] <= pm.fft_conv_bound("H100", 4, 64, L) * H100.hbm_bytes_per_s / m.bytes
        assert c["speedup"] > c["three_pass_speedup"]
    # clusters of 4 may leave 2 SMs of each of the H100's 8 GPCs idle (the model's worst case)
    assert (H100.cluster_sms(2), H100.cluster_sms(4)) == (132, 116)
    with pytest.raises(ValueError, match="GPC count unknown"):
        pm.GPUS["A100"].cluster_sms(4)


def test_gpu_script_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "longconv_edu.kernels.cuda", "--check", "--bench",
                        "--out", "/nonexistent/never-made"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.startswith("no CUDA device: ") and "NUMBA_ENABLE_CUDASIM=1" in r.stderr


def test_gpu_script_names_each_path_and_adds_the_three_passes_beside_a_cluster(monkeypatch):
    # the paths the script would check and time on an H100 (227 KiB, clusters) and without
    # clusters; where the default is a cluster, the three passes are a row of their own
    from longconv_edu.kernels import cuda as kcuda
    from longconv_edu.kernels import cuda_check
    assert [cuda_check.conv_path(L, 8) for L in (1024, 16384, 32768, 65536)] == [
        "fused", "fused", "cluster of 2", "cluster of 4"]
    assert cuda_check.conv_path(65536, 1) == "three passes"
    monkeypatch.setattr(kcuda, "device_cluster_max", lambda *a: 8)
    assert [how for _, how in cuda_check._variants(32768)] == ["cluster of 2", "three passes"]
    assert [kw for kw, _ in cuda_check._variants(32768)] == [{}, {"cluster": 1}]
    assert [how for _, how in cuda_check._variants(4096)] == ["fused"]


def test_gpu_script_fails_loudly_on_a_mismatch(monkeypatch, tmp_path, capsys):
    # the script's decision, with the GPU part replaced: one wrong row must give exit status 1
    import json

    from longconv_edu.kernels import cuda_check
    monkeypatch.setattr(cuda_check, "gpu_problem", lambda: None)
    monkeypatch.setattr(cuda_check, "check", lambda: [
        {"L": 256, "y": 1e-7, "grad_u": 1e-7, "grad_k": 1e-7, "ok": True},
        {"L": 3000, "y": 0.5, "grad_u": 1e-7, "grad_k": 1e-7, "ok": False}])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "stand-in")
    assert cuda_check.main(["--check", "--out", str(tmp_path)]) == 1
    assert "MISMATCH" in capsys.readouterr().err
    saved = json.loads((tmp_path / "cuda_check.json").read_text())
    assert [r["ok"] for r in saved["rows"]] == [True, False]
    monkeypatch.setattr(cuda_check, "check", lambda: [
        {"L": 256, "y": 1e-7, "grad_u": 1e-7, "grad_k": 1e-7, "ok": True}])
    assert cuda_check.main(["--check", "--out", str(tmp_path)]) == 0


# ----------------------------------------------------------------------------- the Monarch three passes
def test_monarch_plan_fused_then_three_passes():
    f32, h100, a100 = np.float32, 227 * 1024, 163 * 1024
    # fused: the row in place (2 M reals) and the root tables. L = 16384 (M = 16384): 128 KiB of
    # row; all of W_M would take 128 KiB more, so Q = the largest factor span below M that fits:
    # 4 x 4 blocks (spans 16384, 4096, ...): Q = 4096 (32 KiB) and W_M^t for t < 4 (32 B); the
    # default 8 x 8 blocks (spans 16384, 2048, ...): Q = 2048 and W_M^t for t < 8
    for smem in (h100, a100):
        p = kc.monarch_plan(16384, f32, smem_bytes=smem, block=4)
        assert (p.passes, p.roots) == (1, 4096)
        assert p.shared_bytes("conv") == (2 * 16384 + 2 * 4096 + 2 * 4) * 4 <= smem
        p = kc.monarch_plan(16384, f32, smem_bytes=smem)
        assert (p.block, p.passes, p.roots) == (8, 1, 2048)
        assert p.shared_bytes("conv") == (2 * 16384 + 2 * 2048 + 2 * 8) * 4 <= smem
        p = kc.monarch_plan(8192, f32, smem_bytes=smem)           # 64 KiB + W_M: one table
        assert (p.passes, p.roots) == (1, 8192) and p.shared_bytes("conv") == 4 * 8192 * 4
    for L, outer in ((32768, 8), (65536, 16)):
        for smem in (h100, a100):
            p = kc.monarch_plan(L, f32, smem_bytes=smem)
            assert (p.outer, p.inner) == (outer, 4096) and p.outer * p.inner == p.N // 2
            assert p.kernels() == ("outer", "inner", "outer_inverse")
            assert all(p.shared_bytes(kd) <= smem for kd in p.kernels())
            assert p.columns * 4 >= 32                 # a tile row fills whole 32-byte sectors
            assert p.blocks_per_row("outer") == 4096 // p.columns and p.blocks_per_row("inner") == outer // 2
    # the longest rows: inner 4096 (160 KiB) times the outer size whose tile of 8 columns fits
    assert kc.max_length(f32, h100, kernel="monarch") == kc.max_length(f32, a100, kernel="monarch") == 1 << 22
    with pytest.raises(ValueError, match=r"^u has length L=4194305: .*smem_bytes=232448 .*supports L <= 4194304;"):
        kc.monarch_plan((1 << 22) + 1, f32, smem_bytes=h100)


def test_fused_backward_plan_under_each_gpus_budget():
    # the fused backward holds the row (2 M), U_b and the grad_k accumulator (4 (M + 1)) and the
    # tables: float32 L = 8192 on an H100 (192 KiB + Q = 2048: 16 KiB), L = 4096 on an A100
    f32, h100, a100 = np.float32, 227 * 1024, 163 * 1024
    for L, smem, fused in ((8192, h100, True), (16384, h100, False), (4096, a100, True),
                           (8192, a100, False)):
        bp = kc.fused_backward_plan(kc.monarch_plan(L, f32, smem_bytes=smem), smem)
        assert (bp is not None) == fused, (L, smem)
        if bp is not None:
            assert bp.shared_bytes("grad") <= smem and bp.kernel_threads("grad") == 256
    bp = kc.fused_backward_plan(kc.monarch_plan(8192, f32, smem_bytes=h100, block=4), h100)
    assert bp.roots == 2048 and bp.shared_bytes("grad") == (6 * 8192 + 4 + 2 * 2048 + 2 * 4) * 4
    bp = kc.fused_backward_plan(kc.monarch_plan(8192, f32, smem_bytes=h100), h100)   # p = 8
    assert bp.roots == 1024 and bp.shared_bytes("grad") == (6 * 8192 + 4 + 2 * 1024 + 2 * 8) * 4
    # the three passes' plan has no fused backward
    assert kc.fused_backward_plan(kc.monarch_plan(65536, f32, smem_bytes=h100), h100) is None


def test_monarch_roots_takes_the_largest_table_that_fits():
    M, f32 = 1024, np.float32                       # spans of p = 4: 1024, 256, 64, 16, 4
    assert kc.least_roots(M) == 32 and kc.least_roots(2048) == 64 and kc.least_roots(1) == 1
    assert kc.monarch_spans(M, 4) == [1024, 256, 64, 16, 4]
    row = 2 * M * 4
    assert kc.monarch_roots(M, f32, row + 2 * M * 4) == M               # all of W_M: one lookup
    assert kc.monarch_roots(M, f32, row + 2 * M * 4 - 1) == 256         # W_256 and W_1024^t, t < 4
    assert kc.monarch_roots(M, f32, row + (2 * 64 + 2 * 16) * 4) == 64
    assert kc.monarch_roots(M, f32, row + (2 * 32 + 2 * 32) * 4) == 32  # the least
    assert kc.monarch_roots(M, f32, row + (2 * 32 + 2 * 32) * 4 - 1) is None
    with pytest.raises(ValueError, match="^roots must be"):
        kc.monarch_smem_bytes(M, f32, roots=16)      # below least_roots: W_M^t for t < 64 > Q
    with pytest.raises(ValueError, match="^roots must be a power of two"):
        kc.monarch_smem_bytes(M, f32, roots=100)


def test_fused_layout_pairs_tables_and_spectrum_against_direct_formulas():
    # position i of the fused kernel's row holds frequency rev(i) (log2 M bits reversed)
    for M in (1, 2, 4, 8, 64, 256):
        bits = M.bit_length() - 1
        rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(M)])
        i, i2 = kc.monarch_pairs(M)
        assert len(i) == max(M // 2, 1) and (i[0], i2[0]) == (0, 0)
        alone = [1] if M >= 2 else []                               # k = M/2: its own partner
        assert sorted(set(i) | set(i2) | set(alone)) == list(range(M))   # every position, once
        assert len(set(i) | set(i2)) + len(alone) == M
        assert np.all((rev[i] + rev[i2]) % M == 0)                  # frequencies k and M - k
        assert np.all(i <= i2)
    M, Q = 64, 16
    t = kc.monarch_tables(M, np.float64, roots=Q)
    assert np.allclose(t["roots"][0] + 1j * t["roots"][1], np.exp(-2j * np.pi * np.arange(Q) / Q))
    assert np.allclose(t["roots_fine"][0] + 1j * t["roots_fine"][1],
                       np.exp(-2j * np.pi * np.arange(M // Q) / M))
    i, _ = kc.monarch_pairs(M)
    rev = np.array([int(format(j, "06b")[::-1], 2) for j in range(M)])
    assert t["twiddles"].shape == (2, M // 2)
    assert np.allclose(t["twiddles"][0] + 1j * t["twiddles"][1],
                       np.exp(-2j * np.pi * rev[i] / (2 * M)))
    kk = torch.randn(3, 50, dtype=torch.float64)
    spec = kc.half_spectrum(kk, 2 * M)                                 # the fused kernel's order
    ref = torch.fft.rfft(kk, n=2 * M)
    assert spec.shape == (3, 2, M + kc.spectrum_pad(np.float64))     # planes on 32-byte sectors
    assert torch.allclose(torch.complex(spec[:, 0, :M], spec[:, 1, :M]), ref[:, rev])
    assert torch.allclose(torch.complex(spec[:, 0, M], spec[:, 1, M]), ref[:, M])
    assert not spec[:, :, M + 1:].any()


def test_three_pass_tables_and_spectrum_layout_against_direct_formulas():
    # M = 32 = 4 outer x 8 inner; position i = k1 * 8 + k2 holds frequency k = k1 + 4 k2
    M, outer, inner = 32, 4, 8
    t = kc.monarch_tables(M, np.float64, outer)
    for i in range(M):
        k1, k2 = divmod(i, inner)
        k = k1 + outer * k2
        w = complex(*t["twiddles_split"][:, i])
        assert abs(w - np.exp(-2j * np.pi * k / (2 * M))) < 1e-15
        b = k2                                    # in the (outer, inner) view, column b = i % inner
        assert abs(complex(*t["twiddles_outer"][:, i]) - np.exp(-2j * np.pi * k1 * b / M)) < 1e-15
    kk = torch.randn(3, 40, dtype=torch.float64)
    ref = torch.fft.rfft(kk, n=2 * M)                                  # (3, M + 1)
    spec = kc.half_spectrum(kk, 2 * M, outer)
    assert spec.shape == (3, 2, M + kc.spectrum_pad(np.float64))
    for i in range(M):
        k1, k2 = divmod(i, inner)
        assert torch.allclose(torch.complex(spec[:, 0, i], spec[:, 1, i]), ref[:, k1 + outer * k2])
    assert torch.allclose(torch.complex(spec[:, 0, M], spec[:, 1, M]), ref[:, M])
    assert not spec[:, :, M + 1:].any()                                # the padding is zero


def test_three_pass_sources_are_straight_line_per_factor():
    src = kc.monarch_source(256, 4, np.float32, "inner", 16, outer=4)   # inner 64: 3 factors each way
    assert src.count("# factor") == 6 and "range(tid" not in src and "(rows)" in src
    src = kc.monarch_source(256, 4, np.float32, "outer", 16, outer=16, columns=8)
    assert src.count("# factor") == 2 and "(columns)" in src and "x[row, gi]" in src
    with pytest.raises(ValueError, match="^kind must be one of"):
        kc.monarch_source(256, 4, np.float32, "middle", outer=4)


@needs_compiler
@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
def test_three_pass_kernels_compile_without_spills_and_are_counted(cc):
    from longconv_edu.kernels import ptx
    if ptx.nvdisasm_path() is None or ptx.ptxas_path() is None:
        pytest.skip("ptxas/nvdisasm not installed (requirements.txt pins both wheels)")
    r = kc.sass_counts("monarch", 65536, cc=cc, cluster=1)   # this GPU's budget: 16 x 4096 on both
    assert r["passes"] == 3 and r["plan"] == {"outer": 16, "inner": 4096, "columns": 128}
    assert [x["kind"] for x in r["resources"]] == ["outer", "inner", "outer_inverse"]
    for x in r["resources"]:
        assert x["spill_stores"] == x["spill_loads"] == x["stack"] == 0, x
        assert x["dynamic_shared"] <= kc.REPORT_SMEM[cc]
    assert r["per_element"] == pytest.approx(sum(x["per_element"] for x in r["resources"]))


# ----------------------------------------------------------------------------- the cluster kernel (sm_90)
def test_cluster_plans_under_the_h100_budget():
    f32, h100 = np.float32, 227 * 1024
    # a row of M = N/2 values held by C blocks of M/C each, each a fused block's shared memory:
    # L = 32K in 2 blocks and 64K in 4 (16384 values each: 128 KiB + W_Q, Q = 2048, + W_M^t, t < 8)
    for L, C in ((32768, 2), (65536, 4), (131072, 8)):
        p = kc.monarch_plan(L, f32, smem_bytes=h100, cluster=8)
        assert (p.cluster, p.passes, p.roots, p.kernels()) == (C, 1, 2048, ("cluster",))
        assert p.shared_bytes("cluster") == (2 * 16384 + 2 * 2048 + 2 * 8) * 4
        assert p.blocks_per_row("cluster") == C and p.kernel_threads("cluster") == 1024
        assert kc.monarch_plan(L, f32, smem_bytes=h100, cluster=C // 2 or 1).passes == 3
    # beyond 8 blocks (the portable limit) the three passes take over; fused rows stay fused
    assert kc.monarch_plan(262144, f32, smem_bytes=h100, cluster=8).passes == 3
    assert kc.monarch_plan(16384, f32, smem_bytes=h100, cluster=8).cluster == 1


def test_cluster_tables_and_spectrum_layout_against_direct_formulas():
    # index r Ml + i of the cluster's layout holds frequency C rev(i) + r (rev: log2 Ml bits)
    M, C = 64, 4
    Ml = M // C
    rev = np.array([int(format(j, "04b")[::-1], 2) for j in range(Ml)])
    t = kc.monarch_tables(M, np.float64, cluster=C, roots=Ml)
    assert np.allclose(t["roots"][0] + 1j * t["roots"][1], np.exp(-2j * np.pi * np.arange(Ml) / Ml))
    assert np.allclose(t["cluster_roots"][0] + 1j * t["cluster_roots"][1],
                       np.exp(-2j * np.pi * np.arange(M) / M))
    kk = torch.randn(2, 40, dtype=torch.float64)
    ref = torch.fft.rfft(kk, n=2 * M)
    spec = kc.half_spectrum(kk, 2 * M, 1, C)
    assert spec.shape == (2, 2, M + kc.spectrum_pad(np.float64))
    for r in range(C):
        for i in range(Ml):
            k = C * rev[i] + r
            w = complex(*t["cluster_split"][:, r * Ml + i])
            assert abs(w - np.exp(-2j * np.pi * k / (2 * M))) < 1e-15
            assert torch.allclose(torch.complex(spec[:, 0, r * Ml + i], spec[:, 1, r * Ml + i]),
                                  ref[:, k])
    assert torch.allclose(torch.complex(spec[:, 0, M], spec[:, 1, M]), ref[:, M])
    # the real-input partner of position i of block r > 0 is position Ml - 1 - i of block C - r
    for r in range(1, C):
        for i in range(Ml):
            assert (C * rev[i] + r) + (C * rev[Ml - 1 - i] + (C - r)) == M


def test_tracer_runs_the_cluster_emulation_without_races():
    # the cluster's one-block emulation under the tracer: y against numpy, no same-phase
    # conflicts (each pair is read and written by one block only), the fused kernel's global
    # writes (one of each output), and races found when the forward barriers are left out
    u, k = make(1, 2, 64, 20, seed=3)
    t = trace_conv(u, k, kernel="monarch", smem_bytes=1152, threads=4, block=4, cluster=2)
    assert t.plan.cluster == 2 and not t.races
    assert rel_err(t.y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-12
    fused = trace_conv(u, k, kernel="monarch", smem_bytes=4096, threads=4, block=4)
    assert fused.plan.kernels() == ("conv",)
    assert t.total.global_write == fused.total.global_write == 2 * 64 * 8
    bad = trace_conv(u, k, kernel="monarch", smem_bytes=1152, threads=4, block=4, cluster=2,
                     drop_barriers="forward")
    assert bad.races


@needs_compiler
def test_cluster_kernel_compiles_for_sm90_with_dsmem_and_no_spills():
    from numba import cuda as ncuda

    from longconv_edu.kernels import dsmem, ptx
    plan = kc.monarch_plan(32768, np.float32, smem_bytes=227 * 1024, cluster=8)
    pa = plan.program_args("cluster")
    fn = kc.bind_cuda(kc.monarch_program(**pa), ncuda)
    with dsmem.cluster_dims(plan.cluster):
        text = ncuda.compile_ptx(fn, "void(float32[:, ::1], float32[:, :, ::1], float32[:, ::1], "
                                 "float32[:, ::1], float32[:, ::1], float32[:, ::1], "
                                 "float32[:, ::1], int64, int64, float32, float32)",
                                 cc=(9, 0), launch_bounds=(pa["threads"],))[0]
    assert ".reqnctapercluster 2, 1, 1" in text
    for ins in dsmem.DSMEM_INSTRUCTIONS:
        assert ins in text, ins
    if ptx.ptxas_path() is None:
        pytest.skip("ptxas not installed (requirements.txt pins it)")
    _, (res,) = ptx.assemble(text, (9, 0))
    assert res.spill_stores == res.spill_loads == res.stack == 0 and res.registers <= 64
    # sm_80 has no clusters: its plans never take one, and the PTX instructions do not assemble
    assert kc.sass_counts("monarch", 32768, cc=(8, 0))["passes"] == 3
    with pytest.raises(RuntimeError):
        ptx.assemble(text.replace(".target sm_90", ".target sm_80"), (8, 0))


def test_rank_branch_charges_the_longer_side():
    # A cluster kernel's pairs phase in miniature: after the first cluster barrier a branch on
    # the rank; the fall-through side (the other CTAs: a DSMEM store ST, 4 instructions and
    # the jump) and the taken side (CTA 0: 6 instructions); all CTAs then wait at the second
    # barrier, so the phase costs C x the longer side, where hot + setup charged both sides.
    from longconv_edu.kernels import ptx
    bar = "UCGABAR_ARV ;\n UCGABAR_WAIT ;\n"
    body = ["MOV R1, R2 ;", bar, "@P0 BRA `(.L_x_1) ;", "ST.E [R2], R3 ;", "FADD R1, R1, R1 ;",
            "FADD R1, R1, R1 ;", "BRA `(.L_x_2) ;", ".L_x_1:", *["FMUL R1, R1, R1 ;"] * 6,
            ".L_x_2:", bar, bar, bar, "EXIT ;"]
    lines, a = ["\t.text.kern:"], 0
    for b in "\n".join(body).splitlines():
        b = b.strip()
        if not b:
            continue
        if b.startswith(".L"):
            lines.append(b)
        else:
            lines.append(f"        /*{a:04x}*/   {b}")
            a += 16
    (s,) = ptx.parse_sass("\n".join(lines) + "\n").values()
    rb = kc._rank_branch(s, [], NT=8, C=4)
    assert (rb["others"], rb["cta0"]) == (4 * 8, 6 * 8)
    assert rb["charged"] == (4 + 6) * 8 * 4 and rb["critical"] == 4 * 6 * 8
    # a layout the function does not know is refused, not guessed
    with pytest.raises(RuntimeError, match="DSMEM stores on 2 sides"):
        kc._rank_branch(ptx.parse_sass("\n".join(lines).replace("FMUL", "ST.E [R2], R1 ; //")
                                       + "\n").popitem()[1], [], NT=8, C=4)


@needs_compiler
def test_cluster_counts_charge_the_pairs_at_their_longer_side():
    from longconv_edu.kernels import ptx
    if ptx.nvdisasm_path() is None or ptx.ptxas_path() is None:
        pytest.skip("ptxas/nvdisasm not installed (requirements.txt pins both wheels)")
    r = kc.sass_counts("monarch", 8192, cc=(9, 0), cluster=2, smem_bytes=4 * 4096 * 4)
    rb = r["rank_branch"]
    assert r["per_element"] == pytest.approx(r["hot"] + r["setup"] + rb["per_element"])
    # both sides do the Ml/2 pairs of one CTA (2048 here, 8 per thread of 256): CTA 0 in its
    # own shared memory, the other through DSMEM; each costs tens of instructions per pair
    assert r["threads"] == 256 and all(20 * 8 < rb[k] < 120 * 8 for k in ("cta0", "others"))


@needs_compiler
@pytest.mark.parametrize("L,cluster,smem", [
    (8192, 1, None),                 # fused: factor loops, pair octaves, straight-line code
    (8192, 2, 4 * 4096 * 4),         # a cluster of 2: 4096 values and all their roots each
    (8192, 1, 20480 * 2)])           # three passes
def test_sass_loop_map_agrees_with_the_tracer(L, cluster, smem):
    # An independent check of the loop map behind every SASS-per-element count: the 4-byte
    # words it says a row stores to shared memory (loops' stores x their items, straight-line
    # stores x threads) against the tracer, which counts the kernel's shared writes by running
    # it. The count charges guarded straight-line code to idle threads, so it may be a few per
    # cent high (9 % for the three passes' small tiles here, whose root tables of 8 values and
    # one-thread specials are counted for all 256 threads), never low. (The map this check
    # replaced let one factor's source loop take two factors' SASS loops, each with half its
    # items: the fused kernel at L = 8192 and 16384 was counted at 203 and 219 per element.)
    from longconv_edu.kernels import ptx
    if ptx.nvdisasm_path() is None or ptx.ptxas_path() is None:
        pytest.skip("ptxas/nvdisasm not installed (requirements.txt pins both wheels)")
    smem = smem or 227 * 1024
    r = kc.sass_counts("monarch", L, cc=(9, 0), cluster=cluster, smem_bytes=smem)
    assert r["plan"].get("cluster", 1) == cluster and (r["passes"] == 3) == (smem == 40960)
    u, k = make(1, 1, L, L, seed=1, dtype=torch.float32)
    t = trace_conv(u, k, kernel="monarch", smem_bytes=smem, threads=64, cluster=cluster)
    words = t.total.shared_write / 4
    assert 1.0 <= r["shared_store_words"] / words < 1.12, (r["shared_store_words"], words)


def test_bad_cluster_arguments_are_refused():
    from longconv_edu.kernels import dsmem
    u, k = make(1, 1, 8, 2, seed=0)
    for bad, exc in ((3, ValueError), (16, ValueError), (0, ValueError), (2.0, TypeError)):
        with pytest.raises(exc, match="^cluster must"):
            kc.check_cluster(bad)
        with pytest.raises(exc, match="^cluster must"):
            kc.monarch_plan(64, np.float32, smem_bytes=4096, cluster=bad)
        with pytest.raises(exc, match="^cluster must"):
            trace_conv(u, k, kernel="monarch", cluster=bad)
    with pytest.raises(ValueError, match=r"^C must be <= 8, got 16$"):
        with dsmem.cluster_dims(16):
            pass
    with pytest.raises(TypeError, match=r"^C must be an int"):
        with dsmem.cluster_dims(2.0):
            pass
    with pytest.raises(TypeError, match="^cc must be a"):
        kc.default_cluster_max(9)
    assert (kc.default_cluster_max((8, 0)), kc.default_cluster_max((9, 0))) == (1, 8)
    with pytest.raises(ValueError, match="^device_index must be >= 0, got -1$"):
        kc.device_cluster_max(-1)
    with pytest.raises(TypeError, match="^device_index must be an int"):
        kc.device_cluster_max("0")
    from longconv_edu.kernels import perf_model as pm
    with pytest.raises(ValueError, match="^C must be a power of two, got 3$"):
        pm.GPUS["H100"].cluster_sms(3)
    with pytest.raises(ValueError, match="^cluster=2 needs outer=1"):
        kc.monarch_tables(64, np.float32, 4, cluster=2)
    if not SIM:                                   # no GPU here: clusters are not available
        with pytest.raises(ValueError, match="^cluster=2 needs thread block clusters"):
            kc.cuda_conv(u, k, cluster=2)
