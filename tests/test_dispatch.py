"""Tests of longconv_edu.dispatch: the registry lists every backend, get_backend's errors, and
long_conv validating its inputs before it hands them to a backend."""
import importlib

import numpy as np
import pytest
import torch
from oracles import causal_conv_np, rel_err

from longconv_edu import dispatch
from longconv_edu.dispatch import backends, get_backend, long_conv

EXPECTED = ["direct", "toeplitz", "fft", "butterfly", "cuda", "numba", "learned_butterfly"]


def test_backends_lists_every_registered_backend_in_course_order():
    b = backends()
    assert list(b) == EXPECTED + ["auto"]          # "auto" is a rule over the registered ones, listed last
    assert all(isinstance(s, str) and s for s in b.values())
    rungs = [dispatch._BACKENDS[n].rung for n in EXPECTED]
    assert rungs == sorted(rungs)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_registry_entry_names_a_real_function(name):
    entry = dispatch._BACKENDS[name]
    fn = getattr(importlib.import_module(entry.module), entry.function)
    assert callable(fn) and get_backend(name) is fn
    assert entry.function in importlib.import_module(entry.module).__all__


@pytest.mark.parametrize("bad", ["flashbutterfly", "FFT", "", None, 3, ["fft"]])
def test_get_backend_error_lists_the_names(bad):
    with pytest.raises(ValueError, match=r"^backend must be one of 'direct', 'toeplitz', 'fft', 'butterfly', "
                                         r"'cuda', 'numba', 'learned_butterfly', 'auto'; got " + repr(bad).replace("[", r"\[")
                       .replace("]", r"\]")):
        get_backend(bad)


@pytest.mark.parametrize("backend", ["direct", "toeplitz", "fft", "butterfly", "numba", "learned_butterfly"])
def test_long_conv_is_the_causal_convolution(backend):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, 33, generator=g, dtype=torch.float64)
    k = torch.randn(3, 20, generator=g, dtype=torch.float64)
    y = long_conv(u, k, backend=backend)
    assert y.shape == u.shape and rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-6


def test_long_conv_default_is_fft():
    u, k = torch.randn(1, 2, 8), torch.randn(2, 8)
    assert torch.equal(long_conv(u, k), get_backend("fft")(u, k))


@pytest.mark.parametrize("u, k, exc, match", [
    (torch.randn(2, 8), torch.randn(2, 8), ValueError, r"u must be 3-D \(B, H, L\)"),
    (torch.randn(1, 2, 8), torch.randn(3, 8), ValueError, r"k has H=3 channels"),
    (torch.randn(1, 2, 8), torch.randn(2, 9), ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=9"),
    (torch.randn(1, 2, 8), torch.randn(2, 8, dtype=torch.float64), TypeError, r"k has dtype torch.float64"),
    (torch.randn(1, 2, 8).int(), torch.randn(2, 8).int(), TypeError, r"u must have dtype"),
])
def test_long_conv_validates_before_dispatch(monkeypatch, u, k, exc, match):
    """A bad input is refused by long_conv itself: the backend is never called."""
    called = []
    monkeypatch.setattr(dispatch.Backend, "load", lambda self: lambda *a, **kw: called.append(a))
    with pytest.raises(exc, match=match):
        long_conv(u, k, backend="fft")
    assert called == []


def test_long_conv_checks_the_backend_name_first():
    with pytest.raises(ValueError, match=r"backend must be one of"):
        long_conv("not a tensor", None, backend="nope")


def test_long_conv_passes_keyword_arguments_to_the_backend():
    u, k = torch.randn(1, 2, 16, dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64)
    assert torch.allclose(long_conv(u, k, backend="direct", jit=True), long_conv(u, k), atol=1e-12)
    with pytest.raises(TypeError, match=r"jit must be True or False, got int 1"):
        long_conv(u, k, backend="direct", jit=1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'jt'"):
        long_conv(u, k, backend="direct", jt=True)


def test_auto_resolves_by_device_type_through_the_rule_table():
    u = torch.randn(1, 2, 8, dtype=torch.float64)
    assert dispatch.resolve_backend("auto", u) == dispatch.AUTO_RULES["cpu"] == "numba"
    assert dispatch.resolve_backend("auto") == "fft" and dispatch.resolve_backend("fft", u) == "fft"
    k = torch.randn(2, 8, dtype=torch.float64)
    np.testing.assert_allclose(long_conv(u, k, backend="auto").numpy(), long_conv(u, k).numpy(),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"backend 'auto' names a rule, not a function"):
        get_backend("auto")
