"""Rung 8: the learned butterfly (longconv_edu.learned) against independent references.

Oracles and tolerances (relative to the reference's max magnitude):
* At initialisation the layer must be the causal convolution: compared with numpy.convolve
  (tests/oracles.causal_conv_np) in float64 to 1e-10 and float32 to 2e-4. The Monarch DFT is
  two or three small dense matmuls plus a twiddle multiply; its rounding error grows like
  eps * (n_1 + n_2) at worst, ~ 1e-13 in float64 for the sizes here and ~ 5e-5 in float32 with
  N <= 600, so the tolerances leave headroom yet fail on any index or padding mistake (O(1)).
* Away from initialisation (perturbed blocks) the output must be what the documented formula
  gives with a dense N x N matrix built entry by entry in numpy (oracles.monarch_matrix_np):
  float64, 1e-10.
* Gradients with respect to the blocks: torch.autograd.gradcheck (finite differences, float64).
"""
from copy import deepcopy

import numpy as np
import pytest
import torch
from cases import CONV_TOL, make
from hypothesis import given
from hypothesis import strategies as st
from oracles import causal_conv_np, dft_matrix_np, monarch_matrix_np, rel_err

from longconv_edu import fft_conv, long_conv
from longconv_edu.layers import LongConv
from longconv_edu.learned import (
    LearnedButterflyConv,
    block_drift,
    dft_blocks,
    learned_butterfly_conv,
    learned_long_conv,
)
from longconv_edu.params import param_groups

TOL = CONV_TOL


# ----------------------------------------------------------------------------- equality at init
@given(st.integers(1, 3), st.integers(1, 3),
       st.one_of(st.just(1), st.integers(1, 300), st.sampled_from([2, 32, 64, 100, 128])),
       st.integers(0, 2**31 - 1), st.sampled_from([torch.float64, torch.float32]))
def test_at_init_equals_causal_conv(B, H, L, seed, dtype):
    """The functional form with blocks=None (per-channel DFT blocks) is the causal conv."""
    Lk = 1 + seed % L
    u, k = make(B, H, L, Lk, seed, dtype)
    y = learned_butterfly_conv(u, k)
    assert y.shape == u.shape and y.dtype == dtype
    assert rel_err(y.numpy(), causal_conv_np(u.double().numpy(), k.double().numpy())) < TOL[dtype]


@pytest.mark.parametrize("inverse", ["tied", "learned"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L, l_max, factors", [(64, 64, None), (50, 64, (4, 32)), (1, 1, None),
                                               (37, 37, None), (64, 64, (4, 4, 8))])
def test_module_at_init_equals_fft_conv(inverse, dtype, L, l_max, factors):
    u, k = make(2, 3, L, L, seed=L, dtype=dtype)
    layer = LearnedButterflyConv(3, l_max, factors=factors, inverse_mode=inverse, dtype=dtype)
    ref = causal_conv_np(u.double().numpy(), k.double().numpy())
    assert rel_err(layer(u, k).detach().numpy(), ref) < TOL[dtype]
    assert rel_err(fft_conv(u, k).numpy(), ref) < TOL[dtype]   # the baseline agrees with the oracle
    for d in layer.drift().values():
        assert d.shape == (3,) and float(d.max()) < 1e-6


def test_dft_blocks_are_the_dft():
    for n in (1, 2, 5, 8, 16):
        (F,) = dft_blocks((n,), dtype=torch.float64)[:1]
        assert np.abs(F.numpy() - dft_matrix_np(n)).max() < 1e-12
    shared, per = dft_blocks((4, 8), dtype=torch.float64), dft_blocks((4, 8), 3, torch.float64)
    assert per[1].shape == (3, 8, 8) and torch.equal(per[1][2], shared[1])


def test_oracle_matrix_is_the_dft_at_init():
    """The numpy Monarch formula with DFT blocks is the DFT: the oracle below is trustworthy."""
    M = monarch_matrix_np(dft_matrix_np(4), dft_matrix_np(6))
    assert np.abs(M - dft_matrix_np(24)).max() < 1e-12


# ----------------------------------------------------------------------------- away from init
@pytest.mark.parametrize("inverse", ["tied", "learned"])
@pytest.mark.parametrize("L, factors", [(12, (4, 6)), (16, (8, 4)), (5, (2, 5))])
def test_perturbed_blocks_match_dense_matrix_oracle(inverse, L, factors):
    """With blocks moved off the DFT the layer computes Re(conj(M_inv) (M u * M k)) / N exactly."""
    H = 2
    layer = LearnedButterflyConv(H, L, factors=factors, inverse_mode=inverse, init_noise=0.3,
                                 dtype=torch.float64, seed=7)
    u, k = make(3, H, L, L - 1 if L > 1 else 1, seed=11)
    y = layer(u, k).detach().numpy()
    N = int(np.prod(factors))
    fb = [b.detach().numpy() for b in layer.blocks("forward")]
    ib = [b.detach().numpy() for b in layer.blocks("inverse")]
    up = np.concatenate([u.numpy(), np.zeros((3, H, N - L))], axis=-1)
    kp = np.concatenate([k.numpy(), np.zeros((H, N - k.shape[1]))], axis=-1)
    ref = np.zeros((3, H, L))
    for h in range(H):
        M = monarch_matrix_np(fb[0][h], fb[1][h])
        Minv = monarch_matrix_np(ib[0][h], ib[1][h])
        z = (up[:, h] @ M.T) * (M @ kp[h])                    # (B, N): M u * M k
        ref[:, h] = (np.conj(Minv) @ z.T).T.real[:, :L] / N
    assert rel_err(y, ref) < 1e-10
    assert rel_err(y, fft_conv(u, k).numpy()) > 1e-3           # and it really is no longer the FFT
    if inverse == "tied":
        assert all(np.array_equal(a, b) for a, b in zip(fb, ib))


def test_drift_is_relative_frobenius_distance():
    layer = LearnedButterflyConv(2, 8, factors=(4, 4), init_noise=0.1, dtype=torch.float64, seed=3)
    b0 = layer.blocks()[0].detach().numpy()
    want = np.linalg.norm(b0 - dft_matrix_np(4), axis=(1, 2)) / np.linalg.norm(dft_matrix_np(4))
    got = layer.drift()["forward[0] (4x4)"].numpy()
    assert np.abs(got - want).max() < 1e-12 and 0.05 < got.mean() < 0.2
    assert block_drift(dft_blocks((4, 8), dtype=torch.float64))[1].item() < 1e-12


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("inverse", ["tied", "learned"])
def test_gradients_reach_the_blocks(inverse):
    layer = LearnedButterflyConv(2, 6, factors=(3, 4), inverse_mode=inverse, dtype=torch.float64,
                                 init_noise=0.05, seed=1)
    u, k = make(2, 2, 6, 6, seed=2)
    k.requires_grad_(True)
    params = list(layer.parameters())
    assert len(params) == (4 if inverse == "learned" else 2)

    # gradcheck on the module's own parameters, via a pure function of their values
    def pure(*ws):
        fwd = [torch.view_as_complex(w) for w in ws[:2]]
        inv = [torch.view_as_complex(w) for w in ws[2:]] or None
        return learned_butterfly_conv(u, k, fwd, inverse_blocks=inv)
    ws = [p.detach().clone().requires_grad_(True) for p in params]
    assert torch.autograd.gradcheck(pure, tuple(ws))
    layer(u, k).square().sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0
    assert k.grad is not None and k.grad.abs().max() > 0


def test_a_few_adam_steps_move_the_blocks_and_fit_better():
    """Fit y = a target no fixed FFT conv with this k gives; the blocks drift and the loss drops."""
    torch.manual_seed(0)
    layer = LearnedButterflyConv(2, 16, dtype=torch.float64)
    u, k = make(8, 2, 16, 16, seed=5)
    target = torch.tanh(fft_conv(u, k)) * 2
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (layer(u, k) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert min(float(d.min()) for d in layer.drift().values()) > 1e-3


def test_block_parameters_are_tagged_for_their_own_lr():
    layer = LearnedButterflyConv(4, 32, inverse_mode="learned", block_lr=5e-4)
    for p in layer.parameters():
        assert p._optim == {"lr": 5e-4, "weight_decay": 0.0}
        assert p.dtype == torch.float32 and p.shape[-1] == 2 and p.shape[0] == 4


def test_registered_backend_runs_at_dft_init():
    u, k = make(2, 3, 40, 40, seed=9)
    y = long_conv(u, k, backend="learned_butterfly")
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    y3 = long_conv(u, k, backend="learned_butterfly", factors=(2, 4, 10))
    assert rel_err(y3.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10


# ----------------------------------------------------------------------------- bad input
C64 = [b for b in dft_blocks((4, 4), 2, torch.float32)]
U, K = make(1, 2, 8, 8, seed=0, dtype=torch.float32)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(factors=(2, 4)), ValueError, r"factors must multiply to an FFT size N >= 15 .*got \(2, 4\)"),
    (dict(factors=(16,)), ValueError, r"factors must hold 2 or 3 sizes"),
    (dict(factors=16), TypeError, r"factors must be a tuple"),
    (dict(factors=(4, 4.0)), TypeError, r"factors\[1\] must be an int"),
    (dict(inverse_mode="both"), ValueError, r"inverse_mode must be one of 'tied', 'learned'; got 'both'"),
    (dict(init_noise=-0.1), ValueError, r"init_noise must be >= 0.0"),
    (dict(block_lr=0.0), ValueError, r"block_lr must be > 0.0"),
    (dict(dtype=torch.float16), TypeError, r"dtype must be torch.float32 or torch.float64, got torch.float16"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LearnedButterflyConv(2, 8, **kwargs)


@pytest.mark.parametrize("u, k, exc, match", [
    (U.double(), K.double(), TypeError,
     r"u has dtype torch.float64 but the blocks are torch.complex64.*\.to\(torch.float64\)"),
    (torch.randn(1, 2, 9), torch.randn(2, 9), ValueError, r"u has length L = 9 .* l_max = 8"),
    (torch.randn(1, 3, 8), torch.randn(3, 8), ValueError, r"u has H = 3 channels .* d_model = 2"),
    (U, torch.randn(2, 9), ValueError, r"k must have length 1 <= Lk <= L = 8"),
    (U[0], K, ValueError, r"u must be 3-D"),
])
def test_module_bad_input(u, k, exc, match):
    with pytest.raises(exc, match=match):
        LearnedButterflyConv(2, 8)(u, k)


@pytest.mark.parametrize("blocks, extra, exc, match", [
    ([C64[0], torch.zeros(2, 4, 5, dtype=torch.complex64)], {}, ValueError,
     r"blocks\[1\] must be square .* got shape \(2, 4, 5\)"),
    ([C64[0].to(torch.complex128), C64[1]], {}, TypeError,
     r"blocks\[0\] must have dtype torch.complex64, got torch.complex128"),
    ([C64[0].real, C64[1]], {}, TypeError, r"blocks\[0\] must have dtype torch.complex64, got torch.float32"),
    ([C64[0], C64[1][:1]], {}, ValueError, r"blocks\[1\] has 1 channel blocks .* H = 2"),
    ([C64[0]], {}, ValueError, r"blocks must hold 2 or 3 blocks"),
    (C64[0], {}, TypeError, r"blocks must be a list of complex tensors"),
    ([C64[0][:, :2, :2], C64[1]], {}, ValueError,
     r"blocks have sizes \(2, 4\), an FFT size N = 8; .* N >= L \+ Lk - 1 = 15"),
    (C64, dict(factors=(2, 8)), ValueError, r"factors \(2, 8\) disagree with the block sizes \(4, 4\)"),
    (C64, dict(inverse_blocks=[C64[0], torch.zeros(2, 2, 2, dtype=torch.complex64)]), ValueError,
     r"inverse_blocks have sizes \(4, 2\) but blocks have \(4, 4\)"),
    (None, dict(factors=(3, 4)), ValueError, r"factors must multiply to an FFT size N >= 15"),
    (None, dict(inverse_blocks=C64), ValueError, r"inverse_blocks needs blocks too"),
])
def test_functional_bad_blocks(blocks, extra, exc, match):
    with pytest.raises(exc, match=match):
        learned_butterfly_conv(U, K, blocks, **extra)


# ----------------------------------------------------------------------------- the LongConv option
@pytest.mark.parametrize("bidirectional, channels", [(False, 1), (True, 1), (False, 2)])
def test_longconv_option_at_init_equals_fixed_layer(bidirectional, channels):
    """Same seed, eval mode: the layer with the learned butterfly is the FFT layer (float64)."""
    kw = dict(channels=channels, bidirectional=bidirectional, seed=3, lam=0.0)
    fixed = LongConv(4, 24, **kw).double().eval()
    learned = learned_long_conv(4, 24, **kw).double().eval()
    missing, unexpected = learned.load_state_dict(fixed.state_dict(), strict=False)  # same weights
    assert all(m.startswith("conv.") for m in missing) and not unexpected
    assert sum(p.numel() for p in learned.conv.parameters()) == channels * 4 * 2 * (8 * 8 + 8 * 8)   # N = 64 = 8 x 8
    u = torch.randn(3, 4, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # the blocks were built in float32 (rounding 6e-8 per entry) before .double(): hence 1e-6
    assert rel_err(learned(u).detach().numpy(), fixed(u).detach().numpy()) < 1e-6
    learned.train()(u).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in learned.conv.parameters())


def test_param_groups_give_the_blocks_their_own_lr():
    model = learned_long_conv(4, 32, kernel_lr=1e-4, inverse_mode="learned", block_lr=2e-3, seed=0)
    groups = param_groups(model, lr=4e-3, weight_decay=0.05)
    by_lr = {g["lr"]: g for g in groups}
    assert set(by_lr) == {4e-3, 1e-4, 2e-3}
    blocks = {id(p) for p in model.conv.parameters()}
    assert len(blocks) == 4 and {id(p) for p in by_lr[2e-3]["params"]} == blocks
    assert by_lr[2e-3]["weight_decay"] == 0.0 and by_lr[4e-3]["weight_decay"] == 0.05
    assert not blocks & {id(p) for p in by_lr[4e-3]["params"]}
    copy = param_groups(deepcopy(model), lr=4e-3, weight_decay=0.05)   # tags survive deepcopy
    assert sorted(len(g["params"]) for g in copy) == sorted(len(g["params"]) for g in groups)


def test_longconv_option_bad_input():
    with pytest.raises(TypeError, match=r"conv must be None or a torch.nn.Module computing conv\(u, k\), got str"):
        LongConv(4, 8, conv="yes")
    with pytest.raises(ValueError, match=r"inverse_mode must be one of 'tied', 'learned'; got 'x'"):
        learned_long_conv(4, 8, inverse_mode="x")
    with pytest.raises(ValueError, match=r"block_lr must be > 0.0"):
        learned_long_conv(4, 8, block_lr=-1.0)


# ----------------------------------------------------------------------------- cost parity
@pytest.mark.parametrize("B, H, L, factors", [(2, 4, 64, None), (1, 3, 100, None), (2, 2, 40, (2, 4, 10))])
def test_flops_equal_the_fixed_butterfly(B, H, L, factors):
    """Counted by torch's FlopCounterMode (every matmul, 2 flops per multiply-add): the learned
    transform does exactly the matmuls of butterfly_conv, and they are io_model's matmul count
    (8 real flops per complex multiply-add there, 2 here: a factor 4)."""
    from torch.utils.flop_counter import FlopCounterMode

    from longconv_edu.butterfly import butterfly_conv
    from longconv_edu.fft import monarch_factors
    from longconv_edu.io_model import monarch_flops
    u, k = make(B, H, L, L, seed=0, dtype=torch.float32)
    counts = []
    for fn in (butterfly_conv, learned_butterfly_conv):
        with FlopCounterMode(display=False) as fc:
            fn(u, k, factors=factors)
        counts.append(fc.get_total_flops())
    assert counts[0] == counts[1] > 0
    N = 1 << (2 * L - 1).bit_length()
    fs = monarch_factors(N) if factors is None else factors
    N = int(np.prod(fs))
    matmul_flops = monarch_flops(N, fs) - 6 * N * (len(fs) - 1)        # drop the twiddle products
    assert 4 * counts[1] == (2 * B * H + H) * matmul_flops             # u, y per row; k per channel


def test_causal_at_init_but_not_once_the_blocks_move():
    """Documented behaviour: only the exact DFT keeps the zero-padded product causal."""
    u = torch.zeros(1, 1, 32, dtype=torch.float64)
    u[0, 0, 20] = 1.0
    k = torch.randn(1, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    leak = []
    for noise in (0.0, 0.1):
        y = LearnedButterflyConv(1, 32, init_noise=noise, dtype=torch.float64)(u, k).detach()[0, 0]
        leak.append(float(y[:20].abs().max() / y[20:].abs().max()))
    assert leak[0] < 1e-12 and leak[1] > 1e-3


def test_training_harness_option_same_function_at_init():
    """models.ModelConfig(learned_butterfly=True): same seed -> same weights, same outputs (eval)."""
    from longconv_edu.lab.models import build_model
    kw = dict(d_input=1, n_classes=10, l_max=16, d_model=8, n_layers=2, backend="butterfly", seed=4)
    fixed, learned = build_model(**kw).eval(), build_model(**kw, learned_butterfly=True).eval()
    assert len([m for m in learned.modules() if isinstance(m, LearnedButterflyConv)]) == 2
    x = torch.rand(3, 16, 1, generator=torch.Generator().manual_seed(0))
    assert rel_err(learned(x).detach().numpy(), fixed(x).detach().numpy()) < 1e-5
    with pytest.raises(TypeError, match=r"learned_butterfly must be True or False"):
        build_model(**kw, learned_butterfly=1)


# ----------------------------------------------------------------------------- issue 15 defects
@pytest.mark.parametrize("inverse_mode", ["tied", "learned"])
def test_double_is_float64_accurate(inverse_mode):
    """Issue 15 #10: LearnedButterflyConv(...).double() built its DFT blocks in complex64 and was
    only float32-accurate (~1e-7); after .double() the blocks are the complex128 DFT to 1e-15 and
    the convolution matches the float64 oracle to 1e-13. A learned deviation is carried over."""
    layer = LearnedButterflyConv(3, 64, factors=(16, 8), inverse_mode=inverse_mode).double()
    for which in ("forward", "inverse"):
        for b, n in zip(layer.blocks(which), (16, 8)):
            assert b.dtype == torch.complex128
            assert np.abs(b.detach().numpy() - dft_matrix_np(n)).max() < 1e-14
    u, k = make(2, 3, 64, 64, seed=1)
    assert rel_err(layer(u, k).detach().numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-13
    noisy = LearnedButterflyConv(3, 64, factors=(16, 8), init_noise=0.1, seed=2)
    before = [b.detach().clone() for b in noisy.blocks()]
    after = noisy.double().blocks()
    for b0, b1 in zip(before, after):
        assert (b1.detach() - b0.to(torch.complex128)).abs().max() < 1e-6      # same blocks, upcast


def test_old_inverse_keyword_still_works_with_a_warning():
    with pytest.warns(FutureWarning, match=r"inverse= is now inverse_mode="):
        layer = LearnedButterflyConv(2, 8, inverse="learned")
    assert layer.inverse_mode == "learned" and layer.inverse_blocks is not None
    with pytest.raises(TypeError, match=r"inverse_mode must be 'tied' or 'learned', got inverse=True"):
        LearnedButterflyConv(2, 8, inverse=True)


def test_block_dtype_hint_never_suggests_dropping_the_imaginary_part():
    """Issue 15 #10: check_blocks' hint for complex blocks said "cast with .float()", which would
    drop the imaginary part; the hint now says .to(<the complex dtype>)."""
    u, k = make(1, 2, 8, 8, seed=0, dtype=torch.float32)
    blocks = dft_blocks((4, 4), 2, torch.float64)                      # complex128 for float32 input
    with pytest.raises(TypeError, match=r"blocks\[0\] must have dtype torch.complex64, got torch.complex128 "
                                        r"\(convert with .to\(torch.complex64\)\)$") as info:
        learned_butterfly_conv(u, k, blocks)
    assert ".float()" not in str(info.value)


def test_learned_layer_double_is_float64_accurate():
    """Issue 15 #10, through the layer: learned_long_conv(...).double() convolves to float64 accuracy."""
    layer = learned_long_conv(2, 64, seed=0).double().eval()
    blocks = layer.conv.blocks()
    assert all(np.abs(b.detach().numpy() - dft_matrix_np(b.shape[-1])).max() < 1e-14 for b in blocks)


def test_learned_layer_has_no_length_ceiling():
    """Issue 15 #6, through the layer: learned_long_conv refused l_max > 2^17 ("raise max_factor",
    an option it does not take); now its Monarch factors grow past 64."""
    layer = learned_long_conv(1, 2 ** 18)
    assert layer.conv.factors == (128, 64, 64) and layer.conv.fft_size == 2 ** 19
