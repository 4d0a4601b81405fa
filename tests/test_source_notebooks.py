"""The source notebooks under notebooks/ are committed without outputs: executed copies live in
runs/<profile>/executed/ and, for readers, in figures/<profile>/notebooks/ (written by `dissam reproduce`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_source_notebooks():
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_source_notebook_carries_no_outputs(path):
    book = json.loads(path.read_text())
    dirty = [index for index, cell in enumerate(book["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing"
    assert "widgets" not in book.get("metadata", {}), f"{path.name}: widget state in the notebook metadata"
    assert "papermill" not in book.get("metadata", {}), f"{path.name} is an executed copy"
