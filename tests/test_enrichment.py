"""GT enrichment: one target per connected component (paper), and the authors' code's variant."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dissam.data.enrichment import MIN_AREA_FRACTION, connected_components, enrich_mask, targets_for

masks = st.integers(4, 40).flatmap(lambda h: st.integers(4, 40).flatmap(
    lambda w: arrays(np.bool_, (h, w), elements=st.booleans())))
uint8_masks = masks.map(lambda m: m.astype(np.uint8) * 255)


def _blobs(rng: np.random.Generator, h: int, w: int, n: int, r_max: int) -> np.ndarray:
    gt = np.zeros((h, w), np.uint8)
    for _ in range(n):
        cv2.circle(gt, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(0, r_max)), 255, -1)
    return gt


@settings(max_examples=150, deadline=None)
@given(uint8_masks)
def test_paper_enrichment_partitions_the_gt(gt):
    targets = enrich_mask(gt, "components")
    fg = gt > 128
    cover = np.zeros(gt.shape, np.int32)
    for t in targets:
        assert t.mask.dtype == bool and t.mask.shape == gt.shape and t.mask.any()
        cover += t.mask
        n, _ = cv2.connectedComponents(t.mask.astype(np.uint8), connectivity=8)
        assert n == 2  # each target is one 8-connected component
    assert np.array_equal(cover > 0, fg)  # no pixel lost ...
    assert cover.max(initial=0) <= 1  # ... or duplicated
    assert [t.index for t in targets] == list(range(len(targets)))
    areas = [int(t.mask.sum()) for t in targets]
    assert areas == sorted(areas, reverse=True)


@settings(max_examples=150, deadline=None)
@given(uint8_masks)
def test_boxes_are_tight_and_contain_their_component(gt):
    for t in targets_for(gt, "components") + targets_for(gt, None):
        x0, y0, x1, y1 = t.box
        assert 0 <= x0 < x1 <= gt.shape[1] and 0 <= y0 < y1 <= gt.shape[0]
        inside = np.zeros_like(t.mask)
        inside[y0:y1, x0:x1] = True
        assert not (t.mask & ~inside).any()
        sub = t.mask[y0:y1, x0:x1]  # tight: every border row and column of the box touches the component
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()


@pytest.mark.parametrize("seed", range(20))
def test_authors_variant_drops_small_components_and_adds_the_whole_mask(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
    gt = _blobs(rng, h, w, int(rng.integers(1, 8)), int(rng.integers(2, 20)))
    paper = enrich_mask(gt, "components")
    authors = enrich_mask(gt, "filtered")
    min_area = MIN_AREA_FRACTION * h * w
    kept = [t for t in paper if t.mask.sum() >= min_area]
    parts = [t for t in authors if t.index >= 0]
    assert len(parts) == len(kept)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(parts, kept))
    wholes = [t for t in authors if t.index == -1]
    if len(kept) > 1:
        assert len(wholes) == 1 and np.array_equal(wholes[0].mask, gt > 128)
    else:
        assert not wholes


def test_authors_threshold_is_strict_at_04_percent():
    gt = np.zeros((100, 100), np.uint8)
    gt[0:2, 0:2] = 255  # 4 px = 0.04%: dropped
    gt[10:12, 10:30] = 255  # 40 px = exactly 0.4%: kept
    gt[50:60, 50:60] = 255  # 100 px: kept
    authors = enrich_mask(gt, "filtered")
    assert sorted(int(t.mask.sum()) for t in authors if t.index >= 0) == [40, 100]
    assert authors[-1].index == -1 and authors[-1].mask.sum() == 144  # the whole mask, small part included


def test_whole_mask_and_empty_gt():
    gt = _blobs(np.random.default_rng(0), 50, 50, 4, 8)
    whole = targets_for(gt, None)
    assert len(whole) == 1 and whole[0].index == -1 and np.array_equal(whole[0].mask, gt > 128)
    assert targets_for(gt, "none")[0].box == whole[0].box
    empty = np.zeros((20, 20), np.uint8)
    assert targets_for(empty, None) == [] and enrich_mask(empty, "components") == [] == enrich_mask(empty, "filtered")
    assert len(connected_components(gt)) == len(enrich_mask(gt, "components"))


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown enrichment rule"):
        enrich_mask(np.zeros((4, 4), np.uint8), "both")
