"""Rung 6: keeping learned long kernels smooth: Squash, Smooth, kernel dropout, and how to measure it.

The paper's first finding (Fu et al. 2023, Sec. 3): a long convolution whose kernel is a free
parameter of length L learns a *noisy* kernel and falls behind state space models (SSMs), whose
kernels are sums of damped exponentials and therefore smooth by construction. Two one-line
operators close most of the gap:

* ``squash(k, lam)``   soft-thresholding, ``sign(k) * max(|k| - lam, 0)``: every tap shrinks towards
                       zero by lam, the small (noise-sized) ones become exactly zero: sparse kernels.
* ``smooth(k, width)`` a moving average over ``width`` neighbouring taps (odd width, stride 1, zero
                       padded, length kept): a low-pass filter on the kernel itself.

plus ``kernel_dropout`` (ordinary dropout on the kernel taps while training). The layer applies
them in the reference code's order: Smooth, then Squash, then kernel dropout.

To say *how* smooth a kernel is, three numbers (each a function of the last axis):

* ``total_variation``        sum |k[s+1] - k[s]| / sum |k[s]|        (white noise ~ 1.41, smooth ~ 0)
* ``high_freq_fraction``     share of the kernel's energy above a cutoff frequency
* ``spectral_decay``         beta in |K(f)|^2 ~ f^(-beta), fitted on a log-log scale

and, for comparison, ``ssm_kernel``: the kernel of a small diagonal SSM (S4D-style), built from
``s4d_init`` parameters by ``s4d_kernel`` (which is differentiable, so the layer can learn them).

Reference settings (the paper's reference code, the HazyResearch safari repository, its LRA configs):
lam 0.001-0.004 (``PAPER_SETTINGS``), Smooth off in every shipped config (window 7 when on),
kernel dropout 0.1-0.3, kernel learning rate 1e-4-1e-3 with no weight decay on the kernel,
kernel init ``randn * 0.002``.

Shapes: kernels are (..., Lk), usually (H, Lk) or (channels, H, Lk); every operator here acts
on the last axis and keeps the shape.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_bool, check_dtype, check_float, check_int, check_tensor

__all__ = ["PAPER_SETTINGS", "squash", "smooth", "kernel_dropout", "regularize_kernel",
           "total_variation", "high_freq_fraction", "spectral_decay", "smoothness_metrics",
           "s4d_init", "s4d_kernel", "ssm_kernel", "random_init", "double_exp_init"]

#: The reference settings of the paper's code (safari LRA configs), for the course to quote.
PAPER_SETTINGS = {
    "lam": (0.001, 0.004),              # Squash threshold in the LRA configs (0.1 is only a code default)
    "smooth_width": 7,                  # window when Smooth is on; off in every shipped config
    "kernel_dropout": (0.1, 0.3),
    "kernel_lr": (1e-4, 1e-3),          # own learning rate for kernel parameters ...
    "kernel_weight_decay": 0.0,         # ... and no weight decay on them
    "init_scale": 0.002,                # kernel init randn * 0.002
    "model_lr": (0.004, 0.01),
    "model_weight_decay": (0.03, 0.05),
}


def _check_kernel(k, name: str = "k") -> torch.Tensor:
    check_tensor(k, name, ndim=None)
    if k.ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension (..., Lk), got a 0-D tensor")
    if k.shape[-1] < 1:
        raise ValueError(f"{name} must have length Lk >= 1 along its last axis, got shape {tuple(k.shape)}")
    return k


# ----------------------------------------------------------------------------- the operators
def squash(k: torch.Tensor, lam: float) -> torch.Tensor:
    """Soft-thresholding: ``sign(k) * max(|k| - lam, 0)``, elementwise. k: (..., Lk); same shape.

    Taps with |k| <= lam become exactly 0; larger taps move lam closer to 0. The gradient is 1
    where |k| > lam and 0 where |k| < lam (at |k| = lam torch's relu picks 0). lam = 0 returns
    k unchanged; lam >= max |k| returns all zeros (the whole kernel is "noise").
    """
    _check_kernel(k)
    lam = check_float(lam, "lam", min=0.0)
    return torch.sign(k) * torch.relu(k.abs() - lam)


def smooth(k: torch.Tensor, width: int) -> torch.Tensor:
    """Moving average over ``width`` taps: out[s] = (1/width) * sum_{|j| <= width//2} k[s + j].

    k: (..., Lk); width odd, 1 <= width <= Lk. Taps beyond either end count as 0 (zero padding),
    stride 1, so the output has the same shape as k; near the ends the average includes those
    zeros (still divided by width), exactly as average pooling with count_include_pad does.
    width = 1 returns k unchanged.
    """
    _check_kernel(k)
    Lk = k.shape[-1]
    width = check_int(width, "width", min=1, odd=True)
    if width > Lk:
        raise ValueError(f"width must be <= the kernel length Lk = {Lk}, got {width} "
                         f"(a window longer than the kernel only averages padding)")
    flat = k.reshape(-1, 1, Lk)
    out = F.avg_pool1d(flat, kernel_size=width, stride=1, padding=width // 2, count_include_pad=True)
    return out.reshape(k.shape)


def kernel_dropout(k: torch.Tensor, p: float, *, training: bool = True) -> torch.Tensor:
    """Dropout on kernel taps: each tap is zeroed with probability p, survivors scaled by 1/(1-p).

    k: (..., Lk); p in [0, 1). A no-op when not training or p = 0. Used by the layer after
    Squash, so each step trains with a random sparse subset of the (already sparse) taps.
    """
    _check_kernel(k)
    p = check_float(p, "p", min=0.0, max=1.0, max_inclusive=False)
    check_bool(training, "training")
    return F.dropout(k, p=p, training=training) if training and p > 0 else k


_drop_taps = kernel_dropout     # regularize_kernel's argument ``kernel_dropout`` shadows the function


def regularize_kernel(k: torch.Tensor, *, lam: float = 0.0, smooth_width: int | None = None,
                      kernel_dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """The layer's pipeline, in the reference code's order: Smooth (if ``smooth_width`` is given),
    Squash with ``lam``, then kernel dropout with probability ``kernel_dropout`` (on the taps,
    while ``training``; the same name as ``LongConv``'s argument, which is not its activation
    ``dropout``). k: (..., Lk); same shape."""
    _check_kernel(k)
    if smooth_width is not None:
        smooth_width = check_int(smooth_width, "smooth_width", min=1, odd=True)
    p = check_float(kernel_dropout, "kernel_dropout", min=0.0, max=1.0, max_inclusive=False)
    if smooth_width is not None:
        k = smooth(k, smooth_width)
    k = squash(k, lam)
    return _drop_taps(k, p, training=training)


# ----------------------------------------------------------------------------- metrics
def total_variation(k: torch.Tensor) -> torch.Tensor:
    """Normalised total variation sum_s |k[s+1] - k[s]| / sum_s |k[s]| along the last axis.

    Scale-free (multiplying k by c changes nothing) and between 0 and 2. For i.i.d. Gaussian
    white noise it tends to E|X - Y| / E|X| = sqrt(2) ~ 1.41 (X - Y has twice the variance); a
    kernel that changes slowly over its support of n taps scores about (number of swings)/n, near 0.
    An all-zero kernel scores 0 (nothing varies); a kernel holding NaN or inf scores NaN (a
    diverged kernel must never look smooth). Returns shape k.shape[:-1], float64.
    """
    _check_kernel(k)
    k = k.detach().double()
    tv = (k[..., 1:] - k[..., :-1]).abs().sum(-1)
    mass = k.abs().sum(-1)
    score = torch.where(mass == 0, torch.zeros_like(mass), tv / mass.clamp_min(1e-300))
    return torch.where(torch.isfinite(k).all(-1), score, torch.full_like(score, math.nan))


def _power_spectrum(k: torch.Tensor):
    """|rfft(k)|^2 and its frequencies in cycles per tap (0 .. 0.5)."""
    k = k.detach().double()
    P = torch.fft.rfft(k).abs() ** 2
    f = torch.fft.rfftfreq(k.shape[-1], d=1.0, dtype=torch.float64)
    return P, f


def high_freq_fraction(k: torch.Tensor, cutoff: float = 0.1) -> torch.Tensor:
    """Fraction of the kernel's energy at frequencies above ``cutoff`` (cycles per tap, 0..0.5).

    Energy is |rfft(k)|^2 summed over the frequency bins (Parseval: the same total as sum k^2, up
    to the one-sided weighting). White noise spreads energy evenly over 0..0.5, so it scores about
    (0.5 - cutoff) / 0.5 = 0.8 at the default cutoff 0.1; a moving average of width w puts most
    energy below 1/w; an SSM kernel keeps it near the frequencies of its modes. All-zero: 0;
    NaN or inf anywhere in a kernel: NaN.
    """
    _check_kernel(k)
    cutoff = check_float(cutoff, "cutoff", min=0.0, max=0.5)
    P, f = _power_spectrum(k)
    w = torch.ones_like(f)                  # one-sided spectrum: interior bins stand for +f and -f
    w[1:] = 2.0
    if k.shape[-1] % 2 == 0:
        w[-1] = 1.0                         # the Nyquist bin is its own mirror
    E = P * w
    total = E.sum(-1)
    high = (E * (f > cutoff)).sum(-1)
    score = torch.where(total == 0, torch.zeros_like(total), high / total.clamp_min(1e-300))
    return torch.where(torch.isfinite(k).all(-1), score, torch.full_like(score, math.nan))


def spectral_decay(k: torch.Tensor, f_min: float = 0.01, nbins: int = 24) -> torch.Tensor:
    """Fitted decay exponent beta of the power spectrum, |K(f)|^2 ~ f^(-beta), for f in [f_min, 0.5].

    The spectrum is averaged in ``nbins`` log-spaced frequency bands (so the many high-frequency
    bins do not dominate and the noise of single bins averages out), then a least-squares line is
    fitted to log(power) against log(f); beta is minus its slope. White noise: beta ~ 0 (flat).
    A moving average of white noise follows the box filter's |H(f)|^2, whose envelope falls like
    f^-2 (beta ~ 1.5-2 over this band, for windows 7-31). A causal kernel that starts at k[0] != 0
    has a jump, which alone contributes an f^-2 tail; a damped sinusoid's spectrum is flat below
    its frequency and falls like f^-2 above it, so an SSM kernel whose modes are all slow scores
    above 2 (it is steeper in the middle of the band). Bigger beta = energy more concentrated at
    low frequencies. Needs Lk >= 8 (too few bins to fit otherwise); bands with no bin are skipped;
    an all-zero kernel gives 0.
    """
    _check_kernel(k)
    Lk = k.shape[-1]
    if Lk < 8:
        raise ValueError(f"k must have length Lk >= 8 to fit a spectral decay, got Lk={Lk}")
    f_min = check_float(f_min, "f_min", min=0.0, max=0.5, min_inclusive=False, max_inclusive=False)
    nbins = check_int(nbins, "nbins", min=2)
    P, f = _power_spectrum(k)
    f_min = max(f_min, 1.0 / Lk)
    edges = torch.logspace(math.log10(f_min), math.log10(0.5), nbins + 1, dtype=torch.float64)
    edges[-1] = 0.5 + 1e-12
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f >= lo) & (f < hi)
        if sel.any():
            xs.append(torch.log(f[sel]).mean())
            ys.append(torch.log(P[..., sel].mean(-1).clamp_min(1e-300)))
    if len(xs) < 2:
        return torch.zeros(k.shape[:-1], dtype=torch.float64)
    x = torch.stack(xs)                      # (nb,)
    y = torch.stack(ys, dim=-1)              # (..., nb)
    xc = x - x.mean()
    slope = ((y - y.mean(-1, keepdim=True)) * xc).sum(-1) / (xc * xc).sum()
    zero = P.sum(-1) == 0
    beta = torch.where(zero, torch.zeros_like(slope), -slope)
    return torch.where(torch.isfinite(k).all(-1), beta, torch.full_like(beta, math.nan))


def smoothness_metrics(k: torch.Tensor, cutoff: float = 0.1) -> dict:
    """All three metrics of a 1-D kernel as plain floats: {"total_variation", "high_freq_fraction",
    "spectral_decay"} (the last is NaN for kernels shorter than 8 taps). A kernel holding NaN or
    inf gets NaN for all three, so a diverged kernel never reports as smooth."""
    _check_kernel(k)
    if k.ndim != 1:
        raise ValueError(f"k must be 1-D (Lk,) here, got shape {tuple(k.shape)}; index one row")
    return {"total_variation": float(total_variation(k)),
            "high_freq_fraction": float(high_freq_fraction(k, cutoff)),
            "spectral_decay": float(spectral_decay(k)) if k.shape[-1] >= 8 else float("nan")}


# ----------------------------------------------------------------------------- SSM kernels
def s4d_init(H: int, state_dim: int = 64, *, dt_min: float = 1e-3, dt_max: float = 1e-1,
             seed: int | None = 0, dtype=torch.float32) -> dict:
    """Parameters of H diagonal SSMs, S4D-Lin style, as a dict of tensors.

    Each channel h has N = state_dim // 2 complex modes (the other half are their conjugates):
    A_n = -1/2 + i*pi*n (n = 0..N-1), a step size dt_h log-uniform in [dt_min, dt_max], B = 1 and
    C_n ~ complex normal. Returned: log_dt (H,), A_real (H, N) (stored as log(-Re A) so Re A stays
    negative), A_imag (H, N), C (H, N, 2) (real and imaginary parts).
    """
    H = check_int(H, "H", min=1)
    state_dim = check_int(state_dim, "state_dim", min=2)
    if state_dim % 2:
        raise ValueError(f"state_dim must be even (modes come in conjugate pairs), got {state_dim}")
    dt_min = check_float(dt_min, "dt_min", min=0.0, min_inclusive=False)
    dt_max = check_float(dt_max, "dt_max", min=dt_min)
    check_dtype(dtype)
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_int(seed, "seed", min=0))
    N = state_dim // 2
    log_dt = (torch.rand(H, generator=g, dtype=torch.float64)
              * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    A_real = torch.full((H, N), math.log(0.5), dtype=torch.float64)
    A_imag = (math.pi * torch.arange(N, dtype=torch.float64)).expand(H, N).clone()
    C = torch.randn(H, N, 2, generator=g, dtype=torch.float64) * math.sqrt(0.5)
    return {k: v.to(dtype) for k, v in
            {"log_dt": log_dt, "A_real": A_real, "A_imag": A_imag, "C": C}.items()}


def s4d_kernel(log_dt: torch.Tensor, A_real: torch.Tensor, A_imag: torch.Tensor, C: torch.Tensor,
               L: int) -> torch.Tensor:
    """The length-L convolution kernel of H diagonal SSMs (zero-order hold), differentiable.

    K[h, l] = 2 Re sum_n C_n * (exp(dt A_n) - 1) / A_n * exp(dt A_n l),   l = 0..L-1,
    with A_n = -exp(A_real) + i A_imag and dt = exp(log_dt). Each term is a damped complex
    exponential: decay rate dt*exp(A_real) per tap, frequency dt*A_imag/(2 pi) cycles per tap.
    Shapes as returned by ``s4d_init``; returns (H, L) real, in log_dt's dtype.
    """
    check_tensor(log_dt, "log_dt", ndim=1, shape_doc="1-D (H,)")
    check_tensor(A_real, "A_real", ndim=2, shape_doc="2-D (H, N)")
    check_tensor(A_imag, "A_imag", ndim=2, shape_doc="2-D (H, N)")
    check_tensor(C, "C", ndim=3, shape_doc="3-D (H, N, 2)")
    L = check_int(L, "L", min=1)
    H, N = A_real.shape
    if log_dt.shape[0] != H or A_imag.shape != (H, N) or C.shape != (H, N, 2):
        raise ValueError(f"s4d parameters disagree in shape: log_dt {tuple(log_dt.shape)}, A_real "
                         f"{tuple(A_real.shape)}, A_imag {tuple(A_imag.shape)}, C {tuple(C.shape)}; "
                         f"need (H,), (H, N), (H, N), (H, N, 2)")
    dt = torch.exp(log_dt)[:, None]                               # (H, 1)
    A = torch.complex(-torch.exp(A_real), A_imag)                 # (H, N)
    dtA = A * dt
    Cc = torch.view_as_complex(C.contiguous())                    # (H, N)
    coef = Cc * (torch.exp(dtA) - 1.0) / A                        # ZOH discretised B, times C
    l = torch.arange(L, device=log_dt.device, dtype=log_dt.dtype)
    vand = torch.exp(dtA[..., None] * l)                          # (H, N, L)
    return 2.0 * torch.einsum("hn,hnl->hl", coef, vand).real


def ssm_kernel(H: int, L: int, *, state_dim: int = 16, dt_min: float = 1e-3, dt_max: float = 2e-2,
               seed: int | None = 0, dtype=torch.float32) -> torch.Tensor:
    """A fixed (H, L) kernel of H random S4D-Lin SSMs (see ``s4d_init``/``s4d_kernel``), no grad.

    A sum of damped sinusoids: mode n of channel h turns by dt_h * pi * n radians per tap, i.e.
    its frequency is dt_h * n / 2 cycles per tap, and its spectrum is a narrow peak (width about
    dt_h / (4 pi)) there. The kernel is smooth when every mode is slow compared with the sampling:
    the defaults here (8 complex modes, dt <= 0.02) put the fastest at 0.02 * 7 / 2 = 0.07 cycles
    per tap, below the metrics' default cutoff of 0.1, so almost no energy lies above it.

    S4D's own init (``s4d_init`` defaults, used by ``layers.SSMKernel``: 32 modes, dt up to 0.1)
    has modes up to 1.55 cycles per tap, past the Nyquist frequency 0.5: they alias, and those
    channels start out as rough as noise (learning then shapes them). "Smooth by construction"
    holds for the continuous-time kernel; sampled, it needs dt * max|Im A| well below pi.
    """
    L = check_int(L, "L", min=1)
    check_dtype(dtype)
    p = s4d_init(H, state_dim, dt_min=dt_min, dt_max=dt_max, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        return s4d_kernel(p["log_dt"], p["A_real"], p["A_imag"], p["C"], L).to(dtype)


# ----------------------------------------------------------------------------- inits
def random_init(shape, *, scale: float = 0.002, generator=None, dtype=torch.float32) -> torch.Tensor:
    """The paper's init for a free kernel: ``randn(shape) * scale`` (scale 0.002 in the reference code)."""
    scale = check_float(scale, "scale", min=0.0)
    check_dtype(dtype)
    if isinstance(shape, int) or not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape must be a tuple of ints such as (H, Lk), got {shape!r}")
    shape = tuple(check_int(n, f"shape[{i}]", min=0) for i, n in enumerate(shape))
    return torch.randn(*shape, generator=generator, dtype=dtype) * scale


def double_exp_init(channels: int, H: int, Lk: int, *, scale: float = 0.002, generator=None,
                    dtype=torch.float32) -> torch.Tensor:
    """An exponentially decaying random init (channels, H, Lk), in the spirit of the paper's.

    Tap s of channel c is ``randn * scale * exp(-s / tau_c) * sqrt(Lk / tau_c)``-ish: each channel
    c gets its own decay length tau_c, spaced geometrically from 1/16 of the kernel down to 16
    taps (the one channel case uses the geometric middle), and the envelope is normalised so the
    kernel's total energy equals that of ``random_init`` (sum k^2 ~ Lk * scale^2): early taps are
    large, late ones near zero, like an SSM kernel's decay. Our own parametrisation; the course
    text says where it follows and where it departs from the reference code.
    """
    channels = check_int(channels, "channels", min=1)
    H = check_int(H, "H", min=1)
    Lk = check_int(Lk, "Lk", min=1)
    scale = check_float(scale, "scale", min=0.0)
    check_dtype(dtype)
    hi, lo = max(Lk / 16.0, 1.0), min(16.0, max(Lk / 16.0, 1.0))
    if channels == 1:
        taus = torch.tensor([math.sqrt(hi * lo)], dtype=torch.float64)
    else:
        taus = torch.logspace(math.log10(hi), math.log10(lo), channels, dtype=torch.float64)
    s = torch.arange(Lk, dtype=torch.float64)
    env = torch.exp(-s[None, :] / taus[:, None])                         # (channels, Lk)
    env = env * torch.sqrt(Lk / (env ** 2).sum(-1, keepdim=True))        # energy Lk (like unit noise)
    noise = torch.randn(channels, H, Lk, generator=generator, dtype=torch.float64)
    return (noise * env[:, None, :] * scale).to(dtype)
