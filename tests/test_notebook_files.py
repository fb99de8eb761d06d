"""The committed notebooks as files: no metadata that changes on every run (cell timestamps,
widget state), figures stored compact, and ``notebooks/strip_metadata.py`` (run by
``make notebooks``) removing exactly that and nothing nbval compares."""
from __future__ import annotations

import base64
import copy
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("strip_metadata", ROOT / "notebooks" / "strip_metadata.py")
strip_metadata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(strip_metadata)

NOTEBOOKS = strip_metadata.committed_notebooks()
LESSONS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
#: a stored figure: a palette PNG (lab.viz.compact_png, at most PNG_COLOURS colours), this size at most
MAX_PNG_BYTES = 80_000
_PALETTE = 3                 # PNG colour type of an indexed-colour image (IHDR byte 25)


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_every_committed_notebook_is_checked():
    assert len(LESSONS) == 8 and len(NOTEBOOKS) == 24


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_no_volatile_metadata(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert strip_metadata.volatile(nb) == [], \
        f"{_id(path)} carries run metadata: run `python notebooks/strip_metadata.py {_id(path)}`"
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            kinds = [k for k in o.get("data", {}) if "widget" in k]
            assert not kinds, f"{_id(path)} cell {i} stores widget output {kinds}"


@pytest.mark.parametrize("path", LESSONS, ids=_id)
def test_stored_figures_are_compact_pngs(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            if "image/png" in o.get("data", {}):
                png = base64.b64decode(o["data"]["image/png"])
                assert png[25] == _PALETTE, \
                    f"{_id(path)} cell {i}: a full-colour PNG (show it through lab.viz.compact_png)"
                assert len(png) <= MAX_PNG_BYTES, f"{_id(path)} cell {i}: a {len(png)}-byte PNG"


def test_strip_removes_run_metadata_and_keeps_what_nbval_reads():
    spec = {"name": "longconv-edu", "display_name": "Python (longconv-edu)", "language": "python"}
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": spec, "widgets": {"state": {}}})
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    cell.metadata = {"tags": ["nbval-ignore-output"], "execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}}
    nb.cells.append(cell)
    before = copy.deepcopy(nb)
    assert strip_metadata.volatile(nb) == ["metadata.widgets", "cell 0 metadata.execution"]
    strip_metadata.strip(nb)
    assert strip_metadata.volatile(nb) == []
    assert nb.metadata == {"kernelspec": spec}
    assert nb.cells[0].metadata == {"tags": ["nbval-ignore-output"]}
    assert (nb.cells[0].outputs, nb.cells[0].execution_count, nb.cells[0].source) == \
        (before.cells[0].outputs, 3, "print(1)")


def test_strip_drops_widget_views_and_keeps_their_text():
    """A displayed widget's view (a model id into the stripped state) goes; its text/plain stays."""
    view = {"model_id": "0123abcd", "version_major": 2, "version_minor": 0}
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("w", execution_count=1, outputs=[
        nbformat.v4.new_output("display_data", data={strip_metadata.WIDGET_VIEW: view,
                                                     "text/plain": "Squash explorer"})]))
    assert strip_metadata.volatile(nb) == [f"cell 0 output {strip_metadata.WIDGET_VIEW}"]
    strip_metadata.strip(nb)
    assert strip_metadata.volatile(nb) == []
    assert nb.cells[0].outputs[0].data == {"text/plain": "Squash explorer"}


def test_strip_file_rewrites_only_the_metadata(tmp_path):
    """A committed notebook with timestamps put back comes out byte for byte as committed."""
    src = LESSONS[0]
    nb = json.loads(src.read_text(encoding="utf-8"))
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["metadata"]["execution"] = {"shell.execute_reply": "2026-01-01T00:00:00.000000Z"}
    dirty = tmp_path / src.name
    dirty.write_text(nbformat.writes(nbformat.from_dict(nb)) + "\n", encoding="utf-8")
    assert strip_metadata.main([str(dirty), "--check"]) == 1
    assert strip_metadata.strip_file(dirty) is True
    assert dirty.read_text(encoding="utf-8") == src.read_text(encoding="utf-8")
    assert strip_metadata.strip_file(dirty) is False                       # nothing left to strip


def test_make_notebooks_strips_after_executing():
    make = (ROOT / "Makefile").read_text()
    target = make[make.index("\nnotebooks:"):]
    assert target.index("nbconvert") < target.index("strip_metadata.py")
