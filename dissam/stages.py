"""The reproduction's stages for a profile, as steps: data -> stage-1 cache -> GT encoder -> refiner.

Each step is idempotent (a step that already ran costs nothing), so the notebooks, the CLI and
:func:`ensure_refiner` call them freely. Stage 1 (SAM, HQ-SAM or GrabCut) is built from a profile in one
place, :func:`build_stage1`, for the cache, the predictor and the baselines alike. Split folders and
stage-1 cache folders are named here (:func:`split_dir`, :func:`coarse_cache_dir`). The GT encoder and
the refiner are trained by :mod:`dissam.train`; :func:`run_stages` is the whole sequence, written once.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import Profile, Variant
from .data.splits import DIS5K_SPLITS, TEST_SPLITS, TRAIN_SPLIT, VAL_SPLIT

if TYPE_CHECKING:
    from .train import RunSpec, TrainResult


# ----------------------------------------------------------------------------- data
def prepare_data(profile: Profile, progress: bool = True) -> dict[str, Any]:
    """Generate the procedural data set (when ``profile.data.root`` is None), else check the DIS5K folders exist."""
    from .data.folders import DataError

    root = profile.data_root
    if profile.data.root is None:
        from .data.procedural import generate_dataset

        return generate_dataset(root, profile.data, progress=progress)
    missing = [s for s in DIS5K_SPLITS if not (root / s / "im").is_dir()]
    if missing:
        raise DataError(
            f"DIS5K not found under {root} (missing {', '.join(missing)}). Download DIS5K from the IS-Net "
            "authors (github.com/xuebinqin/DIS, 'DIS5K' link), unpack it so that <root>/DIS-TR/im exists, and pass "
            "--data <root> or set DISSAM_DIS5K.")
    return {"root": str(root), "splits": {s: len(list((root / s / "im").iterdir())) for s in DIS5K_SPLITS}}


def available_splits(profile: Profile, names: tuple[str, ...] | list[str]) -> list[str]:
    """The splits of ``names`` that exist under the data root (zero-shot sets are optional for DIS5K)."""
    return [s for s in names if (profile.data_root / s / "im").is_dir()]


def split_dir(profile: Profile, split: str) -> Path:
    """The im/gt folder of ``split`` under the profile's data root."""
    return profile.data_root / split


# ----------------------------------------------------------------------------- stage 1
def build_stage1(profile: Profile, device: str | None = None, kind: str | None = None,
                 checkpoint: str | Path | None = None):
    """The stage-1 segmenter a profile configures (``profile.coarse``; SAM type and multimask from
    ``profile.variant``); SAM kinds go to ``device`` (default: CUDA when available). ``kind`` and
    ``checkpoint`` replace the profile's (e.g. GrabCut on a SAM profile, or HQ-SAM as a baseline)."""
    from .coarse import build_coarse

    cfg, variant = profile.coarse, profile.variant
    if kind is not None and kind != cfg.kind:
        cfg = replace(cfg, kind=kind)
    if checkpoint is not None:
        cfg = replace(cfg, checkpoint=Path(checkpoint))
    if cfg.kind == "grabcut":
        return build_coarse("grabcut", iters=cfg.grabcut_iters)
    return build_coarse(cfg.kind, checkpoint=cfg.checkpoint, model_type=variant.sam_model_type,
                        multimask=stage1_multimask(cfg.kind, variant), device=device)


def stage1_multimask(kind: str, variant: Variant) -> bool:
    """SAM follows the variant (the authors' code asks for three masks and takes masks[0]); HQ-SAM, a
    baseline, is prompted as its own code prompts boxes: one mask, whatever the variant."""
    return variant.sam_multimask if kind == "sam" else False


DRY_RUN_TAG = "dryrun"  # the tag dissam.config.dry_run gives a profile


def stage1_cache_root(profile: Profile) -> Path:
    """Where a profile's stage-1 masks live. A dry run shares its profile's real folder: its masks are
    keyed by image content, box and stage-1 model, none of which a dry run changes, so the real run
    reuses them (and its key file) instead of computing them again."""
    if profile.tag == DRY_RUN_TAG:
        return replace(profile, tag="").cache_dir
    return profile.cache_dir


def coarse_cache_dir(profile: Profile, split: str) -> Path:
    """One cache folder per split: the enriched and whole-GT boxes share it, so a single-component
    image's box is computed once (entries are keyed by image, box and stage-1 model)."""
    return stage1_cache_root(profile) / split


def resized_cache_dir(profile: Profile, split: str) -> Path:
    """The split's resized training cache (network-size uint8 arrays, :mod:`dissam.data.resized_cache`)."""
    return profile.run_dir / "resized_cache" / split


_KEYS: dict[str, str] = {}


def _key_id(profile: Profile) -> str:
    """What identifies the stage-1 model without loading it: kind, settings, and the checkpoint file's
    path, size and modification time (a replaced file gets a new identity)."""
    cfg, variant = profile.coarse, profile.variant
    if cfg.kind == "grabcut":
        return f"grabcut|iters={cfg.grabcut_iters}"
    path = Path(cfg.checkpoint).resolve() if cfg.checkpoint else None
    stat = path.stat() if path is not None and path.is_file() else None
    file_id = f"{path}|{stat.st_size}|{stat.st_mtime_ns}" if stat else f"{path}|missing"
    return f"{cfg.kind}|{variant.sam_model_type}|multimask={stage1_multimask(cfg.kind, variant)}|{file_id}"


def _keys_file(profile: Profile) -> Path:
    return stage1_cache_root(profile) / "stage1_keys.json"


def _known_keys(profile: Profile) -> dict[str, str]:
    path = _keys_file(profile)
    return json.loads(path.read_text()) if path.is_file() else {}


def _remember_key(profile: Profile, key: str) -> None:
    ident = _key_id(profile)
    _KEYS[ident] = key
    known = _known_keys(profile)
    if known.get(ident) != key:
        from .fileio import atomic_write_bytes

        atomic_write_bytes(_keys_file(profile), json.dumps({**known, ident: key}, indent=1).encode())


def _known_key(profile: Profile) -> str | None:
    """The stage-1 key when it is known without building the model (memory or the key file), else None."""
    ident = _key_id(profile)
    if ident not in _KEYS:
        known = _known_keys(profile)
        if ident not in known:
            return None
        _KEYS[ident] = known[ident]
    return _KEYS[ident]


def stage1_key(profile: Profile) -> str:
    """The cache key of the profile's stage 1, read without loading SAM's weights onto a device: from
    memory, else from the run's key file, else (first time only) from a CPU-built segmenter."""
    key = _known_key(profile)
    if key is None:
        key = build_stage1(profile, device="cpu").key
        _remember_key(profile, key)
    return key


class _Stage1OnDemand:
    """The profile's stage 1, built on the first call of :meth:`get` only (and then kept)."""

    def __init__(self, profile: Profile, segmenter=None) -> None:
        self.profile, self.segmenter = profile, segmenter

    def get(self):
        if self.segmenter is None:
            self.segmenter = build_stage1(self.profile)
        _remember_key(self.profile, self.segmenter.key)
        return self.segmenter


def split_enrichments(profile: Profile, split: str) -> list[tuple[str, str | None]]:
    """(manifest name, enrichment) of each stage-1 pass a split needs: the training split per whole GT
    (the runs without enrichment) and per enriched component, every other split per whole GT."""
    if split == TRAIN_SPLIT:
        return [(split, None), (f"{split}-enriched", profile.variant.enrichment)]
    return [(split, None)]


def cache_stage1(profile: Profile, splits: list[str] | None = None, segmenter=None,
                 progress: bool = True, verify: bool = False) -> dict[str, dict[str, Any]]:
    """Stage-1 masks for every split through the on-disk cache (:func:`split_enrichments`), one pass per
    split (each image decoded and embedded once for all its boxes). A split whose manifests say an
    earlier pass completed under this stage-1 key, over the same folder listing, is not read again
    (``verify=True`` reads it all). ``segmenter``: the profile's stage 1, already built; by default it is
    built here, only when a split has work, and once."""
    from .coarse.cache import cache_split, completed_pass

    stage1 = _Stage1OnDemand(profile, segmenter)
    if segmenter is not None:
        _remember_key(profile, segmenter.key)
    splits = splits if splits is not None else available_splits(
        profile, (TRAIN_SPLIT, VAL_SPLIT, *TEST_SPLITS, *profile.data.zero_shot_sets))
    manifests: dict[str, dict[str, Any]] = {}
    for split in splits:
        names, enrichments = zip(*split_enrichments(profile, split))
        data_dir, cache_dir = split_dir(profile, split), coarse_cache_dir(profile, split)
        key = segmenter.key if segmenter is not None else _known_key(profile)
        done = None if verify or key is None else completed_pass(data_dir.resolve(), cache_dir, key, enrichments)
        if done is None:
            done = cache_split(stage1.get(), data_dir, cache_dir, enrichments, progress=progress, verify=verify)
        manifests.update(zip(names, done))
    return manifests


def manifest_table(manifests: dict[str, dict]) -> pd.DataFrame:
    """What :func:`cache_stage1` did, one row per cache: images, boxes, encoder calls, cache hits, seconds."""
    keys = ["images", "boxes", "encoder_calls", "cache_hits", "seconds"]
    return pd.DataFrame([{"cache": name, **{k: m.get(k) for k in keys}} for name, m in manifests.items()])


def coarse_source(profile: Profile, split: str, segmenter=None):
    """The cached stage-1 masks of a split, as the Dataset's coarse-mask seam. With ``segmenter``,
    missing entries are computed; without, they are an error (run :func:`cache_stage1` first)."""
    from .coarse.cache import CachedCoarse

    if segmenter is not None:
        return CachedCoarse(coarse_cache_dir(profile, split), segmenter, compute_missing=True)
    return CachedCoarse(coarse_cache_dir(profile, split), stage1_key(profile))


# ----------------------------------------------------------------------------- resized training cache
def uses_resized_cache(profile: Profile) -> bool:
    """Whether the profile's data sets keep their arrays on disk (the paper profile: DIS5K at 1024^2);
    the CPU profiles hold them in memory."""
    return profile.name == "paper"


def build_training_cache(profile: Profile, split: str, train: bool = False, enrich: bool = True,
                         use_box: bool = True, use_mask: bool = True, in_ch: int = 5, size: int | None = None,
                         workers: int | None = None, progress: bool = True, reads: int = 32) -> dict[str, Any]:
    """The resized cache of one data set of a split, as :func:`dissam.data.datasets.refiner_dataset` with
    these arguments uses it, built where missing (``workers`` threads; default every core) whatever
    the profile. Returns its manifest: ``images``, ``samples``, ``built``, ``reused`` (images),
    ``seconds`` (the whole start: check and build), ``bytes``, ``set_dir``, ``channels``, and
    ``read_samples_per_second``: ``dataset[i]`` (float tensors, as a DataLoader worker makes them) over
    the first ``reads`` samples in one process."""
    import time

    from .data.datasets import refiner_dataset

    dataset = refiner_dataset(profile, split, train=train, use_box=use_box, use_mask=use_mask, in_ch=in_ch,
                              enrich=enrich, size=size, verbose=progress, workers=workers, on_disk=True)
    n = min(reads, len(dataset))
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    rate = n / max(time.perf_counter() - start, 1e-9)
    return {**dataset.cache_manifest, "read_samples_per_second": round(rate, 1)}


def build_run_caches(profile: Profile, spec: "RunSpec", progress: bool = True) -> dict[str, dict[str, Any]]:
    """The resized caches a training run reads (the GT encoder's while it is untrained, and the run's
    training and validation sets while it is unfinished), so that every rank of a torchrun world finds
    them built. Nothing for profiles that keep their arrays in memory."""
    from .train import run_finished

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
    from .distributed import init_world

    world = init_world(profile.device)
    if not world.distributed:
        work()
        return
    import torch
    import torch.distributed as dist

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


def prepare_run(profile: Profile, spec: "RunSpec", progress: bool = True) -> None:
    """What a run needs before training: the data, the stage-1 masks of the training and validation
    splits, and the resized caches of the data sets it reads."""
    prepare_data(profile, progress=progress)
    cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=progress)
    build_run_caches(profile, spec, progress=progress)


def run_stages(profile: Profile, spec: "RunSpec | None" = None, resume: bool = True,
               progress: bool = True) -> "TrainResult":
    """Data -> stage-1 cache of the training and validation splits -> resized caches (:func:`prepare_run`,
    on rank 0 alone under torchrun) -> GT encoder -> the refiner run ``spec`` (default: the main run);
    every step reuses what already exists."""
    from .train import RunSpec, train_gt_encoder, train_refiner

    spec = spec or RunSpec()
    on_rank0(profile, lambda: prepare_run(profile, spec, progress=progress))
    train_gt_encoder(profile, progress=progress)
    return train_refiner(profile, spec, resume=resume, progress=progress)


def ensure_refiner(profile: Profile, progress: bool = True) -> Path:
    """The profile's main refiner checkpoint, producing data, stage-1 cache, GT encoder and model if missing."""
    if profile.refiner_checkpoint.exists():
        return profile.refiner_checkpoint
    return run_stages(profile, progress=progress).checkpoint
