"""The same command gives the same tables, to the digit: two complete short runs (data, stage-1 cache,
GT encoder, the main refiner and Table I's short runs, evaluation) in separate folders write
byte-identical Table I files. Budgets are iteration counts, so machine load cannot change them."""
from __future__ import annotations

import dataclasses

import pytest

from dissam.repro import pipeline, runs, stages, tables
from dissam.repro.config import get_profile
from dissam.data.splits import TEST_SPLITS


def _table_one(runs_dir, monkeypatch) -> bytes:
    monkeypatch.setenv("DISSAM_RUNS", str(runs_dir))
    profile = dataclasses.replace(get_profile("tiny"), tag="determinism")
    pipeline.run_stages(profile, progress=False)
    stages.cache_stage1(profile, list(TEST_SPLITS), progress=False)
    for run in (runs.ISNET_RUN, runs.DISSAM_SHORT_RUN):
        runs.train_run(profile, run, progress=False)
    tables.table_one(profile)
    return (profile.figures_dir / "table1.csv").read_bytes()


@pytest.mark.slow
def test_two_runs_write_identical_tables(tmp_path, monkeypatch):
    first = _table_one(tmp_path / "a", monkeypatch)
    second = _table_one(tmp_path / "b", monkeypatch)
    assert first == second
    assert b"DIS-SAM (4 it)" in first  # budgets are iterations, printed as such
