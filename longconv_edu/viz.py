"""Matplotlib helpers shared by notebooks, widgets and the benchmark: each returns a Figure.

Plots are plain functions of arrays, so tests call them directly and widgets only wire them.
Nothing here computes results; it only draws what the other modules computed.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["as_numpy", "new_figure", "plot_kernels", "plot_matrix"]


def as_numpy(x) -> np.ndarray:
    """A detached CPU NumPy copy of a tensor or array-like (for plotting only)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.0, **kw):
    """A figure with a grid of axes sized for a notebook cell; returns (fig, axes)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             constrained_layout=True, squeeze=False, **kw)
    return fig, axes


def plot_kernels(kernels: dict, *, title: str = "", ax=None):
    """Overlay named 1-D kernels (name -> array) against their tap index."""
    fig, ax = (ax.figure, ax) if ax is not None else (lambda f, a: (f, a[0, 0]))(*new_figure(width=7))
    for name, k in kernels.items():
        ax.plot(as_numpy(k).ravel(), label=name, lw=1)
    ax.set_xlabel("tap s (lag)")
    ax.set_ylabel("k[s]")
    if title:
        ax.set_title(title)
    if len(kernels) > 1:
        ax.legend(fontsize=8)
    return fig


def plot_matrix(M, *, title: str = "", ax=None, cmap: str = "RdBu_r", symmetric: bool = True):
    """A heatmap of a real matrix (Toeplitz matrices, DFT parts, butterfly factors)."""
    fig, ax = (ax.figure, ax) if ax is not None else (lambda f, a: (f, a[0, 0]))(*new_figure())
    M = as_numpy(M)
    vmax = float(np.max(np.abs(M))) or 1.0
    im = ax.imshow(M, cmap=cmap, vmin=-vmax if symmetric else None, vmax=vmax if symmetric else None,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- rung 6: smooth kernels
__all__ += ["plot_spectra", "plot_kernel_comparison"]


def plot_spectra(kernels: dict, *, title: str = "", ax=None, cutoff: float | None = None):
    """Magnitude spectra |rfft(k)| (log scale) of named 1-D kernels against frequency in cycles
    per tap (0 .. 0.5); an optional dashed line marks a cutoff frequency."""
    fig, ax = (ax.figure, ax) if ax is not None else (lambda f, a: (f, a[0, 0]))(*new_figure(width=7))
    drew = False
    for name, k in kernels.items():
        k = as_numpy(k).ravel().astype(np.float64)
        mag = np.abs(np.fft.rfft(k))
        f = np.fft.rfftfreq(k.size)
        if np.any(mag > 0):
            ax.semilogy(f, np.maximum(mag, 1e-12 * mag.max()), label=name, lw=0.8)
            drew = True
        else:
            ax.plot([], [], label=f"{name} (all zero)")
    if cutoff is not None:
        ax.axvline(cutoff, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("frequency (cycles per tap)")
    ax.set_ylabel("|K(f)|")
    if title:
        ax.set_title(title)
    if len(kernels) > 1 or not drew:
        ax.legend(fontsize=8)
    return fig


def plot_kernel_comparison(before, after, *, labels=("before", "after"), title: str = "",
                           cutoff: float | None = None, zoom: int | None = None):
    """Two panels: a kernel before/after an operator against the tap index (the first ``zoom``
    taps if given), and both magnitude spectra. Returns the Figure."""
    fig, axes = new_figure(2, width=4.6, height=2.9)
    b, a = as_numpy(before).ravel(), as_numpy(after).ravel()
    n = b.size if zoom is None else max(1, min(int(zoom), b.size))
    plot_kernels({labels[0]: b[:n], labels[1]: a[:n]}, ax=axes[0, 0],
                 title="kernel" + (f" (first {n} taps)" if n < b.size else ""))
    plot_spectra({labels[0]: b, labels[1]: a}, ax=axes[0, 1], title="magnitude spectrum", cutoff=cutoff)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
