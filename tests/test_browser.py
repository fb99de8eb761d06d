"""The course as a learner uses it: JupyterLab in headless Chromium.

nbval runs every notebook without a browser, so it never sees a widget render or a slider move.
These tests start their own JupyterLab (127.0.0.1, random token, free port, a scratch copy of
notebooks/ so nothing committed is rewritten), drive Debian's Chromium through Playwright
(launched by path, never downloaded), and always stop the server and its kernels.

- test_squash_explorer_responds_to_lam: notebook 06's explorer cell (the one that calls
  ``widgets.show_explorer``), run in a scratch notebook of its own in JupyterLab; find the squash
  explorer (CSS class ``squash-explorer``), drag its ``lam`` slider with the mouse, and check
  that the plotted kernel (the image's pixels) and the smoothness numbers change. Screenshots
  before and after go to artifacts/browser/.
- test_notebook_renders_in_browser[NN_x.ipynb]: every course notebook opens with the course's
  kernel (started and idle), shows all its cells, and no error among its committed outputs or
  widgets. Nothing is executed a second time: nbval executes every notebook once in
  ``make test`` and compares its outputs; the browser adds what nbval cannot see, the page.
- test_missing_browser_*: without Chromium the browser tests skip and say why; on CI they fail.

Marked ``browser``; skipped (with the reason) where /usr/bin/chromium or playwright is missing,
except on CI (``CI`` or ``LONGCONV_REQUIRE_BROWSER`` set), where that is a failure.
Select them with ``pytest -m browser``, leave them out with ``-m "not browser"``.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, JupyterLabServer, LabPage, make_lab_root, require_browser

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOOTH_NB = "06_smooth_kernels.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server for this module; stopped (with its kernels) however the tests end."""
    require_browser()
    work = tmp_path_factory.mktemp("jupyterlab")
    server = JupyterLabServer(make_lab_root(work / "root"), work)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def explorer_notebook(server) -> str:
    """Write a scratch notebook holding notebook 06's explorer cell (the code cell that calls
    ``widgets.show_explorer``, so the test follows the notebook) after the import it needs;
    return its path relative to the server root."""
    nb = nbformat.read(REPO / "notebooks" / SMOOTH_NB, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "widgets.show_explorer(" in c.source]
    assert cells, f"notebooks/{SMOOTH_NB} has no cell calling widgets.show_explorer"
    scratch = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("from longconv_edu.course import widgets"),
               nbformat.v4.new_code_cell(cells[0])],
        metadata={"kernelspec": nb.metadata["kernelspec"]})
    rel = "notebooks/_browser_squash_explorer.ipynb"
    nbformat.write(scratch, server.root_dir / rel)
    return rel


@pytest.fixture
def lab_page(lab, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield LabPage(page, lab)
    finally:
        context.close()
        lab.shutdown_kernels()          # every notebook starts from a fresh kernel


# JavaScript: a fingerprint of what the explorer shows. Images are hashed by their pixels (drawn
# into a canvas), so a re-rendered but identical plot counts as unchanged; the text is that of the
# explorer without its controls (sliders, dropdowns and their read-outs always change with a drag).
_JS_FINGERPRINT = r"""
(el) => {
  const hash = s => { let h = 2166136261; for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return (h >>> 0).toString(16); };
  const images = [];
  for (const img of el.querySelectorAll('img')) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    if (!c.width || !c.height) { images.push('empty'); continue; }
    c.getContext('2d').drawImage(img, 0, 0);
    images.push(hash(c.toDataURL('image/png')));
  }
  for (const c of el.querySelectorAll('canvas')) images.push(hash(c.toDataURL('image/png')));
  for (const s of el.querySelectorAll('svg')) images.push(hash(s.outerHTML));
  const clone = el.cloneNode(true);
  clone.querySelectorAll('.widget-slider, .widget-dropdown, .widget-toggle-buttons, .widget-readout,' +
                         ' .widget-text, .widget-button, img, canvas, svg').forEach(n => n.remove());
  // the metric values, where the explorer shows them as a table (else: all of its text)
  const cells = [...el.querySelectorAll('table td')].map(td => td.innerText.trim());
  return {images, text: clone.innerText.replace(/\s+/g, ' ').trim(), table: cells.join(' ')};
}
"""


def _numbers(text: str) -> list[str]:
    return re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", text)


def _drag_slider(page, slider, fraction: float) -> None:
    """Drag the noUiSlider handle by ``fraction`` of the track's width, with the mouse."""
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target, .slider").first
    handle.scroll_into_view_if_needed()
    hb, tb = handle.bounding_box(), track.bounding_box()
    x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    x1 = min(max(x0 + fraction * tb["width"], tb["x"] + 1), tb["x"] + tb["width"] - 1)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * i / 10, y0)
    page.mouse.up()


@pytest.mark.browser
@pytest.mark.skipif(SMOOTH_NB not in NOTEBOOKS, reason=f"notebooks/{SMOOTH_NB} does not exist yet")
def test_squash_explorer_responds_to_lam(lab_page):
    page = lab_page.page
    lab_page.open_notebook(explorer_notebook(lab_page.server))
    lab_page.run_all(timeout_s=150)
    assert lab_page.errors() == [], f"{SMOOTH_NB}'s explorer cell raised in the browser: {lab_page.errors()}"

    explorer = page.locator(".squash-explorer").first
    explorer.wait_for(state="visible", timeout=30_000)
    explorer.scroll_into_view_if_needed()
    slider = explorer.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(r"^\s*lam\s*$"))).first
    assert slider.count() == 1, "the explorer has no slider labelled 'lam'"
    page.wait_for_function("el => el.querySelectorAll('img, canvas, svg').length > 0",
                           arg=explorer.element_handle(), timeout=30_000)
    readout = slider.locator(".widget-readout").first
    before = explorer.evaluate(_JS_FINGERPRINT)
    lam_before = readout.inner_text()
    lab_page.screenshot("squash_explorer_before.png", explorer)

    # Drag towards the side with more room, so the value surely moves.
    handle = slider.locator(".noUi-handle").first
    hb, tb = handle.bounding_box(), slider.locator(".noUi-target").first.bounding_box()
    room_right = (tb["x"] + tb["width"]) - (hb["x"] + hb["width"] / 2)
    _drag_slider(page, slider, 0.15 if room_right > tb["width"] / 2 else -0.15)

    # the slider moved (the page shows the new lam) ...
    page.wait_for_function("([el, old]) => el.innerText.trim() !== old.trim()",
                           arg=[readout.element_handle(), lam_before], timeout=10_000)
    lam_after = readout.inner_text()
    # ... and the kernel plot and the numbers follow, once the Python callback has redrawn them
    def metrics(fp):                    # the metric table's numbers, or every number shown
        return _numbers(fp["table"] or fp["text"])

    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline:
        after = explorer.evaluate(_JS_FINGERPRINT)
        if after["images"] != before["images"] and metrics(after) != metrics(before):
            break
        time.sleep(0.5)
    time.sleep(0.5)                     # let a final redraw land before the screenshot
    after = explorer.evaluate(_JS_FINGERPRINT)
    lab_page.screenshot("squash_explorer_after.png", explorer)
    lab_page.screenshot("smooth_kernels_page.png")

    assert after["images"] and len(after["images"]) == len(before["images"]), \
        f"the explorer's plots disappeared: {before['images']} -> {after['images']}"
    assert after["images"] != before["images"], \
        f"dragging lam {lam_before} -> {lam_after} did not change the plotted kernel"
    assert metrics(before), f"no numbers shown in the explorer: {before['text']!r}"
    assert metrics(after) != metrics(before), (
        f"dragging lam {lam_before} -> {lam_after} did not change the smoothness numbers:\n"
        f"{before['table'] or before['text']!r}")
    assert lab_page.errors() == [], f"moving the slider raised: {lab_page.errors()}"


@pytest.mark.browser
@pytest.mark.parametrize("name", NOTEBOOKS or ["none"])
def test_notebook_renders_in_browser(lab_page, name):
    """The committed notebook as a learner opens it: every cell on the page, the course's kernel
    started and idle, no error output or broken widget among the committed outputs."""
    if name == "none":
        pytest.skip("no notebooks/NN_*.ipynb yet")
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    lab_page.open_notebook(f"notebooks/{name}")
    page = lab_page.page
    cells_on_page = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").count()
    assert cells_on_page == len(nb.cells), f"{name}: {cells_on_page} cells on the page, {len(nb.cells)} in the file"
    # open_notebook returned, so the kernel reached idle; it may be busy again by now (the page
    # asks it for comm and kernel info), so its status is not read a second time
    state = lab_page.state()
    assert state["kernelName"] == "longconv-edu", f"{name} started kernel {state['kernelName']!r}"
    assert lab_page.errors() == [], f"{name} as committed shows errors: {lab_page.errors()}"
    lab_page.screenshot(f"notebook_{Path(name).stem}.png")


# ----------------------------------------------------------------------------- no browser
def test_missing_browser_skips_with_a_reason(monkeypatch):
    import browser_helpers
    monkeypatch.setattr(browser_helpers, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("LONGCONV_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/chromium is missing.*apt-get"):
        browser_helpers.require_browser()


def test_missing_browser_fails_on_ci(monkeypatch):
    import browser_helpers
    monkeypatch.setattr(browser_helpers, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI"):
        browser_helpers.require_browser()
