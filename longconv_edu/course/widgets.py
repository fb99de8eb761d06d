"""Interactive explorers for the notebooks: thin ipywidgets wiring over plain functions.

``squash_explorer()`` lets a learner pick a starting kernel, drag the Squash threshold lam, the
Smooth window, the kernel length and an optional added noise, and see the kernel before and
after, both magnitude spectra and the smoothness metrics (``regularize.smoothness_metrics``).
Everything it shows comes from plain functions the tests call directly:

* ``explorer_state(source, L, noise, lam, width, seed)`` -> a dict with the kernels, the metrics,
  the settings actually used, and notes for settings that need explaining. It never raises for a
  value a slider can produce: an even or too large width is clamped to a valid one, with a note.
* ``explorer_figure(state)`` -> a matplotlib Figure (``viz.plot_kernel_comparison``).

Starting kernels (``sources()``): "noisy random" (a smooth decaying kernel plus white noise of
std 0.002: what a freshly initialised long-conv kernel looks like), "SSM kernel"
(``regularize.ssm_kernel``: smooth by construction, so no noise unless the learner adds some),
and one entry per kernel the training rung saved: each array of each committed
``course/results/training/NAME-kernels.npz``, labelled with its run, its regulariser and its
layer (e.g. "digits-reg · longconv/smooth · layer0"). The list is read from the files, so new
runs appear without a code change. The seed picks the channel (row) of a trained kernel.
Amplitudes are in the paper's units: the reference init is randn * 0.002, lam is 0.001-0.004.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import ipywidgets as W
import numpy as np
import torch

from .._checks import check_choice, check_float, check_int
from ..regularize import smooth, smoothness_metrics, squash, ssm_kernel

__all__ = ["SYNTHETIC", "RESULTS_DIR", "trained_kernels", "sources", "default_noise", "max_width",
           "explorer_state", "explorer_figure", "metrics_html", "squash_explorer", "show_explorer"]

SYNTHETIC = ("noisy random", "SSM kernel")
PEAK = 0.01                       # peak |k| of the synthetic kernels (paper units: init std 0.002)
INIT_NOISE = 0.002                # the noise of "noisy random": the paper's init std
CUTOFF = 0.1                      # cycles per tap for the high-frequency metric and the plots
RESULTS_DIR = Path(__file__).resolve().parents[2] / "course" / "results" / "training"
MAX_L = 8192                      # the L slider's range for the synthetic kernels


def trained_kernels(results_dir=None) -> dict:
    """{label: (path, key)} for every kernel array in ``results_dir``/*-kernels.npz (sorted).

    A file NAME-kernels.npz with key "ARM/layerJ" (e.g. "longconv/smooth/layer0", "ssm/layer1")
    gives the label "NAME · ARM · layerJ": the run, its regulariser (or "ssm") and the layer.
    Files that cannot be read are left out (the explorer must not break on one bad file).
    """
    folder = Path(RESULTS_DIR if results_dir is None else results_dir)
    out = {}
    for path in sorted(folder.glob("*-kernels.npz")):
        try:
            with np.load(path) as z:
                keys = [k for k in z.files if z[k].ndim >= 1 and z[k].dtype.kind == "f"]
        except (OSError, ValueError):
            continue
        run = path.name[: -len("-kernels.npz")]
        for key in keys:
            arm, _, layer = key.rpartition("/")
            out[f"{run} · {arm or key} · {layer}" if arm else f"{run} · {key}"] = (path, key)
    return out


def sources(results_dir=None) -> list:
    """The starting kernels the explorer offers: the two synthetic ones, then every trained one."""
    return list(SYNTHETIC) + list(trained_kernels(results_dir))


def default_noise(source: str) -> float:
    """Noise a source starts with: INIT_NOISE for "noisy random" (it is its point), else 0."""
    return INIT_NOISE if source == "noisy random" else 0.0


def max_width(L: int) -> int:
    """The width slider's top: the largest odd number <= max(1, L // 8)."""
    w = max(1, L // 8)
    return w if w % 2 else w - 1


def _trained_rows(source: str, results_dir) -> np.ndarray:
    path, key = trained_kernels(results_dir)[source]
    with np.load(path) as z:
        a = np.asarray(z[key], dtype=np.float64)
    return a.reshape(-1, a.shape[-1])


def _synthetic(L: int, seed: int) -> np.ndarray:
    """A smooth decaying kernel of peak PEAK: two damped cosines (what training should find)."""
    t = np.arange(L, dtype=np.float64)
    rng = np.random.default_rng(seed)
    tau = max(L / 6.0, 4.0)
    f1, f2 = rng.uniform(2.0, 6.0) / max(L, 1), rng.uniform(0.005, 0.02)   # cycles per tap
    k = np.exp(-t / tau) * np.cos(2 * np.pi * f1 * t) + 0.5 * np.exp(-t / (tau / 4)) * np.cos(2 * np.pi * f2 * t + 1.0)
    return PEAK * k / max(np.max(np.abs(k)), 1e-30)


def _facts(k: np.ndarray) -> dict:
    """What the explorer tabulates: the size and sparsity of k, then ``smoothness_metrics``."""
    return {"max |k|": float(np.max(np.abs(k))) if k.size else 0.0,
            "nonzero taps": int(np.count_nonzero(k)),
            **smoothness_metrics(torch.from_numpy(np.ascontiguousarray(k)), CUTOFF)}


def explorer_state(source: str = "noisy random", L: int = 1024, noise: float | None = None,
                   lam: float = 0.003, width: int = 1, seed: int = 0, *, results_dir=None) -> dict:
    """Everything the explorer shows, as plain data. Never raises for slider values.

    source: one of ``sources(results_dir)``; L: kernel length (>= 1; a trained kernel's length
    caps it, with a note); noise: std of white noise added to the starting kernel (None: the
    source's ``default_noise``; >= 0, clamped); lam: Squash threshold (>= 0; clamped); width:
    Smooth window (clamped to the nearest odd value in 1..L, with a note); seed: the noise's seed
    and the row (channel) of a trained kernel. Returns {"before", "after": float64 arrays (L,),
    "metrics_before", "metrics_after": dicts, "settings": what was actually used, "notes": list
    of sentences}. Order as in the layer: Smooth first, then Squash.
    """
    check_choice(source, "source", sources(results_dir))
    L = max(1, check_int(L, "L"))
    seed = max(0, check_int(seed, "seed"))
    noise = default_noise(source) if noise is None else max(0.0, check_float(noise, "noise"))
    lam = max(0.0, check_float(lam, "lam"))
    width = check_int(width, "width")
    notes = []

    rng = np.random.default_rng(seed + 1)
    if source == "noisy random":
        base = _synthetic(L, seed)
    elif source == "SSM kernel":
        k = ssm_kernel(1, L, seed=seed, dtype=torch.float64)[0].numpy()
        base = PEAK * k / max(np.max(np.abs(k)), 1e-30)
    else:
        rows = _trained_rows(source, results_dir)
        r = seed % rows.shape[0]
        if rows.shape[1] < L:
            notes.append(f"this trained kernel has {rows.shape[1]} taps; L is {rows.shape[1]}")
            L = rows.shape[1]
        base = rows[r, :L].copy()
        notes.append(f"trained kernel: channel {r} of {rows.shape[0]}, {source}")
    before = base + noise * rng.standard_normal(L) if noise > 0 else base.copy()

    w = width if width % 2 else width - 1             # nearest odd below an even width
    w = min(max(w, 1), L if L % 2 else L - 1)
    w = max(w, 1)
    if w != width:
        notes.append(f"Smooth needs an odd width between 1 and L = {L}; using width {w} instead of {width}")
    after = before
    if w > 1:
        after = smooth(torch.from_numpy(after), w).numpy()
        if w >= L // 2:
            notes.append(f"width {w} spans most of the kernel: what is left is its running mean "
                         f"(each tap an average of {w} taps, padding counted as zeros)")
    peak_in = float(np.max(np.abs(after))) if L else 0.0
    after = squash(torch.from_numpy(np.ascontiguousarray(after)), lam).numpy()
    if lam > 0 and not np.any(after):
        notes.append(f"lam = {lam:.4g} is at least the largest |k| = {peak_in:.4g}"
                     + (" after smoothing" if w > 1 else "")
                     + ": Squash zeroed every tap, so the layer would pass only its D * u skip term")
    elif lam > 0:
        kept = np.count_nonzero(after) / L
        if kept < 0.05:
            notes.append(f"only {100 * kept:.1f}% of the taps survive Squash: a very sparse kernel")
    if L < 8:
        notes.append("kernels shorter than 8 taps have too few frequencies to fit a spectral decay")
    return {"before": before, "after": after,
            "metrics_before": _facts(before), "metrics_after": _facts(after),
            "settings": {"source": source, "L": L, "noise": noise, "lam": lam, "width": w, "seed": seed},
            "notes": notes}


def explorer_figure(state: dict):
    """The explorer's picture of a state: kernel before/after (first taps) and both spectra."""
    from ..lab.viz import plot_kernel_comparison
    s = state["settings"]
    zoom = min(s["L"], 512)
    return plot_kernel_comparison(state["before"], state["after"],
                                  labels=("before", f"smooth(w={s['width']}) -> squash(lam={s['lam']:.4g})"),
                                  title=f"{s['source']}, L = {s['L']}", cutoff=CUTOFF, zoom=zoom)


def _fmt(x) -> str:
    if isinstance(x, int):
        return str(x)
    return "n/a" if not math.isfinite(x) else f"{x:.4g}"


def metrics_html(state: dict) -> str:
    """The metrics of a state as a small HTML table, followed by its notes."""
    mb, ma = state["metrics_before"], state["metrics_after"]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(mb[k])}</td><td>{_fmt(ma[k])}</td></tr>"
                   for k in mb)
    s = state["settings"]
    head = (f"<b>{html.escape(s['source'])}: lam = {s['lam']:.4g}, width = {s['width']}, "
            f"L = {s['L']}, noise = {s['noise']:.4g}</b>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in state["notes"])
    return (f"<div class='squash-metrics'>{head}<table><tr><th>metric</th><th>before</th><th>after</th></tr>"
            f"{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


def squash_explorer(L: int = 1024, *, lam: float = 0.003, width: int = 1, noise: float | None = None,
                    source: str = "noisy random", results_dir=None):
    """The interactive explorer (an ipywidgets VBox with CSS class "squash-explorer").

    A dropdown of starting kernels (``sources``: synthetic, then each committed trained run),
    sliders lam, width (odd, 1 .. ``max_width(L)``), L (its range follows the source: a trained
    kernel's own length at most), "add noise" (reset to the source's ``default_noise`` when the
    source changes) and seed (the channel of a trained kernel). Each change recomputes
    ``explorer_state`` and redraws ``explorer_figure`` into an Image widget (PNG); the metrics are
    an HTML widget.
    """
    options = sources(results_dir)
    check_choice(source, "source", options)
    L = check_int(L, "L", min=16, max=MAX_L)
    noise = default_noise(source) if noise is None else check_float(noise, "noise", min=0.0, max=0.01)
    sl = dict(continuous_update=False, style={"description_width": "70px"},
              layout=W.Layout(width="400px"))
    w_src = W.Dropdown(options=options, value=source, description="kernel",
                       style={"description_width": "70px"}, layout=W.Layout(width="520px"))
    w_L = W.IntSlider(value=L, min=16, max=MAX_L, step=16, description="L", **sl)
    w_lam = W.FloatSlider(value=check_float(lam, "lam", min=0.0), min=0.0, max=0.02, step=0.0002,
                          readout_format=".4f", description="lam", **sl)
    w_width = W.IntSlider(value=1, min=1, max=max_width(L), step=2, description="width", **sl)
    w_width.value = min(check_int(width, "width", min=1, odd=True), w_width.max)
    w_noise = W.FloatSlider(value=noise, min=0.0, max=0.01, step=0.0002, readout_format=".4f",
                            description="add noise", **sl)
    w_seed = W.IntSlider(value=0, min=0, max=20, description="seed", **sl)
    metrics = W.HTML()
    plot = W.Image(format="png")        # a PNG of explorer_figure: no output capture needed
    busy = []                            # set while the controls are being re-ranged

    def fit_L(*_):
        """L's range follows the source: MAX_L for synthetic kernels, the taps of a trained one."""
        top = MAX_L if w_src.value in SYNTHETIC else _trained_rows(w_src.value, results_dir).shape[1]
        busy.append(1)
        w_L.max = max(16, top)
        w_L.value = min(w_L.value, w_L.max) if w_src.value in SYNTHETIC else w_L.max
        fit_width()
        busy.pop()

    def fit_width(*_):
        w_width.max = max_width(w_L.value)

    def on_source(change):
        busy.append(1)
        w_noise.value = default_noise(change["new"])
        busy.pop()
        fit_L()
        update()

    def update(*_):
        if busy:
            return
        state = explorer_state(w_src.value, w_L.value, w_noise.value, w_lam.value, w_width.value,
                               w_seed.value, results_dir=results_dir)
        metrics.value = metrics_html(state)
        plot.value = _png(explorer_figure(state))

    w_L.observe(fit_width, names="value")
    w_src.observe(on_source, names="value")
    for w in (w_lam, w_width, w_L, w_noise, w_seed):
        w.observe(update, names="value")
    fit_L()
    update()
    box = _Explorer([w_src, W.HBox([W.VBox([w_lam, w_width, w_L]), W.VBox([w_noise, w_seed])]),
                     metrics, plot])
    box.add_class("squash-explorer")
    return box


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    from ..lab.viz import compact_png

    data = compact_png(fig)
    plt.close(fig)
    return data


def show_explorer(**kw):
    """Display a still of the explorer's default state (for readers without a kernel), then the
    live explorer. ``kw`` go to ``squash_explorer``; returns the explorer."""
    from IPython.display import Image, display

    box = squash_explorer(**kw)
    display(Image(box.children[-1].value))
    return box


class _Explorer(W.VBox):
    """The explorer's box; its plain-text form says what it is (static views show that text)."""

    def __repr__(self):
        return "Squash explorer (interactive: run the notebook in JupyterLab to use it)"
