"""How `make test` spreads the suite over processes (pytest-xdist, ``-n auto``).

- The notebooks form one series: each reads what the one before it wrote under ``runs/tiny``, so
  every cell of every notebook goes to one process, in order (:class:`SeriesScheduling`).
- Tests marked ``slow`` (a minute or more of training each) come first, then the notebooks, so the
  longest work starts at once on different processes instead of ending the run on one of them.
Without xdist only the order changes."""
from __future__ import annotations

import pytest


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if item.path.suffix == ".ipynb" else 2


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: the cells of a notebook and the notebooks keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Every test is a unit of its own, except the notebooks' cells: one unit. Units go out in the
    collection order above (xdist's own reordering, largest unit first, would queue both long
    tests behind the notebooks on one process)."""
    from xdist.scheduler import LoadScopeScheduling

    class SeriesScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "notebooks" if nodeid.split("::", 1)[0].endswith(".ipynb") else nodeid

    config.option.loadscopereorder = False
    return SeriesScheduling(config, log)
