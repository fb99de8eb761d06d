"""Rung 6: squash, smooth, kernel dropout, the smoothness metrics and the SSM kernel.

Oracles: hand-computed small cases; NumPy references in oracles.py (a three-case soft threshold,
np.convolve for the moving average, the SSM recurrence run step by step); closed-form statistics
of white noise and of a moving average of white noise for the metrics.

Tolerances:
* squash / smooth in float64: 1e-12 relative (a handful of additions per tap; any indexing or
  padding mistake is O(1)). float32: 1e-6 (a sum of at most a few thousand terms / width).
* metric statistics: computed over 32 rows of 4096 taps. The normalised total variation of a
  row is a ratio of two sums of 4096 |.|-terms; its standard deviation is about 1% of its mean,
  so the mean of 32 rows sits within ~0.2% of the limit. We allow 3% (TV) and 0.02 absolute
  (high-frequency fraction, whose per-row std is ~0.01), wide enough never to flake with the
  fixed seeds, tight enough to catch a wrong normalisation (sqrt(2) vs 1, one-sided vs two-sided).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import box_filter_hf_fraction, rel_err, smooth_np, squash_np, ssm_impulse_response_np

from longconv_edu.course.exercises import check
from longconv_edu.regularize import (
    PAPER_SETTINGS,
    double_exp_init,
    high_freq_fraction,
    kernel_dropout,
    random_init,
    regularize_kernel,
    s4d_init,
    s4d_kernel,
    smooth,
    smoothness_metrics,
    spectral_decay,
    squash,
    ssm_kernel,
    total_variation,
)


def randk(shape, seed=0, dtype=torch.float64, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


# ----------------------------------------------------------------------------- squash
def test_squash_hand_case():
    k = torch.tensor([0.5, -0.2, 0.1, -0.05, 0.0, 0.3], dtype=torch.float64)
    got = squash(k, 0.1)
    assert torch.allclose(got, torch.tensor([0.4, -0.1, 0.0, 0.0, 0.0, 0.2], dtype=torch.float64),
                          rtol=0, atol=1e-15)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.floats(0, 3), st.integers(0, 10**6),
       st.sampled_from([torch.float64, torch.float32]))
def test_squash_matches_numpy(shape, lam, seed, dtype):
    k = randk(shape, seed, dtype)
    got = squash(k, lam)
    assert got.shape == k.shape and got.dtype == dtype
    ref = squash_np(k.double().numpy(), float(torch.tensor(lam, dtype=dtype)))
    assert np.max(np.abs(got.double().numpy() - ref), initial=0) <= (1e-12 if dtype == torch.float64 else 1e-6)


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 10**6))
def test_squash_composes_and_shrinks(a, b, seed):
    k = randk((50,), seed)
    assert torch.all(squash(k, a).abs() <= k.abs())                       # never grows a tap
    assert rel_err(squash(squash(k, a), b).numpy(), squash(k, a + b).numpy()) < 1e-12


def test_squash_extremes():
    k = randk((3, 64), 1)
    assert torch.equal(squash(k, 0.0), k)
    assert torch.count_nonzero(squash(k, float(k.abs().max()))) == 0


def test_squash_gradient_where_defined():
    k = randk((200,), 2)
    lam = 0.5
    k = k[(k.abs() - lam).abs() > 1e-3].clone().requires_grad_(True)     # away from the kinks
    squash(k, lam).sum().backward()
    expect = (k.detach().abs() > lam).double()
    assert torch.equal(k.grad, expect)
    assert torch.autograd.gradcheck(lambda x: squash(x, lam), (k.detach().clone().requires_grad_(),))


# ----------------------------------------------------------------------------- smooth
def test_smooth_hand_case():
    k = torch.tensor([0.0, 3.0, 0.0, 0.0, 6.0], dtype=torch.float64)
    assert torch.allclose(smooth(k, 3), torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0], dtype=torch.float64),
                          rtol=0, atol=1e-15)
    # width 5: two zeros of padding on each side, e.g. out[0] = (0 + 0 + 0 + 3 + 0) / 5
    assert torch.allclose(smooth(k, 5), torch.tensor([0.6, 0.6, 1.8, 1.8, 1.2], dtype=torch.float64),
                          rtol=0, atol=1e-15)


@st.composite
def smooth_case(draw):
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    Lk = draw(st.one_of(st.just(1), st.integers(1, 200), st.sampled_from([2, 64, 65])))
    width = draw(st.integers(0, (Lk - 1) // 2)) * 2 + 1
    return tuple(lead) + (Lk,), width, draw(st.integers(0, 10**6))


@given(smooth_case(), st.sampled_from([torch.float64, torch.float32]))
def test_smooth_matches_numpy_convolve(case, dtype):
    shape, width, seed = case
    k = randk(shape, seed, dtype)
    got = smooth(k, width)
    assert got.shape == k.shape and got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert rel_err(got.double().numpy(), smooth_np(k.double().numpy(), width)) < tol


def test_smooth_width_one_is_identity_and_constants_stay_inside():
    k = randk((2, 30), 3)
    assert torch.equal(smooth(k, 1), k)
    c = torch.full((40,), 2.5, dtype=torch.float64)
    s = smooth(c, 9)
    assert torch.allclose(s[4:-4], c[4:-4], rtol=0, atol=1e-14)          # interior: average of 2.5s
    assert s[0] == pytest.approx(2.5 * 5 / 9)                            # 4 zeros of padding counted


def test_smooth_is_differentiable():
    k = randk((1, 9), 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: smooth(x, 5), (k,))


# ----------------------------------------------------------------------------- dropout, pipeline
def test_kernel_dropout_statistics_and_no_ops():
    k = torch.ones(200, 500, dtype=torch.float64)
    torch.manual_seed(0)
    out = kernel_dropout(k, 0.3)
    kept = out != 0
    frac = kept.double().mean().item()
    # 100000 Bernoulli(0.7) draws: std of the mean 0.0014; 0.01 is 7 standard deviations
    assert abs(frac - 0.7) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert torch.equal(kernel_dropout(k, 0.3, training=False), k)
    assert torch.equal(kernel_dropout(k, 0.0), k)


def test_regularize_kernel_order_is_smooth_then_squash():
    k = randk((3, 50), 5, scale=0.01)
    got = regularize_kernel(k, lam=0.002, smooth_width=7)
    ref = squash_np(smooth_np(k.numpy(), 7), 0.002)
    assert rel_err(got.numpy(), ref) < 1e-12
    other = smooth_np(squash_np(k.numpy(), 0.002), 7)                  # the other order differs
    assert rel_err(other, ref) > 0.01


def test_regularize_kernel_applies_kernel_dropout_last_and_only_in_training():
    k = randk((4, 300), 6, scale=0.01)
    ref = squash_np(smooth_np(k.numpy(), 3), 0.001)
    assert torch.equal(regularize_kernel(k, lam=0.001, smooth_width=3, kernel_dropout=0.5),
                       regularize_kernel(k, lam=0.001, smooth_width=3))             # eval: no-op
    torch.manual_seed(1)
    got = regularize_kernel(k, lam=0.001, smooth_width=3, kernel_dropout=0.5, training=True).numpy()
    kept = got != 0
    assert rel_err(got[kept] * 0.5, ref[kept]) < 1e-12                 # survivors scaled by 1/(1-p)
    # 1200 taps, about 1100 nonzero in ref: Bernoulli(0.5) mean has std ~0.015; 0.1 is ~7 std
    assert abs(((ref != 0) & ~kept).sum() / (ref != 0).sum() - 0.5) < 0.1


def test_paper_settings_are_in_the_documented_ranges():
    assert PAPER_SETTINGS["lam"] == (0.001, 0.004)
    assert PAPER_SETTINGS["kernel_weight_decay"] == 0.0
    assert PAPER_SETTINGS["smooth_width"] % 2 == 1


# ----------------------------------------------------------------------------- metrics
WHITE = randk((32, 4096), 11)


def test_metrics_of_white_noise_match_the_closed_forms():
    tv = total_variation(WHITE).mean().item()
    assert tv == pytest.approx(math.sqrt(2), rel=0.03)                  # E|X-Y| / E|X| = sqrt 2
    hf = high_freq_fraction(WHITE, 0.1).mean().item()
    assert hf == pytest.approx(0.8, abs=0.02)                           # flat spectrum: (0.5-0.1)/0.5
    assert abs(spectral_decay(WHITE).mean().item()) < 0.2               # flat: slope 0


@pytest.mark.parametrize("width", [3, 7, 15])
def test_metrics_of_smoothed_noise_match_the_box_filter(width):
    s = smooth(WHITE, width)
    # the average of w i.i.d. taps has variance 1/w; a step changes it by (x_new - x_old)/w,
    # of variance 2/w^2, so E|step| / E|tap| = sqrt(2/w^2) / sqrt(1/w) = sqrt(2/w)
    assert total_variation(s).mean().item() == pytest.approx(math.sqrt(2 / width), rel=0.03)
    assert high_freq_fraction(s, 0.1).mean().item() == pytest.approx(
        box_filter_hf_fraction(width, 0.1), abs=0.02)


def test_metrics_order_white_noise_smoothed_and_ssm_kernels():
    smoothed = smooth(WHITE, 7)
    ssm = ssm_kernel(32, 4096, dtype=torch.float64)
    tv = [total_variation(k).mean().item() for k in (WHITE, smoothed, ssm)]
    hf = [high_freq_fraction(k).mean().item() for k in (WHITE, smoothed, ssm)]
    beta = [spectral_decay(k).mean().item() for k in (WHITE, smoothed, ssm)]
    assert tv[0] > tv[1] > tv[2], tv
    assert hf[0] > hf[1] > hf[2], hf
    assert beta[0] < beta[1] < beta[2], beta
    # the SSM kernel's modes all lie below 0.07 cycles per tap (docstring): above the 0.1 cutoff
    # only the tails of their spectral peaks remain
    assert high_freq_fraction(ssm).max().item() < 0.1


def test_metrics_are_scale_free_and_zero_for_a_zero_kernel():
    k = randk((2, 300), 12)
    for fn in (total_variation, high_freq_fraction, spectral_decay):
        assert torch.allclose(fn(k), fn(1000 * k), rtol=1e-9, atol=1e-12), fn.__name__
        assert float(fn(torch.zeros(100, dtype=torch.float64))) == 0.0
    m = smoothness_metrics(k[0])
    assert set(m) == {"total_variation", "high_freq_fraction", "spectral_decay"}
    assert math.isnan(smoothness_metrics(torch.ones(4))["spectral_decay"])
    assert smoothness_metrics(torch.ones(1))["total_variation"] == 0.0


# ----------------------------------------------------------------------------- SSM kernels
@given(st.integers(1, 4), st.sampled_from([2, 8, 16]), st.integers(1, 300), st.integers(0, 1000))
def test_s4d_kernel_matches_the_recurrence(H, state_dim, L, seed):
    p = s4d_init(H, state_dim, seed=seed, dtype=torch.float64)
    K = s4d_kernel(p["log_dt"], p["A_real"], p["A_imag"], p["C"], L)
    A = -np.exp(p["A_real"].numpy()) + 1j * p["A_imag"].numpy()
    C = p["C"][..., 0].numpy() + 1j * p["C"][..., 1].numpy()
    ref = ssm_impulse_response_np(np.exp(p["log_dt"].numpy()), A, C, L)
    assert K.shape == (H, L)
    assert rel_err(K.numpy(), ref) < 1e-10        # L products of |Abar| < 1 factors: tiny drift


def test_s4d_kernel_is_differentiable_and_ssm_kernel_is_seeded():
    p = {k: v.requires_grad_(True) for k, v in s4d_init(3, 8, dtype=torch.float64).items()}
    s4d_kernel(p["log_dt"], p["A_real"], p["A_imag"], p["C"], 40).pow(2).sum().backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in p.values())
    assert torch.equal(ssm_kernel(2, 50, seed=3), ssm_kernel(2, 50, seed=3))
    assert not torch.equal(ssm_kernel(2, 50, seed=3), ssm_kernel(2, 50, seed=4))
    dt = torch.exp(s4d_init(500, dt_min=1e-3, dt_max=1e-1)["log_dt"])
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6)


# ----------------------------------------------------------------------------- exercises
def test_rung6_exercises_accept_the_reference_and_reject_a_wrong_answer(capsys):
    assert check("squash", squash)
    assert check("smooth", smooth)
    assert not check("squash", lambda k, lam: torch.relu(k - lam))       # forgets negative taps
    assert not check("smooth", lambda k, w: torch.nn.functional.avg_pool1d(
        k.reshape(-1, 1, k.shape[-1]), w, 1, w // 2, count_include_pad=False).reshape(k.shape))
    assert "wrong" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad input
K = randk((2, 10), 0)


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: squash(K, -0.1), ValueError, "lam"),
    (lambda: squash(K, float("nan")), ValueError, "lam"),
    (lambda: squash(K, "0.1"), TypeError, "lam"),
    (lambda: squash(torch.arange(5), 0.1), TypeError, "k"),
    (lambda: squash(np.ones(5), 0.1), TypeError, "k"),
    (lambda: squash(torch.tensor(1.0), 0.1), ValueError, "k"),
    (lambda: smooth(K, 4), ValueError, "width"),
    (lambda: smooth(K, 0), ValueError, "width"),
    (lambda: smooth(K, -3), ValueError, "width"),
    (lambda: smooth(K, 11), ValueError, "width"),
    (lambda: smooth(K, 3.0), TypeError, "width"),
    (lambda: smooth(torch.ones(3, 0), 1), ValueError, "k"),
    (lambda: smooth(K.int(), 3), TypeError, "k"),
    (lambda: kernel_dropout(K, 1.0), ValueError, "p"),
    (lambda: kernel_dropout(K, -0.1), ValueError, "p"),
    (lambda: kernel_dropout(K, 1.5), ValueError, "p"),
    (lambda: kernel_dropout(K, 0.1, training=1), TypeError, "training"),
    (lambda: high_freq_fraction(K, 0.7), ValueError, "cutoff"),
    (lambda: spectral_decay(torch.ones(5)), ValueError, "k"),
    (lambda: total_variation(torch.ones(3, dtype=torch.int64)), TypeError, "k"),
    (lambda: smoothness_metrics(K), ValueError, "k"),
    (lambda: s4d_init(2, 7), ValueError, "state_dim"),
    (lambda: s4d_init(2, 8, dt_min=0.1, dt_max=0.01), ValueError, "dt_max"),
    (lambda: s4d_init(0), ValueError, "H"),
    (lambda: s4d_kernel(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 2), 5),
     ValueError, "C"),
    (lambda: ssm_kernel(2, 0), ValueError, "L"),
])
def test_bad_input_names_the_argument(call, exc, arg):
    with pytest.raises(exc, match=arg):
        call()


# ----------------------------------------------------------------------------- inits
def test_random_and_double_exp_inits():
    g = torch.Generator().manual_seed(0)
    k = random_init((8, 4096), generator=g)
    assert k.shape == (8, 4096) and k.std().item() == pytest.approx(0.002, rel=0.02)
    d = double_exp_init(4, 16, 1024, generator=torch.Generator().manual_seed(1))
    assert d.shape == (4, 16, 1024)
    energy = d.double().pow(2).sum(-1).mean(-1)                       # per channel, averaged over H
    # matched to the random init: sum k^2 ~ Lk * 0.002^2 (16 rows: std of the mean ~ 10%)
    assert torch.allclose(energy, torch.full_like(energy, 1024 * 0.002 ** 2), rtol=0.3)
    head, tail = d[..., :256].pow(2).sum(), d[..., -256:].pow(2).sum()
    assert head > 100 * tail                                            # decays along the taps
    assert double_exp_init(1, 1, 1).shape == (1, 1, 1)
    with pytest.raises(ValueError, match="channels"):
        double_exp_init(0, 1, 8)


# ----------------------------------------------------------------------------- issue 15 defects
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_kernel_never_scores_as_smooth(bad):
    """Issue 15 #3: total_variation and high_freq_fraction of [1, nan, 2] returned 0.0 (perfectly
    smooth); NaN/inf anywhere in a row must give NaN for every metric of that row only."""
    k = torch.tensor([1.0, bad, 2.0])
    assert math.isnan(float(total_variation(k)))
    assert math.isnan(float(high_freq_fraction(k)))
    m = smoothness_metrics(k)
    assert all(math.isnan(v) for v in m.values()), m
    long = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    long[1, 17] = bad
    for metric in (total_variation, high_freq_fraction, spectral_decay):
        out = metric(long)
        assert math.isnan(float(out[1])) and torch.isfinite(out[[0, 2]]).all(), metric.__name__
    assert all(math.isnan(v) for v in smoothness_metrics(long[1]).values())


def test_zero_kernel_still_scores_zero():
    z = torch.zeros(16)
    assert smoothness_metrics(z) == {"total_variation": 0.0, "high_freq_fraction": 0.0, "spectral_decay": 0.0}


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16, torch.complex64, "float32", None])
def test_ssm_kernel_refuses_other_dtypes(dtype):
    """Issue 15 #4: int64 gave all zeros, bool all True, float16/complex passed unchecked."""
    with pytest.raises(TypeError, match=r"dtype must be torch.float32 or torch.float64, got "):
        ssm_kernel(2, 16, dtype=dtype)
