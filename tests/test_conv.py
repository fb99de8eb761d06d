"""Rungs 1-2: every convolution in longconv_edu.conv against numpy.convolve, plus bad input.

Tolerances (relative to the output's max magnitude):
* float64: 1e-10. Each output sums at most L products; the FFT's rounding error grows like
  O(eps * log N) with eps = 2.2e-16, so 1e-10 leaves many orders of headroom yet fails on any
  indexing or padding mistake (those give O(1) errors).
* float32: 2e-4 for FFT forms, 1e-5 for the direct/Toeplitz sums. float32 eps = 1.2e-7; the FFT
  error bound is ~ eps * log2(N) * const, about 1e-5 at N = 2^11, and a length-L sum can lose
  up to L * eps in the worst case (the test lengths are <= 600).
"""
import pytest
import torch
from cases import CONV_TOL, conv_case, make
from hypothesis import given
from hypothesis import strategies as st
from oracles import bidirectional_conv_np, causal_conv_np, circular_conv_np, rel_err

from longconv_edu import bidirectional_conv, circular_conv, direct_conv, fft_conv, long_conv, toeplitz, toeplitz_conv
from longconv_edu.dispatch import backends

TOL = CONV_TOL


@given(conv_case(), st.sampled_from([torch.float64, torch.float32]))
def test_fft_and_toeplitz_match_numpy(case, dtype):
    u, k = make(*case, dtype=dtype)
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    for fn, tol in [(fft_conv, TOL[dtype]), (toeplitz_conv, 1e-10 if dtype == torch.float64 else 1e-5)]:
        y = fn(u, k)
        assert y.shape == u.shape and y.dtype == dtype
        assert rel_err(y.numpy(), ref) < tol, fn.__name__


@given(conv_case(max_L=80), st.sampled_from([torch.float64, torch.float32]))
def test_direct_matches_numpy(case, dtype):
    u, k = make(*case, dtype=dtype)
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for jit in (False, True):
        y = direct_conv(u, k, jit=jit)
        assert y.shape == u.shape and y.dtype == dtype
        assert rel_err(y.numpy(), ref) < tol, f"jit={jit}"


@given(conv_case(max_L=200))
def test_fft_size_larger_than_needed_is_still_exact(case):
    B, H, L, Lk, seed = case
    u, k = make(*case)
    y = fft_conv(u, k, fft_size=L + Lk - 1 + seed % 50)
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10


@given(conv_case(max_L=200))
def test_circular_conv_matches_periodic_sum(case):
    u, k = make(*case)
    assert rel_err(circular_conv(u, k).numpy(), circular_conv_np(u.numpy(), k.numpy())) < 1e-10


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 150), st.integers(0, 2**31 - 1))
def test_bidirectional_matches_explicit_sum(B, H, L, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g, dtype=torch.float64)
    k = torch.randn(H, 2 * L, generator=g, dtype=torch.float64)
    assert rel_err(bidirectional_conv(u, k).numpy(), bidirectional_conv_np(u.numpy(), k.numpy())) < 1e-10


def test_bidirectional_with_zero_anticausal_half_is_causal():
    u, k = make(2, 3, 40, 40, seed=1)
    k2 = torch.cat([k, torch.zeros_like(k)], dim=-1)
    assert rel_err(bidirectional_conv(u, k2).numpy(), fft_conv(u, k).numpy()) < 1e-12


def cpu_backends():
    """Backends that run on CPU tensors in this process ("cuda" needs a GPU or numba's simulator,
    which must be chosen before numba is imported: tests/test_kernels_cuda*.py test it)."""
    return [name for name in backends() if name != "cuda"]


def test_causality_impulse():
    """An impulse at t0 leaves outputs before t0 exactly zero and puts the kernel after it."""
    L, t0 = 50, 17
    u = torch.zeros(1, 1, L, dtype=torch.float64)
    u[0, 0, t0] = 1.0
    k = torch.randn(1, L, dtype=torch.float64)
    for name in cpu_backends():
        y = long_conv(u, k, backend=name)[0, 0]
        assert torch.all(y[:t0].abs() < 1e-12), name
        assert torch.allclose(y[t0:], k[0, :L - t0], atol=1e-12), name


def test_wraparound_is_what_fft_size_L_gets_wrong():
    u, k = make(1, 1, 32, 32, seed=3)
    causal = fft_conv(u, k)
    circ = circular_conv(u, k)
    assert rel_err(circ.numpy(), causal.numpy()) > 0.1          # visibly different ...
    assert torch.allclose(circ[..., -1], causal[..., -1])       # ... except the last output


def test_toeplitz_structure():
    k = torch.arange(1.0, 4.0, dtype=torch.float64)           # taps 1, 2, 3
    T = toeplitz(k, 5)
    expected = torch.tensor([[1, 0, 0, 0, 0], [2, 1, 0, 0, 0], [3, 2, 1, 0, 0],
                             [0, 3, 2, 1, 0], [0, 0, 3, 2, 1]], dtype=torch.float64)
    assert torch.equal(T, expected)
    assert toeplitz(torch.ones(4, 3), 6).shape == (4, 6, 6)


def test_fft_conv_gradients_match_finite_differences():
    u, k = make(2, 2, 9, 5, seed=4)
    u.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(fft_conv, (u, k))


def test_nan_propagates_without_crashing():
    u, k = make(1, 1, 16, 16, seed=5)
    u[0, 0, 8] = float("nan")
    y_direct = direct_conv(u, k)
    assert not torch.isnan(y_direct[..., :8]).any() and torch.isnan(y_direct[..., 8:]).all()
    assert torch.isnan(fft_conv(u, k)).any()
    # the dense product multiplies the zeros above the diagonal by NaN too: the whole row is NaN
    assert torch.isnan(toeplitz_conv(u, k)).all()


def test_long_conv_dispatch_and_unknown_backend():
    u, k = make(2, 2, 30, 30, seed=6)
    ref = fft_conv(u, k)
    for name in cpu_backends():
        assert rel_err(long_conv(u, k, backend=name).numpy(), ref.numpy()) < 1e-10
    with pytest.raises(ValueError, match="backend must be one of .*'fft'.*got 'nope'"):
        long_conv(u, k, backend="nope")


# ----------------------------------------------------------------------------- bad input
CONVS = [direct_conv, toeplitz_conv, fft_conv, circular_conv,
         lambda u, k: direct_conv(u, k, jit=True), long_conv]
GOOD_U = torch.randn(2, 3, 8)
GOOD_K = torch.randn(3, 8)


@pytest.mark.parametrize("fn", CONVS)
@pytest.mark.parametrize("u, k, exc, match", [
    (torch.randn(3, 8), GOOD_K, ValueError, r"u must be 3-D \(B, H, L\), got 2-D"),
    (torch.randn(1, 2, 3, 8), GOOD_K, ValueError, r"u must be 3-D"),
    (GOOD_U, torch.randn(8), ValueError, r"k must be 2-D \(H, Lk\), got 1-D"),
    (GOOD_U, torch.randn(4, 8), ValueError, r"k has H=4 channels .* u has H=3"),
    (GOOD_U, torch.randn(3, 9), ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=9"),
    (GOOD_U, torch.randn(3, 0), ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=0"),
    (GOOD_U.int(), GOOD_K, TypeError, r"u must have dtype .*got torch.int32"),
    (GOOD_U, GOOD_K.to(torch.complex64), TypeError, r"k must have dtype .*got torch.complex64"),
    (GOOD_U > 0, GOOD_K, TypeError, r"u must have dtype .*got torch.bool"),
    (GOOD_U.half(), GOOD_K.half(), TypeError, r"u must have dtype .*got torch.float16"),
    (GOOD_U, GOOD_K.double(), TypeError, r"k has dtype torch.float64 but u has dtype torch.float32"),
    (GOOD_U.numpy(), GOOD_K, TypeError, r"u must be a torch.Tensor, got ndarray.*from_numpy"),
    (GOOD_U, [1.0, 2.0], TypeError, r"k must be a torch.Tensor, got list"),
    (torch.randn(2, 3, 0), torch.randn(3, 0), ValueError, r"u must have sequence length L >= 1"),
])
def test_bad_input(fn, u, k, exc, match):
    with pytest.raises(exc, match=match):
        fn(u, k)


def test_device_mismatch_is_named():
    k_meta = GOOD_K.to("meta")
    with pytest.raises(ValueError, match=r"k is on device meta but u is on device cpu"):
        fft_conv(GOOD_U, k_meta)


@pytest.mark.parametrize("fft_size, exc, match", [
    (14, ValueError, r"fft_size must be >= L \+ Lk - 1 = 15 .*got 14.*circular_conv"),
    (8, ValueError, r"fft_size must be >= L \+ Lk - 1 = 15"),
    (0, ValueError, r"fft_size must be >= 1, got 0"),
    (16.0, TypeError, r"fft_size must be an int, got float"),
])
def test_fft_size_too_small(fft_size, exc, match):
    with pytest.raises(exc, match=match):
        fft_conv(GOOD_U, GOOD_K, fft_size=fft_size)


def test_bidirectional_needs_2L_kernel():
    with pytest.raises(ValueError, match=r"k must have length 2L = 16 for a bidirectional"):
        bidirectional_conv(GOOD_U, GOOD_K)


def test_toeplitz_bad_input():
    with pytest.raises(ValueError, match=r"k must have length 1 <= Lk <= L = 3, got Lk=4"):
        toeplitz(torch.ones(4), 3)
    with pytest.raises(ValueError, match=r"L must be >= 1, got 0"):
        toeplitz(torch.ones(1), 0)
    with pytest.raises(TypeError, match=r"k must have dtype"):
        toeplitz(torch.ones(3, dtype=torch.int64), 5)


def test_jit_flag_must_be_bool():
    with pytest.raises(TypeError, match=r"jit must be True or False"):
        direct_conv(GOOD_U, GOOD_K, jit="yes")


# ----------------------------------------------------------------------------- issue 15 defects
@pytest.mark.parametrize("backend", ["direct", "toeplitz", "fft", "butterfly", "learned_butterfly", "numba"])
@pytest.mark.parametrize("B, H", [(0, 3), (2, 0), (0, 0)])
def test_empty_batches_give_empty_results(backend, B, H):
    """Issue 15 #5: fft_conv on B = 0 or H = 0 failed with MKL's "Inconsistent configuration
    parameters"; every backend must return the empty (B, H, L) result, autograd intact."""
    u = torch.randn(B, H, 8, requires_grad=True)
    k = torch.randn(H, 8, requires_grad=True)
    y = long_conv(u, k, backend=backend)
    assert y.shape == (B, H, 8) and y.dtype == u.dtype
    if backend in ("fft", "toeplitz", "butterfly"):
        y.sum().backward()
        assert u.grad.shape == u.shape and k.grad.shape == k.shape


@pytest.mark.parametrize("fn", [circular_conv, fft_conv])
def test_fft_forms_on_empty_batch(fn):
    assert fn(torch.randn(0, 2, 5), torch.randn(2, 5)).shape == (0, 2, 5)
    assert bidirectional_conv(torch.randn(3, 0, 5), torch.randn(0, 10)).shape == (3, 0, 5)


@pytest.mark.parametrize("jit", [False, True])
def test_direct_refuses_hopeless_lengths_with_the_estimate(jit):
    """Issue 15 #9: direct_conv at L = 2^27 ran for minutes; now it refuses at once, saying how
    long it would take. Stride-0 (expanded) inputs: no memory is touched before the refusal."""
    L = 2 ** 27
    u, k = torch.zeros(1, 1, 1).expand(1, 1, L), torch.zeros(1, 1).expand(1, L)
    with pytest.raises(ValueError, match=r"direct_conv\(jit=" + str(jit) + r"\) with B=1, H=1, L=134217728, "
                       r"Lk=134217728 would take ~[0-9.e+]+ s .* over the 600 s limit.*use fft_conv"):
        direct_conv(u, k, jit=jit)


def test_toeplitz_refuses_impossible_memory_with_the_estimate():
    """Issue 15 #9: toeplitz_conv at L = 2^27 failed in the allocator asking for 144 PB."""
    L = 2 ** 27
    u, k = torch.zeros(1, 1, 1).expand(1, 1, L), torch.zeros(1, 1).expand(1, L)
    with pytest.raises(ValueError, match=r"toeplitz with H=1, L=134217728 would need ~[0-9.]+ PiB of memory"
                                         r".*more than the .* available; refused before allocating"):
        toeplitz_conv(u, k)
    with pytest.raises(ValueError, match=r"PiB of memory"):
        long_conv(u, k, backend="toeplitz")


def test_cost_models_match_their_formulas():
    from longconv_edu.conv import direct_conv_seconds, toeplitz_bytes
    assert direct_conv_seconds(2, 3, 10, 4, jit=True) == pytest.approx(2 * 3 * (40 - 6) * 1e-9)
    assert direct_conv_seconds(1, 1, 10, 10) == pytest.approx(55 * (3e-6 + 1e-9))
    assert toeplitz_bytes(2, 10, 4) == 100 * 21 + 2 * 2 * 100 * 4
    # a size that runs in well under a second is never refused
    assert direct_conv_seconds(1, 4, 1024, 1024) < 10
