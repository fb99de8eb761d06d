"""Every relative link in the course's Markdown resolves.

Scanned: README.md, every course/**/*.md, and the Markdown cells of the notebooks a learner opens
(notebooks/*.ipynb, course/exercises/*.ipynb, course/solutions/*.ipynb). For each inline link or
image ``[text](target)`` and each reference definition ``[id]: target`` that is not a URL, the
target file (or folder) must exist; when it has a ``#anchor`` into a Markdown file (or into the
same file), a heading with that GitHub-style slug must exist there. Links inside code spans and
fenced code blocks are not links and are ignored.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

INLINE = re.compile(r"""!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)""")
REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODESPAN = re.compile(r"(`+).+?\1", re.S)
HTML_LINK = re.compile(r"""<(?:a|img)\s[^>]*(?:href|src)=["']([^"']+)["']""", re.I)


def markdown_sources() -> list[tuple[Path, str]]:
    """(file, markdown text) for every Markdown file and notebook Markdown cell of the course."""
    out = []
    for path in [REPO / "README.md", *sorted((REPO / "course").rglob("*.md"))]:
        if path.exists():
            out.append((path, path.read_text(encoding="utf-8")))
    for pattern in ("notebooks/*.ipynb", "course/exercises/*.ipynb", "course/solutions/*.ipynb"):
        for path in sorted(REPO.glob(pattern)):
            nb = nbformat.read(path, as_version=4)
            text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
            out.append((path, text))
    return out


def strip_code(text: str) -> str:
    return CODESPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    text = strip_code(text)
    return INLINE.findall(text) + REFDEF.findall(text) + HTML_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces -> '-'."""
    h = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)        # [text](url) -> text
    h = re.sub(r"[`*_~]|<[^>]+>", "", h).strip().lower()
    h = unicodedata.normalize("NFKC", h)
    h = "".join(ch for ch in h if ch.isalnum() or ch in " -_")
    return h.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's slug (with GitHub's -1, -2 suffixes for repeats) and explicit ids."""
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.M):
        s = slug(m.group(1))
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    out.update(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    return out


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


SOURCES = markdown_sources()


def test_there_is_markdown_to_check():
    assert any(p.name == "README.md" for p, _ in SOURCES), "README.md is missing"


@pytest.mark.parametrize("path, text", SOURCES, ids=[str(p.relative_to(REPO)) for p, _ in SOURCES])
def test_relative_links_resolve(path, text):
    broken = []
    for target in links(text):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest})")
            continue
        if anchor and dest.suffix == ".md":
            have = anchors(dest.read_text(encoding="utf-8")) if dest != path else anchors(text)
            if unquote(anchor).lower() not in have:
                broken.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(REPO)} has broken links:\n  " + "\n  ".join(broken)


def test_the_link_finder_finds_links():
    """The checker itself: links are found, code is skipped, slugs follow GitHub's rule."""
    md = ("See [a](x.md#why-2l) and ![fig](f.png 'title') and [b][r].\n\n[r]: y.md\n"
          "`[not](a.md)`\n```\n[nor](b.md)\n```\n")
    assert links(md) == ["x.md#why-2l", "f.png", "y.md"]
    assert slug("Why is the FFT size 2L? (causal vs circular)") == "why-is-the-fft-size-2l-causal-vs-circular"
    assert slug("Rung 3: `fft.py` and *twiddles*") == "rung-3-fftpy-and-twiddles"
    assert anchors("# A\n## A\n") == {"a", "a-1"}
    assert is_external("https://arxiv.org/abs/2302.06646") and not is_external("course/README.md")


# Every rung's notebook.
CHAINED = ["01_naive_convolution", "02_fft_convolution", "03_cooley_tukey_butterfly",
           "04_flashbutterfly", "05_flashbutterfly_kernels", "06_smooth_kernels", "07_training",
           "08_learned_butterfly"]


@pytest.mark.parametrize("stem", CHAINED)
def test_notebook_ends_with_a_link_to_the_next_and_stores_no_churn(stem):
    nb = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown"
    targets = INLINE.findall(last.source)
    assert any(t.endswith(".ipynb") and t[:2].isdigit() for t in targets) or \
        any(t.endswith("course/README.md") for t in targets), f"{stem} does not end with a link on"
    assert any("course/exercises/" in t for t in targets), f"{stem}: no link to its exercises"
    assert "widgets" not in nb.metadata, f"{stem} stores widget state"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert "NBVAL" not in cell.source, f"{stem} cell {i}: test-tool comment in learner code"
            assert "course.exercises import check" not in cell.source, f"{stem} cell {i}: inline exercise"
            for out in cell.get("outputs", []):
                text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                assert not re.search(r"\d+%\|", text), f"{stem} cell {i}: a stored progress bar"
        else:
            assert "nbval" not in cell.source.lower(), f"{stem} cell {i}: test-tool jargon"
