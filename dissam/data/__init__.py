"""Data: split names, im/gt folders, image conversion, procedural DIS-like scenes, GT enrichment, box
prompts, the refiner's Dataset.

Every name imports lazily on first use, so ``dissam.data.splits`` (plain names) costs nothing to import.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TRAIN_SPLIT": "splits", "VAL_SPLIT": "splits", "TEST_SPLITS": "splits", "DIS5K_SPLITS": "splits",
    "TE_ALL": "splits", "ZERO_SHOT_SETS": "splits", "ZERO_SHOT_ALL": "splits",
    "to_uint8": "images",
    "DataError": "folders", "Pair": "folders", "list_pairs": "folders", "read_image": "folders",
    "read_mask": "folders",
    "Component": "enrichment", "connected_components": "enrichment", "enrich_mask": "enrichment",
    "targets_for": "enrichment", "whole_mask": "enrichment",
    "Box": "prompts", "BoxError": "prompts", "box_channel": "prompts", "box_from_mask": "prompts",
    "clip_box": "prompts", "jitter_box": "prompts", "scale_box": "prompts",
    "CoarseSource": "datasets", "MaskFolderSource": "datasets", "SegmenterSource": "datasets",
    "Sample": "datasets", "RefinerDataset": "datasets",
    "generate_dataset": "procedural", "render_scene": "procedural", "enrichment_summary": "enrichment",
    "SCENES": "procedural",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dissam.data' has no attribute {name!r}")
