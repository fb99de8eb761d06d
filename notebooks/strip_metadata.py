"""Strip what changes on every run of a notebook but is no result: cell execution timestamps
(``metadata.execution``, written by nbconvert and JupyterLab), saved widget state
(``metadata.widgets``, which holds every progress bar and slider a run created) and the
widget views in cell outputs (a model id that points into that state; the output keeps its
``text/plain`` form, which says what the widget is).

Outputs, execution counts, cell tags (nbval reads ``nbval-ignore-output`` there), the kernelspec
and language_info are kept, so nbval compares exactly what it compared before. Without this, one
re-executed cell re-commits a timestamp in every cell of the notebook.

    python notebooks/strip_metadata.py                 # every committed notebook, in place
    python notebooks/strip_metadata.py NB.ipynb ...    # these only
    python notebooks/strip_metadata.py --check         # list notebooks that carry any; exit 1 if so

``make notebooks`` runs it after re-executing; tests/test_notebook_files.py checks the result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
#: every notebook the repository commits: the lessons, the exercises and their solutions
NOTEBOOK_GLOBS = ("notebooks/*.ipynb", "course/exercises/*.ipynb", "course/solutions/*.ipynb")
VOLATILE_CELL_KEYS = ("execution",)
VOLATILE_NOTEBOOK_KEYS = ("widgets",)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def committed_notebooks() -> list[Path]:
    return sorted(p for g in NOTEBOOK_GLOBS for p in ROOT.glob(g))


def volatile(nb) -> list[str]:
    """Where ``nb`` (an nbformat notebook) carries volatile metadata, as readable strings."""
    found = [f"metadata.{k}" for k in VOLATILE_NOTEBOOK_KEYS if k in nb.metadata]
    found += [f"cell {i} metadata.{k}" for i, c in enumerate(nb.cells)
              for k in VOLATILE_CELL_KEYS if k in c.get("metadata", {})]
    found += [f"cell {i} output {WIDGET_VIEW}" for i, c in enumerate(nb.cells)
              for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    return found


def strip(nb):
    """Remove the volatile metadata from ``nb`` in place; return it."""
    for k in VOLATILE_NOTEBOOK_KEYS:
        nb.metadata.pop(k, None)
    for c in nb.cells:
        for k in VOLATILE_CELL_KEYS:
            c.get("metadata", {}).pop(k, None)
        for o in c.get("outputs", []):
            o.get("data", {}).pop(WIDGET_VIEW, None)
    return nb


def strip_file(path: Path) -> bool:
    """Rewrite ``path`` without volatile metadata (nbformat's own layout); True if it changed."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    if not volatile(nb):
        return False
    path.write_text(nbformat.writes(strip(nb)) + "\n", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every committed notebook")
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if any carries some")
    args = parser.parse_args(argv)
    paths = args.notebooks or committed_notebooks()
    bad = 0
    for p in paths:
        if args.check:
            found = volatile(nbformat.read(p, as_version=nbformat.NO_CONVERT))
            if found:
                bad += 1
                print(f"{p}: {len(found)} volatile entries ({', '.join(found[:3])}, ...)")
        elif strip_file(p):
            print(f"stripped {p}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
