"""The squash explorer: its plain state/figure functions at every kind of slider position, the
trained-kernel file handling, and the ipywidgets wiring (built and driven without a browser).

Oracle for the state: the kernel after the operators is recomputed from the kernel before with
oracles.smooth_np and squash_np (float64, 1e-12 relative: a few additions per tap).
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from oracles import rel_err, smooth_np, squash_np  # noqa: E402

from longconv_edu.course import widgets  # noqa: E402
from longconv_edu.course.widgets import (  # noqa: E402
    SOURCES,
    explorer_figure,
    explorer_state,
    load_kernel_file,
    metrics_html,
    squash_explorer,
)

MISSING = "/nonexistent/kernels.pt"


def expected_after(state):
    s = state["settings"]
    k = state["before"]
    if s["width"] > 1:
        k = smooth_np(k, s["width"])
    return squash_np(k, s["lam"])


@given(st.sampled_from(SOURCES), st.integers(16, 600), st.floats(0, 0.01), st.floats(0, 0.02),
       st.integers(0, 4095).map(lambda i: 2 * i + 1), st.integers(0, 20))
def test_state_never_raises_and_applies_smooth_then_squash(source, L, noise, lam, width, seed):
    state = explorer_state(source, L, noise, lam, width, seed, kernel_path=MISSING)
    s = state["settings"]
    assert 1 <= s["width"] <= s["L"] and s["width"] % 2 == 1
    assert state["before"].shape == state["after"].shape == (s["L"],)
    assert rel_err(state["after"], expected_after(state)) < 1e-12 or not np.any(expected_after(state))
    assert np.all(state["after"] == 0) == (not np.any(expected_after(state)))
    for m in (state["metrics_before"], state["metrics_after"]):
        assert 0 <= m["total variation"] <= 2 and 0 <= m["high-freq fraction"] <= 1


def test_lam_above_the_kernel_max_gives_zeros_and_a_note():
    state = explorer_state("noisy random", 4096, 0.002, 0.05, 1, 0)
    assert not np.any(state["after"])
    assert state["metrics_after"]["nonzero taps"] == 0
    assert any("zeroed every tap" in n for n in state["notes"])
    fig = explorer_figure(state)                      # draws an all-zero kernel without trouble
    fig.canvas.draw()
    plt.close(fig)
    assert "zeroed every tap" in metrics_html(state)


@pytest.mark.parametrize("L, width, used", [(4096, 4096, 4095), (4095, 4095, 4095), (100, 8191, 99),
                                            (16, 4, 3), (50, 0, 1), (1, 7, 1)])
def test_width_is_clamped_to_a_valid_odd_window_with_a_note(L, width, used):
    state = explorer_state("noisy random", L, 0.002, 0.0, width, 0)
    assert state["settings"]["width"] == used
    assert (used != width) == any("odd width" in n for n in state["notes"])
    if used >= L // 2 and used > 1:
        assert any("running mean" in n for n in state["notes"])
    assert rel_err(state["after"], expected_after(state)) < 1e-12


def test_no_trained_file_falls_back_with_a_note(tmp_path):
    state = explorer_state("trained model kernel", 64, 0.0, 0.0, 1, 0, kernel_path=MISSING)
    assert state["settings"]["source"] == "noisy random"
    assert any("no trained kernel file" in n for n in state["notes"])
    bad = tmp_path / "kernels_bad.pt"
    bad.write_bytes(b"not a torch file")
    state = explorer_state("trained model kernel", 64, 0.0, 0.0, 1, 0, kernel_path=bad)
    assert any("could not read" in n for n in state["notes"])


@pytest.mark.parametrize("fmt", ["pt", "npz", "pt-dict"])
def test_trained_kernel_files_are_read_row_by_row(tmp_path, fmt):
    k = torch.randn(2, 3, 40, dtype=torch.float64)            # (channels, H, L) as a layer stores it
    path = tmp_path / f"kernels.{fmt.split('-')[0]}"
    if fmt == "pt":
        torch.save(k, path)
    elif fmt == "pt-dict":
        torch.save({"step": torch.tensor(3), "layer0.kernel": k}, path)
    else:
        np.savez(path, kernels=k.numpy())
    rows = load_kernel_file(path)
    assert rows.shape == (6, 40) and np.array_equal(rows, k.reshape(6, 40).numpy())
    state = explorer_state("trained model kernel", 64, 0.0, 0.0, 1, 4, kernel_path=path)
    assert state["settings"]["L"] == 40                       # cut to the file's length, with a note
    assert np.array_equal(state["before"], rows[4])
    assert any("only 40 taps" in n for n in state["notes"])


def test_figure_has_both_panels_and_metrics_html_changes_with_lam():
    a = explorer_state("SSM kernel", 512, 0.001, 0.001, 5, 0)
    b = explorer_state("SSM kernel", 512, 0.001, 0.002, 5, 0)
    fig = explorer_figure(a)
    assert len(fig.axes) == 2
    plt.close(fig)
    assert metrics_html(a) != metrics_html(b) and "lam = 0.001" in metrics_html(a)


def _find(widget, cls, description=None):
    """Depth-first search of a widget tree."""
    if isinstance(widget, cls) and (description is None or widget.description == description):
        return widget
    for child in getattr(widget, "children", ()):
        hit = _find(child, cls, description)
        if hit is not None:
            return hit
    return None


def test_widget_wiring_lam_slider_updates_the_metrics(tmp_path):
    import ipywidgets as W
    box = squash_explorer(256, kernel_path=MISSING)
    assert "squash-explorer" in box._dom_classes
    lam = _find(box, W.FloatSlider, "lam")
    html = _find(box, W.HTML)
    drop = _find(box, W.Dropdown)
    assert lam is not None and html is not None
    assert "trained model kernel" not in drop.options       # hidden: no kernel file
    before = html.value
    lam.value = 0.0
    assert html.value != before and "lam = 0," in html.value
    width = _find(box, W.IntSlider, "width")
    width.value = width.max                                 # wider than L: clamped, noted
    assert "odd width" in html.value
    path = tmp_path / "kernels.pt"
    torch.save(torch.randn(1, 2, 300), path)
    box2 = squash_explorer(256, kernel_path=path)
    drop2 = _find(box2, W.Dropdown)
    assert "trained model kernel" in drop2.options
    drop2.value = "trained model kernel"
    assert "trained kernel: row 0" in _find(box2, W.HTML).value
    plt.close("all")


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: explorer_state("fourier", 64), ValueError, "source"),
    (lambda: explorer_state("noisy random", 64.5), TypeError, "L"),
    (lambda: explorer_state("noisy random", 64, lam="big"), TypeError, "lam"),
    (lambda: squash_explorer(8), ValueError, "L"),
    (lambda: squash_explorer(64, width=4), ValueError, "width"),
    (lambda: squash_explorer(64, source="trained model kernel", kernel_path=MISSING), ValueError, "source"),
    (lambda: load_kernel_file("kernels.csv"), ValueError, "path"),
])
def test_bad_programmatic_input(call, exc, arg):
    with pytest.raises(exc, match=arg):
        call()


def test_default_kernel_file_lookup_uses_the_course_results_folder(tmp_path, monkeypatch):
    assert widgets.find_kernel_file(MISSING) is None
    monkeypatch.setattr(widgets, "_REPO", tmp_path)
    assert widgets.find_kernel_file() is None
    results = tmp_path / "course" / "results" / "training"
    (results / "run1").mkdir(parents=True)
    (results / "scifar.json").write_text("{}")
    np.savez(results / "scifar-kernels.npz", **{"long conv": np.ones((4, 32))})
    torch.save({"layer0": torch.ones(2, 32)}, results / "run1" / "kernels.pt")
    assert widgets.find_kernel_file() == results / "run1" / "kernels.pt"       # sorted paths
    (results / "run1" / "kernels.pt").unlink()
    assert widgets.find_kernel_file() == results / "scifar-kernels.npz"
    assert "trained model kernel" in _find(squash_explorer(64), __import__("ipywidgets").Dropdown).options


def test_widget_picture_is_a_png_that_changes_with_the_settings():
    import ipywidgets as W
    box = squash_explorer(128, kernel_path=MISSING)
    img = _find(box, W.Image)
    first = img.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    _find(box, W.FloatSlider, "lam").value = 0.0
    assert img.value != first
    plt.close("all")
