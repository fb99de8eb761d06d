"""Rung 2 exercises: the causal FFT convolution (size 2L) and the bidirectional layout."""
from __future__ import annotations

import torch

from ... import conv
from .core import Exercise, register
from .rung1 import conv_cases


def _register_causal():
    register(Exercise("causal_fft_conv", 2,
                      "Compute the causal convolution with torch.fft: pad, multiply spectra, invert, truncate.",
                      conv.fft_conv, conv_cases,
                      hint="An FFT of size L gives the circular convolution; pad to 2L and keep the first L outputs."))


def _register_bidirectional():
    from ... import conv

    def cases():
        g = torch.Generator().manual_seed(2)
        return [(torch.randn(B, H, L, generator=g, dtype=torch.float64),
                 torch.randn(H, 2 * L, generator=g, dtype=torch.float64))
                for B, H, L in [(1, 1, 1), (2, 3, 8), (1, 2, 13)]]

    register(Exercise("bidirectional_fft_conv", 2,
                      "Compute the non-causal convolution with a (H, 2L) kernel: k[:, :L] weighs "
                      "u[t - s] (the past), k[:, L + j] weighs u[t + j + 1] (the future); use one "
                      "FFT of size 2L.",
                      conv.bidirectional_conv, cases,
                      hint="In a circular kernel of length 2L, lag -(j+1) sits at index 2L-1-j: place "
                           "k[:, :L] first, then k[:, L:] flipped; multiply rfft spectra (n=2L), keep L."))


_register_causal()
_register_bidirectional()
