"""Shared test inputs for every causal-convolution implementation: hypothesis shapes and tensors.

Lengths always include L = 1, non-powers of two and one-above-a-power-of-two; Lk ranges over 1..L.
Tolerances (relative to the output's max magnitude), used by every convolution test:
* float64 1e-10: rounding grows like eps * log2 N (eps = 2.2e-16), so this leaves orders of
  headroom yet catches any indexing or padding mistake (those give O(1) errors);
* float32 2e-4: eps = 1.2e-7 times log2 N and a constant, about 1e-5 at N = 2^11.
"""
import torch
from hypothesis import strategies as st

CONV_TOL = {torch.float64: 1e-10, torch.float32: 2e-4}
EDGE_LENGTHS = (2, 3, 4, 5, 8, 9, 64, 65, 127, 256, 257)


@st.composite
def conv_case(draw, max_L=300, edge_lengths=EDGE_LENGTHS):
    """(B, H, L, Lk, seed) with small B, H and L <= max(max_L, edge lengths drawn)."""
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 3))
    L = draw(st.one_of(st.just(1), st.integers(1, max_L), st.sampled_from(edge_lengths)))
    Lk = draw(st.integers(1, L))
    seed = draw(st.integers(0, 2**31 - 1))
    return B, H, L, Lk, seed


def make(B, H, L, Lk, seed, dtype=torch.float64, *, grad_output=False):
    """Seeded u (B, H, L) and k (H, Lk); with grad_output=True also an upstream gradient (B, H, L)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g, dtype=dtype)
    k = torch.randn(H, Lk, generator=g, dtype=dtype)
    if grad_output:
        return u, k, torch.randn(B, H, L, generator=g, dtype=dtype)
    return u, k
