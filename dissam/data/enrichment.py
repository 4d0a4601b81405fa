"""GT enrichment (paper section III-C): one training sample per connected component of the GT.

``paper``: every 8-connected component is a sample. ``authors``: as the released code, components
smaller than 0.4% of the image are dropped, and the whole mask is kept as a sample too when more
than one component survives.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .prompts import Box, box_from_mask

AUTHORS_MIN_AREA_FRACTION = 0.004


@dataclass(frozen=True)
class Component:
    """One enriched target: its mask (bool, image size) and tight box; ``index`` -1 is the whole mask."""

    index: int
    mask: np.ndarray
    box: Box


def connected_components(gt: np.ndarray, threshold: int = 128) -> list[np.ndarray]:
    """8-connected components of ``gt > threshold`` as bool masks, largest first (ties by position)."""
    fg = (gt > threshold).astype(np.uint8) if gt.dtype != bool else gt.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    order = sorted(range(1, n), key=lambda i: (-stats[i, cv2.CC_STAT_AREA], i))
    return [labels == i for i in order]


def enrich_mask(gt: np.ndarray, variant: str = "paper", threshold: int = 128) -> list[Component]:
    """Split one GT into its enriched targets. An empty GT gives no target."""
    if variant not in ("paper", "authors"):
        raise ValueError(f"unknown enrichment variant {variant!r}; use 'paper' or 'authors'")
    parts = connected_components(gt, threshold)
    if variant == "authors":
        min_area = AUTHORS_MIN_AREA_FRACTION * gt.shape[0] * gt.shape[1]
        parts = [p for p in parts if p.sum() >= min_area]
    targets = [Component(i, p, box_from_mask(p)) for i, p in enumerate(parts)]
    if variant == "authors" and len(parts) > 1:
        whole = gt > threshold if gt.dtype != bool else gt
        targets.append(Component(-1, whole, box_from_mask(whole)))
    return targets


def whole_mask(gt: np.ndarray, threshold: int = 128) -> list[Component]:
    """No enrichment: the whole GT as one target (an empty GT gives none)."""
    whole = gt > threshold if gt.dtype != bool else gt
    return [Component(-1, whole, box_from_mask(whole))] if whole.any() else []


def targets_for(gt: np.ndarray, enrichment: str | None, threshold: int = 128) -> list[Component]:
    """Targets of one GT: ``None``/``'none'`` = whole mask, else :func:`enrich_mask` with that variant."""
    if enrichment in (None, "none"):
        return whole_mask(gt, threshold)
    return enrich_mask(gt, enrichment, threshold)
