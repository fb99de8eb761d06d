"""Tests of longconv_edu._checks: every check, the error type and the message it gives."""
import math

import numpy as np
import pytest
import torch

from longconv_edu import _checks as C


def test_check_tensor_accepts_and_returns():
    x = torch.zeros(2, 3)
    assert C.check_tensor(x, "x", ndim=2) is x
    assert C.check_tensor(x, "x", ndim=(1, 2)) is x
    assert C.check_tensor(torch.zeros(2, dtype=torch.int64), "x", dtypes=None) is not None


@pytest.mark.parametrize("x, kw, exc, match", [
    ([1.0, 2.0], {}, TypeError, r"x must be a torch.Tensor, got list \[1.0, 2.0\]$"),
    (np.zeros(3), {}, TypeError, r"x must be a torch.Tensor, got ndarray of shape \(3,\), dtype float64 "
                                 r"\(wrap a NumPy array with torch.from_numpy\)"),
    (torch.zeros(3, dtype=torch.int64), {}, TypeError,
     r"x must have dtype torch.float32 or torch.float64, got torch.int64 \(cast with .float\(\) or .double\(\)\)"),
    (torch.zeros(3, dtype=torch.float16), {}, TypeError, r"got torch.float16 \(cast with .float\(\)"),
    (torch.zeros(3, dtype=torch.complex64), {}, TypeError,
     r"got torch.complex64 \(a complex tensor: take .real or .abs\(\) explicitly .* .float\(\) would silently "
     r"drop the imaginary part\)"),
    (torch.zeros(3, dtype=torch.float32), dict(dtypes=(torch.complex64,)), TypeError,
     r"x must have dtype torch.complex64, got torch.float32 \(convert with .to\(torch.complex64\)\)"),
    (torch.zeros(3, dtype=torch.complex128), dict(dtypes=(torch.complex64,)), TypeError,
     r"got torch.complex128 \(convert with .to\(torch.complex64\)\)"),
    (torch.zeros(3), dict(ndim=2), ValueError, r"x must be 2-D, got 1-D shape \(3,\)"),
    (torch.zeros(3), dict(ndim=(2, 3)), ValueError, r"x must be 2-D or 3-D, got 1-D"),
    (torch.zeros(3), dict(ndim=3, shape_doc="3-D (B, H, L)"), ValueError, r"x must be 3-D \(B, H, L\), got 1-D"),
])
def test_check_tensor_errors(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        C.check_tensor(x, "x", **kw)


def test_check_same():
    C.check_same(torch.zeros(1), torch.zeros(1))
    with pytest.raises(TypeError, match=r"k has dtype torch.float64 but u has dtype torch.float32; "
                                        r"they must match \(cast one with .to\(u.dtype\)\)"):
        C.check_same(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"k is on device meta but u is on device cpu"):
        C.check_same(torch.zeros(1), torch.zeros(1, device="meta"))


def test_check_conv_inputs():
    assert C.check_conv_inputs(torch.zeros(2, 3, 8), torch.zeros(3, 5)) == (2, 3, 8, 5)
    assert C.check_conv_inputs(torch.zeros(2, 3, 8), torch.zeros(3, 16), max_kernel_len="2L") == (2, 3, 8, 16)


@pytest.mark.parametrize("u, k, kw, exc, match", [
    (torch.zeros(3, 8), torch.zeros(3, 8), {}, ValueError, r"u must be 3-D \(B, H, L\), got 2-D shape \(3, 8\)"),
    (torch.zeros(1, 3, 8), torch.zeros(8), {}, ValueError, r"k must be 2-D \(H, Lk\), got 1-D"),
    (torch.zeros(1, 3, 0), torch.zeros(3, 1), {}, ValueError, r"u must have sequence length L >= 1, got shape"),
    (torch.zeros(1, 3, 8), torch.zeros(2, 8), {}, ValueError,
     r"k has H=2 channels \(shape \(2, 8\)\) but u has H=3 \(shape \(1, 3, 8\)\); one kernel per channel"),
    (torch.zeros(1, 3, 8), torch.zeros(3, 9), {}, ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=9 "
                                                              r"\(shape \(3, 9\)\)"),
    (torch.zeros(1, 3, 8), torch.zeros(3, 0), {}, ValueError, r"got Lk=0"),
    (torch.zeros(1, 3, 8), torch.zeros(3, 8), dict(max_kernel_len="2L"), ValueError,
     r"k must have length 2L = 16 for a bidirectional convolution .* got Lk=8"),
    (torch.zeros(1, 3, 8), torch.zeros(3, 8), dict(name_u="x", name_k="w"), None, None),
])
def test_check_conv_inputs_errors(u, k, kw, exc, match):
    if exc is None:
        C.check_conv_inputs(u, k, **kw)
        return
    with pytest.raises(exc, match=match):
        C.check_conv_inputs(u, k, **kw)


def test_check_kernel_length():
    assert C.check_kernel_length(3, 3) == 3
    with pytest.raises(ValueError, match=r"^w must have length 1 <= Lk <= L = 3, got Lk=4$"):
        C.check_kernel_length(4, 3, "w")
    with pytest.raises(ValueError, match=r"got Lk=0 \(shape \(2, 0\)\)$"):
        C.check_kernel_length(0, 3, "k", (2, 0))


@pytest.mark.parametrize("x", [True, False, np.bool_(True)])
def test_check_bool_accepts(x):
    assert C.check_bool(x, "flag") is bool(x)


@pytest.mark.parametrize("x, shown", [(1, "int 1"), (0, "int 0"), ("yes", "str 'yes'"), (None, "NoneType None"),
                                      (torch.tensor(True), "a tensor of shape ()")])
def test_check_bool_refuses(x, shown):
    with pytest.raises(TypeError, match=r"^flag must be True or False, got " + shown.replace("(", r"\(")
                       .replace(")", r"\)")):
        C.check_bool(x, "flag")


def test_check_dtype():
    assert C.check_dtype(torch.float64) is torch.float64
    assert C.check_dtype(torch.complex64, "d", (torch.complex64,)) is torch.complex64
    for bad in (torch.int64, torch.float16, "float32", None, float):
        with pytest.raises(TypeError, match=r"^dtype must be torch.float32 or torch.float64, got "):
            C.check_dtype(bad)


@pytest.mark.parametrize("x, kw, exc, match", [
    (1.0, {}, TypeError, r"^n must be an int, got float 1.0$"),
    (True, {}, TypeError, r"^n must be an int, got bool True$"),
    ("3", {}, TypeError, r"^n must be an int, got str '3'$"),
    (0, dict(min=1), ValueError, r"^n must be >= 1, got 0$"),
    (9, dict(max=8), ValueError, r"^n must be <= 8, got 9$"),
    (4, dict(odd=True), ValueError, r"^n must be odd, got 4$"),
    (12, dict(power_of_two=True), ValueError, r"^n must be a power of two, got 12$"),
    (0, dict(power_of_two=True), ValueError, r"^n must be a power of two, got 0$"),
])
def test_check_int_errors(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        C.check_int(x, "n", **kw)


def test_check_int_accepts_numpy_ints():
    assert C.check_int(np.int64(8), "n", power_of_two=True) == 8 and type(C.check_int(np.int32(3), "n")) is int


@pytest.mark.parametrize("x, kw, exc, match", [
    ("0.1", {}, TypeError, r"^p must be a real number, got str '0.1'$"),
    (False, {}, TypeError, r"^p must be a real number, got bool False$"),
    (1j, {}, TypeError, r"^p must be a real number, got complex"),
    (math.nan, {}, ValueError, r"^p must be finite, got nan$"),
    (math.inf, {}, ValueError, r"^p must be finite, got inf$"),
    (-0.5, dict(min=0.0), ValueError, r"^p must be >= 0.0, got -0.5$"),
    (0.0, dict(min=0.0, min_inclusive=False), ValueError, r"^p must be > 0.0, got 0.0$"),
    (1.0, dict(max=1.0, max_inclusive=False), ValueError, r"^p must be < 1.0, got 1.0$"),
    (2.0, dict(max=1.0), ValueError, r"^p must be <= 1.0, got 2.0$"),
])
def test_check_float_errors(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        C.check_float(x, "p", **kw)


def test_check_float_returns_float():
    assert C.check_float(np.float32(0.5), "p") == 0.5 and type(C.check_float(1, "p")) is float


def test_check_choice():
    assert C.check_choice("a", "mode", ["a", "b"]) == "a"
    with pytest.raises(ValueError, match=r"^mode must be one of 'a', 'b'; got 'c'$"):
        C.check_choice("c", "mode", ("a", "b"))


def test_is_power_of_two():
    assert [n for n in range(-2, 17) if C.is_power_of_two(n)] == [1, 2, 4, 8, 16]


def test_check_cost_and_its_helpers(monkeypatch):
    C.check_cost("small", seconds=1.0, nbytes=1024)
    with pytest.raises(ValueError, match=r"^big would take ~1e\+04 s \(a model\), over the 600 s limit "
                                         r"\(longconv_edu._checks.MAX_SECONDS\); refused before starting; use x$"):
        C.check_cost("big", seconds=1e4, how="a model", hint="use x")
    monkeypatch.setattr(C, "available_bytes", lambda: 2 ** 30)
    with pytest.raises(ValueError, match=r"^huge would need ~2 GiB of memory, more than the 1 GiB available; "
                                         r"refused before allocating$"):
        C.check_cost("huge", nbytes=2 ** 31)
    monkeypatch.setattr(C, "MAX_SECONDS", 10.0)
    with pytest.raises(ValueError, match=r"over the 10 s limit"):
        C.check_cost("f", seconds=11)


def test_available_bytes_and_format_bytes():
    assert C.available_bytes() > 0
    assert [C.format_bytes(n) for n in (5, 1536, 3 * 2 ** 30, 2 ** 50 * 144)] == ["5 B", "1.5 KiB", "3 GiB",
                                                                                   "144 PiB"]


def test_check_no_grad_refuses_only_a_tensor_that_needs_a_gradient():
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"^x requires grad, but f\(jit=True\) is compiled by Numba and runs "
                                         r"outside autograd: its result would carry no gradient to x\. Use "
                                         r"jit=False \(autograd works\), or pass x.detach\(\)"):
        C.check_no_grad("f(jit=True)", y=torch.zeros(3), x=x)
    C.check_no_grad("f", x=x.detach(), y=torch.zeros(3))
    with torch.no_grad():
        C.check_no_grad("f", x=x)                       # no graph is being built: nothing is cut
