"""The places and data of a profile's runs: split folders, stage 1 and its cache, the resized caches, and
the data sets training and evaluation read.

Each step is idempotent (a step that already ran costs nothing), so the notebooks, the CLI and
:mod:`dissam.repro.pipeline` call them freely. Stage 1 (SAM, HQ-SAM or GrabCut) is built from a profile in
one place, :func:`build_stage1`, for the cache, the predictor and the baselines alike. Split folders and
cache folders are named here (:func:`split_dir`, :func:`coarse_cache_dir`, :func:`resized_cache_dir`);
:func:`refiner_dataset` is the one place a run's data sets are built.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..coarse import build_coarse
from ..coarse.cache import CachedCoarse, cache_split, completed_pass
from ..data.datasets import RefinerDataset
from ..data.images import DataError
from ..data.procedural import generate_dataset
from ..data.splits import DIS5K_SPLITS, TEST_SPLITS, TRAIN_SPLIT, VAL_SPLIT
from ..fileio import atomic_write_bytes
from ..predictor import DisSam
from ..variant import Variant
from .config import Profile, coarse_cache_dir, resized_cache_dir, split_dir, stage1_cache_root


# ----------------------------------------------------------------------------- data
def prepare_data(profile: Profile, progress: bool = True) -> dict[str, Any]:
    """Generate the procedural data set (when ``profile.data.root`` is None), else check the DIS5K folders exist."""

    root = profile.data_root
    if profile.data.root is None:

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


# ----------------------------------------------------------------------------- stage 1
def stage1_spec(profile: Profile, kind: str | None = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The arguments of :func:`dissam.coarse.build_coarse` for the stage 1 a profile configures
    (``profile.coarse``; SAM type and multimask from ``profile.variant``), JSON-ready: training stores
    them in the refiner checkpoint, so :meth:`dissam.DisSam.from_checkpoint` rebuilds the same stage 1.
    ``kind`` and ``checkpoint`` replace the profile's (GrabCut on a SAM profile, HQ-SAM as a baseline, the
    IS-Net crop of :mod:`dissam.coarse.isnet_crop` beside GrabCut on photos; its default weights are the
    cached published ones)."""
    cfg, variant = profile.coarse, profile.variant
    if kind == "isnet":  # the published IS-Net on the box's window: its own weights, never SAM's
        return {"kind": "isnet", "checkpoint": None if checkpoint is None else str(checkpoint)}
    if kind is not None and kind != cfg.kind:
        cfg = replace(cfg, kind=kind)
    if checkpoint is not None:
        cfg = replace(cfg, checkpoint=Path(checkpoint))
    if cfg.kind == "grabcut":
        return {"kind": "grabcut", "iters": cfg.grabcut_iters}
    return {"kind": cfg.kind, "checkpoint": None if cfg.checkpoint is None else str(cfg.checkpoint),
            "model_type": variant.sam_model_type, "multimask": stage1_multimask(cfg.kind, variant)}


def build_stage1(profile: Profile, device: str | None = None, kind: str | None = None,
                 checkpoint: str | Path | None = None):
    """The stage-1 segmenter of :func:`stage1_spec`; SAM kinds go to ``device`` (default: CUDA when available)."""
    spec = stage1_spec(profile, kind, checkpoint)
    return build_coarse(**spec) if spec["kind"] == "grabcut" else build_coarse(**spec, device=device)


def profile_predictor(profile: Profile, device: str | None = None, stage1_max_side: int | str | None = "auto"):
    """The profile's main refiner with the profile's own stage 1, as users run it (:class:`dissam.DisSam`)."""
    return DisSam.from_checkpoint(profile.refiner_checkpoint, coarse=build_stage1(profile), device=device,
                                  variant=profile.variant, stage1_max_side=stage1_max_side)


def stage1_multimask(kind: str, variant: Variant) -> bool:
    """SAM follows the variant (the authors' code asks for three masks and takes masks[0]); HQ-SAM, a
    baseline, is prompted as its own code prompts boxes: one mask, whatever the variant."""
    return variant.sam_multimask if kind == "sam" else False


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
    ``read_samples_per_second``: ``dataset.item(i)`` (the uint8 item a DataLoader worker makes) over
    the first ``reads`` samples in one process."""
    dataset = refiner_dataset(profile, split, train=train, use_box=use_box, use_mask=use_mask, in_ch=in_ch,
                              enrich=enrich, size=size, verbose=progress, workers=workers, on_disk=True)
    n = min(reads, len(dataset))
    start = time.perf_counter()
    for i in range(n):
        dataset.item(i)
    rate = n / max(time.perf_counter() - start, 1e-9)
    return {**dataset.cache_manifest, "read_samples_per_second": round(rate, 1)}


def refiner_dataset(profile, split: str, train: bool = False, use_box: bool = True, use_mask: bool = True,
                    in_ch: int = 5, enrich: bool = True, size: int | None = None, verbose: bool = False,
                    workers: int | None = None, on_disk: bool | None = None) -> RefinerDataset:
    """One split of a run's data as the refiner (or, with ``in_ch=3`` and no box or mask, the GT encoder)
    sees it: the one place training and evaluation build their data sets.

    ``train=True``: the variant's GT enrichment (when ``enrich``) and augmentation; else one sample per
    image, unaugmented (validation, evaluation). Stage-1 masks come from the profile's cache when
    ``use_mask``. ``size``: the network size, default the profile's. The CPU profiles hold the arrays in
    memory; the paper profile (DIS5K at 1024^2) keeps them in the split's resized cache on disk
    (:func:`resized_cache_dir`), built by ``workers`` threads on first use and reused after;
    ``on_disk`` overrides the profile's choice.
    """
    variant = profile.variant
    on_disk = uses_resized_cache(profile) if on_disk is None else on_disk
    return RefinerDataset(split_dir(profile, split), coarse_source(profile, split) if use_mask else None,
                          profile.train.size if size is None else size,
                          enrichment=variant.enrichment if train and enrich else None,
                          augment=variant.augment if train and variant.augment != "none" else None,
                          use_box=use_box, use_mask=use_mask, in_ch=in_ch, verbose=verbose, workers=workers,
                          cache_dir=resized_cache_dir(profile, split) if on_disk else None)
