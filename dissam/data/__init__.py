"""Data: im/gt folders, procedural DIS-like scenes, GT enrichment, box prompts, the refiner's Dataset.

The Dataset (torch) and the procedural generator import lazily on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from .enrichment import Component, connected_components, enrich_mask, targets_for, whole_mask
from .folders import DIS5K_SPLITS, DIS5K_TEST_SPLITS, DataError, Pair, list_pairs, read_image, read_mask
from .prompts import Box, BoxError, box_channel, box_from_mask, clip_box, jitter_box, scale_box

_LAZY = {
    "CoarseSource": "datasets", "MaskFolderSource": "datasets", "SegmenterSource": "datasets",
    "Sample": "datasets", "RefinerDataset": "datasets",
    "generate_dataset": "procedural", "render_scene": "procedural", "enrichment_summary": "procedural",
    "SCENES": "procedural",
}

__all__ = [
    "Box", "BoxError", "Component", "DIS5K_SPLITS", "DIS5K_TEST_SPLITS", "DataError", "Pair",
    "box_channel", "box_from_mask", "clip_box", "connected_components", "enrich_mask", "jitter_box",
    "list_pairs", "read_image", "read_mask", "scale_box", "targets_for", "whole_mask", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dissam.data' has no attribute {name!r}")
