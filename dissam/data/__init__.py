"""Data: im/gt folders, procedural DIS-like scenes, GT enrichment, box prompts, the refiner's Dataset."""
from .enrichment import Component, connected_components, enrich_mask, targets_for, whole_mask
from .folders import DIS5K_SPLITS, DIS5K_TEST_SPLITS, DataError, Pair, list_pairs, read_image, read_mask
from .prompts import Box, BoxError, box_channel, box_from_mask, clip_box, jitter_box, scale_box

__all__ = [
    "Box", "BoxError", "Component", "DIS5K_SPLITS", "DIS5K_TEST_SPLITS", "DataError", "Pair",
    "box_channel", "box_from_mask", "clip_box", "connected_components", "enrich_mask", "jitter_box",
    "list_pairs", "read_image", "read_mask", "scale_box", "targets_for", "whole_mask",
]
