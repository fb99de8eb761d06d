"""Course animations: each is drawn from the library's computation, plays without a kernel, stays small."""
import re

import pytest
import torch

from longconv_edu.course import animations as A

MAX_BYTES = 150_000        # per player: what keeps a notebook with one animation compact


def _frames(html: str) -> int:
    return len(re.findall(r"frames\[\d+\] = ", html))


@pytest.mark.parametrize("make, frames", [
    (lambda: A.sliding_convolution_animation(L=6), 6),
    (lambda: A.butterfly_animation(n=8), 4),          # bit reversal + log2 8 stages
    (lambda: A.butterfly_animation(n=4), 3),
    (lambda: A.memory_traffic_animation(L=8), 3),     # the unfused schedule's three launches
])
def test_players_are_self_contained_and_small(make, frames):
    html = A.to_html(make()).data
    assert _frames(html) == frames
    assert "data:image/png;base64" in html            # frames embedded: no kernel, no files
    assert "<script" in html
    assert len(html) < MAX_BYTES


def test_sliding_convolution_uses_given_signal():
    u = torch.arange(5, dtype=torch.float64)
    k = torch.tensor([1.0, -1.0])
    anim = A.sliding_convolution_animation(u, k)
    assert _frames(A.to_html(anim).data) == 5


def test_traffic_matches_the_byte_formulas():
    """Oracle: per row, unfused reads (L + 6N)s and writes (4N + L)s; fused (L + 2N)s and L s."""
    for L in (1, 5, 16):
        data = A.traffic_by_launch(L)
        s = 4
        tot = {sch: [sum(v[i] for _, per in launches for v in per.values()) for i in (0, 1)]
               for sch, launches in data.items()}
        assert len(data["naive"]) == 3 and len(data["flashbutterfly"]) == 1
        n = data["flashbutterfly"][0][1]["k_f"][0] // (2 * s)          # N, read off k_f
        assert n >= 2 * L - 1 and n & (n - 1) == 0
        assert tot["naive"] == [(L + 6 * n) * s, (4 * n + L) * s]
        assert tot["flashbutterfly"] == [(L + 2 * n) * s, L * s]


@pytest.mark.parametrize("call, exc, match", [
    (lambda: A.to_html("not an animation"), TypeError, "anim must be a matplotlib FuncAnimation"),
    (lambda: A.butterfly_animation(n=6), ValueError, "n"),
    (lambda: A.butterfly_animation(torch.zeros(2, 4)), ValueError, "x must be 1-D"),
    (lambda: A.sliding_convolution_animation(torch.zeros(3), torch.zeros(4)), ValueError,
     r"k must have length 1 <= Lk <= L = 3, got Lk=4 \(shape \(4,\)\)"),
    (lambda: A.sliding_convolution_animation(torch.zeros(65), torch.zeros(4)), ValueError,
     r"len\(u\) must be <= 64, got 65"),
    (lambda: A.traffic_by_launch(0), ValueError, "L"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
