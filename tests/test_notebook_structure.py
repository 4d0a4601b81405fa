"""Every notebook of the series teaches the same way: its first cell says what it needs and how long it
runs, and it ends with "What we saw" (a code cell that builds the summary from the notebook's own outputs,
so no number in it is typed) and "Try this" (two or three exercises on the method's switches).

Checked on the source notebooks, without running them (the tiny-profile runs are `make test-notebooks`)."""
from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from dissam.repro import reproduce

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# The switches the exercises are about: Variant.authors_code() (and the Variant fields it sets), the
# coarse prior (TrainConfig.coarse_prior) and the enrichment rule (Variant.enrichment).
SWITCHES = ("authors_code", "coarse_prior", "enrichment")
TYPED_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")  # 0.866, 12.5; not x1.5 inside a name
FORMAT_SPEC = re.compile(r":[<>^=]?[+-]?#?0?\d*[,_]?(?:\.\d+)?[a-zA-Z%]?}")  # {x:6.3f}, {gap:+.3f}, {n:,}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _heading(cell: dict) -> str:
    return _source(cell).strip().splitlines()[0].strip() if _source(cell).strip() else ""


def _without_comments(code: str) -> str:
    """The code with its comments removed (a comment may cite a value; the code and its strings may not)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    return tokenize.untokenize((t.type, t.string) for t in tokens if t.type != tokenize.COMMENT)


def test_the_series_is_every_notebook_in_order():
    """`dissam reproduce` runs every source notebook (07 included: its executed copy shows the static figure)."""
    assert [p.stem for p in NOTEBOOKS] == list(reproduce.SERIES)
    assert len(NOTEBOOKS) == 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_states_prerequisites_and_run_time(path):
    first = _cells(path)[0]
    text = _source(first)
    assert first["cell_type"] == "markdown" and text.lstrip().startswith("# "), \
        f"{path.name}: the first cell must be the title cell (markdown, '# ...')"
    assert re.search(r"\bprerequisites?\b", text, re.I), f"{path.name}: the first cell names no prerequisites"
    assert re.search(r"\brun time\b", text, re.I), f"{path.name}: the first cell gives no run time"
    assert re.search(r"\babout\b", text, re.I) and re.search(r"\bsmoke\b", text, re.I), \
        f"{path.name}: give the smoke profile's run time, approximately ('about ...')"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_ends_with_what_we_saw_then_try_this(path):
    cells = _cells(path)
    assert len(cells) >= 4
    saw, summary, exercises = cells[-3:]
    assert saw["cell_type"] == "markdown" and _heading(saw) == "## What we saw", \
        f"{path.name}: the third cell from the end must be the '## What we saw' heading"
    assert summary["cell_type"] == "code" and _source(summary).strip(), \
        f"{path.name}: '## What we saw' must be followed by the code cell that builds the summary"
    assert exercises["cell_type"] == "markdown" and _heading(exercises) == "## Try this", \
        f"{path.name}: the last cell must be '## Try this'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_what_we_saw_types_no_number(path):
    """The summary's numbers come from the notebook's own variables and outputs: no decimal in its code."""
    code = FORMAT_SPEC.sub("}", _without_comments(_source(_cells(path)[-2])))
    typed = TYPED_DECIMAL.findall(code)
    assert not typed, f"{path.name}: 'What we saw' types {typed}; read them from the notebook's outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_try_this_holds_two_or_three_exercises_on_the_switches(path):
    text = _source(_cells(path)[-1])
    exercises = re.findall(r"^\d+\.\s", text, re.M)
    assert 2 <= len(exercises) <= 3, f"{path.name}: 'Try this' has {len(exercises)} numbered exercises, not 2-3"
    assert any(switch in text for switch in SWITCHES), \
        f"{path.name}: 'Try this' names none of the switches {SWITCHES}"
