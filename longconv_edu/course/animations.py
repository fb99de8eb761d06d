"""Course animations: three pictures that move, drawn from the library's own computations.

Each ``*_animation`` function computes what it shows with the rung's code (``direct_conv``,
``butterfly_stage``, the kernel tracer), draws it frame by frame with matplotlib's
``FuncAnimation``, and returns the animation; ``to_html`` turns one into a self-contained
HTML/JavaScript player (``Animation.to_jshtml``: the frames are embedded PNGs), which plays in
JupyterLab and in the built book without a kernel. Frames are few and small (``DPI``, a few
inches wide) so that each animation adds well under 300 KB to its notebook.

* ``sliding_convolution_animation`` (rung 1): the flipped kernel slides along the input; at
  each output position t the highlighted products k[s] u[t - s] sum to y[t];
* ``butterfly_animation`` (rung 3): the radix-2 flow graph of one FFT, stage by stage, with the
  values each stage holds;
* ``memory_traffic_animation`` (rungs 4-5): launch by launch, the global-memory bytes that the
  unfused three-kernel FFT convolution and the fused FlashButterfly kernel read and write, as
  counted by ``kernels.trace`` running the CUDA kernel's own block program.
"""
from __future__ import annotations

import base64
import io
import tempfile
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, HTMLWriter

from .._checks import check_int, check_kernel_length

__all__ = ["DPI", "to_html", "sliding_convolution_animation", "butterfly_animation",
           "traffic_by_launch", "memory_traffic_animation"]

DPI = 80            # frames are screen-sized previews: 80 dpi keeps each player small
_INTERVAL_MS = 900  # time per frame when playing


def to_html(anim: FuncAnimation):
    """A self-contained HTML player for ``anim`` (IPython ``HTML``; its ``.data`` is the markup).

    The markup is matplotlib's JavaScript player (what ``Animation.to_jshtml`` writes) with each
    frame a palette PNG of at most ``_COLOURS`` colours, about a third of a full-colour frame's
    bytes for these flat plots. Closes the animation's figure, so a notebook shows the player and
    not a stray still.
    """
    from IPython.display import HTML

    if not isinstance(anim, FuncAnimation):
        raise TypeError(f"anim must be a matplotlib FuncAnimation, got {type(anim).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "animation.html")
        writer = _PaletteHTMLWriter(fps=1000 / anim._interval, embed_frames=True,
                                    default_mode="once")
        anim.save(str(path), writer=writer, dpi=DPI)
        html = path.read_text()
    plt.close(anim._fig)
    return HTML(html)


_COLOURS = 48       # palette size of each frame


class _PaletteHTMLWriter(HTMLWriter):
    """matplotlib's HTML writer, with each frame quantised to a small palette before embedding."""

    def grab_frame(self, **savefig_kwargs):
        from PIL import Image

        raw = io.BytesIO()
        self.fig.savefig(raw, format="png", dpi=self.dpi, **savefig_kwargs)
        img = Image.open(raw).convert("RGB").quantize(colors=_COLOURS)
        small = io.BytesIO()
        img.save(small, format="png", optimize=True)
        self._saved_frames.append(base64.encodebytes(small.getvalue()).decode("ascii"))


def _figure(width: float, height: float, ncols: int = 1):
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), dpi=DPI, squeeze=False,
                             constrained_layout=True)
    return fig, axes[0]


# ----------------------------------------------------------------------------- rung 1
def sliding_convolution_animation(u=None, k=None, *, L: int = 10) -> FuncAnimation:
    """The causal convolution y[t] = sum_s k[s] u[t - s] computed one output per frame.

    u: 1-D input of length L (default: a fixed random one); k: 1-D kernel, 1 <= len(k) <= L
    (default: a decaying 4-tap kernel). Top: the input, with the kernel flipped and placed so that
    tap s sits under u[t - s]; middle: the products; bottom: y filled in up to t. The outputs are
    ``direct_conv``'s, so the picture is the library's computation, not a re-drawing of it.
    """
    from ..conv import direct_conv

    if u is None:
        L = check_int(L, "L", min=1, max=64)
        u = torch.randn(L, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if k is None:
        k = torch.tensor([1.0, 0.6, 0.35, 0.2], dtype=torch.float64)[: len(u)]
    u = torch.as_tensor(u, dtype=torch.float64)
    k = torch.as_tensor(k, dtype=torch.float64)
    if u.ndim != 1 or k.ndim != 1:
        raise ValueError(f"u and k must be 1-D, got shapes {tuple(u.shape)} and {tuple(k.shape)}")
    L = check_int(len(u), "len(u)", min=1, max=64)
    Lk = check_kernel_length(len(k), L, "k", tuple(k.shape))
    y = direct_conv(u[None, None], k[None])[0, 0].numpy()
    un, kn = u.numpy(), k.numpy()
    t_axis = np.arange(L)

    fig = plt.figure(figsize=(5.6, 4.2), dpi=DPI, constrained_layout=True)
    ax_u, ax_p, ax_y = fig.subplots(3, 1, sharex=True)
    ylim_u = 1.15 * max(np.abs(un).max(), np.abs(kn).max())
    ylim_y = 1.15 * max(np.abs(y).max(), 1e-12)
    ylim_p = 1.15 * max(np.abs(kn[:, None] * un[None, :]).max(), 1e-12)

    def draw(t):
        for ax in (ax_u, ax_p, ax_y):
            ax.clear()
        lags = np.arange(min(t, Lk - 1) + 1)
        ax_u.stem(t_axis, un, linefmt="0.6", markerfmt="o", basefmt=" ")
        ax_u.bar(t - lags, kn[lags], width=0.5, color="tab:orange", alpha=0.6,
                 label="flipped kernel: k[s] under u[t - s]")
        ax_u.set(ylim=(-ylim_u, ylim_u), ylabel="u (grey), k (orange)",
                 title=f"output t = {t}: the flipped kernel's tap s sits under u[t - s]")
        prods = kn[lags] * un[t - lags]
        ax_p.bar(t - lags, prods, width=0.5, color="tab:green")
        ax_p.set(ylim=(-ylim_p, ylim_p), ylabel="k[s] u[t-s]")
        ax_p.text(0.01, 0.85, f"sum of the products = y[{t}] = {prods.sum():+.3f}",
                  transform=ax_p.transAxes, fontsize=9)
        ax_y.plot(t_axis[: t + 1], y[: t + 1], "o-", color="tab:blue", ms=4)
        ax_y.plot([t], [y[t]], "o", color="tab:red", ms=7)
        ax_y.set(ylim=(-ylim_y, ylim_y), xlim=(-0.6, L - 0.4), ylabel="y[t]",
                 xlabel="position t")
        return []

    return FuncAnimation(fig, draw, frames=range(L), interval=_INTERVAL_MS, blit=False)


# ----------------------------------------------------------------------------- rung 3
def butterfly_animation(x=None, *, n: int = 8) -> FuncAnimation:
    """One radix-2 FFT, stage by stage: bit reversal, then log2 n butterfly stages.

    x: 1-D signal of power-of-two length n <= 16 (default: a fixed random real one). Left: the
    flow graph with the current stage in colour; right: the real and imaginary parts of the n
    values after that stage (the last frame is ``torch.fft.fft(x)``). Values come from
    ``fft.bit_reversal_permutation`` and ``fft.butterfly_stage``.
    """
    from ..fft import bit_reversal_permutation, butterfly_stage
    from ..lab.viz import plot_butterfly_diagram

    if x is None:
        n = check_int(n, "n", min=2, max=16, power_of_two=True)
        x = torch.randn(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = torch.as_tensor(x)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {tuple(x.shape)}")
    n = check_int(len(x), "len(x)", min=2, max=16, power_of_two=True)
    perm = bit_reversal_permutation(n)
    values = [x[perm].to(torch.complex128)]
    S = n.bit_length() - 1
    for s in range(1, S + 1):
        values.append(butterfly_stage(values[-1], s))
    vals = [v.numpy() for v in values]
    vmax = 1.1 * max(max(np.abs(v.real).max(), np.abs(v.imag).max()) for v in vals)
    perm_list = perm.tolist()

    fig, (ax_g, ax_v) = _figure(7.0, 0.3 * n + 1.9, 2)

    def draw(stage):
        ax_g.clear()
        ax_v.clear()
        plot_butterfly_diagram(perm_list, stage=stage, ax=ax_g, twiddle_labels=n <= 8)
        ax_g.set_xlabel("stage s joins rows 2^(s-1) apart")
        ax_g.set_title(f"radix-2 flow graph, N = {n}")
        rows = np.arange(n)
        ax_v.barh(rows - 0.2, vals[stage].real, height=0.4, label="real part")
        ax_v.barh(rows + 0.2, vals[stage].imag, height=0.4, label="imaginary part")
        ax_v.axvline(0, color="k", lw=0.5)
        ax_v.set(xlim=(-vmax, vmax), ylim=(n - 0.5, -0.8), ylabel="row", xlabel="value",
                 title="after bit reversal" if stage == 0 else
                 (f"after stage {stage} = FFT(x)" if stage == S else f"after stage {stage}"))
        ax_v.legend(loc="lower left", fontsize=8)
        return []

    return FuncAnimation(fig, draw, frames=range(S + 1), interval=_INTERVAL_MS * 2, blit=False)


# ----------------------------------------------------------------------------- rungs 4-5
def traffic_by_launch(L: int = 16, *, dtype=torch.float32) -> dict:
    """Global-memory bytes per array, launch by launch, for both schedules of one row of length L.

    Runs ``kernels.trace.trace_conv`` (the CUDA kernel's block program under the counting
    tracer) on one (B, H) = (1, 1) row, scheme "naive" (three kernels: FFT, multiply, inverse
    FFT, through global memory) and "flashbutterfly" (one fused kernel). Returns
    {scheme: [(launch name, {array: (bytes read, bytes written)}), ...]}. This is the only
    function here that calls the tracer, so a change of the tracer's API is adapted here.
    """
    from ..kernels.trace import trace_conv

    L = check_int(L, "L", min=1, max=64)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 1, L, generator=g, dtype=dtype)
    k = torch.randn(1, L, generator=g, dtype=dtype)
    size = torch.finfo(dtype).bits // 8
    out = {}
    for scheme in ("naive", "flashbutterfly"):
        trace = trace_conv(u, k, scheme=scheme, record=True)
        launches = []
        for lt in trace.launches:
            per = defaultdict(lambda: [0, 0])
            for _blk, _tid, _ph, space, op, name, _idx in lt.events:
                if space == "global":
                    per[name.split(".")[0]][0 if op == "read" else 1] += size
            launches.append((lt.program, {a: tuple(v) for a, v in per.items()}))
        out[scheme] = launches
    return out


def memory_traffic_animation(L: int = 16) -> FuncAnimation:
    """Launch by launch, the global-memory traffic of the unfused FFT convolution vs the fused kernel.

    Left: the unfused schedule's three kernels, one per frame, each reading its inputs from and
    writing its result to global memory (U = FFT(u), UK = U * k_f, y = IFFT(UK)); right: the
    fused kernel, which reads u and k_f once and writes y once, keeping U and UK in shared
    memory. Bars are bytes per array (read below the axis, written above), summed so far; the
    title keeps the running total. Counted by ``traffic_by_launch`` (the tracer), not modelled.
    """
    data = traffic_by_launch(L)
    arrays = ["u", "k_f", "U", "UK", "y"]
    steps = max(len(v) for v in data.values())
    peak = 0
    for launches in data.values():
        tot = defaultdict(lambda: [0, 0])
        for _, per in launches:
            for a, (r, w) in per.items():
                tot[a][0] += r
                tot[a][1] += w
        peak = max(peak, max(max(v) for v in tot.values()))
    titles = {"naive": "three kernels (unfused)", "flashbutterfly": "one fused kernel"}
    fig, axes = _figure(7.6, 3.4, 2)

    def draw(frame):
        for ax, (scheme, launches) in zip(axes, data.items()):
            ax.clear()
            done = launches[: frame + 1]
            tot = {a: [0, 0] for a in arrays}
            for _, per in done:
                for a, (r, w) in per.items():
                    tot[a][0] += r
                    tot[a][1] += w
            x = np.arange(len(arrays))
            ax.bar(x, [-tot[a][0] for a in arrays], color="tab:blue", label="read")
            ax.bar(x, [tot[a][1] for a in arrays], color="tab:orange", label="written")
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xticks(x, arrays)
            ax.set_ylim(-1.15 * peak, 1.15 * peak)
            ax.set_xlabel("array in global memory")
            ax.set_ylabel("bytes (read < 0 < written)")
            R = sum(v[0] for v in tot.values())
            W = sum(v[1] for v in tot.values())
            now = launches[min(frame, len(launches) - 1)][0].split(" (")[0]
            status = f"launch {min(frame, len(launches) - 1) + 1}/{len(launches)}: {now}"
            ax.set_title(f"{titles.get(scheme, scheme)}\n{status}\ntotal {R} B read, {W} B written",
                         fontsize=9)
        axes[1].legend(loc="upper right", fontsize=8)
        return []

    return FuncAnimation(fig, draw, frames=range(steps), interval=_INTERVAL_MS * 2, blit=False)
