"""MkDocs hook for the course book: links inside notebook cells point at the built pages.

mkdocs-jupyter renders notebook markdown itself, so a link such as ``02_fft_convolution.ipynb``
or ``../course/02_fft_convolution.md`` written in a notebook is left pointing at the source file.
This hook rewrites every relative href of a page whose target is another page of the site to
that page's built URL (the same rewriting MkDocs does for markdown pages).
"""
from __future__ import annotations

import posixpath
import re

_HREF = re.compile(r'href="([^"#:?]+\.(?:ipynb|md))(#[^"]*)?"')


def on_page_content(html, page, config, files):
    here = posixpath.dirname(page.file.src_uri)
    by_src = {f.src_uri: f for f in files}

    def fix(m):
        target = posixpath.normpath(posixpath.join(here, m.group(1)))
        f = by_src.get(target)
        if f is None or not f.is_documentation_page():
            return m.group(0)
        url = posixpath.relpath(f.dest_uri, posixpath.dirname(page.file.dest_uri))
        return f'href="{url}{m.group(2) or ""}"'

    return _HREF.sub(fix, html)
