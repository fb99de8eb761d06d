"""viz: each plotting helper returns a Figure that draws what it was given (rendered with Agg).

These check structure, not pixels: the right number of lines, their data, the labels and axis
scales, and that bad arguments give a clear error naming the argument.
"""
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from longconv_edu.lab import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_signals_draws_each_sequence_with_its_positions():
    y = torch.arange(5, dtype=torch.float64)
    fig = viz.plot_signals({"a": y, "b": (np.arange(10, 15), 2 * y.numpy())}, title="T", ylabel="y",
                           styles={"a": {"color": "0.5", "lw": 3}})
    fig.canvas.draw()
    ax = fig.axes[0]
    a, b = ax.get_lines()
    assert isinstance(fig, Figure)
    np.testing.assert_array_equal(a.get_xdata(), np.arange(5))
    np.testing.assert_array_equal(b.get_xdata(), np.arange(10, 15))
    np.testing.assert_array_equal(b.get_ydata(), 2 * np.arange(5))
    assert a.get_linewidth() == 3
    assert _legend_texts(ax) == ["a", "b"]
    assert ax.get_title() == "T" and ax.get_ylabel() == "y" and ax.get_xlabel() == "t"


def test_plot_signals_on_a_given_axis():
    fig, axes = viz.new_figure(2)
    out = viz.plot_signals({"x": np.ones(3)}, ax=axes[0, 1])
    assert out is fig and len(axes[0, 1].get_lines()) == 1 and not axes[0, 0].get_lines()


def test_plot_spectrum_draws_magnitudes_of_every_bin():
    k = torch.tensor([1.0, 0.5, 0.25, 0.0])
    k_f = torch.fft.rfft(k, n=8)                       # 8 // 2 + 1 = 5 bins
    fig = viz.plot_spectrum({"k": k_f, "2k": 2 * k_f})
    fig.canvas.draw()
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    assert line.get_xdata().size == 5
    np.testing.assert_allclose(line.get_ydata(), np.abs(np.fft.rfft(k.numpy(), n=8)), rtol=1e-6)
    assert ax.get_yscale() == "log" and "bin" in ax.get_xlabel()
    assert viz.plot_spectrum({"k": k_f}, log=False).axes[0].get_yscale() == "linear"


def _power_law(Ls, c, p):
    return {L: c * L ** p for L in Ls}


def test_plot_timings_fits_slopes_and_marks_crossover():
    Ls = [16, 32, 64, 128, 256, 512]
    results = {"quadratic": _power_law(Ls, 1e-8, 2.0), "linear": _power_law(Ls, 1e-6, 1.0),
               "empty": {}}
    fig = viz.plot_timings(results, crossover=("quadratic", "linear"), title="t")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = _legend_texts(ax)
    assert "quadratic  (slope 2.00)" in labels and "linear  (slope 1.00)" in labels
    # crossover of 1e-8 L^2 and 1e-6 L is at L = 100
    cross = [t for t in labels if t.startswith("crossover")]
    assert cross == ["crossover L ~ 100"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # two data lines + two fitted lines + the crossover line; the empty entry draws nothing
    assert len(ax.get_lines()) == 5


def test_plot_timings_fit_min_L_restricts_the_fit():
    Ls = [16, 32, 64, 128, 256]
    t = {L: (1e-3 if L < 64 else 1e-8 * L ** 2) for L in Ls}   # flat overhead, then quadratic
    fig = viz.plot_timings({"f": t}, fit_min_L=64)
    assert _legend_texts(fig.axes[0]) == ["f  (slope 2.00)"]
    # one length only above fit_min_L: no fit, plain label
    fig = viz.plot_timings({"f": t}, fit_min_L=256)
    assert _legend_texts(fig.axes[0]) == ["f"]


def test_plot_timings_no_crossover_marked_when_data_show_none():
    Ls = [16, 32, 64]
    fig = viz.plot_timings({"a": _power_law(Ls, 1.0, 1.0), "b": _power_law(Ls, 2.0, 1.0)},
                           crossover=("a", "b"))
    assert not [t for t in _legend_texts(fig.axes[0]) if t.startswith("crossover")]


@pytest.mark.parametrize("fn, arg, name", [
    (viz.plot_signals, [1, 2, 3], "signals"),
    (viz.plot_spectrum, np.ones(3), "spectra"),
    (viz.plot_timings, [(16, 1.0)], "results"),
    (viz.plot_timings, {"a": [1.0, 2.0]}, "results['a']"),
])
def test_bad_containers_name_the_argument(fn, arg, name):
    with pytest.raises(TypeError, match=re.escape(name) + " must be a dict"):
        fn(arg)


def test_plot_timings_bad_crossover_names_the_argument():
    with pytest.raises(ValueError, match=r"crossover must be a pair .*'a'.*got \('a', 'nope'\)"):
        viz.plot_timings({"a": {16: 1.0, 32: 2.0}}, crossover=("a", "nope"))


def test_one_course_style_is_applied_on_import():
    import matplotlib.pyplot as plt

    from longconv_edu.lab import viz
    viz.use_course_style()
    assert plt.rcParams["figure.dpi"] >= 100 and plt.rcParams["savefig.dpi"] >= 100
    assert 9 <= plt.rcParams["font.size"] <= 10 and plt.rcParams["legend.fontsize"] == 9


def test_timing_legend_is_clear_of_the_data_and_axes_are_labelled():
    import matplotlib.pyplot as plt

    from longconv_edu.lab import viz
    fig = viz.plot_timings({"a": {16: 1e-3, 32: 4e-3, 64: 1.6e-2}, "b": {16: 1e-3, 32: 2e-3}})
    fig.canvas.draw()
    ax = fig.axes[0]
    leg = ax.get_legend().get_window_extent()
    assert leg.y1 <= ax.get_window_extent().y0          # under the plotting area
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_benchmark_file_is_read_and_plotted(tmp_path):
    import json

    import matplotlib.pyplot as plt
    import pytest

    from longconv_edu.lab import viz
    fig, report = viz.plot_benchmark_file("course/results/bench/bench.json")
    assert report["results"] and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a benchmark report"):
        viz.plot_benchmark_file(bad)
    with pytest.raises(ValueError, match="path must be a benchmark JSON"):
        viz.plot_benchmark_file(tmp_path / "missing.json")


def test_compact_png_of_a_figure_and_of_a_png_file(tmp_path):
    """A figure and a committed PNG file both come back as palette PNGs of the same pixel size."""
    import io

    from PIL import Image

    fig, axes = viz.new_figure()
    axes[0, 0].plot(np.sin(np.linspace(0, 20, 500)))
    path = tmp_path / "full.png"
    fig.savefig(path, format="png")                      # full colour (RGBA), as experiments save
    full = Image.open(path)
    assert full.mode == "RGBA"
    small = Image.open(io.BytesIO(viz.compact_png(path)))
    assert small.mode == "P" and small.size == full.size
    assert len(small.getpalette()) // 3 <= viz.PNG_COLOURS
    assert Image.open(io.BytesIO(viz.compact_png(fig))).mode == "P"



def test_plot_tap_rms_draws_the_moving_rms_of_each_model():
    """Oracle: the RMS over rows of k, averaged over a window, computed here by hand; exact
    zeros (a squashed kernel) are drawn at a floor below the smallest non-zero value."""
    rng = np.random.default_rng(0)
    k = rng.normal(size=(4, 64))
    sparse = np.zeros((4, 64))
    sparse[:, :8] = 1.0
    fig = viz.plot_tap_rms({"a/layer0": k, "b/layer0": sparse, "c/layer1": k}, boundary=32, window=4)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("a", "b")]
    assert [ln.get_label() for ln in lines] == ["a", "b"]          # only layer0's models
    want = np.sqrt(np.convolve((k ** 2).mean(0), np.ones(4) / 4, mode="same"))
    np.testing.assert_allclose(lines[0].get_ydata(), want, rtol=1e-12)
    yb = lines[1].get_ydata()
    assert np.all(yb[20:] == yb[20:].min()) and yb[20:].min() > 0 and yb[20:].min() < want.min()
    assert any(list(ln.get_xdata()) == [32, 32] for ln in ax.get_lines())          # the boundary
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)
