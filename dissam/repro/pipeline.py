"""A training run end to end, on a profile: data -> stage-1 cache -> resized caches -> GT encoder -> refiner.

Every step reuses what exists, so the notebooks, the CLI and :func:`ensure_refiner` call them freely.
Under torchrun the data work (stage 1 and the resized caches) runs on rank 0 alone while the other
ranks wait (:func:`on_rank0`).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from .config import Profile
from .distributed import init_world
from .stages import build_training_cache, cache_stage1, prepare_data, uses_resized_cache
from .train import RunSpec, TrainResult, run_finished, train_gt_encoder, train_refiner


def build_run_caches(profile: Profile, spec: RunSpec, progress: bool = True) -> dict[str, dict[str, Any]]:
    """The resized caches a training run reads (the GT encoder's while it is untrained, and the run's
    training and validation sets while it is unfinished), so that every rank of a torchrun world finds
    them built. Nothing for profiles that keep their arrays in memory."""
    if not uses_resized_cache(profile):
        return {}
    cfg, built = profile.train, {}
    if cfg.use_gt_encoder and not profile.gt_encoder_checkpoint.exists():
        gt_only = dict(use_box=False, use_mask=False, in_ch=3, progress=progress)
        built["gt_encoder/train"] = build_training_cache(profile, TRAIN_SPLIT, train=True, enrich=cfg.enrich, **gt_only)
        built["gt_encoder/val"] = build_training_cache(profile, VAL_SPLIT, **gt_only)
    if not run_finished(profile, spec):
        inputs = dict(use_box=spec.use_box, use_mask=spec.use_mask, in_ch=spec.in_ch, progress=progress)
        built[f"{spec.name}/train"] = build_training_cache(profile, TRAIN_SPLIT, train=True, enrich=spec.enrich,
                                                           **inputs)
        built[f"{spec.name}/val"] = build_training_cache(profile, VAL_SPLIT, **inputs)
    return built


# ----------------------------------------------------------------------------- the whole sequence
RANK0_WAIT = timedelta(hours=12)  # how long the other ranks wait for rank 0's data work


def on_rank0(profile: Profile, work: Callable[[], Any]) -> None:
    """Run ``work`` on rank 0 alone while the other ranks of a torchrun world wait, then go on together
    (alone: just run it). The wait is a gloo all-reduce with a long timeout, not a NCCL barrier (10
    minutes by default, less than a first stage-1 pass); a failure on rank 0 stops every rank."""
    world = init_world(profile.device)
    if not world.distributed:
        work()
        return
    group = dist.new_group(backend="gloo", timeout=RANK0_WAIT)
    failed = torch.zeros(1)
    try:
        if world.is_main:
            try:
                work()
            except BaseException:
                failed += 1
                raise
    finally:
        dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=group)
    if failed.item():
        raise RuntimeError(f"rank {world.rank}: rank 0 failed to prepare the data (stage-1 and resized caches); "
                           "see its error")


def prepare_training_data(profile: Profile, progress: bool = True) -> None:
    """The data and the stage-1 masks of the training and validation splits, where missing."""
    prepare_data(profile, progress=progress)
    cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=progress)


def prepare_run(profile: Profile, spec: RunSpec, progress: bool = True) -> None:
    """What a run needs before training: :func:`prepare_training_data`, then the resized caches of the
    data sets it reads."""
    prepare_training_data(profile, progress=progress)
    build_run_caches(profile, spec, progress=progress)


def run_stages(profile: Profile, spec: RunSpec | None = None, resume: bool = True,
               progress: bool = True) -> TrainResult:
    """Data -> stage-1 cache of the training and validation splits -> resized caches (:func:`prepare_run`,
    on rank 0 alone under torchrun) -> GT encoder -> the refiner run ``spec`` (default: the main run);
    every step reuses what already exists."""
    spec = spec or RunSpec()
    on_rank0(profile, lambda: prepare_run(profile, spec, progress=progress))
    if profile.train.use_gt_encoder:
        train_gt_encoder(profile, progress=progress)
    return train_refiner(profile, spec, resume=resume, progress=progress)


def ensure_inputs(profile: Profile, progress: bool = True) -> Path | None:
    """What every refiner run of the profile reads, produced where missing: the data (notebook 00), the
    stage-1 masks of the training and validation splits (notebook 01) and the GT encoder (notebook 02);
    its checkpoint, or None when the profile trains without one. Reuses what exists, so a notebook that
    calls it first runs alone in a fresh runs folder and costs nothing after the series."""
    on_rank0(profile, lambda: prepare_training_data(profile, progress=progress))
    return train_gt_encoder(profile, progress=progress) if profile.train.use_gt_encoder else None


def ensure_refiner(profile: Profile, progress: bool = True) -> Path:
    """The profile's main refiner checkpoint, producing data, stage-1 cache, GT encoder and model if missing."""
    if profile.refiner_checkpoint.exists():
        return profile.refiner_checkpoint
    return run_stages(profile, progress=progress).checkpoint
