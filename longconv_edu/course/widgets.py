"""Interactive explorers for the notebooks: thin ipywidgets wiring over plain functions.

``squash_explorer()`` lets a learner drag the Squash threshold lam, the Smooth window, the kernel
length and the noise level of a starting kernel, and see the kernel before and after, both
magnitude spectra and the three smoothness metrics of ``regularize``. Everything it shows comes
from two plain functions the tests call directly:

* ``explorer_state(source, L, noise, lam, width, seed)`` -> a dict with the kernels, the metrics,
  the settings actually used, and notes for settings that need explaining. It never raises for a
  value a slider can produce: an even or too large width is clamped to a valid one, with a note.
* ``explorer_figure(state)`` -> a matplotlib Figure (``viz.plot_kernel_comparison``).

Starting kernels: "noisy random" (a smooth decaying kernel plus white noise: what a freshly
learned long-conv kernel looks like), "SSM kernel" (``regularize.ssm_kernel``, plus the same
noise) and "trained model kernel" (a row of a kernel file saved by the training rung, only offered
when such a file exists). Amplitudes are in the paper's units: the reference init is
randn * 0.002, lam is 0.001-0.004.
"""
from __future__ import annotations

import glob
import html
import math
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_float, check_int
from ..regularize import high_freq_fraction, smooth, spectral_decay, squash, ssm_kernel, total_variation

__all__ = ["SOURCES", "find_kernel_file", "load_kernel_file", "explorer_state", "explorer_figure",
           "metrics_html", "squash_explorer"]

SOURCES = ("noisy random", "SSM kernel", "trained model kernel")
PEAK = 0.01                       # peak |k| of the synthetic kernels (paper units: init std 0.002)
CUTOFF = 0.1                      # cycles per tap for the high-frequency metric and the plots
_REPO = Path(__file__).resolve().parents[1]
KERNEL_GLOB = "course/results/training/**/*kernels*"     # e.g. NAME-kernels.npz, run/kernels.pt


def find_kernel_file(path=None) -> Path | None:
    """The trained-kernel file to offer: ``path`` if given and it exists, else the first (sorted)
    ``*kernels*.pt`` / ``.npz`` / ``.npy`` under ``course/results/training/``, else None."""
    if path is not None:
        p = Path(path)
        return p if p.is_file() else None
    for name in sorted(glob.glob(str(_REPO / KERNEL_GLOB), recursive=True)):
        if name.endswith((".pt", ".npz", ".npy")):
            return Path(name)
    return None


def _first_array(obj):
    """The first 2-D-or-more float array found in a tensor / array / (nested) dict or list,
    preferring dict keys that mention "kernel"."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().double().numpy()
    if isinstance(obj, np.ndarray):
        return obj if obj.dtype.kind in "fiu" and obj.size > 0 else None
    if isinstance(obj, dict) or hasattr(obj, "files"):
        keys = list(obj.files if hasattr(obj, "files") else obj.keys())
        keys.sort(key=lambda k: "kernel" not in str(k).lower())
        for key in keys:
            a = _first_array(obj[key])
            if a is not None:
                return a
    if isinstance(obj, (list, tuple)):
        for v in obj:
            a = _first_array(v)
            if a is not None:
                return a
    return None


def load_kernel_file(path) -> np.ndarray:
    """Rows of kernels from a .pt/.npz/.npy file as a float64 array (n, Lk): the last axis is the
    tap axis, every leading axis is flattened. Raises ValueError if the file holds no array."""
    path = Path(path)
    if path.suffix == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix in (".npz", ".npy"):
        obj = np.load(path)
    else:
        raise ValueError(f"path must end in .pt, .npz or .npy, got {path.name!r}")
    a = _first_array(obj)
    if a is None:
        raise ValueError(f"path {str(path)!r} holds no numeric array of kernels")
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 1 else a.reshape(1, 1)


def _synthetic(L: int, seed: int) -> np.ndarray:
    """A smooth decaying kernel of peak PEAK: two damped cosines (what training should find)."""
    t = np.arange(L, dtype=np.float64)
    rng = np.random.default_rng(seed)
    tau = max(L / 6.0, 4.0)
    f1, f2 = rng.uniform(2.0, 6.0) / max(L, 1), rng.uniform(0.005, 0.02)   # cycles per tap
    k = np.exp(-t / tau) * np.cos(2 * np.pi * f1 * t) + 0.5 * np.exp(-t / (tau / 4)) * np.cos(2 * np.pi * f2 * t + 1.0)
    return PEAK * k / max(np.max(np.abs(k)), 1e-30)


def _metrics(k: np.ndarray) -> dict:
    t = torch.from_numpy(k)
    zero = not np.any(k)
    return {"max |k|": float(np.max(np.abs(k))) if k.size else 0.0,
            "nonzero taps": int(np.count_nonzero(k)),
            "total variation": float(total_variation(t)),
            "high-freq fraction": float(high_freq_fraction(t, CUTOFF)),
            "spectral decay": (float(spectral_decay(t)) if k.size >= 8 and not zero else float("nan"))}


def explorer_state(source: str = "noisy random", L: int = 1024, noise: float = 0.002,
                   lam: float = 0.003, width: int = 1, seed: int = 0, *, kernel_path=None) -> dict:
    """Everything the explorer shows, as plain data. Never raises for slider values.

    source: one of SOURCES; L: kernel length (>= 1); noise: std of white noise added to the
    starting kernel (>= 0; clamped); lam: Squash threshold (>= 0; clamped); width: Smooth window
    (clamped to the nearest odd value in 1..L, with a note); seed: the noise's seed (and the row
    of a trained kernel file). Returns {"before", "after": float64 arrays (L,), "metrics_before",
    "metrics_after": dicts, "settings": what was actually used, "notes": list of sentences}.
    Order as in the layer: Smooth first, then Squash.
    """
    check_choice(source, "source", SOURCES)
    L = max(1, check_int(L, "L"))
    seed = max(0, check_int(seed, "seed"))
    noise = max(0.0, check_float(noise, "noise"))
    lam = max(0.0, check_float(lam, "lam"))
    width = check_int(width, "width")
    notes = []

    rng = np.random.default_rng(seed + 1)
    if source == "trained model kernel":
        path = find_kernel_file(kernel_path)
        rows = None
        if path is not None:
            try:
                rows = load_kernel_file(path)
            except Exception as e:  # a broken file must not break the explorer
                notes.append(f"could not read {path.name}: {e}; showing a noisy random kernel instead")
        else:
            notes.append("no trained kernel file found (the training rung saves them as "
                         f"{KERNEL_GLOB}.npz or .pt); showing a noisy random kernel instead")
        if rows is not None:
            r = seed % rows.shape[0]
            base = rows[r]
            if base.size < L:
                notes.append(f"the trained kernel has only {base.size} taps; L is cut to {base.size}")
                L = base.size
            base = base[:L].copy()
            notes.append(f"trained kernel: row {r} of {rows.shape[0]} in {path.name}")
        else:
            source = "noisy random"
    if source == "noisy random":
        base = _synthetic(L, seed)
    elif source == "SSM kernel":
        k = ssm_kernel(1, L, seed=seed, dtype=torch.float64)[0].numpy()
        base = PEAK * k / max(np.max(np.abs(k)), 1e-30)
    before = base + noise * rng.standard_normal(L)

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
            "metrics_before": _metrics(before), "metrics_after": _metrics(after),
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
    head = (f"<b>lam = {s['lam']:.4g}, width = {s['width']}, L = {s['L']}, noise = {s['noise']:.4g}</b>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in state["notes"])
    return (f"<div class='squash-metrics'>{head}<table><tr><th>metric</th><th>before</th><th>after</th></tr>"
            f"{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


def squash_explorer(L: int = 1024, *, lam: float = 0.003, width: int = 1, noise: float = 0.002,
                    source: str = "noisy random", kernel_path=None):
    """The interactive explorer (an ipywidgets VBox with CSS class "squash-explorer").

    Sliders: lam, width (odd), L, noise, seed; a dropdown of starting kernels ("trained model
    kernel" only when a kernel file is found, or given by ``kernel_path``). Each change recomputes
    ``explorer_state`` and redraws ``explorer_figure`` into an Image widget (PNG); the metrics are an HTML widget.
    """
    import io

    import ipywidgets as W
    import matplotlib.pyplot as plt

    options = [s for s in SOURCES if s != "trained model kernel" or find_kernel_file(kernel_path)]
    check_choice(source, "source", options)
    sl = dict(continuous_update=False, style={"description_width": "60px"},
              layout=W.Layout(width="420px"))
    w_lam = W.FloatSlider(value=check_float(lam, "lam", min=0.0), min=0.0, max=0.02, step=0.0002,
                          readout_format=".4f", description="lam", **sl)
    w_width = W.IntSlider(value=check_int(width, "width", min=1, odd=True), min=1, max=8191, step=2,
                          description="width", **sl)
    w_L = W.IntSlider(value=check_int(L, "L", min=16, max=8192), min=16, max=8192, step=16,
                      description="L", **sl)
    w_noise = W.FloatSlider(value=check_float(noise, "noise", min=0.0, max=0.01), min=0.0, max=0.01,
                            step=0.0002, readout_format=".4f", description="noise", **sl)
    w_seed = W.IntSlider(value=0, min=0, max=20, description="seed", **sl)
    w_src = W.Dropdown(options=options, value=source, description="kernel",
                       style={"description_width": "60px"})
    metrics = W.HTML()
    plot = W.Image(format="png")        # a PNG of explorer_figure: no output capture needed

    def update(*_):
        state = explorer_state(w_src.value, w_L.value, w_noise.value, w_lam.value, w_width.value,
                               w_seed.value, kernel_path=kernel_path)
        metrics.value = metrics_html(state)
        fig = explorer_figure(state)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)
        plt.close(fig)
        plot.value = buf.getvalue()

    for w in (w_lam, w_width, w_L, w_noise, w_seed, w_src):
        w.observe(update, names="value")
    update()
    box = W.VBox([W.HBox([W.VBox([w_src, w_lam, w_width]), W.VBox([w_L, w_noise, w_seed])]),
                  metrics, plot])
    box.add_class("squash-explorer")
    return box
