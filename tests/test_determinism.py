"""The same command gives the same tables, to the digit: two complete short runs (data, stage-1 cache,
GT encoder, the main refiner and Table I's short runs, evaluation) in separate folders write
byte-identical Table I files. Budgets are iteration counts, so machine load cannot change them."""
from __future__ import annotations

import dataclasses

import pytest

from dissam import experiments as ex
from dissam import report, workflow
from dissam.config import get_profile
from dissam.train import RunSpec, train_gt_encoder, train_refiner


def _table_one(runs_dir, monkeypatch) -> bytes:
    monkeypatch.setenv("DISSAM_RUNS", str(runs_dir))
    profile = dataclasses.replace(get_profile("tiny"), tag="determinism")
    workflow.prepare_data(profile, progress=False)
    workflow.cache_stage1(profile, [workflow.TRAIN_SPLIT, workflow.VAL_SPLIT, *workflow.TEST_SPLITS],
                          progress=False)
    train_gt_encoder(profile, progress=False)
    train_refiner(profile, RunSpec(), progress=False)
    for run in (ex.ISNET_RUN, ex.DISSAM_SHORT_RUN):
        ex.train_run(profile, run, progress=False)
    report.table_one(profile)
    return (profile.figures_dir / "table1.csv").read_bytes()


@pytest.mark.slow
def test_two_runs_write_identical_tables(tmp_path, monkeypatch):
    first = _table_one(tmp_path / "a", monkeypatch)
    second = _table_one(tmp_path / "b", monkeypatch)
    assert first == second
    assert b"DIS-SAM (4 it)" in first  # budgets are iterations, printed as such
