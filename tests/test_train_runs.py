"""Ablation runs trained side by side (runs.train_runs): one thread per run in worker processes, so a
run's weights do not depend on how many workers share the machine, nor on which worker trains it; one
worker trains in the calling process with one thread and gives the same weights."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dissam.repro import runs, stages
from dissam.repro.config import get_profile
from dissam.data.procedural import generate_dataset
from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
from dissam.model.checkpoint import load_checkpoint

RUNS = ["ablation_none", "ablation_box_mask", "ablation_box_seed1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_runs") / "data"
    generate_dataset(root, get_profile("tiny").data, progress=False)
    return root


def _profile(data: Path, root: Path, monkeypatch, workers: int):
    monkeypatch.setattr("dissam.repro.config.RUNS_ROOT", root)  # the workers must follow this, not the env
    monkeypatch.delenv("DISSAM_RUNS", raising=False)
    profile = dataclasses.replace(get_profile("tiny"), tag="pool")
    profile.data.root = data
    profile.train = dataclasses.replace(profile.train, use_gt_encoder=False, coarse_prior=4.0)
    profile.ablation = dataclasses.replace(profile.ablation, max_iters=3, batch_size=2, workers=workers)
    stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    return profile


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_weights_do_not_depend_on_the_number_of_workers(data, tmp_path, monkeypatch):
    alone = runs.train_runs(_profile(data, tmp_path / "one", monkeypatch, workers=1), RUNS, progress=False)
    pooled = runs.train_runs(_profile(data, tmp_path / "two", monkeypatch, workers=2), RUNS, progress=False)
    assert list(alone) == list(pooled) == RUNS
    for name in RUNS:
        assert pooled[name].is_relative_to(tmp_path / "two") and alone[name].is_relative_to(tmp_path / "one")
        a, b = _weights(alone[name]), _weights(pooled[name])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # Different runs really differ (the comparison above could not pass by accident).
    assert not torch.equal(*(_weights(alone[n])["conv_in.weight"][:, :3] for n in RUNS[:2]))
    # Finished runs are reused in place: nothing is retrained, no worker is started.
    monkeypatch.setattr(runs._Worker, "start", lambda *a, **k: pytest.fail("a worker was started"))
    monkeypatch.setattr(runs, "_train_one_thread", lambda *a, **k: pytest.fail("a finished run was retrained"))
    profile = _profile(data, tmp_path / "two", monkeypatch, workers=2)
    assert runs.train_runs(profile, RUNS, progress=False) == pooled


@pytest.mark.slow
def test_a_failing_worker_names_its_runs_and_shows_the_error(data, tmp_path, monkeypatch):
    profile = _profile(data, tmp_path, monkeypatch, workers=2)
    profile.data.root = tmp_path / "moved away"
    with pytest.raises(RuntimeError, match=r"training runs \['ablation_(none|box)'\] failed") as err:
        runs.train_runs(profile, ["ablation_none", "ablation_box"], progress=False)
    assert "moved away" in str(err.value)
