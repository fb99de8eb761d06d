"""The squash explorer: its plain state/figure functions at every kind of slider position, the
trained-kernel discovery, and the ipywidgets wiring (built and driven without a browser).

Oracle for the state: the kernel after the operators is recomputed from the kernel before with
oracles.smooth_np and squash_np (float64, 1e-12 relative: a few additions per tap); a trained
kernel is compared with the array read back by numpy from the file.
"""
import matplotlib

matplotlib.use("Agg")

import ipywidgets as W  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from oracles import rel_err, smooth_np, squash_np  # noqa: E402

from longconv_edu.course import widgets  # noqa: E402
from longconv_edu.course.widgets import (  # noqa: E402
    explorer_figure,
    explorer_state,
    max_width,
    metrics_html,
    sources,
    squash_explorer,
    trained_kernels,
)
from longconv_edu.regularize import smoothness_metrics, ssm_kernel  # noqa: E402

RUN = "toy-reg"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder with one run: two regularisers, 3 channels of 40 taps, and a bad file."""
    d = tmp_path_factory.mktemp("training")
    g = np.random.default_rng(0)
    np.savez(d / f"{RUN}-kernels.npz", **{"longconv/none/layer0": g.normal(size=(3, 40)),
                                         "longconv/squash+smooth/layer0": g.normal(size=(3, 40))})
    (d / "broken-kernels.npz").write_bytes(b"not a zip")
    return d


def _find(widget, cls, description=None):
    """Depth-first search of a widget tree."""
    if isinstance(widget, cls) and (description is None or widget.description == description):
        return widget
    for child in getattr(widget, "children", ()):
        hit = _find(child, cls, description)
        if hit is not None:
            return hit
    return None


def expected_after(state):
    s = state["settings"]
    k = state["before"]
    if s["width"] > 1:
        k = smooth_np(k, s["width"])
    return squash_np(k, s["lam"])


def test_trained_kernels_are_discovered_from_files_and_labelled_with_run_and_regulariser(results):
    found = trained_kernels(results)
    assert list(found) == [f"{RUN} · longconv/none · layer0", f"{RUN} · longconv/squash+smooth · layer0"]
    assert sources(results)[:2] == ["noisy random", "SSM kernel"] and len(sources(results)) == 4
    assert sources(results / "nowhere") == ["noisy random", "SSM kernel"]


def test_the_committed_runs_are_offered():
    committed = sorted(widgets.RESULTS_DIR.glob("*-kernels.npz"))
    labels = trained_kernels()
    assert committed and {p.name[:-len("-kernels.npz")] for p in committed} == \
        {label.split(" · ")[0] for label in labels}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3), st.integers(16, 600), st.floats(0, 0.01), st.floats(0, 0.02),
       st.integers(1, 700), st.integers(0, 9))
def test_state_never_raises_and_applies_smooth_then_squash(results, which, L, noise, lam, width, seed):
    source = sources(results)[which]
    state = explorer_state(source, L, noise, lam, width, seed, results_dir=results)
    s = state["settings"]
    assert state["before"].shape == state["after"].shape == (s["L"],)
    assert s["width"] % 2 == 1 and 1 <= s["width"] <= s["L"]
    assert rel_err(state["after"], expected_after(state)) < 1e-12
    plt.close("all")


def test_ssm_and_trained_kernels_start_without_noise(results):
    st_ = explorer_state("SSM kernel", 256, lam=0.0)
    k = ssm_kernel(1, 256, seed=0, dtype=torch.float64)[0].numpy()
    assert st_["settings"]["noise"] == 0.0
    np.testing.assert_allclose(st_["before"], widgets.PEAK * k / np.abs(k).max(), rtol=1e-12)
    label = sources(results)[3]
    tr = explorer_state(label, 1024, lam=0.0, seed=4, results_dir=results)
    with np.load(results / f"{RUN}-kernels.npz") as z:
        row = z["longconv/squash+smooth/layer0"][4 % 3]
    np.testing.assert_array_equal(tr["before"], row)
    assert tr["settings"]["L"] == 40 and any("has 40 taps" in n for n in tr["notes"])
    assert any("channel 1 of 3" in n and "squash+smooth" in n for n in tr["notes"])
    noisy = explorer_state("noisy random", 256)
    assert noisy["settings"]["noise"] == widgets.INIT_NOISE


def test_metrics_are_the_regularize_metrics():
    state = explorer_state("noisy random", 300, lam=0.004, width=5)
    for key in ("before", "after"):
        k = state[key]
        got = state[f"metrics_{key}"]
        ref = smoothness_metrics(torch.from_numpy(k), widgets.CUTOFF)
        assert {n: got[n] for n in ref} == ref
        assert got["nonzero taps"] == np.count_nonzero(k)
    assert not hasattr(widgets, "_metrics")


def test_lam_above_the_kernel_max_gives_zeros_and_a_note():
    state = explorer_state("noisy random", 4096, 0.002, 0.05, 1, 0)
    assert not np.any(state["after"])
    assert any("zeroed every tap" in n for n in state["notes"])


@pytest.mark.parametrize("L, width, used", [(64, 4, 3), (64, 200, 63), (9, 9, 9), (10, 10, 9), (1, 5, 1)])
def test_width_is_clamped_to_a_valid_odd_window_with_a_note(L, width, used):
    state = explorer_state("noisy random", L, 0.002, 0.0, width, 0)
    assert state["settings"]["width"] == used
    assert (used == width) == (not any("odd width" in n for n in state["notes"]))


@pytest.mark.parametrize("L, top", [(16, 1), (24, 3), (256, 31), (1024, 127), (8192, 1023)])
def test_width_slider_range_is_odd_up_to_an_eighth_of_L(L, top):
    assert max_width(L) == top


def test_figure_has_both_panels_and_metrics_html_changes_with_lam():
    a = explorer_state("SSM kernel", 512, 0.001, 0.001, 5, 0)
    b = explorer_state("SSM kernel", 512, 0.001, 0.002, 5, 0)
    fig = explorer_figure(a)
    assert len(fig.axes) == 2 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)
    assert metrics_html(a) != metrics_html(b) and "lam = 0.001" in metrics_html(a)


def test_widget_wiring_follows_the_source(results):
    box = squash_explorer(1024, results_dir=results)
    assert "squash-explorer" in box._dom_classes and "Squash explorer" in repr(box)
    drop, html = _find(box, W.Dropdown), _find(box, W.HTML)
    L, width = _find(box, W.IntSlider, "L"), _find(box, W.IntSlider, "width")
    noise, lam = _find(box, W.FloatSlider, "add noise"), _find(box, W.FloatSlider, "lam")
    assert list(drop.options) == sources(results)
    assert (width.min, width.max, width.step) == (1, 127, 2) and noise.value == widgets.INIT_NOISE
    before = html.value
    lam.value = 0.0
    assert html.value != before and "lam = 0," in html.value
    L.value = 256
    assert width.max == 31
    drop.value = sources(results)[2]                  # a trained kernel: 40 taps, no noise
    assert L.value == L.max == 40 and noise.value == 0.0 and width.max == 5
    assert "longconv/none" in html.value and "L = 40" in html.value
    drop.value = "SSM kernel"
    assert noise.value == 0.0 and L.max == widgets.MAX_L
    plt.close("all")


def test_widget_picture_is_a_png_that_changes_with_the_settings():
    box = squash_explorer(128)
    img = _find(box, W.Image)
    first = img.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    _find(box, W.FloatSlider, "lam").value = 0.0
    assert img.value != first
    plt.close("all")


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: explorer_state("fourier", 64), ValueError, "source"),
    (lambda: explorer_state("noisy random", 64.5), TypeError, "L"),
    (lambda: explorer_state("noisy random", 64, lam="big"), TypeError, "lam"),
    (lambda: squash_explorer(8), ValueError, "L"),
    (lambda: squash_explorer(64, width=4), ValueError, "width"),
    (lambda: squash_explorer(64, source="trained"), ValueError, "source"),
])
def test_bad_programmatic_input(call, exc, arg):
    with pytest.raises(exc, match=arg):
        call()
