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


# ----------------------------------------------------------------------------- rungs 3-4
def plot_io_model(lengths, traffics: dict, *, bandwidth: float, peak_flops: float,
                  title: str = ""):
    """Bytes and FLOPs against L for several schedules, and where each sits on the roofline.

    lengths: the L values; traffics: {schedule name: [io_model.Traffic for each L]};
    bandwidth in bytes/s, peak_flops in flop/s (the machine the roofline is drawn for).
    Left: slow-memory bytes vs L. Middle: FLOPs vs L. Right: the roofline, attainable flop/s
    = min(peak, intensity * bandwidth), with each schedule's (intensity, attainable) points.
    """
    fig, axes = new_figure(3, width=4.0, height=3.1)
    ax_b, ax_f, ax_r = axes[0]
    L = np.asarray(lengths, float)
    for name, tr in traffics.items():
        ax_b.loglog(L, [t.bytes for t in tr], "o-", ms=3, label=name)
        ax_f.loglog(L, [t.flops for t in tr], "o-", ms=3, label=name)
        inten = np.array([t.intensity for t in tr])
        ax_r.loglog(inten, np.minimum(peak_flops, inten * bandwidth), "o", ms=4, label=name)
    ax_b.set(xlabel="L", ylabel="bytes to/from slow memory", title="memory traffic")
    ax_f.set(xlabel="L", ylabel="real FLOPs", title="arithmetic")
    x = np.logspace(-2, 3, 200)
    ax_r.loglog(x, np.minimum(peak_flops, x * bandwidth), "k-", lw=1, label="roofline")
    ridge = peak_flops / bandwidth
    ax_r.axvline(ridge, color="gray", ls=":", lw=1)
    ax_r.set(xlabel="FLOPs per byte", ylabel="attainable flop/s",
             title=f"roofline (ridge at {ridge:.0f} flop/B)")
    for ax in (ax_b, ax_f, ax_r):
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- rung 5 (CUDA kernel)
def plot_butterfly_schedule(stages, n: int, *, title: str = ""):
    """Which CUDA thread computes which butterfly, stage by stage, in one thread block.

    stages: [(label, [(thread, top, bottom), ...]), ...] as ``kernels.trace.butterfly_schedule``
    returns it; n: the tile length. Columns are stages (separated by the dashed barriers,
    ``cuda.syncthreads()``), rows are shared-memory positions 0..n-1; each butterfly is drawn as
    the two lines joining its positions, coloured by the thread that computes it.
    """
    fig, axes = new_figure(1, width=min(1.0 + 0.75 * len(stages), 11), height=3.6)
    ax = axes[0, 0]
    threads = sorted({t for _, pairs in stages for t, _, _ in pairs})
    cmap = plt.get_cmap("tab10")
    for j, (label, pairs) in enumerate(stages):
        for t, a, b in pairs:
            c = cmap(threads.index(t) % 10)
            ax.plot([j, j + 1], [a, a], color=c, lw=0.8)
            ax.plot([j, j + 1], [b, b], color=c, lw=0.8)
            ax.plot([j, j + 1], [a, b], color=c, lw=0.8)
            ax.plot([j, j + 1], [b, a], color=c, lw=0.8)
        ax.axvline(j + 1, color="gray", ls="--", lw=0.6)
    ax.set_xticks([j + 0.5 for j in range(len(stages))])
    ax.set_xticklabels([lab.replace(", ", "\n") for lab, _ in stages], fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_ylabel("shared-memory index")
    for i, t in enumerate(threads):
        ax.plot([], [], color=cmap(i % 10), label=f"thread {t}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return fig


def plot_memory_traffic(measured: dict, model: dict | None = None, *, unit: str = "bytes",
                        title: str = ""):
    """Global-memory bytes read and written per schedule: measured bars, model markers.

    measured: {schedule: (bytes_read, bytes_written)} (e.g. from the tracer); model: the same
    keys (or a subset) with the IO model's prediction, drawn as black outlines over the bars.
    """
    fig, axes = new_figure(1, width=6.0, height=3.2)
    ax = axes[0, 0]
    names = list(measured)
    x = np.arange(len(names))
    w = 0.38
    reads = [measured[k][0] for k in names]
    writes = [measured[k][1] for k in names]
    ax.bar(x - w / 2, reads, w, label="read (tracer)", color="tab:blue")
    ax.bar(x + w / 2, writes, w, label="written (tracer)", color="tab:orange")
    labelled = False
    for i, k in enumerate(names):
        if model and k in model:
            r, wr = model[k]
            ax.bar([i - w / 2, i + w / 2], [r, wr], w, fill=False, edgecolor="k", lw=1.2,
                   label=None if labelled else "IO model (outline)")
            labelled = True
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel(f"global memory {unit}")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return fig
