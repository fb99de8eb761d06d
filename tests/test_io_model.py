"""Rung 4: the IO model's byte and FLOP counts, checked against sums written out by hand.

No floating-point tolerance is needed for bytes (integers, compared exactly); FLOP counts are
compared exactly too (they are sums of small integers times N log2 N with N a power of two).
"""
import math

import matplotlib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from longconv_edu import io_model as io
from longconv_edu.io_model import (
    Traffic,
    fft_flops,
    flashbutterfly_conv,
    fused_conv,
    monarch_flops,
    roofline_time,
    three_pass_traffic,
    unfused_fft_conv,
)

matplotlib.use("Agg")


def test_unfused_small_case_by_hand():
    # B = H = 1, L = 4, float32: N = 8, rfft has 5 bins of 8 bytes
    t = unfused_fft_conv(1, 1, 4)
    assert [p[0] for p in t.passes] == ["rfft(u)", "rfft(k)", "multiply", "irfft", "truncate"]
    assert t.passes == [("rfft(u)", 16, 40), ("rfft(k)", 16, 40), ("multiply", 80, 40),
                        ("irfft", 40, 32), ("truncate", 16, 16)]
    assert (t.bytes_read, t.bytes_written, t.bytes) == (168, 168, 336)
    # three real transforms of 8 points at 2.5 N log2 N = 60 each, 5 complex products of 6
    assert t.flops == 3 * 60 + 30


def test_fused_formula_from_the_spec():
    for B, H, L, s in [(1, 1, 1, 4), (2, 3, 1024, 4), (8, 64, 1000, 2), (1, 2, 4096, 8)]:
        N = 1 << (2 * L - 1).bit_length()                     # 2L rounded up to a power of two
        t = fused_conv(B, H, L, dtype_bytes=s)
        assert t.bytes_read == B * H * (L * s + 2 * N * s)
        assert t.bytes_written == B * H * L * s
        assert len(t.passes) == 1


def test_three_pass_bytes():
    t = three_pass_traffic(2, 3, 1024, dtype_bytes=4)
    R, N, c = 6, 2048, 8
    assert t.bytes_read == R * (1024 * 4 + (N * c + N * c) + N * c)   # pass 2 reads the spectrum too
    assert t.bytes_written == R * (N * c + N * c + 1024 * 4)


def test_flop_counts():
    assert fft_flops(8) == 5 * 8 * 3 and fft_flops(8, real_input=True) == 60 and fft_flops(1) == 0
    assert monarch_flops(64, (64, 1)) == 8 * 64 * 64                # one dense DFT matvec
    assert monarch_flops(64, (8, 8)) == 8 * 64 * 8 * 2 + 6 * 64     # two stages + twiddles
    assert monarch_flops(64, (4, 4, 4)) == 8 * 64 * 4 * 3 + 6 * 64 * 2
    # fused: forward + inverse DFT + product, per row
    assert fused_conv(1, 1, 2048).flops == 2 * monarch_flops(4096, (64, 64)) + 6 * 4096


@given(st.integers(1, 64), st.integers(1, 512), st.integers(0, 17), st.sampled_from([2, 4, 8]))
def test_properties(B, H, e, s):
    L = 2 ** e
    a, b, c = (f(B, H, L, dtype_bytes=s) for f in (unfused_fft_conv, fused_conv, three_pass_traffic))
    for t in (a, b, c):
        assert t.bytes == t.bytes_read + t.bytes_written
        assert t.bytes_read == sum(p[1] for p in t.passes)
        assert t.bytes_written == sum(p[2] for p in t.passes)
    assert b.bytes < c.bytes                       # one pass moves less than three
    assert b.bytes < a.bytes                       # the fused kernel moves less than PyTorch's five
    assert 2 * (B * H * L * s) <= b.bytes          # ... but at least input and output once


def test_flashbutterfly_picks_by_fast_memory():
    # working set of a row: 4 * N * s bytes; L = 1024 -> N = 2048 -> 32 KiB in float32
    assert len(flashbutterfly_conv(1, 1, 1024, fast_memory_bytes=32 * 1024).passes) == 1
    assert len(flashbutterfly_conv(1, 1, 1024, fast_memory_bytes=32 * 1024 - 1).passes) == 3


def test_roofline_time():
    t = Traffic(100, 100, 1000.0)
    assert roofline_time(t, 100.0, 1e6) == 2.0                    # memory bound
    assert roofline_time(t, 1e9, 100.0) == 10.0                   # compute bound
    assert math.isclose(t.intensity, 5.0)


def test_plot_io_model():
    from longconv_edu.lab.viz import plot_io_model
    Ls = [256, 1024, 4096]
    fig = plot_io_model(Ls, {"unfused": [unfused_fft_conv(4, 8, L) for L in Ls],
                             "fused": [fused_conv(4, 8, L) for L in Ls]},
                        bandwidth=3.35e12, peak_flops=67e12)
    assert len(fig.axes) == 3


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: unfused_fft_conv(0, 1, 8), ValueError, "B"),
    (lambda: fused_conv(1, 1.5, 8), TypeError, "H"),
    (lambda: three_pass_traffic(1, 1, 0), ValueError, "L"),
    (lambda: fused_conv(1, 1, 8, dtype_bytes=0), ValueError, "dtype_bytes"),
    (lambda: unfused_fft_conv(1, 1, 8, fft_size=8), ValueError, "fft_size"),
    (lambda: three_pass_traffic(1, 1, 8, outer=3), ValueError, "outer"),
    (lambda: monarch_flops(64, (4, 4)), ValueError, "factors"),
    (lambda: roofline_time("fast", 1.0, 1.0), TypeError, "traffic"),
    (lambda: roofline_time(Traffic(1, 1, 1.0), 0.0, 1.0), ValueError, "bandwidth"),
    (lambda: roofline_time(Traffic(1, 1, 1.0), 1.0, -1.0), ValueError, "peak_flops"),
    (lambda: flashbutterfly_conv(1, 1, 8, fast_memory_bytes=0), ValueError, "fast_memory_bytes"),
])
def test_bad_input(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    assert arg in str(info.value)


def test_module_names():
    assert {"unfused_fft_conv", "fused_conv", "three_pass_traffic", "roofline_time"} <= set(io.__all__)


def test_unfused_multi_pass_fft():
    # fft_passes=2 adds, to each of the three transforms, one more read and write of its 5 bins
    one, two = unfused_fft_conv(1, 1, 4), unfused_fft_conv(1, 1, 4, fft_passes=2)
    assert two.bytes_read - one.bytes_read == 3 * 40
    assert two.bytes_written - one.bytes_written == 3 * 40
    assert two.flops == one.flops
    with pytest.raises(ValueError, match="fft_passes"):
        unfused_fft_conv(1, 1, 4, fft_passes=0)


def test_monarch_flops_factors_given_as_an_int_is_a_clear_error():
    """Issue 15 #10: monarch_flops(16, 16) raised "'int' object is not iterable"."""
    with pytest.raises(TypeError, match=r"factors must be a tuple of ints such as \(N1, N2\), got 16"):
        io.monarch_flops(16, 16)
    with pytest.raises(ValueError, match=r"factors must multiply to N = 16, got \(4, 2\)"):
        io.monarch_flops(16, (4, 2))


def test_no_length_ceiling_in_the_io_model():
    """Issue 15 #6: the io_model functions refused L > 2^17 ("raise max_factor")."""
    L = 2 ** 18
    N = 2 * L
    t = io.fused_conv(1, 1, L)
    assert t.flops == 2 * io.monarch_flops(N) + 6 * N
    assert io.monarch_flops(N) == 8 * N * (128 + 64 + 64) + 6 * N * 2
    assert io.three_pass_traffic(1, 1, L).bytes > 0 and io.flashbutterfly_conv(1, 1, L, fast_memory_bytes=1).bytes > 0
