"""Rung 8: the learned butterfly -- the small DFT matrices inside FlashButterfly, made trainable.

Rung 4 wrote the N-point DFT in its matmul (Monarch) form: split N = n_1 * n_2 (* n_3), then

    F_N = P . (I (x) F_{n_2}) . T . (F_{n_1} (x) I)          (two factors; three work the same way)

small dense DFT matrices F_{n_i} applied as batched matmuls, a fixed diagonal of twiddle factors
T = exp(-2 pi i j k / N), and a fixed permutation P. The paper's extension (Fu et al. 2023, the
"learned" FlashButterfly) keeps exactly this structure -- same matmul sizes, same twiddles, same
permutation, hence the same FLOPs and the same kernel -- but lets the small matrices be trained:

    F_theta = P . (I (x) B_2[h]) . T . (B_1[h] (x) I),        B_i[h] initialised to F_{n_i}

with one complex n_i x n_i block per factor *per channel* h. At initialisation F_theta is the
DFT, so the layer computes exactly the causal convolution ``fft_conv`` computes; training may then
move the blocks away from the DFT if that helps the task. The causal convolution becomes

    y[b, h] = first L of  Re( G_theta( F_theta(pad(u[b, h])) * F_theta(pad(k[h])) ) )

The inverse G_theta has two choices (``inverse_mode=``; across the library ``inverse`` is always a
bool meaning "compute the inverse transform", as in ``fft.monarch_dft(..., inverse=True)``):

* ``"tied"``    G_theta(z) = conj(F_theta(conj(z))) / N: the inverse DFT written as a conjugated
                forward DFT (rung 2's identity ifft(z) = conj(fft(conj(z))) / N), with the *same*
                blocks. No extra parameters. Once the blocks move it is no longer the exact
                inverse of F_theta (conj(F_theta) / N != F_theta^-1 in general) -- it is the same
                formula, tied to the same parameters.
* ``"learned"`` the same formula with a second, independent set of blocks (also initialised to
                the DFT), doubling the block parameters.

The kernel k goes through the same forward transform F_theta as the input, and the real part of
the result is kept (at init the imaginary part is zero up to rounding). In code G_theta is
``monarch_dft(z, inverse=True, blocks=[conj(C_i) / n_i])`` (conjugate twiddles, blocks as given),
which is conj(F_C) / N for blocks C_i: C_i = B_i when tied. The sequence of operations is the
one of ``butterfly.butterfly_conv`` -- transform u, transform k, multiply, inverse transform,
real part, first L -- with the same FFT size (the smallest power of two >= 2L unless ``factors``
say otherwise) and the same default factors (``fft.monarch_factors``); the only difference is that
the blocks are (H, n_i, n_i) instead of fixed (n_i, n_i), which changes no matmul size, so the
FLOPs are the same.

Parameters and their optimiser settings. Each block is stored as a real tensor of shape
(H, n_i, n_i, 2) -- real and imaginary parts, so every optimiser and ``state_dict`` sees plain
real numbers -- and viewed as complex with ``torch.view_as_complex`` in the forward pass. Every
block parameter is tagged with ``params.tag_params`` (``p._optim = {"lr": block_lr,
"weight_decay": 0.0}``, the tag the kernel parameters of ``LongConv`` carry), so
``params.param_groups`` gives the blocks their own learning rate (the paper's 0.001) and no weight
decay: decay would pull the blocks towards the zero matrix, not towards the DFT.

Public API:

* ``learned_butterfly_conv(u, k, blocks=None, *, inverse_blocks=None, factors=None)``
    the functional form; ``blocks=None`` means per-channel copies of the exact DFT blocks (the
    layer at its initialisation). Registered in ``dispatch`` as the backend ``"learned_butterfly"``
    so the benchmark compares it with the fixed ``"butterfly"``.
* ``LearnedButterflyConv(d_model, l_max, *, factors=None, inverse_mode="tied", init_noise=0.0,
  block_lr=1e-3, dtype=torch.float32, seed=0)``  the module holding the blocks; ``forward(u, k)``.
* ``dft_blocks(factors, H, dtype)`` the exact blocks; ``block_drift(blocks)`` how far learned
  blocks are from them.

Shapes: u (B, H, L), k (H, Lk) with 1 <= Lk <= L; blocks: a list, one complex tensor per factor,
each (H, n_i, n_i) (per channel) or (n_i, n_i) (shared). FFT size N = prod(n_i) >= L + Lk - 1.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import nn

from ._checks import check_choice, check_conv_inputs, check_dtype, check_float, check_int, check_tensor
from .butterfly import resolve_factors
from .fft import COMPLEX_OF, check_blocks, dft_matrix, fft_size, monarch_dft
from .layers import LongConv
from .params import tag_params

__all__ = ["learned_butterfly_conv", "learned_long_conv", "LearnedButterflyConv", "dft_blocks", "block_drift"]

# the real signal dtypes this rung takes, each with its complex block dtype (fft.COMPLEX_OF)
_REAL_DTYPES = (torch.float32, torch.float64)


# ----------------------------------------------------------------------------- the DFT blocks
def dft_blocks(factors, H: int | None = None, dtype: torch.dtype = torch.float32,
               device=None) -> list[torch.Tensor]:
    """The exact DFT blocks F_{n_i} of a Monarch split: (n_i, n_i) each, or (H, n_i, n_i) copies.

    ``dtype`` is the real dtype of the signal (float32 -> complex64 blocks, float64 -> complex128).
    """
    check_dtype(dtype, "dtype", _REAL_DTYPES)
    if not isinstance(factors, (tuple, list)):
        raise TypeError(f"factors must be a tuple of ints such as (16, 8), got {factors!r}")
    factors = tuple(check_int(f, f"factors[{i}]", min=1) for i, f in enumerate(factors))
    out = []
    for n in factors:
        F = dft_matrix(n, dtype=COMPLEX_OF[dtype])
        if device is not None:
            F = F.to(device)
        if H is not None:
            F = F.expand(check_int(H, "H", min=1), n, n).contiguous()
        out.append(F)
    return out


@functools.lru_cache(maxsize=16)
def _dft_init_blocks(factors, H, dtype, device):
    """Per-channel DFT blocks (materialised, not broadcast), cached for the benchmark backend."""
    return tuple(dft_blocks(factors, H, dtype, device))


def block_drift(blocks) -> list[torch.Tensor]:
    """Relative Frobenius distance of each block from the exact DFT, per channel.

    For block i: ||B_i[h] - F_{n_i}||_F / ||F_{n_i}||_F = ||B_i[h] - F_{n_i}||_F / n_i (a DFT
    matrix has n_i^2 entries of modulus 1). Returns one tensor of shape (H,) (or a 0-D tensor for
    a shared block) per factor; 0 at initialisation (without ``init_noise``).
    """
    if not isinstance(blocks, (tuple, list)):
        raise TypeError(f"blocks must be a list of complex tensors, got {type(blocks).__name__}")
    for i, b in enumerate(blocks):
        check_tensor(b, f"blocks[{i}]", ndim=(2, 3), dtypes=(torch.complex64, torch.complex128))
        if b.shape[-1] != b.shape[-2]:
            raise ValueError(f"blocks[{i}] must be square (n, n) or (H, n, n), got shape {tuple(b.shape)}")
    out = []
    for b in blocks:
        b = b.detach()
        n = b.shape[-1]
        F = dft_matrix(n, dtype=b.dtype).to(b.device)
        out.append(torch.linalg.matrix_norm(b - F) / n)
    return out


# ----------------------------------------------------------------------------- functional form
def learned_butterfly_conv(u: torch.Tensor, k: torch.Tensor, blocks=None, *, inverse_blocks=None,
                           factors=None) -> torch.Tensor:
    """Causal long convolution through a Monarch DFT whose small blocks are given (learnable).

    u: (B, H, L) float32/float64; k: (H, Lk), 1 <= Lk <= L, same dtype.
    blocks: list of complex blocks, one per factor, each (H, n_i, n_i) or (n_i, n_i), complex64
        for float32 input and complex128 for float64; their sizes n_i are the factors and
        N = prod(n_i) the FFT size, which must be >= L + Lk - 1. None: per-channel copies of the
        exact DFT blocks, the FFT size and factors chosen as ``butterfly_conv`` chooses them (N the
        smallest power of two >= 2L split by ``fft.monarch_factors``, or N = prod(factors) >=
        L + Lk - 1) -- the learned layer at initialisation, which is what the benchmark times.
    inverse_blocks: blocks for the inverse transform (same sizes); None ties them to ``blocks``.
    Returns (B, H, L) in u's dtype.

    y = first L of Re(G(F(u_pad) * F(k_pad))), F = ``monarch_dft`` with ``blocks`` and
    G = ``monarch_dft(., inverse=True)`` with blocks conj(C_i) / n_i, C = inverse_blocks or blocks.
    """
    B, H, L, Lk = check_conv_inputs(u, k)
    if u.numel() == 0 and blocks is None:
        return u * 0 + k.sum() * 0                 # B = 0 or H = 0: the empty (B, H, L) result
    if blocks is None:
        N, factors = resolve_factors(fft_size(L), factors, L + Lk - 1,
                              f"L + Lk - 1 with L={L}, Lk={Lk}")
        blocks = list(_dft_init_blocks(factors, H, u.dtype, u.device))
        if inverse_blocks is not None:
            raise ValueError("inverse_blocks needs blocks too: pass both, or neither for the DFT init")
    else:
        factors_b = check_blocks(blocks, "blocks", H=H, dtype=u.dtype, device=u.device)
        if factors is not None and tuple(factors) != factors_b:
            raise ValueError(f"factors {tuple(factors)!r} disagree with the block sizes {factors_b} of "
                             f"blocks; pass one or the other")
        factors = factors_b
        N = math.prod(factors)
        if N < L + Lk - 1:
            raise ValueError(f"blocks have sizes {factors}, an FFT size N = {N}; a causal convolution "
                             f"needs N >= L + Lk - 1 = {L + Lk - 1} (no wrap-around)")
    if inverse_blocks is not None:
        inv_sizes = check_blocks(inverse_blocks, "inverse_blocks", H=H, dtype=u.dtype, device=u.device)
        if inv_sizes != factors:
            raise ValueError(f"inverse_blocks have sizes {inv_sizes} but blocks have {factors}; "
                             f"they must match")
    else:
        inverse_blocks = blocks
    inv = [C.conj() / n for C, n in zip(inverse_blocks, factors)]     # O(H n^2): tiny
    u_f = monarch_dft(nn.functional.pad(u, (0, N - L)), factors, blocks=blocks)
    k_f = monarch_dft(nn.functional.pad(k, (0, N - Lk)), factors, blocks=blocks)
    return monarch_dft(u_f * k_f, factors, inverse=True, blocks=inv).real[..., :L]


# ----------------------------------------------------------------------------- the module
def _inverse_mode(inverse_mode: str, inverse) -> str:
    """The old keyword ``inverse="tied"|"learned"`` maps to ``inverse_mode`` (with a warning)."""
    if inverse is None:
        return inverse_mode
    if isinstance(inverse, bool):
        raise TypeError(f"inverse_mode must be 'tied' or 'learned', got inverse={inverse!r} (here the "
                        f"choice of inverse blocks is inverse_mode=, not a bool)")
    warnings.warn("inverse= is now inverse_mode= (inverse is a bool elsewhere in the library)",
                  FutureWarning, stacklevel=3)
    return inverse



class LearnedButterflyConv(nn.Module):
    """Causal long convolution whose Monarch DFT blocks are per-channel trainable parameters.

    d_model: H channels; l_max: the longest sequence L. FFT size N: the smallest power of two
    >= 2 l_max, split by ``fft.monarch_factors`` (as ``butterfly_conv`` does), or N = prod(factors)
    for ``factors`` (n_1, n_2) or (n_1, n_2, n_3), which must give N >= 2 l_max - 1. Shorter
    inputs are zero-padded to N: still an exact causal convolution.
    inverse_mode: "tied" (the inverse uses the forward blocks, conjugated) or "learned" (its own
        blocks). The old keyword ``inverse=`` still works for these two strings (FutureWarning).
    init_noise: standard deviation of a complex Gaussian added to every block entry at init
        (entries of a DFT block have modulus 1); 0 starts exactly at the DFT.
    block_lr: learning rate tagged on every block parameter (weight decay 0), read by
        ``param_groups``.
    dtype: float32 (complex64 blocks) or float64 (complex128 blocks) at construction; the input
        must match the blocks' current dtype (``layer.double()`` converts them).
    seed: seeds the perturbation (ignored when init_noise is 0).

    forward(u, k): u (B, H, L) with L <= l_max, k (H, Lk) with Lk <= L -> y (B, H, L).
    Parameters: ``forward_blocks[i]`` (and ``inverse_blocks[i]`` if learned), real tensors
    (H, n_i, n_i, 2) holding real and imaginary parts; ``blocks()`` returns them as complex.
    """

    def __init__(self, d_model: int, l_max: int, *, factors=None, inverse_mode: str = "tied",
                 init_noise: float = 0.0, block_lr: float = 1e-3, dtype: torch.dtype = torch.float32,
                 seed: int = 0, inverse: str | None = None):
        super().__init__()
        self.d_model = check_int(d_model, "d_model", min=1)
        self.l_max = check_int(l_max, "l_max", min=1)
        self.fft_size, self.factors = resolve_factors(fft_size(self.l_max), factors, 2 * self.l_max - 1,
                                               f"2 l_max - 1 with l_max={self.l_max}")
        inverse_mode = _inverse_mode(inverse_mode, inverse)
        self.inverse_mode = check_choice(inverse_mode, "inverse_mode", ["tied", "learned"])
        self.init_noise = check_float(init_noise, "init_noise", min=0.0)
        self.block_lr = check_float(block_lr, "block_lr", min=0.0, min_inclusive=False)
        self.dtype = check_dtype(dtype, "dtype", _REAL_DTYPES)   # at construction
        gen = torch.Generator().manual_seed(check_int(seed, "seed", min=0))
        self.forward_blocks = self._new_blocks(gen)
        self.inverse_blocks = self._new_blocks(gen) if self.inverse_mode == "learned" else None

    def _new_blocks(self, gen) -> nn.ParameterList:
        params = []
        for F in dft_blocks(self.factors, self.d_model, self.dtype):
            w = torch.view_as_real(F).clone()                       # (H, n, n, 2)
            if self.init_noise > 0:
                # complex Gaussian with E|z|^2 = init_noise^2: each part has std init_noise/sqrt(2)
                w += torch.randn(w.shape, generator=gen, dtype=w.dtype) * (self.init_noise / math.sqrt(2))
            params.append(nn.Parameter(w))
        plist = nn.ParameterList(params)
        tag_params(plist, [str(i) for i in range(len(params))], lr=self.block_lr, weight_decay=0.0)
        return plist

    def _apply(self, fn, recurse=True):
        """``.double()`` (any float32 -> float64 conversion) keeps the DFT float64-accurate.

        Casting a float32 parameter up cannot restore the digits float32 rounded off, so a
        ``.double()`` layer at its DFT init would be only float32-accurate (~1e-7). Each block is
        the exact DFT plus what training (or init noise) added; that deviation is carried over and
        the DFT part rebuilt in float64.
        """
        plists = [pl for pl in (self.forward_blocks, self.inverse_blocks) if pl is not None]
        before = [[(p.dtype, p.detach().double() - self._dft_real(n, p.dtype, p.device))
                   for p, n in zip(pl, self.factors)] for pl in plists]
        super()._apply(fn, recurse)
        with torch.no_grad():
            for pl, old in zip(plists, before):
                for p, n, (dtype, dev) in zip(pl, self.factors, old):
                    if dtype == torch.float32 and p.dtype == torch.float64:
                        p.copy_(self._dft_real(n, p.dtype, p.device) + dev.to(p.device))
        return self

    def _dft_real(self, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """The exact n-point DFT block as the real (H, n, n, 2) parameter layout, in ``dtype``."""
        F = dft_matrix(n, dtype=COMPLEX_OF[dtype] if dtype in COMPLEX_OF else torch.complex128)
        return torch.view_as_real(F).to(device=device, dtype=dtype).expand(self.d_model, n, n, 2)

    def blocks(self, which: str = "forward") -> list[torch.Tensor]:
        """The blocks as complex (H, n_i, n_i) views ("forward" or "inverse"; tied -> forward's)."""
        check_choice(which, "which", ["forward", "inverse"])
        plist = self.inverse_blocks if which == "inverse" and self.inverse_blocks is not None \
            else self.forward_blocks
        return [torch.view_as_complex(p) for p in plist]

    def drift(self) -> dict[str, torch.Tensor]:
        """Relative Frobenius distance from the DFT, per block and channel: name -> (H,)."""
        out = {f"forward[{i}] ({n}x{n})": d
               for i, (n, d) in enumerate(zip(self.factors, block_drift(self.blocks("forward"))))}
        if self.inverse_blocks is not None:
            out.update({f"inverse[{i}] ({n}x{n})": d
                        for i, (n, d) in enumerate(zip(self.factors, block_drift(self.blocks("inverse"))))})
        return out

    def forward(self, u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B, H, L, Lk = check_conv_inputs(u, k)
        if H != self.d_model:
            raise ValueError(f"u has H = {H} channels (shape {tuple(u.shape)}) but this "
                             f"LearnedButterflyConv was built for d_model = {self.d_model}")
        if L > self.l_max:
            raise ValueError(f"u has length L = {L} but this LearnedButterflyConv was built for "
                             f"l_max = {self.l_max} (FFT size {self.fft_size}); build it with l_max >= {L}")
        dtype = self.forward_blocks[0].dtype                        # follows layer.to(...)
        if u.dtype != dtype:
            raise TypeError(f"u has dtype {u.dtype} but the blocks are {COMPLEX_OF[dtype]}; "
                            f"cast u with .to({dtype}) or the layer with .to({u.dtype})")
        inv = self.blocks("inverse") if self.inverse_blocks is not None else None
        return learned_butterfly_conv(u, k, self.blocks("forward"), inverse_blocks=inv)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, l_max={self.l_max}, factors={self.factors}, "
                f"inverse_mode={self.inverse_mode!r}, init_noise={self.init_noise}, block_lr={self.block_lr}")


# ----------------------------------------------------------------------------- the layer
def learned_long_conv(d_model: int, l_max: int, *, channels: int = 1, inverse_mode: str = "tied",
                      block_lr: float = 1e-3, inverse: str | None = None, **layer_kwargs) -> LongConv:
    """Rung 6's ``LongConv`` whose fixed transform is swapped for a ``LearnedButterflyConv`` over
    its channels * d_model rows (the Monarch DFT with per-row trainable blocks, starting at the
    exact DFT). ``layer_kwargs`` go to ``LongConv`` (lam, smooth_width, seed, ...); the learned
    module is the layer's ``conv`` attribute."""
    channels = check_int(channels, "channels", min=1)
    d_model = check_int(d_model, "d_model", min=1)
    conv = LearnedButterflyConv(channels * d_model, l_max, inverse_mode=_inverse_mode(inverse_mode, inverse),
                                block_lr=block_lr)
    return LongConv(d_model, l_max, channels=channels, conv=conv, **layer_kwargs)
