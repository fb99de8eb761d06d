"""Rung 4: butterfly_conv and the three-pass scheme against numpy.convolve, plus autograd and bad input.

Oracle: tests/oracles.causal_conv_np (numpy.convolve in float64, truncated to L).
Tolerances, relative to the output's max magnitude:
* float64: 1e-10 (an FFT-size-N round trip loses ~ eps * log2 N, eps = 2.2e-16: ~1e-15 measured);
* float32: 2e-4, as for fft_conv in test_conv.py (measured worst ~3e-7 for these lengths; the
  bound grows with log2 N and with the ratio of the largest to the typical output).
"""
import numpy as np
import pytest
import torch
from cases import CONV_TOL, conv_case, make
from hypothesis import given
from hypothesis import strategies as st
from oracles import causal_conv_np, rel_err

from longconv_edu import fft_conv, long_conv
from longconv_edu.butterfly import butterfly_conv, butterfly_kernel_spectrum, radix2_conv, three_pass_conv

TOL = CONV_TOL


@given(conv_case(), st.sampled_from([torch.float64, torch.float32]))
def test_butterfly_and_three_pass_match_numpy(case, dtype):
    u, k = make(*case, dtype=dtype)
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    for name, y in [("butterfly_conv", butterfly_conv(u, k)),
                    ("three_pass_conv", three_pass_conv(u, k)),
                    ("three_pass_conv outer=2", three_pass_conv(u, k, outer=2)),
                    ("long_conv butterfly", long_conv(u, k, backend="butterfly")),
                    ("radix2_conv", radix2_conv(u, k)),
                    ("radix2_conv torch", radix2_conv(u, k, jit=False))]:
        assert y.shape == u.shape and y.dtype == dtype, name
        assert rel_err(y.numpy(), ref) < TOL[dtype], name


@pytest.mark.parametrize("L", [1000, 4096])
def test_long_rows_equal_fft_conv(L):
    u, k = make(2, 2, L, L, seed=L)
    ref = fft_conv(u, k)
    assert rel_err(butterfly_conv(u, k).numpy(), ref.numpy()) < 1e-10
    for outer in (None, 2, 16, 128):
        assert rel_err(three_pass_conv(u, k, outer=outer).numpy(), ref.numpy()) < 1e-10, outer


@pytest.mark.parametrize("L, Lk, factors", [(5, 4, (3, 3)), (5, 5, (3, 3)), (8, 8, (3, 5)),
                                            (8, 3, (2, 5)), (16, 16, (4, 2, 4)), (3, 1, (1, 3))])
def test_explicit_factors_any_size(L, Lk, factors):
    u, k = make(2, 3, L, Lk, seed=L * Lk)
    ref = causal_conv_np(u.numpy(), k.numpy())
    assert rel_err(butterfly_conv(u, k, factors=factors).numpy(), ref) < 1e-10


def test_precomputed_spectrum_reused():
    u, k = make(2, 3, 50, 50, seed=1)
    K = butterfly_kernel_spectrum(k, 50)
    assert K.shape == (3, 128) and K.dtype == torch.complex128
    # the layout: K[h] is the full N-point DFT of k[h] zero-padded to N
    assert np.max(np.abs(K.numpy() - np.fft.fft(k.numpy(), n=128))) < 1e-10
    ref = causal_conv_np(u.numpy(), k.numpy())
    for y in [butterfly_conv(u, None, k_f=K), butterfly_conv(u, k, k_f=K),
              three_pass_conv(u, None, k_f=K), long_conv(u, k, backend="butterfly", k_f=K)]:
        assert rel_err(y.numpy(), ref) < 1e-10
    K3 = butterfly_kernel_spectrum(k, 50, factors=(4, 4, 8))
    assert rel_err(butterfly_conv(u, None, k_f=K3, factors=(4, 4, 8)).numpy(), ref) < 1e-10


def test_gradcheck():
    u, k = make(2, 2, 7, 5, seed=0)
    u.requires_grad_()
    k.requires_grad_()
    assert torch.autograd.gradcheck(butterfly_conv, (u, k))
    assert torch.autograd.gradcheck(lambda u, k: three_pass_conv(u, k, outer=4), (u, k))
    assert torch.autograd.gradcheck(
        lambda u, k: butterfly_conv(u, None, k_f=butterfly_kernel_spectrum(k, 7)), (u, k))


def test_gradients_equal_fft_conv():
    u, k = make(2, 3, 33, 20, seed=5)
    for fn in (butterfly_conv, three_pass_conv):
        a = [t.clone().requires_grad_() for t in (u, k)]
        b = [t.clone().requires_grad_() for t in (u, k)]
        w = torch.randn(2, 3, 33, dtype=torch.float64)
        (fn(*a) * w).sum().backward()
        (fft_conv(*b) * w).sum().backward()
        for x, y in zip(a, b):
            assert rel_err(x.grad.numpy(), y.grad.numpy()) < 1e-10


def _u(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 8), factors=(2, 4)), ValueError, "factors"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 8), factors=16), TypeError, "factors"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 8), factors=(16,)), ValueError, "factors"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 8), factors=(4, 2.5)), TypeError, "factors[1]"),
    (lambda: butterfly_conv(torch.ones(2, 3, 8, dtype=torch.int64), _u(3, 8)), TypeError, "u"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(4, 8)), ValueError, "k"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 9)), ValueError, "k"),
    (lambda: butterfly_conv(_u(2, 3, 8), _u(3, 8, dtype=torch.float32)), TypeError, "k"),
    (lambda: butterfly_conv(_u(3, 8), _u(3, 8)), ValueError, "u"),
    (lambda: butterfly_conv(_u(2, 3, 8), None), ValueError, "k"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(3, 16)), TypeError, "k_f"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(3, 16, dtype=torch.complex64)),
     TypeError, "k_f"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(2, 16, dtype=torch.complex128)),
     ValueError, "k_f"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(3, 8, dtype=torch.complex128)),
     ValueError, "k_f"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(3, 15, dtype=torch.complex128)),
     ValueError, "factors"),
    (lambda: butterfly_conv(_u(2, 3, 8), None, k_f=torch.zeros(3, 16, dtype=torch.complex128),
                            factors=(4, 8)), ValueError, "factors"),
    (lambda: butterfly_kernel_spectrum(_u(3, 8), 4), ValueError, "k"),
    (lambda: butterfly_kernel_spectrum(_u(3, 8), 8.0), TypeError, "L"),
    (lambda: butterfly_kernel_spectrum(_u(3, 8), 8, factors=(3, 4)), ValueError, "factors"),
    (lambda: three_pass_conv(_u(2, 3, 8), _u(3, 8), outer=3), ValueError, "outer"),
    (lambda: three_pass_conv(_u(2, 3, 8), _u(3, 8), outer=0), ValueError, "outer"),
    (lambda: radix2_conv(_u(2, 3, 8), _u(3, 8), jit=1), TypeError, "jit"),
    (lambda: radix2_conv(_u(2, 3, 8), _u(2, 8)), ValueError, "k"),
])
def test_bad_input(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    assert arg in str(info.value)


# ----------------------------------------------------------------------------- issue 15 defects
def test_no_length_ceiling_at_2_to_the_17():
    """Issue 15 #6: butterfly, three_pass and learned_butterfly refused L > 2^17 with the hint
    "raise max_factor", which none accepts; now the Monarch factors grow past 64 and the result
    is the causal convolution (oracle: numpy, float64) at L = 2^18 (N = 2^19 = 128 * 64 * 64)."""
    from longconv_edu.learned import LearnedButterflyConv, learned_butterfly_conv

    L = 2 ** 18
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 1, L, generator=g, dtype=torch.float64)
    k = torch.randn(1, L, generator=g, dtype=torch.float64) / L ** 0.5
    ref = np.fft.irfft(np.fft.rfft(u.numpy(), 2 * L) * np.fft.rfft(k.numpy(), 2 * L), 2 * L)[..., :L]
    layer = LearnedButterflyConv(1, L, dtype=torch.float64)
    assert layer.factors == (128, 64, 64)
    for name, y in [("butterfly", butterfly_conv(u, k)), ("three_pass", three_pass_conv(u, k)),
                    ("learned_butterfly", learned_butterfly_conv(u, k)), ("LearnedButterflyConv", layer(u, k))]:
        assert rel_err(y.detach().numpy(), ref) < 1e-12, name
