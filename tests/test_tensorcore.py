"""Rung 5a aside: the tensor-core emulation (longconv_edu.tensorcore) against float64 oracles.

Oracles, written here or in oracles.py without the library's code:
* rounding: x = m 2^e (numpy.frexp, float64), the format's quantum 2^(e - 1 - bits), and
  numpy.round (ties to even) or numpy.trunc of x / quantum; no bit tricks;
* transforms: numpy.fft (float64) and the DFT matrix from np.exp;
* convolution: numpy.convolve in float64 (``causal_conv_np``).
Tolerances follow from the unit roundoff u of the format (a 4096-point DFT, 3 stages of 16
points, measured a relative L2 error of 0.83 u for fp16 and tf32, 0.89 u for bf16, 1.3 u for
tf32-trunc; the convolutions below measured 0.36e-3 to 0.69e-3 for fp16, 3.9e-3 for bf16,
2.7e-3 for tf32-trunc); fp32 is held to 1e-5 like the library's other float32 transforms.
"""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import causal_conv_np, complex_rel_err, dft_matrix_np, rel_err

from longconv_edu import tensorcore as tc

BITS = {"fp16": 10, "bf16": 7, "tf32": 10, "tf32-trunc": 10}


def round_oracle(x: np.ndarray, fmt: str) -> np.ndarray:
    """Nearest value with BITS[fmt] fraction bits (normal numbers), ties to even; trunc for tf32-trunc."""
    x = x.astype(np.float64)
    _, e = np.frexp(x)                           # |x| = m 2^e, 0.5 <= m < 1
    q = np.ldexp(1.0, e - 1 - BITS[fmt])         # spacing of the format's numbers near x
    f = np.trunc if fmt == "tf32-trunc" else np.round
    return f(x / q) * q


@pytest.mark.parametrize("fmt", list(BITS))
def test_round_to_format_matches_the_oracle(fmt):
    rng = np.random.default_rng(1)
    # fp16's normal range, [2^-14, 2^15), for every format (fp16's own limits are tested below)
    sign = rng.choice([-1.0, 1.0], 20000)
    x = (sign * rng.uniform(1, 2, 20000) * 2.0 ** rng.integers(-14, 15, 20000)).astype(np.float32)
    got = tc.round_to_format(torch.from_numpy(x), fmt).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.astype(np.float64), round_oracle(x, fmt))


@pytest.mark.parametrize("fmt, x, want", [
    ("bf16", 1 + 2 ** -8, 1.0),                      # a tie: to the even neighbour 1
    ("bf16", 1 + 3 * 2 ** -8, 1 + 2 ** -6),          # a tie: to the even neighbour 1 + 2^-6
    ("tf32", 1 + 2 ** -11, 1.0),
    ("tf32", 1 + 3 * 2 ** -11, 1 + 2 ** -9),
    ("fp16", 1 + 2 ** -11, 1.0),
    ("tf32-trunc", 1 + 2 ** -10 - 2 ** -20, 1.0),    # below the next tf32 number: dropped
    ("tf32-trunc", -(1 + 2 ** -10 - 2 ** -20), -1.0),
    ("fp16", 70000.0, float("inf")),                 # beyond 65504
    ("bf16", 70000.0, 70144.0),                      # fp32's range
    ("tf32", 70000.0, 70016.0),
    ("fp32", 1 + 2 ** -20, 1 + 2 ** -20),            # unchanged
])
def test_round_to_format_cases(fmt, x, want):
    assert tc.round_to_format(torch.tensor([x], dtype=torch.float32), fmt).item() == want


@pytest.mark.parametrize("fmt", list(tc.FORMATS))
def test_round_to_format_passes_inf_and_nan(fmt):
    got = tc.round_to_format(torch.tensor([float("inf"), -float("inf"), float("nan")]), fmt)
    assert got[0] == float("inf") and got[1] == -float("inf") and torch.isnan(got[2])


@pytest.mark.parametrize("N, block", [(1, 16), (2, 16), (16, 16), (64, 4), (2048, 16), (4096, 64), (512, 2)])
@pytest.mark.parametrize("inverse", [False, True])
def test_emulated_dft_fp32_is_the_dft(N, block, inverse):
    g = torch.Generator().manual_seed(N)
    x = torch.randn(3, N, generator=g, dtype=torch.float64) + 1j * torch.randn(3, N, generator=g, dtype=torch.float64)
    got = tc.emulated_dft(x, fmt="fp32", block=block, inverse=inverse)
    assert got.dtype == torch.complex64 and got.shape == x.shape
    W = dft_matrix_np(N)
    want = x.numpy() @ (W.conj() / N if inverse else W).T
    assert complex_rel_err(got.numpy(), want) < 1e-5


@pytest.mark.parametrize("fmt, lo, hi", [("fp16", 0.1, 3.0), ("tf32", 0.1, 3.0), ("bf16", 0.1, 3.0)])
def test_emulated_dft_error_is_a_few_unit_roundoffs(fmt, lo, hi):
    """A 4096-point DFT = 3 block stages of 16: the relative L2 error, in units of u, is O(1)."""
    x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = tc.emulated_dft(x, fmt=fmt).numpy().astype(np.complex128)
    want = np.fft.fft(x.numpy())
    e = np.linalg.norm(got - want) / np.linalg.norm(want) / tc.FORMATS[fmt][1]
    assert lo < e < hi, e


def test_block_step_errors():
    e = tc.block_step_errors(rows=256)
    assert set(e) == set(tc.FORMATS)
    assert e["fp32"] < 1e-6
    for fmt in ("fp16", "bf16", "tf32", "tf32-trunc"):
        assert 0.05 * tc.FORMATS[fmt][1] < e[fmt] < 2 * tc.FORMATS[fmt][1], (fmt, e[fmt])


CONV_TOL = {"fp32": 1e-5, "fp16": 4e-3, "tf32": 4e-3, "tf32-trunc": 1e-2, "bf16": 2e-2}


@pytest.mark.parametrize("fmt", list(tc.FORMATS))
@pytest.mark.parametrize("B, H, L, Lk, dtype", [(2, 3, 256, 256, torch.float32), (1, 2, 100, 37, torch.float64),
                                                (1, 1, 1, 1, torch.float32)])
def test_emulated_fft_conv_against_numpy_convolve(fmt, B, H, L, Lk, dtype):
    g = torch.Generator().manual_seed(L)
    u = torch.randn(B, H, L, generator=g, dtype=dtype)
    k = torch.randn(H, Lk, generator=g, dtype=dtype)
    y = tc.emulated_fft_conv(u, k, fmt=fmt)
    assert y.dtype == torch.float32 and y.shape == (B, H, L)
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < CONV_TOL[fmt]


@given(L=st.integers(1, 300), block=st.sampled_from([2, 4, 8, 16, 32]), seed=st.integers(0, 2**16))
def test_emulated_fft_conv_fp32_any_length_and_block(L, block, seed):
    g = torch.Generator().manual_seed(seed)
    u, k = torch.randn(1, 2, L, generator=g), torch.randn(2, L, generator=g)
    y = tc.emulated_fft_conv(u, k, fmt="fp32", block=block)
    assert rel_err(y.numpy(), causal_conv_np(u.numpy(), k.numpy())) < 1e-5


def test_rounding_mode_and_range_lessons():
    """What the course page states: truncating to tf32 is worse than rounding; fp16 and tf32 agree
    at unit scale, and fp16 alone overflows (NaN) once values pass 65504."""
    rows = {(r["fmt"], r["scale"]): r["rel_l2"] for s in (1.0, 1e4)
            for r in tc.accuracy_table((512,), fmts=("fp16", "tf32", "tf32-trunc"), scale=s)}
    assert rows[("tf32-trunc", 1.0)] > 2 * rows[("tf32", 1.0)]
    assert rows[("fp16", 1.0)] == pytest.approx(rows[("tf32", 1.0)], rel=0.05)
    assert np.isnan(rows[("fp16", 1e4)]) and rows[("tf32", 1e4)] < 4e-3


def test_accuracy_table_rows():
    rows = tc.accuracy_table((64, 100), fmts=("fp32", "bf16"), B=1, H=1)
    assert [(r["L"], r["N"], r["fmt"]) for r in rows] == [(64, 128, "fp32"), (64, 128, "bf16"),
                                                          (100, 256, "fp32"), (100, 256, "bf16")]
    assert rows[1]["factors"] == [16, 8]
    assert all(r["rel_l2"] < 1e-5 for r in rows if r["fmt"] == "fp32")
    assert all(1e-4 < r["rel_l2"] < 3e-2 for r in rows if r["fmt"] == "bf16")
