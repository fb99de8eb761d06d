"""The one registry of convolution backends: ``long_conv(u, k, backend=...)``.

Every way this library can compute the causal long convolution of u (B, H, L) with k (H, Lk) is
listed once in ``_BACKENDS`` below, by module and function name. Layers, benchmarks and notebooks
ask this registry; nothing else keeps an ``if backend == ...`` chain. Modules are imported only
when their backend is first used, so ``import longconv_edu`` stays quick and a backend that needs
Numba CUDA does not import it for someone who only wants the FFT.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from ._checks import check_conv_inputs

__all__ = ["long_conv", "backends", "get_backend"]


@dataclass(frozen=True)
class Backend:
    name: str
    module: str          # where the implementation lives (imported lazily)
    function: str        # its name there; called as function(u, k, **kwargs)
    rung: int            # the course rung that introduces it
    summary: str

    def load(self):
        return getattr(importlib.import_module(self.module), self.function)


_BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("direct", "longconv_edu.conv", "direct_conv", 1,
            "the O(L*Lk) double loop (jit=True: compiled by Numba)"),
    Backend("toeplitz", "longconv_edu.conv", "toeplitz_conv", 1,
            "dense lower-triangular Toeplitz matrix times the input, O(L^2)"),
    Backend("fft", "longconv_edu.conv", "fft_conv", 2,
            "torch.fft.rfft/irfft with FFT size 2L, O(L log L): the baseline"),
    Backend("butterfly", "longconv_edu.butterfly", "butterfly_conv", 4,
            "FlashButterfly's Monarch matmul form of the FFT convolution, in PyTorch"),
    Backend("learned_butterfly", "longconv_edu.learned", "learned_butterfly_conv", 8,
            "Monarch DFT with per-channel (trainable) blocks, timed at their DFT init"),
    Backend("cuda", "longconv_edu.kernels.cuda", "cuda_conv", 5,
            "the fused FlashButterfly Numba CUDA kernel (GPU, or NUMBA_ENABLE_CUDASIM=1 on CPU)"),
    Backend("numba", "longconv_edu.kernels.cpu", "cpu_conv", 5,
            "the fused FFT convolution as a Numba CPU kernel: one row per thread, in cache"),
]}


def backends() -> dict[str, str]:
    """Names of the registered backends, each with a one-line summary, in course order."""
    return {b.name: b.summary for b in sorted(_BACKENDS.values(), key=lambda b: b.rung)}


def get_backend(name: str):
    """The function registered under ``name``; a clear error lists the names that exist."""
    if not isinstance(name, str) or name not in _BACKENDS:
        known = ", ".join(repr(n) for n in backends())
        raise ValueError(f"backend must be one of {known}; got {name!r}")
    return _BACKENDS[name].load()


def long_conv(u: torch.Tensor, k: torch.Tensor, *, backend: str = "fft", **kwargs) -> torch.Tensor:
    """Causal long convolution y[b,h,t] = sum_s k[h,s] u[b,h,t-s] by the chosen backend.

    u: (B, H, L) float32/float64; k: (H, Lk), 1 <= Lk <= L; returns (B, H, L).
    Extra keyword arguments go to the backend (for example ``jit=True`` for "direct").
    """
    fn = get_backend(backend)
    check_conv_inputs(u, k)
    return fn(u, k, **kwargs)
