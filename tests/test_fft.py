"""Rungs 3-4: every transform in longconv_edu.fft against numpy.fft, plus bad input.

Oracle: numpy.fft.fft / ifft (pocketfft, float64), and matrices built here from np.exp directly.
Tolerances, relative to the reference's max magnitude:
* float64: 1e-10. The rounding error of an FFT grows like eps * log2 N (eps = 2.2e-16), about
  4e-15 at N = 2^16 (measured worst 7e-15), so 1e-10 has orders of headroom yet any wrong index,
  twiddle or sign gives an O(1) error.
* float32 (complex64): 1e-5. eps = 1.2e-7; the same growth gives ~2e-6 at N = 2^16 (measured
  worst 3e-7 for every transform here); the Monarch form sums at most 256 products per stage.
"""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import complex_rel_err as rel_err

from longconv_edu.fft import (
    bit_reversal_permutation,
    butterfly_factors,
    butterfly_stage,
    dft_matrix,
    fft_iterative,
    fft_recursive,
    monarch_dft,
    monarch_factors,
    twiddle_grid,
    twiddles,
)

TOL = {torch.complex128: 1e-10, torch.complex64: 1e-5}
POWERS = [2 ** e for e in range(1, 17)]


def signal(shape, dtype=torch.complex128, seed=0):
    g = torch.Generator().manual_seed(seed)
    re = torch.randn(*shape, generator=g, dtype=torch.float64)
    im = torch.randn(*shape, generator=g, dtype=torch.float64)
    return (re + 1j * im).to(dtype)


def three_way(N):
    """A balanced split of a power of two into 3 factors (some may be 1 for tiny N)."""
    e = N.bit_length() - 1
    return tuple(2 ** (e // 3 + (1 if i < e % 3 else 0)) for i in range(3))


RADIX2 = {"fft_recursive": fft_recursive, "fft_iterative": fft_iterative,
          "fft_iterative_jit": lambda x, **kw: fft_iterative(x, jit=True, **kw)}


@pytest.mark.parametrize("N", POWERS)
@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
def test_every_transform_matches_numpy(N, dtype):
    x = signal((2, N), dtype, seed=N)
    xn = x.to(torch.complex128).numpy()
    fwd, inv = np.fft.fft(xn), np.fft.ifft(xn)
    transforms = dict(RADIX2)
    transforms["monarch2"] = lambda x, **kw: monarch_dft(x, monarch_factors(N), **kw)
    transforms["monarch3"] = lambda x, **kw: monarch_dft(x, three_way(N), **kw)
    for name, f in transforms.items():
        y = f(x)
        assert y.dtype == dtype and y.shape == x.shape, name
        assert rel_err(y.numpy(), fwd) < TOL[dtype], name
        assert rel_err(f(x, inverse=True).numpy(), inv) < TOL[dtype], f"{name} inverse"


@pytest.mark.parametrize("factors", [(3, 5), (6, 10), (7, 3, 2), (1, 16), (16, 1), (4, 4, 4),
                                     (16, 64, 4), (2, 2, 2), (5, 1, 5)])
def test_monarch_any_factorisation(factors):
    N = int(np.prod(factors))
    x = signal((3, 2, N), seed=N)
    assert rel_err(monarch_dft(x, factors).numpy(), np.fft.fft(x.numpy())) < 1e-10
    assert rel_err(monarch_dft(x, factors, inverse=True).numpy(), np.fft.ifft(x.numpy())) < 1e-10


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 3), st.integers(0, 2**31 - 1),
       st.sampled_from([torch.float64, torch.float32]))
def test_monarch_real_input_property(n1, n2, B, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n1 * n2, generator=g, dtype=dtype)
    y = monarch_dft(x, [n1, n2])
    assert y.dtype == (torch.complex128 if dtype == torch.float64 else torch.complex64)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(y.numpy(), np.fft.fft(x.double().numpy())) < tol


def test_real_input_radix2():
    x = torch.randn(4, 32, dtype=torch.float64)
    for name, f in RADIX2.items():
        assert rel_err(f(x).numpy(), np.fft.fft(x.numpy())) < 1e-10, name


def test_dft_matrix_and_inverse():
    for n in [1, 2, 3, 8, 12]:
        F = dft_matrix(n).numpy()
        assert rel_err(F, np.fft.fft(np.eye(n), axis=0)) < 1e-12
        assert rel_err(dft_matrix(n, inverse=True).numpy(), np.fft.ifft(np.eye(n), axis=0)) < 1e-12
    assert dft_matrix(4, dtype=torch.complex64).dtype == torch.complex64


def test_twiddles_and_grid():
    for n in [1, 2, 4, 16, 1024]:
        want = np.exp(-2j * np.pi * np.arange(n // 2) / n)
        assert twiddles(n).shape == (n // 2,)
        if n > 1:
            assert np.max(np.abs(twiddles(n).numpy() - want)) < 1e-13
            assert np.max(np.abs(twiddles(n, inverse=True).numpy() - want.conj())) < 1e-13
    c, b = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    assert np.max(np.abs(twiddle_grid(4, 6).numpy() - np.exp(-2j * np.pi * c * b / 24))) < 1e-13


def test_bit_reversal():
    for n in [1, 2, 8, 64]:
        bits = n.bit_length() - 1
        want = [int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)]
        p = bit_reversal_permutation(n)
        assert p.tolist() == want
        assert p[p].tolist() == list(range(n))                 # its own inverse


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 64, 128])
@pytest.mark.parametrize("inverse", [False, True])
def test_butterfly_factors_multiply_to_dft(n, inverse):
    factors, P = butterfly_factors(n, inverse=inverse)
    assert len(factors) == n.bit_length() - 1
    M = P
    for Bk in factors:
        assert int((Bk != 0).sum(1).max()) <= 2                # two non-zeros per row: sparse
        M = Bk @ M
    want = np.fft.ifft(np.eye(n), axis=0) if inverse else np.fft.fft(np.eye(n), axis=0)
    assert rel_err(M.numpy(), want) < 1e-12


def test_stages_build_the_transform():
    x = signal((16,))
    y = x[bit_reversal_permutation(16)]
    for s in range(1, 5):
        y = butterfly_stage(y, s)
        m = 2 ** s
        # after stage s, block j (of length m) is the m-point DFT of x[r], x[r + 16/m], ...,
        # with r = the bit reversal of j over log2(16/m) bits (where bit reversal put them)
        rev = bit_reversal_permutation(16 // m).tolist()
        want = np.stack([np.fft.fft(x.numpy()[rev[j]::16 // m]) for j in range(16 // m)])
        assert rel_err(y.numpy().reshape(-1, m), want) < 1e-12


def test_monarch_blocks_injectable_and_differentiable():
    H, fs = 3, (2, 3)
    x = signal((2, H, 6))
    exact = [dft_matrix(2).expand(H, 2, 2).clone(), dft_matrix(3)]
    assert rel_err(monarch_dft(x, fs, blocks=exact).numpy(), np.fft.fft(x.numpy())) < 1e-12
    # per-channel blocks really act per channel: channel 1 gets a scaled first block
    scaled = [exact[0].clone(), exact[1]]
    scaled[0][1] *= 2
    y = monarch_dft(x, fs, blocks=scaled).numpy()
    ref = np.fft.fft(x.numpy())
    assert rel_err(y[:, 1], 2 * ref[:, 1]) < 1e-12 and rel_err(y[:, 0], ref[:, 0]) < 1e-12
    A = [exact[0].clone().requires_grad_(), dft_matrix(3).requires_grad_()]
    xg = signal((1, H, 6), seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, a, b: monarch_dft(x, fs, blocks=[a, b]),
                                    (xg, A[0], A[1]))


def test_monarch_factors():
    assert monarch_factors(4096) == (64, 64)
    assert monarch_factors(8192, 32) == (32, 16, 16)
    assert monarch_factors(2) == (2, 1) and monarch_factors(1) == (1, 1)
    for e in range(0, 19):
        fs = monarch_factors(2 ** e)
        assert np.prod(fs) == 2 ** e and max(fs) <= 64 and len(fs) in (2, 3)


def test_monarch_factors_beyond_max_factor_cubed_grow_past_it():
    """Issue 15 #6: N > max_factor**3 used to be refused with "raise max_factor"; now the three
    factors grow past max_factor, as equal as possible, and still multiply to N."""
    assert monarch_factors(2 ** 19) == (128, 64, 64)
    assert monarch_factors(2 ** 20, 32) == (128, 128, 64)
    for e in range(19, 31):
        fs = monarch_factors(2 ** e)
        assert np.prod(fs) == 2 ** e and len(fs) == 3 and max(fs) // min(fs) <= 2


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: fft_recursive(torch.randn(12)), ValueError, "x"),
    (lambda: fft_iterative(torch.randn(2, 6)), ValueError, "x"),
    (lambda: fft_iterative(torch.randn(2, 6), jit=True), ValueError, "x"),
    (lambda: fft_iterative(torch.arange(8)), TypeError, "x"),
    (lambda: fft_recursive(np.zeros(8)), TypeError, "x"),
    (lambda: fft_recursive(torch.tensor(1.0)), ValueError, "x"),
    (lambda: fft_iterative(torch.randn(8), jit="yes"), TypeError, "jit"),
    (lambda: fft_recursive(torch.randn(8), inverse=1), TypeError, "inverse"),
    (lambda: twiddles(6), ValueError, "n"),
    (lambda: twiddles(4, dtype=torch.float32), TypeError, "dtype"),
    (lambda: bit_reversal_permutation(0), ValueError, "n"),
    (lambda: bit_reversal_permutation(12), ValueError, "n"),
    (lambda: butterfly_factors(2.0), TypeError, "n"),
    (lambda: butterfly_stage(torch.randn(8), 0), ValueError, "stage"),
    (lambda: butterfly_stage(torch.randn(8), 4), ValueError, "stage"),
    (lambda: dft_matrix(-1), ValueError, "n"),
    (lambda: monarch_dft(torch.randn(16), (4, 3)), ValueError, "factors"),
    (lambda: monarch_dft(torch.randn(16), 16), TypeError, "factors"),
    (lambda: monarch_dft(torch.randn(16), (16,)), ValueError, "factors"),
    (lambda: monarch_dft(torch.randn(16), (2, 2, 2, 2)), ValueError, "factors"),
    (lambda: monarch_dft(torch.randn(16), (4, 4.0)), TypeError, "factors[1]"),
    (lambda: monarch_dft(torch.randn(16), (4, 0)), ValueError, "factors[1]"),
    (lambda: monarch_dft(torch.randint(0, 3, (16,)), (4, 4)), TypeError, "x"),
    (lambda: monarch_dft(torch.randn(16, dtype=torch.float64), (4, 4), blocks=[dft_matrix(4)]), ValueError, "blocks"),
    (lambda: monarch_dft(torch.randn(16, dtype=torch.float64), (4, 4), blocks=dft_matrix(4)), TypeError, "blocks"),
    (lambda: monarch_dft(torch.randn(16, dtype=torch.float64), (4, 4), blocks=[dft_matrix(3), dft_matrix(4)]),
     ValueError, "blocks[0]"),
    (lambda: monarch_dft(torch.randn(16, dtype=torch.float64), (4, 4), blocks=[dft_matrix(4), dft_matrix(4).real]),
     TypeError, "blocks[1]"),
    (lambda: monarch_dft(torch.randn(16), (4, 4),
                         blocks=[dft_matrix(4), dft_matrix(4, dtype=torch.complex128)]),
     TypeError, "blocks[0]"),
    (lambda: monarch_dft(torch.randn(2, 3, 16), (4, 4),
                         blocks=[dft_matrix(4, dtype=torch.complex64).expand(5, 4, 4),
                                 dft_matrix(4, dtype=torch.complex64)]), ValueError, "blocks[0]"),
    (lambda: monarch_factors(12), ValueError, "N"),
])
def test_bad_input(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    assert arg in str(info.value)


def test_exercise_checkers(capsys):
    from longconv_edu.course.exercises import check, list_exercises
    assert {"butterfly_stage", "radix2_twiddles"} <= set(list_exercises(3))
    assert {"four_step_twiddles", "monarch_split", "four_step_dft"} <= set(list_exercises(4))
    # the library's answers pass, a float32 twiddle passes, and typical mistakes are caught
    assert check("butterfly_stage", butterfly_stage)
    assert not check("butterfly_stage", lambda y, s: y)
    assert check("radix2_twiddles", lambda n: torch.exp(-2j * torch.pi * torch.arange(n // 2) / n))
    assert not check("radix2_twiddles", lambda n: torch.exp(2j * torch.pi * torch.arange(n // 2) / n))
    assert check("four_step_twiddles", twiddle_grid)
    assert check("monarch_split", lambda N: monarch_factors(N)[::-1])      # any valid split passes
    assert not check("monarch_split", lambda N: (64, N // 64))

    def four_step(x, n1, n2):
        Y = (dft_matrix(n1) @ x.reshape(n1, n2)) * twiddle_grid(n1, n2)
        return (Y @ dft_matrix(n2).T).T.reshape(-1)
    assert check("four_step_dft", four_step)
    assert not check("four_step_dft", lambda x, n1, n2: four_step(x, n1, n2).reshape(n2, n1).T.reshape(-1))
    out = capsys.readouterr().out
    assert "monarch_split] case 3/5 is wrong" in out and "not powers of two" in out


def test_four_step_stages_end_in_the_dft():
    from longconv_edu.fft import four_step_stages
    x = signal((12,), seed=7)
    steps = four_step_stages(x, 3, 4)
    assert [A.shape for _, A in steps] == [(3, 4)] * 4 + [(4, 3)]
    assert rel_err(steps[-1][1].reshape(-1).numpy(), np.fft.fft(x.numpy())) < 1e-12
    with pytest.raises(ValueError, match="factors"):
        four_step_stages(x, 5, 4)
    with pytest.raises(ValueError, match="x must be 1-D"):
        four_step_stages(x.reshape(3, 4), 3, 4)


def test_returned_matrices_are_fresh():
    """Editing (or training) a returned matrix must never change the library's cached constants."""
    for make_it in (lambda: dft_matrix(4), lambda: twiddles(8), lambda: twiddle_grid(2, 4)):
        a = make_it()
        a.mul_(0)
        assert bool(make_it().abs().max() > 0.5)


def test_pictures_draw():
    """The rung 3-4 plotting functions draw what the notebooks show (smoke test: axes exist)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longconv_edu.fft import four_step_stages
    from longconv_edu.lab import viz
    perm = bit_reversal_permutation(8)
    figs = [viz.plot_dft_matrix(dft_matrix(8)), viz.plot_butterfly_diagram(perm, stage=2),
            viz.plot_factor_patterns(butterfly_factors(8)[0], ["B1", "B2", "B3"]),
            viz.plot_fft_stage(perm, 0, signal((8,))),
            viz.plot_four_step(four_step_stages(signal((12,)), 3, 4))]
    assert [len([a for a in f.axes if a.get_label() != "<colorbar>"]) >= 1 for f in figs] == [True] * 5
    assert len(figs[-1].axes) == 5
    plt.close("all")
