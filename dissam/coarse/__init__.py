"""Stage 1: (image, box) -> coarse mask, from SAM, HQ-SAM, offline GrabCut or the published IS-Net on
a window around the box (:mod:`dissam.coarse.isnet_crop`), behind one interface,
plus the on-disk cache that embeds each image once. Torch and segment_anything load only for SAM kinds.
A profile's stage 1 is built by :func:`dissam.repro.stages.build_stage1`, on top of :func:`build_coarse`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import CoarseResult, CoarseSegmenter
from .cache import CachedCoarse, MaskStore, cache_masks, image_digest
from .grabcut import GrabCutSegmenter

KINDS = ("grabcut", "sam", "hq-sam", "isnet")
_LAZY = {"SamSegmenter": "dissam.coarse.sam", "build_tiny_sam": "dissam.coarse.tiny_sam",
         "register_model_type": "dissam.coarse.sam", "load_sam": "dissam.coarse.sam",
         "IsNetCropSegmenter": "dissam.coarse.isnet_crop"}

__all__ = ["KINDS", "CachedCoarse", "CoarseResult", "CoarseSegmenter", "GrabCutSegmenter", "MaskStore",
           "build_coarse", "cache_masks", "image_digest", *_LAZY]


def build_coarse(kind: str, checkpoint: str | Path | None = None, model_type: str = "vit_b",
                 model: Any = None, **settings: Any) -> CoarseSegmenter:
    """A stage-1 segmenter. ``kind``: 'grabcut' (settings ``iters``=3, ``seed``=0), 'sam' or 'hq-sam'
    (from ``checkpoint`` of ``model_type``, or an already built Sam ``model``; settings ``multimask``=False,
    ``device``=CUDA when available, and for HQ-SAM ``hq_token_only``=False), or 'isnet' (the published
    IS-Net on a square window around the box, from ``checkpoint`` or the cached weights, or a loaded
    ``model``; settings ``margin``=0.2, ``input_size``=1024, ``clip_to_box``=True, ``device``)."""
    if kind == "grabcut":
        if checkpoint is not None or model is not None:
            raise ValueError("kind='grabcut' takes no checkpoint or model (it needs no weights)")
        return GrabCutSegmenter(**settings)
    if kind in ("sam", "hq-sam"):
        from .sam import build_sam_segmenter
        return build_sam_segmenter(kind, checkpoint=checkpoint, model_type=model_type, model=model, **settings)
    if kind == "isnet":
        from .isnet_crop import IsNetCropSegmenter
        return IsNetCropSegmenter(checkpoint=checkpoint, model=model, **settings)
    raise ValueError(f"unknown stage-1 kind {kind!r}; choose one of {', '.join(KINDS)}")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dissam.coarse' has no attribute {name!r}")
