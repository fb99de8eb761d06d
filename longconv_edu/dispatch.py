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

__all__ = ["long_conv", "backends", "get_backend", "resolve_backend", "AUTO_RULES"]


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
    Backend("cuda", "longconv_edu.kernels.cuda", "cuda_conv", 5,
            "the fused FlashButterfly Numba CUDA kernel (GPU, or NUMBA_ENABLE_CUDASIM=1 on CPU)"),
    Backend("numba", "longconv_edu.kernels.cpu", "cpu_conv", 5,
            "the fused FFT convolution as a Numba CPU kernel: one row per thread, in cache"),
    Backend("learned_butterfly", "longconv_edu.learned", "learned_butterfly_conv", 8,
            "Monarch DFT with per-channel (trainable) blocks, timed at their DFT init"),
]}


#: backend="auto": the fastest registered backend for the device type of the input tensor
#: (measured fwd+bwd at B*H = 256 on 2 cores: the fused Numba kernel is 1.05x fft_conv at L = 256,
#: 1.1x at 1K, 2.3x at 4K, 4.3x at 16K; on a GPU the torch FFT until the CUDA kernel is timed).
AUTO_RULES: dict[str, str] = {"cpu": "numba", "cuda": "fft"}
AUTO = "auto"


def backends() -> dict[str, str]:
    """Names of the registered backends, each with a one-line summary, in course order, then
    "auto" (the rule ``AUTO_RULES`` picks one per device type)."""
    out = {b.name: b.summary for b in sorted(_BACKENDS.values(), key=lambda b: b.rung)}
    out[AUTO] = "the fastest backend for the input's device: " + ", ".join(
        f"{dev} -> {name}" for dev, name in AUTO_RULES.items())
    return out


def resolve_backend(name: str, u: torch.Tensor | None = None) -> str:
    """The registered backend ``name`` stands for: itself, or for "auto" the ``AUTO_RULES`` entry
    of ``u``'s device type ("fft" for a device type with no rule, or when u is None)."""
    if u is not None and not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor or None, got {type(u).__name__}")
    if name != AUTO:
        get_backend(name)
        return name
    if u is None:
        return "fft"
    return AUTO_RULES.get(u.device.type, "fft")


def get_backend(name: str):
    """The function registered under ``name``; a clear error lists the names that exist."""
    if name == AUTO:
        raise ValueError("backend 'auto' names a rule, not a function: resolve it for a tensor with "
                         "resolve_backend('auto', u)")
    if not isinstance(name, str) or name not in _BACKENDS:
        known = ", ".join(repr(n) for n in backends())
        raise ValueError(f"backend must be one of {known}; got {name!r}")
    return _BACKENDS[name].load()


def long_conv(u: torch.Tensor, k: torch.Tensor, *, backend: str = "fft", **kwargs) -> torch.Tensor:
    """Causal long convolution y[b,h,t] = sum_s k[h,s] u[b,h,t-s] by the chosen backend.

    u: (B, H, L) float32/float64; k: (H, Lk), 1 <= Lk <= L; returns (B, H, L).
    ``backend="auto"`` picks the fastest for u's device (``AUTO_RULES``).
    Extra keyword arguments go to the backend (for example ``jit=True`` for "direct").
    """
    if backend != AUTO:
        get_backend(backend)                  # the name first: a typo is reported before the tensors
    check_conv_inputs(u, k)
    fn = get_backend(resolve_backend(backend, u))
    return fn(u, k, **kwargs)
