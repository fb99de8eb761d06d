"""Matplotlib helpers shared by notebooks, widgets and the benchmark: each returns a Figure.

Plots are plain functions of arrays, so tests call them directly and widgets only wire them.
Nothing here computes results; it only draws what the other modules computed.

One figure style for the whole course (``COURSE_STYLE``) is applied when this module is imported,
so no notebook cell sets sizes or dpi: 100 dpi, 9-pt text (10-pt titles), legends placed where
they cover least data, on a light frame. At 100 dpi a typical two-panel figure (9 x 3 in) is a
900 x 300 px PNG, readable on a laptop screen. In a notebook, figures are stored as palette PNGs
of at most ``PNG_COLOURS`` colours (``compact_png``): visually the same for line plots and
heatmaps, and 2-4 times smaller than matplotlib's full-colour PNG (a noisy kernel plot is ~40 KB
instead of ~130 KB), which keeps the committed notebooks small.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["COURSE_STYLE", "PNG_COLOURS", "use_course_style", "compact_png", "as_numpy",
           "new_figure", "plot_kernels", "plot_matrix", "plot_signals", "plot_spectrum",
           "plot_timings", "plot_io_model", "plot_dft_matrix", "plot_butterfly_diagram",
           "plot_factor_patterns", "plot_fft_stage", "plot_four_step", "plot_butterfly_schedule",
           "plot_memory_traffic", "plot_benchmark", "plot_benchmark_file", "plot_spectra",
           "plot_kernel_comparison", "plot_training_curves", "plot_kernel_gallery", "plot_tap_rms",
           "plot_learned_blocks"]


COURSE_STYLE = {
    "figure.dpi": 100, "savefig.dpi": 100,
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "figure.titlesize": 10,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
    "legend.loc": "best", "legend.framealpha": 0.85, "legend.borderaxespad": 0.3,
    "axes.grid": False, "lines.linewidth": 1.3,
}


PNG_COLOURS = 128


def use_course_style() -> None:
    """Apply COURSE_STYLE to matplotlib's rcParams (done once, at import)."""
    plt.rcParams.update(COURSE_STYLE)


def compact_png(fig) -> bytes:
    """The figure as a palette PNG of at most PNG_COLOURS colours (what notebooks store).

    ``fig``: a matplotlib Figure, or the path of a PNG file (a committed result picture shown in
    a notebook: ``IPython.display.Image(data=compact_png(path))``).
    """
    import io
    from pathlib import Path

    from matplotlib.figure import Figure
    from PIL import Image

    if isinstance(fig, Figure):
        raw = io.BytesIO()
        fig.savefig(raw, format="png", bbox_inches="tight")
    elif isinstance(fig, (str, Path)):
        raw = Path(fig)
        if not raw.is_file():
            raise ValueError(f"fig must be a matplotlib Figure or the path of a PNG file; {str(raw)!r} "
                             f"is not a file")
    else:
        raise TypeError(f"fig must be a matplotlib Figure or the path of a PNG file, got {type(fig).__name__}")
    try:
        img = Image.open(raw).convert("RGB").quantize(colors=PNG_COLOURS)
    except OSError as e:               # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"fig must be a matplotlib Figure or the path of a PNG file; {str(raw)!r} is not "
                         f"an image ({e})") from None
    out = io.BytesIO()
    img.save(out, format="png", optimize=True)
    return out.getvalue()


def _store_compact_pngs() -> None:
    """In IPython, display figures through ``compact_png``. Called when a figure is made, after
    matplotlib's inline backend has installed its own formatter (which this replaces)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        from matplotlib.figure import Figure

        ip.display_formatter.formatters["image/png"].for_type(Figure, compact_png)


use_course_style()


def as_numpy(x) -> np.ndarray:
    """A detached CPU NumPy copy of a tensor or array-like (for plotting only)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.0, **kw):
    """A figure with a grid of axes sized for a notebook cell; returns (fig, axes)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             constrained_layout=True, squeeze=False, **kw)
    _store_compact_pngs()
    return fig, axes


def _legend_below(ax) -> None:
    """The axis's legend under its x label, outside the data (constrained layout makes room)."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.24),
              ncol=min(2, max(1, len(labels))), fontsize=8, frameon=False)


def _matrix(M, name: str) -> np.ndarray:
    """M as a 2-D NumPy array, or a clear error naming the argument."""
    M = as_numpy(M)
    if M.ndim != 2 or M.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {M.shape}")
    return M


def _figure_and_axis(ax, width: float = 7):
    """The given axis and its figure, or a new one-panel figure ``width`` inches wide."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = new_figure(width=width)
    return fig, axes[0, 0]


def plot_kernels(kernels: dict, *, title: str = "", ax=None):
    """Overlay named 1-D kernels (name -> array) against their tap index."""
    _check_named(kernels, "kernels", "a 1-D kernel")
    fig, ax = _figure_and_axis(ax)
    for name, k in kernels.items():
        ax.plot(as_numpy(k).ravel(), label=name, lw=1)
    ax.set_xlabel("tap s (lag)")
    ax.set_ylabel("k[s]")
    if title:
        ax.set_title(title)
    if len(kernels) > 1:
        _legend_below(ax)
    return fig


def plot_matrix(M, *, title: str = "", ax=None, cmap: str = "RdBu_r", symmetric: bool = True):
    """A heatmap of a real matrix (Toeplitz matrices, DFT parts, butterfly factors)."""
    M = _matrix(M, "M")
    fig, ax = _figure_and_axis(ax, width=4.2)
    vmax = float(np.max(np.abs(M))) or 1.0
    im = ax.imshow(M, cmap=cmap, vmin=-vmax if symmetric else None, vmax=vmax if symmetric else None,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


def _check_named(x, name: str, what: str) -> None:
    """Plots of several named things take a dict name -> thing; say so clearly otherwise."""
    if not isinstance(x, dict):
        raise TypeError(f"{name} must be a dict mapping a name to {what}, got {type(x).__name__}")


def plot_signals(signals: dict, *, title: str = "", xlabel: str = "t", ylabel: str = "",
                 styles: dict | None = None, ax=None):
    """Overlay named 1-D sequences: name -> y, or name -> (x, y) to give positions explicitly.

    ``styles`` maps a name to matplotlib keyword arguments for that line (colour, marker, ...),
    so pictures can make e.g. "the truth" a thick grey line under the thinner attempts.
    """
    _check_named(signals, "signals", "a 1-D sequence or an (x, y) pair")
    fig, ax = _figure_and_axis(ax)
    styles = styles or {}
    for name, sig in signals.items():
        if isinstance(sig, tuple) and len(sig) == 2:
            x, y = as_numpy(sig[0]).ravel(), as_numpy(sig[1]).ravel()
        else:
            y = as_numpy(sig).ravel()
            x = np.arange(y.size)
        ax.plot(x, y, **{"label": name, "lw": 1.2, **styles.get(name, {})})
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(signals) > 1:
        ax.legend()
    return fig


def plot_spectrum(spectra: dict, *, title: str = "", log: bool = True, ax=None):
    """Magnitude of named one-sided spectra (name -> complex ``rfft`` output, N//2 + 1 bins).

    Bin j is the frequency j / N cycles per sample: bin 0 the mean (DC), the last bin of an even
    N the Nyquist frequency 1/2. ``log``: a logarithmic magnitude axis (spectra span decades).
    """
    _check_named(spectra, "spectra", "a complex rfft output")
    fig, ax = _figure_and_axis(ax)
    for name, spec in spectra.items():
        mag = np.abs(as_numpy(spec).ravel())
        ax.plot(np.arange(mag.size), mag, label=name, lw=1)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("rfft bin j  (frequency j/N cycles per sample)")
    ax.set_ylabel("|k_f[j]|")
    if title:
        ax.set_title(title)
    if len(spectra) > 1:
        ax.legend()
    return fig


def plot_timings(results: dict, *, fit_min_L: int | None = None, crossover: tuple | None = None,
                 title: str = "", ax=None):
    """Seconds against L on log-log axes: one line per name in ``results`` ({name: {L: seconds}}).

    Each line with at least two lengths >= ``fit_min_L`` gets its least-squares log-log slope
    (``timing.loglog_slope``) in the legend and as a dotted fitted line: ~2 means O(L^2), ~1
    means O(L) or O(L log L). ``crossover=(slow, fast)`` marks with a vertical line the length
    from which ``fast`` beats ``slow`` (``timing.crossover``), if the data show one.
    """
    from ..timing import crossover as find_crossover
    from ..timing import loglog_slope

    _check_named(results, "results", "a dict {L: seconds}")
    for name, by_L in results.items():
        _check_named(by_L, f"results[{name!r}]", "seconds per length L")
    if crossover is not None:
        if not (isinstance(crossover, tuple) and len(crossover) == 2
                and all(n in results for n in crossover)):
            raise ValueError(f"crossover must be a pair (slow, fast) of keys of results "
                             f"({', '.join(map(repr, results))}), got {crossover!r}")
    fig, ax = _figure_and_axis(ax, width=6)
    for name, by_L in results.items():
        if not by_L:
            continue
        Ls = np.array(sorted(by_L), dtype=float)
        secs = np.array([by_L[L] for L in sorted(by_L)], dtype=float)
        fit = Ls >= (fit_min_L or 0)
        label = name
        if fit.sum() >= 2:
            slope = loglog_slope(Ls[fit], secs[fit])
            label = f"{name}  (slope {slope:.2f})"
            coef = np.polyfit(np.log(Ls[fit]), np.log(secs[fit]), 1)
            line, = ax.plot(Ls, secs, "o-", ms=3, lw=1.2, label=label)
            ax.plot(Ls[fit], np.exp(np.polyval(coef, np.log(Ls[fit]))), ":", lw=1.5,
                    color=line.get_color())
        else:
            ax.plot(Ls, secs, "o-", ms=3, lw=1.2, label=label)
    if crossover is not None:
        slow, fast = crossover
        L_x = find_crossover(results[slow], results[fast])
        if L_x is not None:
            ax.axvline(L_x, color="k", ls="--", lw=1, label=f"crossover L ~ {L_x:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("seconds per call")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))   # under the axes: never on the data
    ax.grid(True, which="major", alpha=0.3)
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
    _check_named(traffics, "traffics", "a list of io_model.Traffic (one per length)")
    L = np.asarray(lengths, float).ravel()
    for name, tr in traffics.items():
        if not isinstance(tr, (list, tuple)) or len(tr) != L.size:
            raise ValueError(f"traffics[{name!r}] must be a list of {L.size} io_model.Traffic, one per "
                             f"length, got {type(tr).__name__}"
                             + (f" of {len(tr)}" if isinstance(tr, (list, tuple)) else ""))
    fig, axes = new_figure(3, width=4.0, height=3.1)
    ax_b, ax_f, ax_r = axes[0]
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
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_dft_matrix(F, *, title: str = "DFT matrix"):
    """The complex matrix F as three pictures: real part, imaginary part, and phase (angle)."""
    F = _matrix(F, "F")
    fig, axes = new_figure(3, width=3.3, height=3.0)
    for ax, (name, part, cmap, lim) in zip(axes[0], [
            ("real", F.real, "RdBu_r", None), ("imaginary", F.imag, "RdBu_r", None),
            ("phase (radians)", np.angle(F), "twilight", np.pi)]):
        vmax = lim or (float(np.max(np.abs(part))) or 1.0)
        im = ax.imshow(part, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set(title=name, xlabel="input index n", ylabel="frequency k")
        fig.colorbar(im, ax=ax, shrink=0.75)
    fig.suptitle(title)
    return fig


def plot_butterfly_diagram(perm, *, stage: int | None = None, ax=None, twiddle_labels: bool = True):
    """The radix-2 decimation-in-time flow graph for N = len(perm) (N a power of two, small).

    Column 0 holds the inputs in bit-reversed order (x[perm[i]] at row i); column s holds the
    values after butterfly stage s. Each butterfly of stage s (blocks of m = 2^s) joins rows
    j and j + m/2 of a block: both outputs take a + w b and a - w b, with w = w_m^j written on the
    lower input's edges. ``stage`` (1..log2 N) is drawn in colour, the others in grey.
    """
    perm = [int(p) for p in as_numpy(perm).ravel()]
    n = len(perm)
    if n < 2 or n & (n - 1) or sorted(perm) != list(range(n)):
        raise ValueError(f"perm must be a permutation of 0..N-1 with N a power of two >= 2 (e.g. "
                         f"fft.bit_reversal_permutation(8)), got {perm}")
    S = n.bit_length() - 1
    if ax is None:
        fig, axes = new_figure(width=1.3 * S + 2.2, height=0.33 * n + 1.0)
        ax = axes[0, 0]
    fig = ax.figure
    for s in range(1, S + 1):
        m = 1 << s
        hot = stage == s
        for start in range(0, n, m):
            for j in range(m // 2):
                top, bot = start + j, start + j + m // 2
                for src in (top, bot):
                    for dst in (top, bot):
                        ax.plot([s - 1, s], [src, dst], color="C3" if hot else "0.75",
                                lw=1.4 if hot else 0.7, zorder=1)
                if twiddle_labels and hot and n <= 16:
                    ax.text(s - 0.62, bot + 0.12, f"$w_{{{m}}}^{{{j}}}$" if j else "1", fontsize=9,
                            color="C0")
    for s in range(S + 1):
        ax.scatter([s] * n, range(n), s=14, color="C3" if stage in (s, s + 1) else "k", zorder=2)
    for i, p in enumerate(perm):
        ax.text(-0.15, i, f"x[{p}]", ha="right", va="center", fontsize=9)
        ax.text(S + 0.15, i, f"X[{i}]", ha="left", va="center", fontsize=9)
    ax.set_xlim(-0.9, S + 0.9)
    ax.set_ylim(n - 0.5, -0.8)
    ax.set_xticks(range(S + 1), ["bit-rev"] + [f"stage {s}" for s in range(1, S + 1)], fontsize=9)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"radix-2 butterfly, N = {n}")
    return fig


def plot_factor_patterns(mats, titles, *, ncols: int | None = None):
    """Where each matrix is non-zero (black), with its non-zero count: butterfly factor sparsity."""
    if not isinstance(mats, (list, tuple)) or not isinstance(titles, (list, tuple)) or len(mats) != len(titles):
        raise ValueError(f"mats and titles must be lists of the same length, got {type(mats).__name__} "
                         f"and {type(titles).__name__}"
                         + (f" of {len(mats)} and {len(titles)}" if isinstance(mats, (list, tuple))
                            and isinstance(titles, (list, tuple)) else ""))
    mats = [_matrix(M, f"mats[{i}]") for i, M in enumerate(mats)]
    ncols = ncols or len(mats)
    nrows = -(-len(mats) // ncols)
    fig, axes = new_figure(ncols, nrows, width=2.3, height=2.4)
    for ax in axes.ravel()[len(mats):]:
        ax.axis("off")
    for ax, M, t in zip(axes.ravel(), mats, titles):
        nz = np.abs(M) > 1e-12
        ax.imshow(nz, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{t}\n{int(nz.sum())} non-zeros", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_fft_stage(perm, stage: int, values):
    """One step of the iterative FFT: the flow graph with ``stage`` highlighted (0 = after the
    bit-reversal permutation), and the N complex values held after that stage."""
    values = as_numpy(values).ravel()
    n = len(as_numpy(perm).ravel())
    if values.size != n:
        raise ValueError(f"values must hold one value per row, {n} (len(perm)), got {values.size}")
    if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) or not 0 <= stage < max(n, 2).bit_length():
        raise ValueError(f"stage must be an int from 0 (after bit reversal) to log2 N = "
                         f"{max(n, 2).bit_length() - 1}, got {stage!r}")
    fig, axes = new_figure(2, width=4.6, height=0.28 * len(values) + 1.6)
    plot_butterfly_diagram(perm, stage=stage if stage > 0 else None, ax=axes[0, 0])
    ax = axes[0, 1]
    rows = np.arange(len(values))
    ax.barh(rows - 0.2, values.real, height=0.4, label="real")
    ax.barh(rows + 0.2, values.imag, height=0.4, label="imag")
    ax.set_ylim(len(values) - 0.5, -0.8)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(title="after bit reversal" if stage == 0 else f"after stage {stage}", ylabel="row")
    ax.legend(loc="lower right")
    return fig


def plot_four_step(steps):
    """The four-step (Monarch) DFT as pictures: a list of (title, 2-D complex array) shown left to
    right as heatmaps of the real part (the twiddles only rotate phases, which |.| would hide),
    e.g. reshape -> matmul -> twiddle -> matmul -> transpose."""
    if not isinstance(steps, (list, tuple)) or not steps or not all(
            isinstance(st, (list, tuple)) and len(st) == 2 for st in steps):
        raise TypeError(f"steps must be a non-empty list of (title, 2-D array) pairs, got {steps!r:.80}")
    fig, axes = new_figure(len(steps), width=2.5, height=2.6)
    for i, (ax, (t, A)) in enumerate(zip(axes[0], steps)):
        A = _matrix(A, f"steps[{i}][1]")
        vmax = float(np.max(np.abs(A.real))) or 1.0
        ax.imshow(A.real, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel(f"{A.shape[0]} x {A.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# ----------------------------------------------------------------------------- rung 5 (CUDA kernel)

def plot_butterfly_schedule(stages, n: int, *, title: str = ""):
    """Which CUDA thread computes which butterfly, stage by stage, in one thread block.

    stages: [(label, [(thread, top, bottom), ...]), ...] as ``kernels.trace.butterfly_schedule``
    returns it; n: the tile length. Columns are stages (separated by the dashed barriers,
    ``cuda.syncthreads()``), rows are shared-memory positions 0..n-1; each butterfly is drawn as
    the two lines joining its positions, coloured by the thread that computes it.
    """
    if not isinstance(stages, (list, tuple)) or not stages or not all(
            isinstance(st, (list, tuple)) and len(st) == 2 for st in stages):
        raise TypeError(f"stages must be a non-empty list of (label, [(thread, top, bottom), ...]) as "
                        f"kernels.trace.butterfly_schedule returns, got {stages!r:.80}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be the tile length, an int >= 2, got {n!r}")
    fig, axes = new_figure(1, width=min(1.0 + 0.75 * len(stages), 11), height=3.6)
    ax = axes[0, 0]
    threads = sorted({t for _, pairs in stages for t, _, _ in pairs})
    cmap = plt.get_cmap("tab10")
    for j, (_label, pairs) in enumerate(stages):
        for t, a, b in pairs:
            c = cmap(threads.index(t) % 10)
            ax.plot([j, j + 1], [a, a], color=c, lw=0.8)
            ax.plot([j, j + 1], [b, b], color=c, lw=0.8)
            ax.plot([j, j + 1], [a, b], color=c, lw=0.8)
            ax.plot([j, j + 1], [b, a], color=c, lw=0.8)
        ax.axvline(j + 1, color="gray", ls="--", lw=0.6)
    ax.set_xticks([j + 0.5 for j in range(len(stages))])
    ax.set_xticklabels([lab.replace(", ", "\n") for lab, _ in stages], fontsize=9)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_ylabel("shared-memory index")
    for i, t in enumerate(threads):
        ax.plot([], [], color=cmap(i % 10), label=f"thread {t}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return fig


def plot_memory_traffic(measured: dict, model: dict | None = None, *, unit: str = "bytes",
                        title: str = ""):
    """Global-memory bytes read and written per schedule: measured bars, model markers.

    measured: {schedule: (bytes_read, bytes_written)} (e.g. from the tracer); model: the same
    keys (or a subset) with the IO model's prediction, drawn as black outlines over the bars.
    """
    _check_named(measured, "measured", "a (bytes_read, bytes_written) pair")
    if model is not None:
        _check_named(model, "model", "a (bytes_read, bytes_written) pair")
    for what, d in (("measured", measured), ("model", model or {})):
        for k, v in d.items():
            if not (isinstance(v, (list, tuple)) and len(v) == 2):
                raise ValueError(f"{what}[{k!r}] must be a (bytes_read, bytes_written) pair, got {v!r}")
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
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel(f"global memory {unit}")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- rung 5: benchmark

def plot_benchmark_file(path, *, title: str = ""):
    """Read a benchmark JSON (what ``python -m longconv_edu bench`` saves) and plot it with
    ``plot_benchmark``: returns (figure, report), so the text can quote the same numbers."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be a benchmark JSON file, got {str(path)!r} (not found)")
    report = json.loads(path.read_text())
    if not _is_report(report):
        raise ValueError(f"path {str(path)!r} is not a benchmark report (needs 'results', 'config')")
    return plot_benchmark(report, title=title), report


def _is_report(report) -> bool:
    return isinstance(report, dict) and isinstance(report.get("results"), list) and "config" in report


def plot_benchmark(report: dict, *, title: str = ""):
    """The benchmark report (longconv_edu.lab.bench): time against L, and speedup over torch.fft.

    Left: median seconds per call for each backend (log-log), with torch.fft (fft_conv) and
    scipy.fft (all cores) as dashed references (medians of their interleaved timings). Right: the
    speedup over fft_conv measured in the same process, with 1x and the 2x target marked.
    """
    if not _is_report(report):
        raise TypeError(f"report must be a benchmark report (a dict with 'results' and 'config', as "
                        f"plot_benchmark_file reads it), got {type(report).__name__}"
                        + (f" with keys {sorted(report)}" if isinstance(report, dict) else ""))
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
    if rows:                              # one legend for both panels, under them: clear of the data
        handles, labels = ax_t.get_legend_handles_labels()
        h2, l2 = ax_s.get_legend_handles_labels()
        handles += [h for h, lab in zip(h2, l2) if lab not in labels]
        labels += [lab for lab in l2 if lab not in labels]
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- rung 6: smooth kernels


def plot_spectra(kernels: dict, *, title: str = "", ax=None, cutoff: float | None = None):
    """Magnitude spectra |rfft(k)| (log scale) of named 1-D kernels against frequency in cycles
    per tap (0 .. 0.5); an optional dashed line marks a cutoff frequency."""
    _check_named(kernels, "kernels", "a 1-D kernel")
    fig, ax = _figure_and_axis(ax)
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
        _legend_below(ax)
    return fig


def plot_kernel_comparison(before, after, *, labels=("before", "after"), title: str = "",
                           cutoff: float | None = None, zoom: int | None = None):
    """Two panels: a kernel before/after an operator against the tap index (the first ``zoom``
    taps if given), and both magnitude spectra. Returns the Figure."""
    b, a = as_numpy(before).ravel(), as_numpy(after).ravel()
    if b.size == 0 or a.size == 0:
        raise ValueError(f"before and after must be non-empty kernels, got {b.size} and {a.size} taps")
    fig, axes = new_figure(2, width=4.6, height=2.9)
    n = b.size if zoom is None else max(1, min(int(zoom), b.size))
    plot_kernels({labels[0]: b[:n], labels[1]: a[:n]}, ax=axes[0, 0],
                 title="kernel" + (f" (first {n} taps)" if n < b.size else ""))
    plot_spectra({labels[0]: b, labels[1]: a}, ax=axes[0, 1], title="magnitude spectrum", cutoff=cutoff)
    for ax in axes[0]:                         # one legend for both panels, below them
        ax.get_legend().remove()
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------- rung 7: training
def plot_training_curves(summary: dict, *, keys=("train_loss", "val_acc")):
    """Mean training curves of an experiment summary (``train.summarize_experiment``): one panel
    per key, one line per table row, against the epoch."""
    if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
        raise TypeError(f"summary must be an experiment summary (a dict with 'rows', from "
                        f"summarize_experiment), got {type(summary).__name__}"
                        + (f" with keys {sorted(summary)}" if isinstance(summary, dict) else ""))
    fig, axes = new_figure(len(keys), width=4.6, height=3.0)
    for ax, key in zip(axes[0], keys):
        for row in summary["rows"]:
            y = np.asarray(row["curves"][key], float)
            ax.plot(np.arange(1, len(y) + 1), y, label=row["label"], lw=1.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        if key.endswith("loss"):
            ax.set_yscale("log")
    # one legend for all panels, below them: clear of every curve however many rows there are
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, max(1, len(labels))),
               fontsize=8)
    fig.suptitle(summary.get("experiment", ""), fontsize=10)
    return fig


def plot_kernel_gallery(kernels: dict, *, layer: str = "layer0", rows: int = 3, taps: int | None = None):
    """The paper's picture of learned kernels: one column per model, the first ``rows`` kernel rows
    on top (first ``taps`` taps) and their mean power spectrum |rfft(k)|^2 below (log-log).

    kernels: {"label/layerN": array (rows, L)} as in ``course/results/training/*-kernels.npz``.
    """
    _check_named(kernels, "kernels", "a (rows, L) kernel array")
    labels = [k.rsplit("/", 1)[0] for k in kernels if k.endswith("/" + layer)]
    if not labels:
        raise ValueError(f"kernels has no key ending in '/{layer}' (layer={layer!r}); its keys: "
                         f"{sorted(kernels)}")
    fig, axes = new_figure(len(labels), 2, width=2.6, height=2.2)
    for j, label in enumerate(labels):
        k = np.asarray(kernels[f"{label}/{layer}"], float)
        shown = k[:rows, :taps] if taps else k[:rows]
        ax = axes[0, j]
        for row in shown:
            ax.plot(row, lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("tap", fontsize=9)
        P = (np.abs(np.fft.rfft(k, axis=-1)) ** 2).mean(0)
        f = np.fft.rfftfreq(k.shape[-1])
        ax = axes[1, j]
        ax.loglog(f[1:], P[1:] + 1e-20, lw=0.8)
        ax.set_xlabel("frequency (cycles / tap)", fontsize=9)
        ax.tick_params(labelsize=7)
        axes[0, j].tick_params(labelsize=7)
    axes[0, 0].set_ylabel("k[s]", fontsize=9)
    axes[1, 0].set_ylabel("power", fontsize=9)
    return fig




def plot_tap_rms(kernels: dict, *, layer: str = "layer0", boundary: int | None = None,
                 window: int = 32, title: str = "", ax=None):
    """How large a learned kernel is at each lag: for every model, the RMS of k[s] over its kernel
    rows, averaged over ``window`` neighbouring taps, on a log scale against the tap s. A dotted
    line at ``boundary`` marks where the taps that can only see noise begin (noisy digits, digit
    last: 256). Exactly-zero stretches (Squash) are drawn at the bottom of the axis.

    kernels: {"label/layerN": array (rows, L)} as in ``course/results/training/*-kernels.npz``.
    """
    _check_named(kernels, "kernels", "a (rows, L) kernel array")
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be >= 1 taps, got {window}")
    keys = [k for k in kernels if k.endswith("/" + layer)]
    if not keys:
        raise ValueError(f"kernels has no key ending in '/{layer}' (layer={layer!r}); its keys: "
                         f"{sorted(kernels)}")
    fig, ax = _figure_and_axis(ax, width=6.5)
    floor = None
    curves = []
    for key in keys:
        k = np.asarray(kernels[key], float)
        k = k.reshape(-1, k.shape[-1])
        w = min(window, k.shape[-1])
        rms = np.sqrt(np.convolve((k ** 2).mean(0), np.ones(w) / w, mode="same"))
        curves.append((key.rsplit("/", 1)[0], rms))
        pos = rms[rms > 0]
        if pos.size:
            floor = pos.min() if floor is None else min(floor, pos.min())
    floor = 1e-6 if floor is None else floor / 3
    for label, rms in curves:
        ax.semilogy(np.maximum(rms, floor), label=label, lw=1)
    if boundary is not None:
        ax.axvline(boundary, color="k", ls=":", lw=0.8)
    ax.set_xlabel("tap s (lag)")
    ax.set_ylabel(f"RMS of k[s], {window}-tap average")
    if title:
        ax.set_title(title)
    if ax is fig.axes[0] and len(fig.axes) == 1:      # a figure of its own: the legend below the axes
        fig.legend(loc="outside lower center", ncol=2, fontsize=7)
    else:
        ax.legend(fontsize=7)
    return fig



# ----------------------------------------------------------------------------- rung 8

def plot_learned_blocks(learned, exact, *, names=None, title: str = ""):
    """Learned butterfly blocks beside the DFT blocks they started from, one row per block.

    learned, exact: sequences of complex (n_i, n_i) matrices (one channel's blocks, and the DFT
    blocks F_{n_i}). Columns: Re F (the DFT block), Re B (the learned block, same colour scale),
    |B - F| (how far each entry moved; its own scale, printed in the title with the relative
    Frobenius distance ||B - F|| / ||F||).
    """
    learned = [_matrix(b, f"learned[{i}]") for i, b in enumerate(learned)]
    exact = [_matrix(b, f"exact[{i}]") for i, b in enumerate(exact)]
    if len(learned) != len(exact) or not exact:
        raise ValueError(f"learned and exact must hold the same number of blocks (at least one), got "
                         f"{len(learned)} and {len(exact)}")
    names = names or [f"block {i} ({b.shape[0]}x{b.shape[0]})" for i, b in enumerate(exact)]
    fig, axes = new_figure(3, len(exact), width=2.9, height=2.5)
    for row, (B, F, name) in enumerate(zip(learned, exact, names)):
        vmax = max(float(np.abs(F.real).max()), float(np.abs(B.real).max()), 1e-12)
        for col, (M, what) in enumerate([(F.real, f"Re DFT, {name}"), (B.real, f"Re learned, {name}")]):
            ax = axes[row, col]
            im = ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_title(what, fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.75)
        diff = np.abs(B - F)
        rel = float(np.linalg.norm(B - F) / max(np.linalg.norm(F), 1e-30))
        ax = axes[row, 2]
        im = ax.imshow(diff, cmap="magma", vmin=0, interpolation="nearest")
        ax.set_title(f"|learned - DFT|, rel. Frobenius {rel:.3f}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.75)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
