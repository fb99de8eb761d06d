"""Rung 5a under numba's CUDA simulator: the real kernel code, launched by numba, on the CPU.

This file needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported, so it runs in its own
process: ``tests/test_kernels_cuda.py::test_simulator_suite`` launches it as
``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_kernels_cuda_sim.py`` and fails if it
fails. Collected in an ordinary pytest process (numba imported normally) it is skipped.

The simulator runs one Python thread per CUDA thread and one block at a time, ~0.1 s per block
on this machine, so sizes are tiny: B*H <= 4 rows, L <= 33, 4 threads per block.

References (independent of the kernel): numpy.convolve in float64 (tests/oracles.py) for the
forward; torch.fft's autograd through ``fft_conv`` for the gradients; torch.fft.fft permuted by
the bit reversal for the spectrum layout.
Tolerances, relative to the largest reference value: float64 1e-10 (the radix-2 FFT's rounding
error is ~ eps * log2 N ~ 1e-15 here, an indexing or twiddle mistake gives O(1)); float32 2e-4
(eps = 1.2e-7 times log2 N and the few-hundred-term sums, with headroom, as in test_conv.py).
"""
import os

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
    reason="needs NUMBA_ENABLE_CUDASIM=1 before numba is imported; run by "
           "test_kernels_cuda.py::test_simulator_suite in its own process")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cases import CONV_TOL, make  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from oracles import causal_conv_np, rel_err  # noqa: E402

from longconv_edu import fft_conv, long_conv  # noqa: E402
from longconv_edu.fft import bit_reversal_permutation  # noqa: E402
from longconv_edu.kernels.cuda import (  # noqa: E402
    REAL_OF,
    cuda_conv,
    fused_backward_plan,
    make_plan,
    monarch_plan,
    radix2_conv,
    radix2_kernel_spectrum,
    simulator_active,
)

TOL = CONV_TOL


def test_the_simulator_is_really_on():
    assert simulator_active()


@pytest.mark.parametrize("L,Lk", [(1, 1), (2, 1), (3, 3), (5, 2), (8, 8), (9, 4), (17, 17), (33, 7)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_matches_numpy(L, Lk, dtype):
    # L = 1, non-powers of two, powers of two and one above (8 -> 9, 32 -> 33: N doubles)
    u, k = make(1, 2, L, Lk, seed=L * 100 + Lk, dtype=dtype)
    y = cuda_conv(u, k, threads=4)
    assert y.shape == u.shape and y.dtype == dtype
    assert rel_err(y.numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < TOL[dtype]


def _grads(fn, u, k, g):
    u = u.clone().requires_grad_(True)
    k = k.clone().requires_grad_(True)
    y = fn(u, k)
    return (y, *torch.autograd.grad(y, (u, k), g))


@pytest.mark.parametrize("L,Lk", [(1, 1), (6, 4), (9, 9)])
def test_backward_matches_fft_conv_autograd(L, Lk):
    u, k = make(2, 2, L, Lk, seed=L)
    g = torch.randn(2, 2, L, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, threads=4), u, k, g)
    y_ref, gu_ref, gk_ref = _grads(fft_conv, u, k, g)
    for got, ref in ((y, y_ref), (gu, gu_ref), (gk, gk_ref)):
        assert got.shape == ref.shape
        assert rel_err(got.detach().numpy(), ref.detach().numpy()) < 1e-10


@pytest.mark.parametrize("L,Lk,smem", [(5, 3, 64), (8, 8, 64), (9, 5, 128)])
def test_radix2_three_pass_forward_and_backward(L, Lk, smem):
    # the "before" kernel's three passes, with a deliberately tiny shared-memory budget: tiles of
    # 4 (64 B) or 8 (128 B) float64 values
    assert make_plan(L, np.float64, smem_bytes=smem).passes == 3
    u, k = make(1, 1, L, Lk, seed=L + smem)
    g = torch.randn(1, 1, L, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y, gu, gk = _grads(lambda a, b: radix2_conv(a, b, smem_bytes=smem, threads=2), u, k, g)
    y_ref, gu_ref, gk_ref = _grads(fft_conv, u, k, g)
    assert rel_err(y.detach().numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    assert rel_err(gu.numpy(), gu_ref.numpy()) < 1e-10
    assert rel_err(gk.numpy(), gk_ref.numpy()) < 1e-10


@pytest.mark.parametrize("smem", [48 * 1024, 64])
def test_radix2_kernel_spectrum_is_the_bit_reversed_dft(smem):
    k = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    re, im = radix2_kernel_spectrum(k, 6, smem_bytes=smem, threads=2)       # N = 16
    N = re.shape[1]
    assert N == 16
    ref = torch.fft.fft(k, n=N)[:, bit_reversal_permutation(N)]
    err = (torch.complex(re, im) - ref).abs().max() / ref.abs().max()
    assert err < 1e-12


@settings(max_examples=6)
@given(st.integers(1, 2), st.integers(1, 2), st.integers(1, 20), st.data(),
       st.sampled_from([1, 2, 4]), st.sampled_from([torch.float64, torch.float32]))
def test_forward_property(B, H, L, data, threads, dtype):
    Lk = data.draw(st.integers(1, L))
    u, k = make(B, H, L, Lk, seed=B + 10 * H + 100 * L + Lk, dtype=dtype)
    y = cuda_conv(u, k, threads=threads)
    assert rel_err(y.numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < TOL[dtype]


def test_long_conv_dispatches_to_the_kernel():
    u, k = make(1, 1, 7, 3, seed=0)
    assert rel_err(long_conv(u, k, backend="cuda", threads=2).numpy(),
                   causal_conv_np(u.numpy(), k.numpy())) < 1e-10


def test_non_cpu_tensors_under_the_simulator_are_refused():
    u = torch.empty(1, 1, 4, device="meta")
    k = torch.empty(1, 4, device="meta")
    with pytest.raises(ValueError, match=r"u is on device meta.*simulator"):
        cuda_conv(u, k)


# ----------------------------------------------------------------------------- the Monarch kernel, long rows
# One row (B = H = 1) and 64 threads per block keep the simulator to seconds per case (it runs one
# Python thread per CUDA thread; the work per row is the same for any thread count). Oracle: numpy's
# convolution in float64 for y; torch.fft's autograd in float64 for both gradients. float32 cases
# are compared with the float64 oracle at CONV_TOL[float32] = 2e-4.
def _grads64(u, k, g):
    u, k = u.detach().double().requires_grad_(True), k.detach().double().requires_grad_(True)
    y = fft_conv(u, k)
    return (y, *torch.autograd.grad(y, (u, k), g.double()))


# (L, Lk, dtype, block, smem_bytes): None = the default budget (227 KiB without a GPU), under
# which every row here is fused, forward and backward (float64 L = 4096: the backward with
# two-level twiddles, Q = 1024). The budgets given leave the fused kernel a root table smaller
# than M, so that the first factors multiply two table entries (``monarch_roots``): L = 1024
# float64 with 53344 bytes: forward Q = M, backward Q = 256; L = 4096 float32 with 33792: the
# forward's least tables, Q = 64 (three of six factors two-level), the backward in three passes;
# L = 100 float64 with 2432: Q = 16 (M = 128, p = 2: four factors two-level).
FUSED = [(1, 1, torch.float64, 4, None), (7, 7, torch.float64, 2, None),
         (100, 37, torch.float64, 8, None), (100, 100, torch.float64, 16, None),
         (1024, 1024, torch.float64, 4, None), (2048, 2048, torch.float64, 8, None),
         (3000, 3000, torch.float32, 4, None), (4096, 4096, torch.float32, 4, None),
         (4096, 4096, torch.float32, 16, None), (4096, 1000, torch.float64, 2, None),
         (1024, 999, torch.float64, 4, 53344), (4096, 4096, torch.float32, 4, 33792),
         (100, 60, torch.float64, 2, 2432)]


@pytest.mark.parametrize("L,Lk,dtype,block,smem", FUSED)
def test_monarch_fused_forward_and_both_gradients(L, Lk, dtype, block, smem):
    kw = {} if smem is None else {"smem_bytes": smem}
    plan = monarch_plan(L, REAL_OF[dtype], smem_bytes=smem or 227 * 1024, block=block)
    assert plan.passes == 1
    if smem is not None:                             # two-level twiddles, forward or backward
        bp = fused_backward_plan(plan, smem)
        assert plan.roots < plan.M or (bp is not None and bp.roots < plan.M)
    u, k = make(1, 1, L, Lk, seed=L + block, dtype=dtype)
    g = torch.randn(1, 1, L, generator=torch.Generator().manual_seed(L), dtype=dtype)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, threads=64, block=block, **kw), u, k, g)
    y_ref, gu_ref, gk_ref = _grads64(u, k, g)
    tol = 1e-12 if dtype == torch.float64 else TOL[dtype]
    assert rel_err(y.detach().double().numpy(),
                   causal_conv_np(u.double().numpy(), k.double().numpy())) < tol
    for got, ref in ((gu, gu_ref), (gk, gk_ref)):
        assert got.shape == ref.shape
        assert rel_err(got.double().numpy(), ref.detach().numpy()) < tol


def test_monarch_twiddle_powers_keep_float32_accuracy():
    # The first factors of a row whose root table is smaller than its span (Q < P) take one
    # two-table lookup per group, w1 = W_P^j, and the other twiddles as its powers (depth
    # log2 p multiplies). Measured before the change (two lookups per twiddle), three seeds,
    # L = 4096 float32 against numpy's float64 convolution: Q = 64 p = 4 2.7e-7 -> 4.0e-7,
    # p = 8 2.4e-7 -> 5.1e-7; Q = M (one lookup each, no powers) 2.2e-7 both. Here: the powers
    # keep the error within 1e-6 and within 4x the one-lookup kernel's, on the same data.
    u, k = make(1, 1, 4096, 4096, seed=3, dtype=torch.float32)
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    errs = {}
    for smem in (33792, None):
        kw = {} if smem is None else {"smem_bytes": smem}
        plan = monarch_plan(4096, np.float32, smem_bytes=smem or 227 * 1024, block=8)
        assert plan.passes == 1 and (plan.roots == 64) == (smem is not None)
        y = cuda_conv(u, k, threads=64, block=8, **kw)
        errs[smem] = rel_err(y.double().numpy(), ref)
    assert errs[33792] < 1e-6 and errs[33792] < 4 * errs[None], errs


def test_monarch_4096_float64_fused_backward_with_two_level_twiddles():
    # float64 L = 4096 under 227 KiB: the forward keeps all of W_M (4 M values = 128 KiB), the
    # fused backward (6 M + 4 values = 192 KiB) only W_Q and W_4096^t for t < 4096/Q, Q the
    # largest factor span that fits: 1024 with 4 x 4 blocks (spans 4096, 1024, ...), 512 with
    # 8 x 8 blocks (the default at M = 4096: spans 4096, 512, 64, 8)
    for block, Q in ((4, 1024), (None, 512)):
        plan = monarch_plan(4096, np.float64, smem_bytes=227 * 1024, block=block)
        assert (plan.passes, plan.roots) == (1, 4096)
        assert fused_backward_plan(plan, 227 * 1024).roots == Q


# ----------------------------------------------------------------------------- the Monarch three passes
# Rows beyond one block's shared memory (float32: L > 16384 on an H100 or an A100) take the
# Monarch three passes; here they are forced at small L by a budget ``smem_bytes`` below the
# fused kernel's least (M = 64 float64: 1280 bytes).
# Oracles as above: numpy's float64 convolution for y, torch.fft's float64 autograd for both
# gradients; float64 within 1e-10 (rounding ~1e-15 here), float32 within CONV_TOL (2e-4).
@pytest.mark.parametrize("B,H,L,Lk,dtype,smem,block", [
    (1, 1, 64, 64, torch.float64, 1152, 4),        # M = 64 = 8 outer x 8 inner
    (2, 3, 40, 13, torch.float64, 1152, 4),        # a batch: grad_k summed over it
    (1, 2, 100, 37, torch.float64, 1280, 2),       # not a power of two; 2 x 2 DFT blocks
    (1, 1, 1000, 1000, torch.float64, 8192, 16),   # 16 x 64, dense 16 x 16 blocks
    (1, 1, 3000, 3000, torch.float32, 20480, 4),   # not a power of two: 8 x 512
    (1, 1, 4096, 4096, torch.float32, 20480, 4),   # 8 x 512 (fused: at least 33792 bytes)
    (1, 1, 4096, 777, torch.float32, 10240, 8)])   # 16 x 256, dense 8 x 8 blocks
def test_monarch_three_pass_forward_and_both_gradients(B, H, L, Lk, dtype, smem, block):
    plan = monarch_plan(L, REAL_OF[dtype], smem_bytes=smem, block=block)
    assert plan.passes == 3 and plan.outer * plan.inner == plan.N // 2
    u, k = make(B, H, L, Lk, seed=L + Lk + block, dtype=dtype)
    g = torch.randn(B, H, L, generator=torch.Generator().manual_seed(L), dtype=dtype)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, smem_bytes=smem, threads=64, block=block), u, k, g)
    y_ref, gu_ref, gk_ref = _grads64(u, k, g)
    tol = 1e-10 if dtype == torch.float64 else TOL[dtype]
    assert rel_err(y.detach().double().numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < tol
    for got, ref in ((gu, gu_ref), (gk, gk_ref)):
        assert got.shape == ref.shape
        assert rel_err(got.double().numpy(), ref.detach().numpy()) < tol


def test_monarch_fused_forward_three_pass_backward_and_one_gradient():
    # M = 64 float64: the fused forward needs at least 1280 bytes (2048 with all of W_M), the
    # fused backward 3360: with 2048 the forward is fused and the backward takes the three
    # passes; one gradient at a time too
    plan = monarch_plan(64, np.float64, smem_bytes=2048)
    assert plan.passes == 1 and fused_backward_plan(plan, 2048) is None
    u, k = make(2, 2, 64, 30, seed=11)
    g = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y_ref, gu_ref, gk_ref = _grads(fft_conv, u, k, g)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, smem_bytes=2048, threads=8), u, k, g)
    for got, ref in ((y, y_ref), (gu, gu_ref), (gk, gk_ref)):
        assert rel_err(got.detach().numpy(), ref.detach().numpy()) < 1e-10
    kk = k.clone().requires_grad_(True)
    (gk_only,) = torch.autograd.grad(cuda_conv(u, kk, smem_bytes=2048, threads=8), (kk,), g)
    assert rel_err(gk_only.numpy(), gk_ref.numpy()) < 1e-10


# ----------------------------------------------------------------------------- the cluster kernel
# Rows held by a cluster of C thread blocks through distributed shared memory (sm_90; float32 on
# an H100: L = 32K with C = 2, 64K with C = 4). The simulator runs the kernel's one-block
# emulation (``kernels.dsmem``: C thread groups, C slices of one shared array); forced here at
# small L by a budget ``smem`` that fits M/C values (and the three passes the backward takes) but
# not M/(C/2): the plan takes the fewest C that fits.
# Oracles: numpy's float64 convolution for y (float64 within 1e-12, float32 within CONV_TOL),
# torch.fft's float64 autograd for both gradients (grad_u: the cluster kernel with conj(K);
# grad_k: the three passes).
@pytest.mark.parametrize("B,H,L,Lk,dtype,C,block,smem", [
    (1, 1, 64, 64, torch.float64, 2, 4, 1152),       # M = 64: 2 CTAs of 32
    (2, 3, 256, 13, torch.float64, 4, 4, 2304),      # 4 CTAs of 64: pairs of CTAs 1 and 3 via DSMEM
    (1, 2, 100, 37, torch.float64, 2, 2, 1280),      # not a power of two; 2 x 2 blocks
    (1, 1, 1000, 1000, torch.float32, 4, 4, 2560),   # not a power of two, float32, two-level twiddles
    (1, 1, 2048, 2048, torch.float64, 8, 4, 5120),   # 8 CTAs of 256
    (1, 1, 4096, 1000, torch.float64, 2, 8, 34304)])  # 2 x 2048, 8 x 8 blocks
def test_monarch_cluster_forward_and_both_gradients(B, H, L, Lk, dtype, C, block, smem):
    real = REAL_OF[dtype]
    plan = monarch_plan(L, real, smem_bytes=smem, block=block, cluster=C)
    assert plan.cluster == C and plan.kernels() == ("cluster",)
    assert monarch_plan(L, real, smem_bytes=smem, block=block).passes == 3   # without clusters
    u, k = make(B, H, L, Lk, seed=L + C, dtype=dtype)
    g = torch.randn(B, H, L, generator=torch.Generator().manual_seed(C), dtype=dtype)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, smem_bytes=smem, threads=32, block=block,
                                              cluster=C), u, k, g)
    y_ref, gu_ref, gk_ref = _grads64(u, k, g)
    tol = 1e-12 if dtype == torch.float64 else TOL[dtype]
    assert rel_err(y.detach().double().numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < tol
    for got, ref in ((gu, gu_ref), (gk, gk_ref)):
        assert rel_err(got.double().numpy(), ref.detach().numpy()) < max(tol, 1e-10)



def test_monarch_cluster_one_gradient_at_a_time():
    # grad_u alone takes the cluster kernel with conj(K) (a correlation: its conj path), grad_k
    # alone the three passes; each against torch.fft's float64 autograd
    u, k = make(2, 2, 64, 30, seed=12)
    g = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, gu_ref, gk_ref = _grads64(u, k, g)
    kw = dict(smem_bytes=1152, threads=16, block=4, cluster=2)
    uu, kk = u.clone().requires_grad_(True), k.clone().requires_grad_(True)
    (gu,) = torch.autograd.grad(cuda_conv(uu, k, **kw), (uu,), g)
    (gk,) = torch.autograd.grad(cuda_conv(u, kk, **kw), (kk,), g)
    assert rel_err(gu.numpy(), gu_ref.numpy()) < 1e-12
    assert rel_err(gk.numpy(), gk_ref.numpy()) < 1e-12
