"""Rung 5b: the fused Numba CPU kernel (longconv_edu.kernels.cpu) against independent oracles.

Oracles: numpy.convolve and explicit sums over lags (tests/oracles.py) for the forward and both
gradients, numpy.fft.rfft for the kernel's own FFT, torch.autograd.gradcheck (finite differences)
for the backward, and fft_conv's autograd for the layer-level agreement.

Tolerances, relative to the largest magnitude of the reference:
* float64: 1e-10. The FFT's rounding error grows like eps * log2(N) with eps = 1.1e-16 (about
  2e-15 at N = 64K); 1e-10 leaves orders of magnitude of room yet fails on any index, twiddle,
  pairing or scaling mistake, which all give errors of order 1.
* float32: 2e-5. Unit roundoff 6e-8 times log2(N) <= 17 stages times a small constant is about
  1e-6; measured errors are 1e-7 to 4e-7. The gradients of k sum B*L products, which adds at most
  another log factor.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from cases import EDGE_LENGTHS, conv_case, make
from hypothesis import given
from hypothesis import strategies as st
from oracles import causal_conv_grads_np, causal_conv_np, rel_err

from longconv_edu import fft_conv, long_conv
from longconv_edu.fft import fft_size
from longconv_edu.kernels import cpu
from longconv_edu.kernels.cpu import cpu_conv, cpu_rfft, kernel_spectrum, profile_row, stage_plan

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
DTYPES = st.sampled_from([torch.float64, torch.float32])


@given(conv_case(edge_lengths=EDGE_LENGTHS + (1025,)), DTYPES)
def test_forward_matches_numpy_convolve(case, dtype):
    u, k, _ = make(*case, dtype=dtype, grad_output=True)
    y = cpu_conv(u, k)
    assert y.shape == u.shape and y.dtype == dtype
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < TOL[dtype]


@given(conv_case(edge_lengths=EDGE_LENGTHS + (1025,)), DTYPES)
def test_backward_matches_explicit_sums_and_fft_conv_autograd(case, dtype):
    u, k, g = make(*case, dtype=dtype, grad_output=True)
    u.requires_grad_(True)
    k.requires_grad_(True)
    cpu_conv(u, k).backward(g)
    ref_u, ref_k = causal_conv_grads_np(u.detach().numpy(), k.detach().numpy(), g.numpy())
    assert u.grad.dtype == dtype and k.grad.shape == k.shape
    assert rel_err(u.grad.numpy(), ref_u) < TOL[dtype]
    assert rel_err(k.grad.numpy(), ref_k) < TOL[dtype]
    u2 = u.detach().double().requires_grad_(True)
    k2 = k.detach().double().requires_grad_(True)
    fft_conv(u2, k2).backward(g.double())
    assert rel_err(u.grad.numpy(), u2.grad.numpy()) < TOL[dtype]
    assert rel_err(k.grad.numpy(), k2.grad.numpy()) < TOL[dtype]


@given(conv_case(max_L=100))
def test_gradient_of_one_input_only(case):
    """needs_input_grad: with only u (or only k) trainable, the other gradient is not computed."""
    u, k, g = make(*case, grad_output=True)
    ref_u, ref_k = causal_conv_grads_np(u.numpy(), k.numpy(), g.numpy())
    uu = u.clone().requires_grad_(True)
    cpu_conv(uu, k).backward(g)
    assert rel_err(uu.grad.numpy(), ref_u) < 1e-10
    kk = k.clone().requires_grad_(True)
    cpu_conv(u, kk).backward(g)
    assert rel_err(kk.grad.numpy(), ref_k) < 1e-10


def test_gradcheck_finite_differences():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 2, 9, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 6, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(cpu_conv, (u, k))


@pytest.mark.parametrize("L", [4096, 8193, 16384, 32768])
def test_long_rows_use_every_stage_kind(L):
    """L = 16K and 32K reach the long-span stages (span >= 1024), for an even and an odd log2.

    Reference: numpy's own FFT (pocketfft, independent of torch and of this kernel) in float64;
    numpy.convolve would take seconds per row at these lengths.
    """
    u, k, _ = make(1, 2, L, L, seed=L, grad_output=True)
    n = 2 * L
    ref = np.fft.irfft(np.fft.rfft(u.numpy(), n=n) * np.fft.rfft(k.numpy(), n=n), n=n)[..., :L]
    assert rel_err(cpu_conv(u, k).numpy(), ref) < 1e-10
    assert rel_err(cpu_conv(u.float(), k.float()).numpy(), ref) < TOL[torch.float32]


def complex_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@given(st.integers(1, 3), st.integers(1, 600), st.integers(0, 2**31 - 1), DTYPES)
def test_own_fft_matches_numpy_rfft(R, Lx, seed, dtype):
    x = torch.randn(R, Lx, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    n = max(8, fft_size(Lx))
    ref = np.fft.rfft(x.double().numpy(), n=n)
    X = cpu_rfft(x, n)
    assert X.shape == (R, n // 2 + 1)
    assert complex_err(X.numpy(), ref) < TOL[dtype]
    assert complex_err(kernel_spectrum(x, Lx).numpy(), ref) < TOL[dtype]


def test_the_kernel_uses_the_one_fft_size_with_at_least_8_points():
    assert not hasattr(cpu, "fft_size") or cpu.fft_size is fft_size       # no second copy
    sizes = [kernel_spectrum(torch.ones(1, 1), L).shape[-1] for L in (1, 2, 3, 4, 5, 1024, 1025)]
    assert sizes == [5, 5, 5, 5, 9, 1025, 2049]


def test_registered_backend_and_non_contiguous_input():
    u, k, _ = make(2, 3, 50, 20, seed=1, grad_output=True)
    ref = causal_conv_np(u.numpy(), k.numpy())
    assert rel_err(long_conv(u, k, backend="numba").numpy(), ref) < 1e-10
    ut = u.transpose(0, 1).contiguous().transpose(0, 1)          # same values, strided
    kt = torch.cat([k, k], dim=1)[:, ::2]                            # every other column
    assert not ut.is_contiguous() and not kt.is_contiguous()
    assert rel_err(cpu_conv(ut, kt).numpy(),
                   causal_conv_np(u.numpy(), kt.contiguous().numpy())) < 1e-10


def test_nan_stays_in_its_row():
    u, k, _ = make(2, 2, 16, 16, seed=3, grad_output=True)
    u[1, 0, 5] = float("nan")
    y = cpu_conv(u, k)
    assert torch.isnan(y[1, 0]).all()
    assert not torch.isnan(y[0]).any() and not torch.isnan(y[1, 1]).any()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("u, k, exc, name", [
    (torch.ones(1, 1, 4, dtype=torch.int64), torch.ones(1, 2, dtype=torch.int64), TypeError, "u"),
    (torch.ones(1, 1, 4, dtype=torch.float16), torch.ones(1, 2, dtype=torch.float16), TypeError, "u"),
    (torch.ones(1, 1, 4), torch.ones(1, 2, dtype=torch.float64), TypeError, "k"),
    (torch.ones(1, 1, 4), torch.ones(1, 5), ValueError, "k"),
    (torch.ones(1, 4), torch.ones(1, 2), ValueError, "u"),
    (torch.ones(1, 2, 4), torch.ones(3, 2), ValueError, "k"),
    (torch.ones(1, 1, 4, device="meta"), torch.ones(1, 2, device="meta"), ValueError, "u"),
    (np.ones((1, 1, 4)), torch.ones(1, 2), TypeError, "u"),
])
def test_bad_input_names_the_argument(u, k, exc, name):
    with pytest.raises(exc, match=rf"\b{name}\b"):
        cpu_conv(u, k)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        long_conv(u, k, backend="numba")


def test_bad_input_to_the_fft_helpers():
    with pytest.raises(ValueError, match=r"\bn\b"):
        cpu_rfft(torch.ones(2, 3), 12)
    with pytest.raises(ValueError, match=r"\bn\b"):
        cpu_rfft(torch.ones(2, 3), 4)
    with pytest.raises(ValueError, match=r"\bx\b"):
        cpu_rfft(torch.ones(2, 9), 16)
    with pytest.raises(TypeError, match=r"\bL\b"):
        fft_size(2.0)
    with pytest.raises(ValueError, match=r"k must have length 1 <= Lk <= L = 4, got Lk=9 \(shape \(2, 9\)\)"):
        kernel_spectrum(torch.ones(2, 9), 4)
    with pytest.raises(ValueError, match=r"k must have length 1 <= Lk <= L = 4, got Lk=0"):
        kernel_spectrum(torch.ones(2, 0), 4)


@pytest.mark.parametrize("L", [1, 4, 5, 1024, 1025, 65536])
def test_stage_plan_covers_the_packed_fft(L):
    plan = stage_plan(L)
    assert int(np.prod([radix for radix, _, _ in plan])) == max(8, fft_size(L)) // 2
    spans = [span for _, span, _ in plan]
    assert spans[-1] == 1 and all(a == 4 * b for a, b in zip(spans[1:], spans[2:]))


@pytest.mark.parametrize("B, H", [(0, 3), (2, 0)])
def test_empty_batch_or_channels(B, H):
    u = torch.randn(B, H, 8, requires_grad=True)
    k = torch.randn(H, 8, requires_grad=True)
    y = cpu_conv(u, k)
    assert y.shape == (B, H, 8)
    y.sum().backward()
    assert u.grad.shape == u.shape and k.grad.shape == k.shape and not k.grad.any()


def test_profile_row_lists_every_step():
    prof = profile_row(1024, repeats=2)
    stages = [k for k in prof if k.startswith("forward")]
    assert len(stages) == len(stage_plan(1024))
    assert {"load", "product", "inverse", "store"} <= set(prof)
    assert all(v >= 0 for v in prof.values()) and sum(prof.values()) > 0
    for bad in ("int32", "junk", object()):              # 'junk' was a bare numpy TypeError
        with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
            profile_row(16, dtype=bad)


def test_profile_row_times_through_time_call(monkeypatch):
    calls = []
    real = cpu.time_call
    monkeypatch.setattr(cpu, "time_call", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    profile_row(64, repeats=1)
    assert calls


def test_one_long_span_threshold():
    """The loop shape of every stage follows the one constant _LONG_SPAN."""
    for _radix, s, shape in stage_plan(1 << 20)[1:]:
        assert shape.startswith("long span") == (s >= cpu._LONG_SPAN)
    assert cpu._LONG_SPAN == 1024


# ----------------------------------------------------------------------------- defects (issue 15)
def test_second_order_gradients_match_fft_conv():
    """Issue 15 #2: create_graph=True gave grads with requires_grad=False (d/dk of a penalty 0)."""
    u, k, _ = make(2, 3, 40, 17, seed=5, grad_output=True, dtype=torch.float64)
    grads = {}
    for name, fn in (("numba", cpu_conv), ("fft", fft_conv)):
        uu, kk = u.clone().requires_grad_(True), k.clone().requires_grad_(True)
        gu, = torch.autograd.grad((fn(uu, kk) ** 2).sum(), uu, create_graph=True)
        assert gu.requires_grad
        grads[name] = torch.autograd.grad((gu ** 2).sum(), kk)[0]
    assert rel_err(grads["numba"].numpy(), grads["fft"].numpy()) < 1e-10
    uu, kk = u[:1, :2, :9].clone().requires_grad_(True), k[:2, :5].clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(cpu_conv, (uu, kk))


def test_one_launch_per_pass_and_the_kernel_spectrum_computed_once(monkeypatch):
    """The forward is one parallel launch (conv_rows), which also computes the kernel spectrum
    and keeps it when a gradient is wanted; the backward reuses it (its launch gets no kernel
    rows to transform); with nothing to differentiate no spectrum is kept."""
    launches = []
    real = cpu._parallel
    monkeypatch.setattr(cpu, "_parallel", lambda kernel, *a: launches.append((kernel, a)) or real(kernel, *a))
    u, k, g = make(2, 3, 64, 64, seed=2, grad_output=True)
    M = cpu._points(64) // 2
    y = cpu_conv(u.clone().requires_grad_(True), k.clone().requires_grad_(True))
    (kernel, (_, kn, kre, _, *_)), = launches
    assert kernel is cpu.conv_rows and kn.shape == (3, 64) and kre.shape == (3, M + 1)
    y.backward(g)
    assert [kern for kern, _ in launches] == [cpu.conv_rows, cpu.grad_rows]
    assert launches[1][1][2] is kre                      # grad_rows gets the forward's spectrum
    launches.clear()                                     # gradient of u only: a correlation
    cpu_conv(u.clone().requires_grad_(True), k).backward(g)
    (_, fwd), (kernel, bwd) = launches
    assert kernel is cpu.conv_rows and bwd[1].shape[0] == 0 and bwd[2] is fwd[2]
    launches.clear()
    cpu_conv(u, k)                                       # nothing requires grad
    (_, args), = launches
    assert args[2].shape[0] == 0


@pytest.mark.parametrize("B, H", [(16, 1), (5, 2), (1, 1)])
def test_few_channels_split_the_batch(B, H):
    """With fewer channels than tasks, each channel's batch is split over several tasks, each
    with its own copy of the kernel spectrum; the first one keeps it for the backward."""
    u, k, g = make(B, H, 300, 120, seed=B + H, grad_output=True)
    assert cpu._n_split(B, H) == max(1, min(B, -(-4 * cpu._threads() // H)))
    assert rel_err(cpu_conv(u, k).numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-10
    ref_u, ref_k = causal_conv_grads_np(u.numpy(), k.numpy(), g.numpy())
    for want_k in (True, False):
        uu, kk = u.clone().requires_grad_(True), k.clone().requires_grad_(want_k)
        cpu_conv(uu, kk).backward(g)
        assert rel_err(uu.grad.numpy(), ref_u) < 1e-10
        if want_k:
            assert rel_err(kk.grad.numpy(), ref_k) < 1e-10


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e-42), (torch.float64, 1e-310)])
def test_accuracy_near_the_subnormal_range(dtype, scale):
    """Issue 15 #10: pre-scaling K by 1/(8L) lost accuracy (rel err 5e-2 at inputs of 1e-42)."""
    u, k, _ = make(1, 2, 256, 256, seed=4, grad_output=True, dtype=torch.float64)
    ref = causal_conv_np(u.numpy() * scale, k.numpy())
    y = cpu_conv((u * scale).to(dtype), k.to(dtype)).double().numpy()
    fft_err = rel_err(fft_conv((u * scale).to(dtype), k.to(dtype)).double().numpy(), ref)
    assert rel_err(y, ref) < max(5 * fft_err, 1e-3)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=600)


_TWO_THREADS = """
    import threading, torch
    from longconv_edu.kernels.cpu import cpu_conv
    u, k = torch.randn(4, 8, 512), torch.randn(8, 512)
    ref = cpu_conv(u, k)
    bad = []
    def work():
        for _ in range(30):
            bad.append(not torch.allclose(cpu_conv(u, k), ref))
    ts = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print("ok", any(bad))
"""

_FORK = """
    import os, torch, warnings
    from longconv_edu.kernels.cpu import cpu_conv
    from longconv_edu import fft_conv
    u, k = torch.randn(4, 8, 512), torch.randn(8, 512)
    cpu_conv(u, k)
    pid = os.fork()
    if pid == 0:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ok = torch.allclose(cpu_conv(u, k), fft_conv(u, k), atol=1e-4)
        print("child", ok, [str(x.message)[:40] for x in w], flush=True)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("parent", status)
"""


# the next three start Python processes of their own (each imports torch and loads the kernel)
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["", "workqueue", "omp"])
def test_two_python_threads_do_not_abort(layer):
    """Issue 15 #8: under 'workqueue' two threads aborted the process ("Concurrent access")."""
    r = _python(_TWO_THREADS, NUMBA_THREADING_LAYER=layer)
    assert r.returncode == 0 and "ok False" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["", "workqueue"])
def test_forked_child_is_not_killed(layer):
    """Issue 15 #8: a fork()ed child of a process that used the backend was killed (GNU OpenMP).

    Unset, the backend pins a fork-safe layer (tbb, else workqueue behind a lock)."""
    r = _python(_FORK, NUMBA_THREADING_LAYER=layer)
    assert r.returncode == 0 and "child True" in r.stdout and "parent 0" in r.stdout, \
        r.stdout + r.stderr[-2000:]


@pytest.mark.slow
def test_gnu_openmp_chosen_by_the_user_warns_before_a_fork_kills():
    """A user who picks 'omp' keeps it (GNU OpenMP kills the child at the fork itself, before
    any Python runs there), but is told so at the first call."""
    r = _python("""
        import warnings, torch
        warnings.simplefilter("error")
        from longconv_edu.kernels.cpu import cpu_conv
        try:
            cpu_conv(torch.randn(1, 2, 64), torch.randn(2, 64))
            print("no warning")
        except RuntimeWarning as e:
            print("warned", e)
    """, NUMBA_THREADING_LAYER="omp")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warned" in r.stdout and "fork()ed child" in r.stdout, r.stdout
