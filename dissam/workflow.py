"""The reproduction's stages for a profile: data -> stage-1 cache -> datasets. Each stage is idempotent.

The notebooks, the CLI and ``ensure_refiner`` call these, so a stage that already ran costs nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Profile
from .data.folders import DIS5K_SPLITS, DataError

TRAIN_SPLIT = "DIS-TR"
VAL_SPLIT = "DIS-VD"
TEST_SPLITS = ("DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")


def prepare_data(profile: Profile, progress: bool = True) -> dict[str, Any]:
    """Generate the procedural data set (when ``profile.data.root`` is None), else check the DIS5K folders exist."""
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
    return profile.data_root / split


def coarse_cache_dir(profile: Profile, split: str, enriched: bool = False) -> Path:
    """One cache folder per split: the enriched and whole-GT boxes share it, so a single-component
    image's box is computed once (entries are keyed by image, box and stage-1 model)."""
    return profile.cache_dir / split


def build_segmenter(profile: Profile, device: str | None = None):
    """The profile's stage-1 segmenter (SAM on ``device``, default the best available); its key is remembered."""
    from .coarse import build_coarse_from_profile

    segmenter = build_coarse_from_profile(profile, device=device)
    _remember_key(profile, segmenter.key)
    return segmenter


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
    return f"{cfg.kind}|{variant.sam_model_type}|multimask={variant.sam_multimask}|{file_id}"


def _keys_file(profile: Profile) -> Path:
    return profile.cache_dir / "stage1_keys.json"


def _remember_key(profile: Profile, key: str) -> None:
    ident = _key_id(profile)
    _KEYS[ident] = key
    path = _keys_file(profile)
    known = json.loads(path.read_text()) if path.is_file() else {}
    if known.get(ident) != key:
        from .coarse.cache import atomic_write_bytes

        atomic_write_bytes(path, json.dumps({**known, ident: key}, indent=1).encode())


def stage1_key(profile: Profile) -> str:
    """The cache key of the profile's stage 1, read without loading SAM's weights onto a device: from
    memory, else from the run's key file, else (first time only) from a CPU-built segmenter."""
    ident = _key_id(profile)
    if ident not in _KEYS:
        path = _keys_file(profile)
        known = json.loads(path.read_text()) if path.is_file() else {}
        if ident in known:
            _KEYS[ident] = known[ident]
        else:
            build_segmenter(profile, device="cpu")
    return _KEYS[ident]


def cache_stage1(profile: Profile, splits: list[str] | None = None, segmenter=None,
                 progress: bool = True) -> dict[str, dict[str, Any]]:
    """Stage-1 masks for every split through the on-disk cache: the training split per enriched
    component (and per whole GT, for the runs without enrichment), every other split per whole GT."""
    from .coarse import cache_masks

    segmenter = segmenter if segmenter is not None else build_segmenter(profile)
    splits = splits if splits is not None else available_splits(
        profile, (TRAIN_SPLIT, VAL_SPLIT, *TEST_SPLITS, *profile.data.zero_shot_sets))
    manifests: dict[str, dict[str, Any]] = {}
    for split in splits:
        jobs = [(False, None)]
        if split == TRAIN_SPLIT:
            jobs.append((True, profile.variant.enrichment))
        for enriched, enrichment in jobs:
            name = f"{split}-enriched" if enriched else split
            manifests[name] = cache_masks(segmenter, split_dir(profile, split),
                                          coarse_cache_dir(profile, split, enriched),
                                          enrichment=enrichment, progress=progress)
    return manifests


def coarse_source(profile: Profile, split: str, enriched: bool = False, segmenter=None):
    """The cached stage-1 masks of a split, as the Dataset's coarse-mask seam. With ``segmenter``,
    missing entries are computed; without, they are an error (run :func:`cache_stage1` first)."""
    from .coarse.cache import CachedCoarse

    if segmenter is not None:
        return CachedCoarse(coarse_cache_dir(profile, split, enriched), segmenter, compute_missing=True)
    return CachedCoarse(coarse_cache_dir(profile, split, enriched), stage1_key(profile))

