"""Build the course as a static site under _build/site (``make book``): no notebook is re-executed.

Copies what a reader needs (README, the syllabus and rung pages, the executed notebooks, the
exercise and solution notebooks, the committed results, the library source the text links to)
into _build/src, writes _build/mkdocs.yml from book/mkdocs.yml with the navigation, and runs
MkDocs with mkdocs-jupyter (``execute: false``: the outputs are shown as committed, animations
included). Offline: the theme, the search index and the notebook styles ship inside the pip
packages. Usage: python book/build.py [--out _build]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ["README.md", "LICENSE", "CONTRIBUTING.md", "CHANGELOG.md", "course", "notebooks", "longconv_edu"]
SKIP = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc", "conftest.py", "sanitize.cfg",
                              "strip_metadata.py")


def _title(path: Path) -> str:
    """The first '# ' heading of a markdown file or of a notebook's first markdown cell."""
    import json

    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "".join(next((c["source"] for c in cells if c["cell_type"] == "markdown"), []))
    else:
        text = path.read_text()
    m = re.search(r"^#\s+(.+)$", text, re.M)
    return (m.group(1).strip() if m else path.stem).replace('"', "'")


def _folder_pages(folder: Path) -> None:
    """Give each results folder without a README a page listing its files (folder links resolve)."""
    for d in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if (d / "README.md").exists() or (d / "index.md").exists():
            continue
        items = sorted(d.iterdir())
        lines = [f"# {d.relative_to(folder.parent.parent).as_posix()}/", "",
                 "Committed results in this folder. Each JSON file records the command that wrote "
                 "it and the machine it ran on; the PNG figures are drawn from those JSON files, and "
                 "the Markdown tables summarise them. The rung pages and notebooks that quote a "
                 "number link to the file it comes from.", ""]
        for p in items:
            name = p.name + ("/" if p.is_dir() else "")
            size = "" if p.is_dir() else f" ({p.stat().st_size / 1024:.0f} KiB)"
            lines.append(f"- [{name}]({p.name}/)" if p.is_dir() else f"- [{name}]({p.name}){size}")
        (d / "index.md").write_text("\n".join(lines) + "\n")


def nav(src: Path) -> str:
    """The navigation: home, syllabus, then per rung its notebook (the lesson) and its page."""
    lines = ["nav:", "  - Home: README.md", "  - Syllabus: course/README.md", "  - Rungs:"]
    for nb in sorted((src / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        n = nb.name[:2]
        pages = sorted((src / "course").glob(f"{n}_*.md"))
        lines.append(f'    - "{_title(nb)}":')
        lines.append(f"      - Lesson (notebook): notebooks/{nb.name}")
        for p in pages:
            lines.append(f'      - "Course page: {_title(p)}": course/{p.name}')
    results = sorted((src / "course" / "results").rglob("README.md"))
    if results:
        lines.append("  - Results:")
        for p in results:
            rel = p.relative_to(src).as_posix()
            lines.append(f'    - "{rel.split("/")[-2]}": {rel}')
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_build"), help="output folder (default _build)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in COPY:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=SKIP)
        elif p.is_file():
            shutil.copy2(p, src / name)
    _folder_pages(src / "course" / "results")
    config = (Path(__file__).with_name("mkdocs.yml").read_text()
              .replace("@HOOKS@", str(Path(__file__).with_name("hooks.py"))) + nav(src))
    (out / "mkdocs.yml").write_text(config)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "-f", str(out / "mkdocs.yml")],
                       env=env)
    if r.returncode == 0:
        print(f"book: {out / 'site' / 'index.html'}  ({time.perf_counter() - t0:.0f} s)")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
