"""`make test` runs the suite on several processes (pytest-xdist); the repository's conftest.py decides
what may run apart. The notebooks must stay one ordered series on one process (each reads what the one
before it wrote), and the long training tests must start first, on different processes."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


_COLLECT = """
import sys, pytest
class Print:
    def pytest_collection_finish(self, session):
        for item in session.items:
            print("slow" if item.get_closest_marker("slow") else "-", item.nodeid, sep="|")
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--nbval-lax", "tests", "notebooks"],
                     plugins=[Print()]))
"""


@pytest.fixture(scope="module")
def collected() -> list[tuple[bool, str]]:
    """(marked slow, test id) for the whole suite, in the order pytest runs it."""
    out = subprocess.run([sys.executable, "-c", _COLLECT], cwd=ROOT, env={**os.environ, "DISSAM_PROFILE": "tiny"},
                         capture_output=True, text=True, check=True).stdout
    return [(kind == "slow", nodeid) for kind, nodeid in (line.split("|", 1) for line in out.splitlines() if "|" in line)]


def _is_cell(nodeid: str) -> bool:
    return nodeid.split("::")[0].endswith(".ipynb")


def test_slow_tests_come_first_then_the_notebooks_in_order(collected):
    collection = [nodeid for _, nodeid in collected]
    slow = [nodeid for is_slow, nodeid in collected if is_slow]
    assert len(slow) >= 2 and set(collection[:len(slow)]) == set(slow)
    cells = [nodeid for nodeid in collection if _is_cell(nodeid)]
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert collection[len(slow):len(slow) + len(cells)] == cells  # one block, right after the slow tests
    order = [(nodeid.split("::")[0], int(nodeid.rsplit(" ", 1)[1])) for nodeid in cells]
    assert order == sorted(order) and sorted({path for path, _ in order}) == notebooks


def test_the_notebooks_are_one_unit_of_work_and_every_test_its_own(collected):
    """xdist hands out units of work: the notebooks' cells are one unit, every other test one of its own."""
    pytest.importorskip("xdist")
    spec = importlib.util.spec_from_file_location("suite_conftest", ROOT / "conftest.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    collection = [nodeid for _, nodeid in collected]
    option = SimpleNamespace(loadscopereorder=True)
    config = SimpleNamespace(option=option, getvalue=lambda name: ["2*popen"] if name == "tx" else None)
    scheduler = suite.pytest_xdist_make_scheduler(config, log=None)
    assert option.loadscopereorder is False  # units go out in the collection order
    scopes = [scheduler._split_scope(nodeid) for nodeid in collection]
    cells = [s for nodeid, s in zip(collection, scopes) if _is_cell(nodeid)]
    others = [s for nodeid, s in zip(collection, scopes) if not _is_cell(nodeid)]
    assert len(set(cells)) == 1 and len(cells) > 8
    assert len(set(others)) == len(others) and not set(cells) & set(others)
