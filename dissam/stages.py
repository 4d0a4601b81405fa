"""The reproduction's stages for a profile, as steps: data -> stage-1 cache -> GT encoder -> refiner.

Each step is idempotent (a step that already ran costs nothing), so the notebooks, the CLI and
:func:`ensure_refiner` call them freely. Stage 1 (SAM, HQ-SAM or GrabCut) is built from a profile in one
place, :func:`build_stage1`, for the cache, the predictor and the baselines alike. Split folders and
stage-1 cache folders are named here (:func:`split_dir`, :func:`coarse_cache_dir`). The GT encoder and
the refiner are trained by :mod:`dissam.train`; :func:`run_stages` is the whole sequence, written once.
"""
from __future__ import annotations

import json
from dataclasses import replace
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


def coarse_cache_dir(profile: Profile, split: str) -> Path:
    """One cache folder per split: the enriched and whole-GT boxes share it, so a single-component
    image's box is computed once (entries are keyed by image, box and stage-1 model)."""
    return profile.cache_dir / split


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
    return profile.cache_dir / "stage1_keys.json"


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


def stage1_key(profile: Profile) -> str:
    """The cache key of the profile's stage 1, read without loading SAM's weights onto a device: from
    memory, else from the run's key file, else (first time only) from a CPU-built segmenter."""
    ident = _key_id(profile)
    if ident not in _KEYS:
        known = _known_keys(profile)
        if ident in known:
            _KEYS[ident] = known[ident]
        else:
            _remember_key(profile, build_stage1(profile, device="cpu").key)
    return _KEYS[ident]


def cache_stage1(profile: Profile, splits: list[str] | None = None, segmenter=None,
                 progress: bool = True) -> dict[str, dict[str, Any]]:
    """Stage-1 masks for every split through the on-disk cache: the training split per enriched
    component (and per whole GT, for the runs without enrichment), every other split per whole GT.
    ``segmenter``: the profile's stage 1, already built (default: built here)."""
    from .coarse import cache_masks

    segmenter = segmenter if segmenter is not None else build_stage1(profile)
    _remember_key(profile, segmenter.key)
    splits = splits if splits is not None else available_splits(
        profile, (TRAIN_SPLIT, VAL_SPLIT, *TEST_SPLITS, *profile.data.zero_shot_sets))
    manifests: dict[str, dict[str, Any]] = {}
    for split in splits:
        jobs = [(split, None)]
        if split == TRAIN_SPLIT:
            jobs.append((f"{split}-enriched", profile.variant.enrichment))
        for name, enrichment in jobs:
            manifests[name] = cache_masks(segmenter, split_dir(profile, split), coarse_cache_dir(profile, split),
                                          enrichment=enrichment, progress=progress)
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


# ----------------------------------------------------------------------------- the whole sequence
def run_stages(profile: Profile, spec: "RunSpec | None" = None, resume: bool = True,
               progress: bool = True) -> "TrainResult":
    """Data -> stage-1 cache of the training and validation splits -> GT encoder -> the refiner run
    ``spec`` (default: the main run); every step reuses what already exists."""
    from .train import RunSpec, train_gt_encoder, train_refiner

    prepare_data(profile, progress=progress)
    cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=progress)
    train_gt_encoder(profile, progress=progress)
    return train_refiner(profile, spec or RunSpec(), resume=resume, progress=progress)


def ensure_refiner(profile: Profile, progress: bool = True) -> Path:
    """The profile's main refiner checkpoint, producing data, stage-1 cache, GT encoder and model if missing."""
    if profile.refiner_checkpoint.exists():
        return profile.refiner_checkpoint
    return run_stages(profile, progress=progress).checkpoint
