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
from longconv_edu.kernels.cuda import cuda_conv, kernel_spectrum, make_plan, simulator_active  # noqa: E402

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
def test_three_pass_forward_and_backward(L, Lk, smem):
    # a deliberately tiny shared-memory budget: tiles of 4 (64 B) or 8 (128 B) float64 values
    assert make_plan(L, np.float64, smem_bytes=smem).passes == 3
    u, k = make(1, 1, L, Lk, seed=L + smem)
    g = torch.randn(1, 1, L, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, smem_bytes=smem, threads=2), u, k, g)
    y_ref, gu_ref, gk_ref = _grads(fft_conv, u, k, g)
    assert rel_err(y.detach().numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    assert rel_err(gu.numpy(), gu_ref.numpy()) < 1e-10
    assert rel_err(gk.numpy(), gk_ref.numpy()) < 1e-10


@pytest.mark.parametrize("smem", [48 * 1024, 64])
def test_kernel_spectrum_is_the_bit_reversed_dft(smem):
    k = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    re, im = kernel_spectrum(k, 6, smem_bytes=smem, threads=2)       # N = 16
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


@pytest.mark.parametrize("L,dtype,block", [(1024, torch.float64, 4), (2048, torch.float64, 8),
                                           (3000, torch.float32, 4), (4096, torch.float32, 4),
                                           (4096, torch.float32, 16)])
def test_monarch_long_rows_forward_and_both_gradients(L, dtype, block):
    u, k = make(1, 1, L, L, seed=L + block, dtype=dtype)
    g = torch.randn(1, 1, L, generator=torch.Generator().manual_seed(L), dtype=dtype)
    y, gu, gk = _grads(lambda a, b: cuda_conv(a, b, threads=64, block=block), u, k, g)
    y_ref, gu_ref, gk_ref = _grads64(u, k, g)
    assert rel_err(y.detach().numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < TOL[dtype]
    for got, ref in ((gu, gu_ref), (gk, gk_ref)):
        assert rel_err(got.double().numpy(), ref.detach().numpy()) < TOL[dtype]


def test_monarch_4096_float64_forward():
    # the fused forward fits (6 M float64 = 192 KiB); its fused backward would not (radix-2 path)
    u, k = make(1, 1, 4096, 100, seed=5)
    y = cuda_conv(u, k, threads=64)
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-12
