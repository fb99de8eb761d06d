"""Rung 6 exercises: Squash and Smooth."""
from __future__ import annotations

import torch

from ... import regularize
from .core import Exercise, register


def _squash_cases():
    g = torch.Generator().manual_seed(6)
    return [(torch.tensor([0.5, -0.2, 0.1, -0.05, 0.0], dtype=torch.float64), 0.1),
            (torch.randn(3, 40, generator=g, dtype=torch.float64) * 0.002, 0.003),
            (torch.randn(2, 2, 17, generator=g, dtype=torch.float64), 0.0),
            (torch.randn(64, generator=g, dtype=torch.float64), 10.0)]


def _smooth_cases():
    g = torch.Generator().manual_seed(7)
    return [(torch.tensor([0.0, 3.0, 0.0, 0.0, 6.0], dtype=torch.float64), 3),
            (torch.randn(3, 40, generator=g, dtype=torch.float64), 7),
            (torch.randn(1, 9, generator=g, dtype=torch.float64), 9),
            (torch.randn(2, 33, generator=g, dtype=torch.float64), 1)]


def _register():
    register(Exercise("squash", 6,
                      "Write Squash: soft-threshold every tap, sign(k) * max(|k| - lam, 0).",
                      regularize.squash, _squash_cases,
                      hint="torch.sign(k) * torch.relu(k.abs() - lam): small taps become exactly 0, "
                           "large ones shrink by lam."))
    register(Exercise("smooth", 6,
                      "Write Smooth: the average of the `width` taps centred on each tap "
                      "(odd width, zeros beyond both ends, same length out).",
                      regularize.smooth, _smooth_cases,
                      hint="Pad width//2 zeros on each side, then out[s] = mean(padded[s : s + width]); "
                           "divide by width even at the ends (the zeros count)."))


_register()
