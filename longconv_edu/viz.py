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


# ----------------------------------------------------------------------------- rung 7: training
def plot_training_curves(summary: dict, *, keys=("train_loss", "val_acc")):
    """Mean training curves of an experiment summary (``train.summarize_experiment``): one panel
    per key, one line per table row, against the epoch."""
    fig, axes = new_figure(len(keys), width=4.6, height=3.0)
    for ax, key in zip(axes[0], keys):
        for row in summary["rows"]:
            y = np.asarray(row["curves"][key], float)
            ax.plot(np.arange(1, len(y) + 1), y, label=row["label"], lw=1.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        if key.endswith("loss"):
            ax.set_yscale("log")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(summary.get("experiment", ""), fontsize=10)
    return fig


def plot_kernel_gallery(kernels: dict, *, layer: str = "layer0", rows: int = 3, taps: int | None = None):
    """The paper's picture of learned kernels: one column per model, the first ``rows`` kernel rows
    on top (first ``taps`` taps) and their mean power spectrum |rfft(k)|^2 below (log-log).

    kernels: {"label/layerN": array (rows, L)} as in ``course/results/training/*-kernels.npz``.
    """
    labels = [k.rsplit("/", 1)[0] for k in kernels if k.endswith("/" + layer)]
    fig, axes = new_figure(len(labels), 2, width=2.6, height=2.2)
    for j, label in enumerate(labels):
        k = np.asarray(kernels[f"{label}/{layer}"], float)
        shown = k[:rows, :taps] if taps else k[:rows]
        ax = axes[0, j]
        for i, row in enumerate(shown):
            ax.plot(row, lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("tap", fontsize=8)
        P = (np.abs(np.fft.rfft(k, axis=-1)) ** 2).mean(0)
        f = np.fft.rfftfreq(k.shape[-1])
        ax = axes[1, j]
        ax.loglog(f[1:], P[1:] + 1e-20, lw=0.8)
        ax.set_xlabel("frequency (cycles / tap)", fontsize=8)
        ax.tick_params(labelsize=7)
        axes[0, j].tick_params(labelsize=7)
    axes[0, 0].set_ylabel("k[s]", fontsize=8)
    axes[1, 0].set_ylabel("power", fontsize=8)
    return fig


__all__ += ["plot_training_curves", "plot_kernel_gallery"]
