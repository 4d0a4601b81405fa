"""The reader's copies of executed notebooks (figures/<profile>/notebooks/): small images, no widget state,
no errors, valid nbformat, under the size budget."""
from __future__ import annotations

import base64
import io

import nbformat
import numpy as np
import pytest
from PIL import Image

from dissam.repro.config import get_profile
from dissam.repro.notebook_export import (INTERACTIVE_NOTE, MAX_TOTAL_BYTES, MAX_WIDTH, ExportError, export_series,
                                         widget_text)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _png(width: int, height: int, seed: int = 0) -> str:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _model(name: str, **state) -> dict:
    return {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "model_name": name,
            "state": state}


def _executed(tmp_path, name="00_data_enrichment.ipynb", error=False, image_width=1800):
    """An executed notebook as papermill leaves it: a tqdm widget bar, a wide figure, absolute paths."""
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["papermill"] = {"exception": None, "input_path": "/repo/notebooks/" + name,
                                  "output_path": "/repo/runs/tiny/executed/" + name}
    book.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {
        "bar": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]),
        "left": _model("HTMLModel", value="stage\u20071\u2007DIS-TR:\u2007100%"),
        "progress": _model("FloatProgressModel", value=400.0, max=400.0),
        "right": _model("HTMLModel", value="\u2007400/400\u2007[00:32&lt;00:00,\u200712.3img/s]")}}}
    bar = nbformat.v4.new_code_cell("cache_masks(profile)", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="profile tiny: data /repo/runs/tiny/data\n"),
        nbformat.v4.new_output("display_data", data={
            WIDGET_VIEW: {"model_id": "bar", "version_major": 2, "version_minor": 0},
            "text/plain": "stage 1 DIS-TR:   0%|          | 0/400 [00:00<?, ?img/s]"}),
        nbformat.v4.new_output("display_data", data={
            WIDGET_VIEW: {"model_id": "gone", "version_major": 2, "version_minor": 0}, "text/plain": ""})])
    bar.metadata["execution"] = {"iopub.execute_input": "2026-11-26T15:24:56.623772Z"}
    figure = nbformat.v4.new_code_cell("figure", execution_count=2, outputs=[nbformat.v4.new_output(
        "execute_result", data={"image/png": _png(image_width, image_width // 3), "text/plain": "<Figure>"},
        execution_count=2)])
    book.cells = [nbformat.v4.new_markdown_cell("# 00"), bar, figure]
    if error:
        figure.outputs.append(nbformat.v4.new_output("error", ename="RuntimeError", evalue="boom", traceback=[]))
    path = tmp_path / "executed" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.write(book, path)
    return path


def _images(book) -> list[tuple[str, Image.Image]]:
    found = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            for mime in ("image/png", "image/jpeg"):
                if mime in output.get("data", {}):
                    found.append((mime, Image.open(io.BytesIO(base64.b64decode(output["data"][mime])))))
    return found


def test_widget_text_is_what_the_bar_showed_at_the_end(tmp_path):
    state = nbformat.read(_executed(tmp_path), as_version=4).metadata["widgets"][WIDGET_STATE]["state"]
    assert widget_text("bar", state) == "stage 1 DIS-TR: 100% |##########| 400/400 [00:32<00:00, 12.3img/s]"
    assert widget_text("missing", state) == ""


def test_a_widget_to_draw_on_keeps_its_labels_after_a_note_and_no_css():
    """Notebook 07's box-drag demo in a static copy: its labels and status, said to need a live kernel."""
    state = {
        "demo": _model("VBoxModel", children=["IPY_MODEL_css", "IPY_MODEL_views", "IPY_MODEL_status"]),
        "css": _model("HTMLModel", value="<style>.dissam-bbox .classes {display: none}</style>"),
        "views": _model("HBoxModel", children=["IPY_MODEL_title", "IPY_MODEL_picture"]),
        "title": _model("HTMLModel", value="<b>Draw a box</b>"),
        "picture": {"model_name": "BBoxModel", "state": {}},
        "status": _model("HTMLModel", value="Drag a box around an object."),
    }
    assert widget_text("demo", state) == f"{INTERACTIVE_NOTE} Draw a box Drag a box around an object."
    state["views"]["state"]["children"] = ["IPY_MODEL_title"]  # labels only: no note
    assert widget_text("demo", state) == "Draw a box Drag a box around an object."


def test_export_downscales_strips_widgets_and_relativises_paths(tmp_path):
    source = _executed(tmp_path)
    out = tmp_path / "figures" / "notebooks"
    sizes = export_series([source], out, root="/repo")
    book = nbformat.read(out / source.name, as_version=4)
    nbformat.validate(book)
    assert sizes == {source.name: (out / source.name).stat().st_size}
    assert "widgets" not in book.metadata
    assert book.metadata.papermill.input_path == "notebooks/00_data_enrichment.ipynb"
    outputs = book.cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "stream"]  # the empty widget is dropped
    assert outputs[0].text == "profile tiny: data runs/tiny/data\n"
    assert outputs[1].text.startswith("stage 1 DIS-TR: 100% |##########| 400/400")
    assert all(WIDGET_VIEW not in o.get("data", {}) for c in book.cells for o in c.get("outputs", []))
    assert "execution" not in book.cells[1].metadata
    [(mime, image)] = _images(book)
    assert mime == "image/png" and image.size == (MAX_WIDTH, 300)
    assert nbformat.read(source, as_version=4).metadata.get("widgets")  # the executed notebook is untouched


def test_a_failed_notebook_is_refused_and_nothing_written(tmp_path):
    good, bad = _executed(tmp_path), _executed(tmp_path, "01_sam_caching.ipynb", error=True)
    out = tmp_path / "notebooks"
    with pytest.raises(ExportError, match="01_sam_caching.*RuntimeError: boom"):
        export_series([good, bad], out)
    assert not out.exists()


def test_over_budget_falls_back_to_jpeg_then_refuses(tmp_path):
    source = _executed(tmp_path, image_width=900)
    png_size = export_series([source], tmp_path / "png")[source.name]
    sizes = export_series([source], tmp_path / "jpeg", max_total=png_size - 1)
    assert sizes[source.name] < png_size
    [(mime, image)] = _images(nbformat.read(tmp_path / "jpeg" / source.name, as_version=4))
    assert mime == "image/jpeg" and image.size == (900, 300)
    with pytest.raises(ExportError, match="over the 0.01 MB budget"):
        export_series([source], tmp_path / "none", max_total=10_000)
    assert not (tmp_path / "none").exists()


def test_the_smoke_runs_executed_notebooks_export_under_budget(tmp_path):
    """The real thing, when a smoke run's executed notebooks are at hand (after `make reproduce`, or
    with DISSAM_RUNS pointing at a run folder that has them)."""
    executed = sorted((get_profile("smoke").run_dir / "executed").glob("0[0-7]_*.ipynb"))
    if not executed:
        pytest.skip("no executed smoke notebooks (run `make reproduce`)")
    out = tmp_path / "notebooks"
    sizes = export_series(executed, out)
    assert sum(sizes.values()) <= MAX_TOTAL_BYTES
    for path in out.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        assert "widgets" not in book.metadata
        assert all(image.width <= MAX_WIDTH for _, image in _images(book))
        assert not any(o.output_type == "error" for c in book.cells for o in c.get("outputs", []))
