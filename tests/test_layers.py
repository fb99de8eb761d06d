"""Rung 6: the LongConv layer and param_groups.

Oracle: the layer's output recomputed from its parameters in NumPy (moving average with
np.convolve, soft threshold by cases, the causal/anti-causal sums of oracles.py), then GELU, the
linear map and GLU written out by hand. float64 throughout, tolerance 1e-10 relative: the FFT's
rounding error is O(eps log N) ~ 1e-15, and GELU/GLU are Lipschitz with small constants, so any
real disagreement (a wrong lag, a missing D, the wrong kernel half) is O(1) and is caught.
"""
import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import bidirectional_conv_np, causal_conv_np, rel_err, smooth_np, squash_np

from longconv_edu.dispatch import backends, get_backend
from longconv_edu.layers import LongConv, SSMKernel
from longconv_edu.params import param_groups, tag_params
from longconv_edu.regularize import s4d_kernel


def erf_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def layer_np(layer: LongConv, u: np.ndarray) -> np.ndarray:
    """The layer's eval-mode output from its parameters, in NumPy (free kernels)."""
    B, H, L = u.shape
    C, lmax = layer.channels, layer.l_max
    raw = layer.raw_kernel.detach().double().numpy()
    n_dir = 2 if layer.bidirectional else 1
    raw = raw.reshape(C, H, n_dir, lmax)
    if layer.smooth_width is not None:
        raw = smooth_np(raw, layer.smooth_width)       # on the full length, then truncated
    k = squash_np(raw, layer.lam)[..., :L]
    D = layer.D.detach().double().numpy()
    ys = []
    for c in range(C):
        if layer.bidirectional:
            y = bidirectional_conv_np(u, np.concatenate([k[c, :, 0], k[c, :, 1]], axis=-1))
        else:
            y = causal_conv_np(u, k[c, :, 0])
        ys.append(y + D[c][None, :, None] * u)
    z = erf_gelu(np.stack(ys, axis=1)).reshape(B, C * H, L)
    W = layer.output_linear.weight.detach().double().numpy()
    b = layer.output_linear.bias.detach().double().numpy()
    o = np.einsum("oi,bil->bol", W, z) + b[None, :, None]          # (B, 2H, L)
    return o[:, :H] / (1.0 + np.exp(-o[:, H:]))                      # GLU: first half * sigmoid(second)


@st.composite
def layer_case(draw):
    H = draw(st.integers(1, 3))
    l_max = draw(st.one_of(st.just(1), st.integers(1, 40), st.sampled_from([16, 33])))
    L = draw(st.integers(1, l_max))
    widths = [None] + [w for w in (1, 3, 7) if w <= l_max]
    return dict(B=draw(st.integers(1, 2)), H=H, l_max=l_max, L=L,
                channels=draw(st.integers(1, 3)), smooth_width=draw(st.sampled_from(widths)),
                lam=draw(st.sampled_from([0.0, 0.001, 0.003])),
                bidirectional=draw(st.booleans()), seed=draw(st.integers(0, 1000)))


def build(case, **kw):
    c = dict(case)
    B, L = c.pop("B"), c.pop("L")
    H, l_max = c.pop("H"), c.pop("l_max")
    layer = LongConv(H, l_max, **c, **kw).double().eval()
    u = torch.randn(B, H, L, generator=torch.Generator().manual_seed(c["seed"] + 1), dtype=torch.float64)
    return layer, u


@given(layer_case())
def test_forward_matches_numpy_reference(case):
    layer, u = build(case, kernel_init="random")
    with torch.no_grad():                       # kernels near 0.002 vanish under lam; rescale so
        layer.raw_kernel.mul_(5.0)              # Squash keeps some taps and zeros others
        y = layer(u)
    assert y.shape == u.shape and y.dtype == torch.float64
    assert rel_err(y.numpy(), layer_np(layer, u.numpy())) < 1e-10


def test_kernel_is_the_regularised_parameter_and_has_no_dropout():
    layer = LongConv(3, 50, channels=2, lam=0.002, smooth_width=5, kernel_dropout=0.5, seed=0).double()
    layer.train()
    k = layer.kernel()
    assert k.shape == (2, 3, 50)
    ref = squash_np(smooth_np(layer.raw_kernel.detach().numpy(), 5), 0.002)
    assert rel_err(k.detach().numpy(), ref) < 1e-12
    # a shorter L: the first L taps of the full-length result (smoothing reads past L)
    assert rel_err(layer.kernel(20).detach().numpy(), ref[..., :20]) < 1e-12
    assert torch.equal(layer.kernel(), layer.kernel())                  # deterministic: no dropout
    bi = LongConv(2, 8, bidirectional=True, seed=0)
    assert bi.raw_kernel.shape == (1, 2, 16) and bi.kernel(5).shape == (1, 2, 10)


def test_kernel_dropout_acts_in_training_only():
    layer = LongConv(4, 64, lam=0.0, kernel_dropout=0.3, seed=0).double()
    u = torch.randn(2, 4, 64, dtype=torch.float64)
    layer.train()
    torch.manual_seed(0)
    a = layer(u)
    b = layer(u)
    assert not torch.allclose(a, b)
    layer.eval()
    assert torch.equal(layer(u), layer(u))


def test_layer_kernel_is_regularize_kernel_dropout_included(monkeypatch):
    """The layer runs regularize.regularize_kernel (the course's "layer's pipeline"), not a copy."""
    from longconv_edu import layers, regularize
    layer = LongConv(3, 40, channels=2, lam=0.001, smooth_width=5, kernel_dropout=0.4, seed=1).double()
    raw = layer.raw_kernel.detach()
    torch.manual_seed(5)
    got = layer._kernel(40, training=True)
    torch.manual_seed(5)
    ref = regularize.regularize_kernel(raw, lam=0.001, smooth_width=5, kernel_dropout=0.4, training=True)
    assert torch.equal(got.detach(), ref)                               # the same taps dropped
    ref_np = squash_np(smooth_np(raw.numpy(), 5), 0.001)                # the NumPy oracle
    kept = got.detach().numpy() != 0
    assert rel_err(got.detach().numpy()[kept] * (1 - 0.4), ref_np[kept]) < 1e-12
    assert 0.2 < ((ref_np != 0) & ~kept).sum() / (ref_np != 0).sum() < 0.6   # about p dropped
    calls = []
    monkeypatch.setattr(layers, "regularize_kernel", lambda k, **kw: calls.append(kw) or k)
    layer.kernel(7)
    assert calls == [dict(lam=0.001, smooth_width=5, kernel_dropout=0.4, training=False)]


def test_seed_fixes_kernel_and_D_while_output_linear_follows_the_global_generator():
    torch.manual_seed(1)
    a = LongConv(2, 8, seed=3)
    torch.manual_seed(2)
    b = LongConv(2, 8, seed=3)
    assert torch.equal(a.raw_kernel, b.raw_kernel) and torch.equal(a.D, b.D)
    assert not torch.equal(a.output_linear.weight, b.output_linear.weight)   # as documented
    torch.manual_seed(1)
    assert torch.equal(LongConv(2, 8, seed=3).output_linear.weight, a.output_linear.weight)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_impulse_reaches_only_later_outputs_when_causal(bidirectional):
    layer = LongConv(3, 64, channels=2, lam=0.0, kernel_dropout=0.0, bidirectional=bidirectional,
                     seed=1).double().eval()
    u = torch.randn(2, 3, 64, dtype=torch.float64)
    t0 = 37
    v = u.clone()
    v[:, :, t0] += 1.0
    with torch.no_grad():
        diff = (layer(v) - layer(u)).abs().amax(dim=(0, 1))
    assert diff[t0:].max() > 1e-3                                       # the impulse is felt ...
    if bidirectional:
        assert diff[:t0].max() > 1e-3                                   # ... also before t0
    else:
        assert diff[:t0].max() < 1e-12                                  # ... but never before t0


def test_d_skip_alone_when_the_kernel_is_squashed_away():
    layer = LongConv(3, 20, channels=2, lam=1.0, kernel_dropout=0.0, seed=2).double().eval()
    assert torch.count_nonzero(layer.kernel()) == 0
    u = torch.randn(2, 3, 20, dtype=torch.float64)
    z = torch.nn.functional.gelu(layer.D[None, :, :, None] * u[:, None]).reshape(2, 6, 20)
    o = layer.output_linear(z.transpose(1, 2)).transpose(1, 2)
    expect = o[:, :3] * torch.sigmoid(o[:, 3:])
    assert rel_err(layer(u).detach().numpy(), expect.detach().numpy()) < 1e-12
    with torch.no_grad():
        layer.D.zero_()                                                 # no kernel, no skip:
    y = layer(u)                                                        # output is constant in t
    assert torch.allclose(y, y[..., :1].expand_as(y), atol=1e-14)


def _backend_case(name):
    """(dtype, L, "") for the first float64/float32 dtype and test length the backend runs here on
    the CPU, or (None, None, why). Backends may restrict dtypes (float32-only kernels) or lengths
    (powers of two for butterfly forms), so a few common choices are tried, odd length first."""
    why = "no dtype/length tried"
    for dtype in (torch.float64, torch.float32):
        for L in (37, 32, 64, 256):
            try:
                fn = get_backend(name)
                fn(torch.ones(1, 2, L, dtype=dtype), torch.ones(2, L, dtype=dtype))
                return dtype, L, ""
            except (ValueError, TypeError) as e:      # this dtype or length is not supported
                why = f"{type(e).__name__}: {e}"
            except Exception as e:                     # missing GPU / toolkit / optional dependency
                return None, None, f"{name} cannot run here: {type(e).__name__}: {e}"
    return None, None, f"{name} runs none of the tried dtypes/lengths here (last: {why})"


@pytest.mark.parametrize("name", list(backends()))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_backend_gives_the_same_layer_output(name, bidirectional):
    dtype, L, why = _backend_case(name)
    if dtype is None:
        pytest.skip(why)
    # float64: FFT rounding ~1e-15; float32: eps 1.2e-7 times sums of up to L terms -> 1e-4
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    ref = LongConv(2, 256, channels=2, lam=0.001, smooth_width=3, kernel_dropout=0.0,
                   bidirectional=bidirectional, seed=3).to(dtype).eval()
    layer = copy.deepcopy(ref)
    layer.backend = name
    u = torch.randn(2, 2, L, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        ref.raw_kernel.mul_(5.0)
        layer.raw_kernel.copy_(ref.raw_kernel)
        assert rel_err(layer(u).double().numpy(), ref(u).double().numpy()) < tol
    assert LongConv(2, 40, backend=name).backend == name


def test_gradients_reach_the_kernel_and_stop_at_squashed_taps():
    layer = LongConv(2, 30, lam=0.003, kernel_dropout=0.0, seed=4).double()
    layer(torch.randn(3, 2, 30, dtype=torch.float64)).pow(2).sum().backward()
    g = layer.raw_kernel.grad
    alive = layer.raw_kernel.detach().abs() > 0.003
    assert torch.all(g[~alive] == 0) and torch.count_nonzero(g[alive]) == alive.sum()


def test_ssm_kernel_source():
    layer = LongConv(3, 32, channels=2, lam=0.0, kernel_dropout=0.0, kernel_source="ssm",
                     state_dim=8, seed=5).double().eval()
    assert not hasattr(layer, "raw_kernel") and isinstance(layer.ssm, SSMKernel)
    s = layer.ssm
    ref = s4d_kernel(s.log_dt, s.A_real, s.A_imag, s.C, 20).reshape(2, 3, 20)
    assert rel_err(layer.kernel(20).detach().numpy(), ref.detach().numpy()) < 1e-12
    u = torch.randn(1, 3, 20, dtype=torch.float64)
    layer(u).sum().backward()
    assert s.log_dt.grad is not None and s.C.grad is not None
    bi = LongConv(2, 16, bidirectional=True, kernel_source="ssm", state_dim=4, seed=0)
    assert bi(torch.randn(1, 2, 16)).shape == (1, 2, 16) and bi.kernel().shape == (1, 2, 32)


# ----------------------------------------------------------------------------- param_groups
def test_param_groups_give_kernels_their_own_lr_and_no_weight_decay():
    model = torch.nn.Sequential(LongConv(4, 16, kernel_lr=1e-4, seed=0),
                                LongConv(4, 16, kernel_lr=None, seed=1),
                                LongConv(4, 16, kernel_source="ssm", kernel_lr=1e-3, seed=2))
    groups = param_groups(model, lr=4e-3, weight_decay=0.05)
    by = {(g["lr"], g["weight_decay"]): {id(p) for p in g["params"]} for g in groups}
    assert by[(1e-4, 0.0)] == {id(model[0].raw_kernel)}
    assert by[(4e-3, 0.0)] == {id(model[1].raw_kernel)}                # None: the model's lr
    s = model[2].ssm
    assert by[(1e-3, 0.0)] == {id(s.log_dt), id(s.A_real), id(s.A_imag)}
    every = {id(p) for p in model.parameters()}
    assert set().union(*by.values()) == every and sum(len(v) for v in by.values()) == len(every)
    assert id(model[0].D) in by[(4e-3, 0.05)] and id(s.C) in by[(4e-3, 0.05)]
    assert model[0].raw_kernel._optim == {"lr": 1e-4, "weight_decay": 0.0}


def test_param_groups_survive_deepcopy_skip_frozen_and_drive_adamw():
    model = copy.deepcopy(LongConv(2, 8, kernel_lr=2e-4, seed=0))
    model.output_linear.bias.requires_grad_(False)
    groups = param_groups(model, 1e-2, 0.1)
    assert [g["lr"] for g in groups] == [1e-2, 2e-4]
    assert all(p is not model.output_linear.bias for g in groups for p in g["params"])
    opt = torch.optim.AdamW(groups)
    before = model.raw_kernel.detach().clone()
    model(torch.randn(2, 2, 8)).pow(2).sum().backward()
    opt.step()
    step = (model.raw_kernel.detach() - before).abs()
    assert step.max() <= 2e-4 * 1.01                                    # Adam moves <= lr per step


def test_tag_params_refuses_a_misspelt_name_naming_it_and_tags_nothing():
    layer = LongConv(2, 8, seed=0)
    with pytest.raises(ValueError, match=r"names must name parameters of module; LongConv has no "
                                         r"attribute 'raw_kernal' \(its own parameters: raw_kernel, D\)"):
        tag_params(layer, ["D", "raw_kernal"], lr=1e-3)
    assert not hasattr(layer.D, "_optim") and "D" not in layer._param_optim   # all or nothing


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, exc, arg", [
    (dict(d_model=0), ValueError, "d_model"),
    (dict(l_max=0), ValueError, "l_max"),
    (dict(channels=0), ValueError, "channels"),
    (dict(lam=-0.001), ValueError, "lam"),
    (dict(smooth_width=4), ValueError, "smooth_width"),
    (dict(smooth_width=0), ValueError, "smooth_width"),
    (dict(smooth_width=17), ValueError, "smooth_width"),
    (dict(kernel_dropout=1.0), ValueError, "kernel_dropout"),
    (dict(kernel_dropout=-0.1), ValueError, "kernel_dropout"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(bidirectional="yes"), TypeError, "bidirectional"),
    (dict(backend="nope"), ValueError, "backend"),
    (dict(kernel_init="zeros"), ValueError, "kernel_init"),
    (dict(kernel_source="mlp"), ValueError, "kernel_source"),
    (dict(kernel_lr=0.0), ValueError, "kernel_lr"),
])
def test_bad_constructor_arguments(kw, exc, arg):
    args = dict(d_model=2, l_max=16)
    args.update(kw)
    with pytest.raises(exc, match=arg):
        LongConv(args.pop("d_model"), args.pop("l_max"), **args)


LAYER = LongConv(2, 16, seed=0)


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: LAYER(torch.randn(2, 16)), ValueError, "u"),
    (lambda: LAYER(torch.randn(1, 3, 16)), ValueError, "d_model"),
    (lambda: LAYER(torch.randn(1, 2, 17)), ValueError, "l_max"),
    (lambda: LAYER(torch.randn(1, 2, 0)), ValueError, "L"),
    (lambda: LAYER(torch.ones(1, 2, 16, dtype=torch.int64)), TypeError, "u"),
    (lambda: LAYER(torch.randn(1, 2, 16, dtype=torch.float64)), TypeError, "u"),
    (lambda: LAYER.kernel(17), ValueError, "L"),
    (lambda: param_groups(LAYER, lr=-1.0, weight_decay=0.0), ValueError, "lr"),
    (lambda: param_groups("model", lr=1.0, weight_decay=0.0), TypeError, "model"),
    (lambda: tag_params(LAYER, ["D"], lr=-1.0), ValueError, "lr"),
    (lambda: tag_params(LAYER, ["output_linear"]), TypeError, "names"),
])
def test_bad_forward_and_helper_input(call, exc, arg):
    with pytest.raises(exc, match=arg):
        call()


def test_double_exp_init_layer_matches_numpy_reference():
    layer = LongConv(3, 64, channels=4, lam=0.001, kernel_init="double_exp", seed=7).double().eval()
    assert layer.raw_kernel.shape == (4, 3, 64)
    u = torch.randn(2, 3, 50, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(layer(u).numpy(), layer_np(layer, u.numpy())) < 1e-10


@pytest.mark.parametrize("backend", ["fft", "numba", "butterfly"])
@pytest.mark.parametrize("B", [0, 2])
def test_empty_batch_through_the_layer(backend, B):
    """Issue 15 #5, through LongConv: B = 0 failed inside the fft backend (MKL's "Inconsistent
    configuration parameters"); the layer must give the (B, H, L) output, empty or not, with
    gradients reaching the input and the kernel (values: test_forward_matches_numpy_reference)."""
    layer = LongConv(3, 16, backend=backend, seed=0).double().eval()
    u = torch.randn(B, 3, 16, dtype=torch.float64, requires_grad=True)
    y = layer(u)
    assert y.shape == (B, 3, 16)
    y.sum().backward()
    assert u.grad.shape == u.shape
    assert layer.raw_kernel.grad is not None and torch.isfinite(layer.raw_kernel.grad).all()
