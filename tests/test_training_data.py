"""What training reads: flips drawn in the main process (not in DataLoader workers), one resumable loader
per run, validation through workers, and RNG states saved per device."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dissam.data.datasets import RefinerDataset, draw_flips
from dissam.data.procedural import generate_dataset
from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
from dissam.model import build_refiner
from dissam.repro import config, stages
from dissam.repro import train as train_mod
from dissam.repro.config import get_profile
from dissam.repro.distributed import World
from dissam.repro.train import RunSpec, TrainingBatches, distributed_order, train_refiner


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("training-data")
    generate_dataset(root / "data", get_profile("tiny").data, progress=False)
    return root


def _tiny(root: Path, tag: str, monkeypatch, num_workers: int):
    monkeypatch.setattr("dissam.repro.config.RUNS_ROOT", root / "runs")
    profile = dataclasses.replace(get_profile("tiny"), tag=tag)
    profile.data.root = root / "data"
    profile.train = dataclasses.replace(profile.train, num_workers=num_workers, use_gt_encoder=False)
    stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)
    return profile


def _weights(result) -> dict[str, torch.Tensor]:
    return torch.load(result.last_checkpoint, weights_only=True)["model"]


def test_training_does_not_depend_on_workers_or_on_where_it_resumed(root, monkeypatch):
    """Flips used to be drawn inside DataLoader workers (seeded per worker, the same on every rank): two
    workers, or a resume in mid-epoch, trained another model than one process straight through."""
    spec = RunSpec(name="flips", max_iters=7)
    straight = train_refiner(_tiny(root, "workers0", monkeypatch, 0), spec, progress=False)
    profile = _tiny(root, "workers2", monkeypatch, 2)
    assert train_refiner(profile, spec, progress=False, stop_after=3).iterations == 3
    resumed = train_refiner(profile, spec, progress=False)
    assert resumed.iterations == 7
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _batches(augment: str, horizon: int = 40) -> TrainingBatches:
    order = distributed_order(10, World(), seed=3)
    state = torch.Generator().manual_seed(11).get_state()
    return TrainingBatches(order, steps_per_epoch=len(order(0)) // 3, per_rank=3, augment=augment,
                           flip_state=state, horizon=horizon)


@pytest.mark.parametrize("augment", ["hflip", "hvflip"])
def test_batches_from_any_iteration_are_the_straight_run_s_and_leave_the_global_rng_alone(augment):
    global_state = torch.get_rng_state()
    straight = list(_batches(augment))
    assert len(straight) == 40 and all(len(b) == 3 for b in straight)
    for start in (0, 1, 3, 7, 20, 39):
        sampler = _batches(augment)
        sampler.resumable(None)(start)
        assert list(sampler) == straight[start:]
    assert torch.equal(torch.get_rng_state(), global_state)
    flips = {(h, v) for batch in straight for _, h, v in batch}
    assert flips == ({(False, False), (True, False)} if augment == "hflip" else
                     {(False, False), (True, False), (False, True), (True, True)})
    # epoch e's flips are draws [e*m, (e+1)*m) of one stream: what a data set indexed in turn would draw
    m = 9
    stream = draw_flips(augment, 3 * m, torch.Generator().manual_seed(11))
    assert [(h, v) for batch in straight[:9] for _, h, v in batch] == stream


def test_validation_through_workers_scores_as_in_process(root, monkeypatch):
    profile = _tiny(root, "validation", monkeypatch, 0)
    dataset = RefinerDataset(config.split_dir(profile, VAL_SPLIT), stages.coarse_source(profile, VAL_SPLIT), 32,
                             enrichment=None, augment=None)
    torch.manual_seed(0)
    model = build_refiner(in_ch=5, width=0.125).eval()
    cpu = torch.device("cpu")
    scores = []
    for workers in (0, 2):
        loader = train_mod._validation_loader(dataset, 3, workers, cpu)
        to_network = lambda batch: train_mod.TrainingItems(dataset).to_network(batch, cpu)  # noqa: E731
        scores.append(train_mod._validate(model, loader, to_network))
    inline = []
    for i in range(len(dataset)):
        sample = dataset[i]
        maps, _ = model(sample["input"][None])
        inline.append((maps[0], sample["gt"][None]))
    from dissam.metrics.running import RunningScores
    running = RunningScores()
    for probs, gt in inline:
        running.update(probs, gt)
    assert scores[0] == scores[1]
    assert scores[0]["maxF"] == pytest.approx(running.result()["maxF"], abs=1e-12)
    assert scores[0]["MAE"] == pytest.approx(running.result()["MAE"], rel=1e-6)


# ----------------------------------------------------------------------------- RNG states per device
class FakeCuda:
    """``torch.cuda`` RNG calls on a machine showing ``visible`` GPUs: setting the state of a device that
    is not there fails as CUDA does ("invalid device ordinal")."""

    def __init__(self, visible: int) -> None:
        self.visible, self.set_calls, self.get_calls = visible, [], []

    def _index(self, device) -> int:
        index = torch.device(device).index if not isinstance(device, int) else device
        return 0 if index is None else index

    def get_rng_state(self, device="cuda"):
        self.get_calls.append(self._index(device))
        return torch.full((16,), self._index(device), dtype=torch.uint8)

    def get_rng_state_all(self):
        return [self.get_rng_state(i) for i in range(self.visible)]

    def set_rng_state(self, state, device="cuda"):
        index = self._index(device)
        if index >= self.visible:
            raise RuntimeError("CUDA error: invalid device ordinal")
        self.set_calls.append((index, int(state[0])))

    def set_rng_state_all(self, states):  # as torch.cuda does it
        for i, state in enumerate(states):
            self.set_rng_state(state, i)

    def install(self, monkeypatch) -> FakeCuda:
        for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.visible)
        return self


def test_a_rank_saves_and_restores_its_own_gpu_s_rng_state_only(monkeypatch):
    """A run saved with 4 GPUs visible resumes where one is: rank 1 (cuda:1) saved cuda:1's state, and on
    a machine with 2 GPUs its state goes back to cuda:1 alone."""
    four = FakeCuda(4).install(monkeypatch)
    saved = train_mod._rng_state(torch.device("cuda", 1))
    assert four.get_calls == [1]
    fewer = FakeCuda(2).install(monkeypatch)
    train_mod._set_rng_state(saved, torch.device("cuda", 1))
    assert fewer.set_calls == [(1, 1)]


def test_a_checkpoint_with_every_visible_gpu_s_state_resumes_on_fewer_gpus(monkeypatch):
    """Checkpoints written before states were per device hold all visible GPUs' (here 4): resuming on one
    GPU used to fail with "invalid device ordinal"; now the run's own device's state is restored."""
    state = train_mod._rng_state(torch.device("cpu"))
    state.pop("cuda_device")
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    one = FakeCuda(1).install(monkeypatch)
    train_mod._set_rng_state(state, torch.device("cuda", 0))
    assert one.set_calls == [(0, 0)]
    train_mod._set_rng_state(state, torch.device("cpu"))  # a CUDA run resumed on the CPU: nothing to set
    assert one.set_calls == [(0, 0)]
