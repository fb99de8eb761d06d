"""The rendered book (``make book``): built from the committed notebooks, read in headless Chromium.

Builds the site with book/build.py into a scratch folder (timed: under two minutes, without
re-executing a notebook), then opens every HTML page from disk in Debian's Chromium and checks
that it renders (a title and a non-empty article), that every internal link resolves to a file of
the site, that every image has loaded, and that the three animations are present with their
frames on the pages of the rungs that teach them. Marked ``browser``.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, require_browser

pytestmark = pytest.mark.browser
BUILD_LIMIT_S = 120
ANIMATED = {"notebooks/01_naive_convolution.html": 1, "notebooks/03_cooley_tukey_butterfly.html": 1,
            "notebooks/04_flashbutterfly.html": 1}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser()
    out = tmp_path_factory.mktemp("book")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(REPO / "book" / "build.py"), "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, f"book build failed:\n{r.stdout}\n{r.stderr}"
    assert seconds < BUILD_LIMIT_S, f"book build took {seconds:.0f} s (limit {BUILD_LIMIT_S} s)"
    return out / "site"


@pytest.fixture(scope="module")
def pages(site):
    """{page path relative to the site: what the browser saw on it}."""
    from playwright.sync_api import sync_playwright

    found = {}
    files = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = b.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for f in files:
                errors.clear()
                page.goto(f.as_uri(), wait_until="load")
                page.wait_for_timeout(50)
                found[f.relative_to(site).as_posix()] = page.evaluate("""() => ({
                    title: document.title,
                    article: (document.querySelector('article') || document.body).innerText.length,
                    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
                    images: Array.from(document.querySelectorAll('img')).map(
                        i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0})),
                    animations: Array.from(document.querySelectorAll('.animation')).map(a => ({
                        frame: !!a.querySelector('img') && a.querySelector('img').naturalWidth > 0,
                        slider: !!a.querySelector('input[type=range]')})),
                })""") | {"errors": list(errors)}
        finally:
            b.close()
    return found


def test_every_course_part_is_a_page(pages):
    names = set(pages)
    assert "index.html" in names and "course/index.html" in names
    for nb in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        assert f"notebooks/{nb.stem}.html" in names
    for md in (REPO / "course").glob("[0-9][0-9]_*.md"):
        assert f"course/{md.stem}.html" in names
    for ex in (REPO / "course" / "exercises").glob("*.ipynb"):
        assert f"course/exercises/{ex.stem}.html" in names


def test_every_page_renders(pages):
    for name, p in pages.items():
        assert p["title"] and p["article"] > 200, f"{name} looks empty: {p['title']!r}, {p['article']} chars"
        assert p["errors"] == [], f"{name} raised in the browser: {p['errors']}"


def test_every_internal_link_and_image_resolves(pages, site):
    broken = []
    for name, p in pages.items():
        for href in p["links"]:
            u = urlparse(href)
            if u.scheme != "file":
                continue
            target = Path(unquote(u.path))
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{name} -> {href}")
        broken += [f"{name}: image {i['src']} did not load" for i in p["images"] if not i["ok"]]
    assert not broken, "broken links or images:\n" + "\n".join(broken[:40])


def test_animations_play_in_the_book(pages):
    for name, count in ANIMATED.items():
        anims = pages[name]["animations"]
        assert len(anims) >= count, f"{name}: {len(anims)} animations, expected {count}"
        assert all(a["frame"] and a["slider"] for a in anims), f"{name}: an animation has no frame or controls"
