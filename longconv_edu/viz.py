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


# ----------------------------------------------------------------------------- rung 5: benchmark
def plot_benchmark(report: dict, *, title: str = ""):
    """The benchmark report (longconv_edu.bench): time against L, and speedup over torch.fft.

    Left: median seconds per call for each backend (log-log), with torch.fft (fft_conv) and
    scipy.fft (all cores) as dashed references (medians of their interleaved timings). Right: the
    speedup over fft_conv measured in the same process, with 1x and the 2x target marked.
    """
    rows = [r for r in report["results"] if r["status"] == "ok"]
    fig, axes = new_figure(2, width=4.6, height=3.3)
    ax_t, ax_s = axes[0]
    refs = {}
    for r in rows:
        refs.setdefault(r["L"], []).append((r["fft_seconds"], r["scipy_seconds"]))
    Ls = sorted(refs)
    for name in dict.fromkeys(r["backend"] for r in rows):
        mine = sorted((r["L"], r["seconds"], r["speedup_vs_fft"]) for r in rows if r["backend"] == name)
        L, sec, sp = zip(*mine)
        ax_t.loglog(L, sec, "o-", ms=4, label=name)
        ax_s.loglog(L, sp, "o-", ms=4, label=name)
    if Ls:
        f_med = [float(np.median([a for a, _ in refs[L]])) for L in Ls]
        s_med = [float(np.median([b for _, b in refs[L]])) for L in Ls]
        ax_t.loglog(Ls, f_med, "k--", lw=1, label="torch.fft (fft_conv)")
        ax_t.loglog(Ls, s_med, "k:", lw=1.5, label="scipy.fft, all cores")
        ax_s.loglog(Ls, [f / s for f, s in zip(f_med, s_med)], "k:", lw=1.5,
                      label="scipy.fft, all cores")
    ax_s.axhline(1, color="gray", lw=0.8)
    ax_s.axhline(2, color="tab:red", lw=0.8, ls="--", label="2x target")
    ax_t.set(xlabel="sequence length L", ylabel="seconds per call",
             title=f"{report['config']['rows']} rows, {report['config']['dtype']}")
    ax_s.set(xlabel="sequence length L", ylabel="speedup over fft_conv (same process)",
             title="higher is faster")
    if rows:
        ax_t.legend(fontsize=7)
        ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
