"""GT enrichment (paper section III-C): one training sample per connected component of the GT.

Two rules, named after what they do:

- ``filtered`` (the default of both variants): components smaller than 0.4% of the image are dropped,
  and the whole mask is kept as a sample too when more than one component survives. This is the rule
  of the authors' released code, and it is what gives the paper's own count (DIS-TR 3,000 -> 3,880).
- ``components``: every 8-connected component is a sample, as the paper's text reads (annotation
  specks become samples with 1-px boxes, and no whole multi-object GT is ever trained on).

Components are found once per GT (:func:`label_components`); :func:`target_mask` returns the target of
one sample without building the masks of the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .folders import list_pairs
from .images import read_mask
from .prompts import Box, box_from_mask
from .splits import TRAIN_SPLIT

MIN_AREA_FRACTION = 0.004  # the "filtered" rule: components below 0.4% of the image are dropped
ENRICHMENT_RULES = ("filtered", "components")


@dataclass(frozen=True)
class Component:
    """One enriched target: its mask (bool, image size) and tight box; ``index`` -1 is the whole mask."""

    index: int
    mask: np.ndarray
    box: Box


def _foreground(gt: np.ndarray, threshold: int = 128) -> np.ndarray:
    return gt.astype(bool) if gt.dtype == bool else gt > threshold


def label_components(gt: np.ndarray, threshold: int = 128) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(label image, label ids largest first (ties by position), stats) of the 8-connected components."""
    fg = _foreground(gt, threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    order = sorted(range(1, n), key=lambda i: (-stats[i, cv2.CC_STAT_AREA], i))
    return labels, order, stats


def connected_components(gt: np.ndarray, threshold: int = 128) -> list[np.ndarray]:
    """8-connected components of ``gt > threshold`` as bool masks, largest first (ties by position)."""
    labels, order, _ = label_components(gt, threshold)
    return [labels == i for i in order]


def _check_rule(rule: str) -> None:
    if rule not in ENRICHMENT_RULES:
        raise ValueError(f"unknown enrichment rule {rule!r}; use one of {', '.join(ENRICHMENT_RULES)}")


def _kept_labels(gt: np.ndarray, rule: str, threshold: int) -> tuple[np.ndarray, list[int], bool]:
    """(label image, the kept component labels in sample order, whether the whole mask is a sample too)."""
    _check_rule(rule)
    labels, order, stats = label_components(gt, threshold)
    if rule == "filtered":
        min_area = MIN_AREA_FRACTION * gt.shape[0] * gt.shape[1]
        order = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return labels, order, rule == "filtered" and len(order) > 1


def enrich_mask(gt: np.ndarray, rule: str = "filtered", threshold: int = 128) -> list[Component]:
    """Split one GT into its enriched targets. An empty GT (or one of specks only) gives no target."""
    labels, kept, whole_too = _kept_labels(gt, rule, threshold)
    targets = []
    for index, label in enumerate(kept):
        mask = labels == label
        targets.append(Component(index, mask, box_from_mask(mask)))
    if whole_too:
        whole = _foreground(gt, threshold)
        targets.append(Component(-1, whole, box_from_mask(whole)))
    return targets


def whole_mask(gt: np.ndarray, threshold: int = 128) -> list[Component]:
    """No enrichment: the whole GT as one target (an empty GT gives none)."""
    whole = _foreground(gt, threshold)
    return [Component(-1, whole, box_from_mask(whole))] if whole.any() else []


def targets_for(gt: np.ndarray, enrichment: str | None, threshold: int = 128) -> list[Component]:
    """Targets of one GT: ``None``/``'none'`` = whole mask, else :func:`enrich_mask` with that rule."""
    if enrichment in (None, "none"):
        return whole_mask(gt, threshold)
    return enrich_mask(gt, enrichment, threshold)


def component_target(gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The soft target (uint8, the GT's own values) of one sample: the whole GT for ``mask=None``, else
    the GT inside ``mask`` (one component), zero elsewhere."""
    source = gt.astype(np.uint8) * 255 if gt.dtype == bool else gt
    return source if mask is None else np.where(mask, source, 0).astype(np.uint8)


def target_mask(gt: np.ndarray, enrichment: str | None, index: int, threshold: int = 128) -> np.ndarray:
    """The soft target of sample ``index`` of one GT (:func:`component_target`; -1 = the whole GT).
    Labels the GT once and builds one component's mask, not all of them."""
    if index == -1:
        return component_target(gt, None)
    if enrichment in (None, "none"):
        raise IndexError(f"without enrichment a GT has only the whole-mask sample (-1), not {index}")
    labels, kept, _ = _kept_labels(gt, enrichment, threshold)
    if not 0 <= index < len(kept):
        raise IndexError(f"component {index} does not exist ({len(kept)} kept under rule {enrichment!r})")
    return component_target(gt, labels == kept[index])


def enrichment_summary(root: Path, split: str = TRAIN_SPLIT, variant: str = "filtered") -> dict:
    """What GT enrichment does to one split: base images -> samples, components-per-image histogram."""
    comps, samples = [], 0
    pairs = list_pairs(Path(root) / split)
    for pair in pairs:
        gt = read_mask(pair.gt_path)
        comps.append(len(connected_components(gt)))
        samples += len(targets_for(gt, variant))
    hist = {str(v): comps.count(v) for v in sorted(set(comps))}
    return {"split": split, "variant": variant, "images": len(pairs), "samples": samples,
            "components": int(sum(comps)), "components_hist": hist}
