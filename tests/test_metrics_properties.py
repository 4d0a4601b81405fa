"""Property tests: our six metrics equal pysodmetrics 1.6.2 on random and structured inputs.

maxF, wF, MAE, S, meanE: pysodmetrics with its defaults, to 1e-9 (NaN where it gives NaN).
HCE: pysodmetrics' HCE fed ``(pred > 128)`` as float with ``normalize=False`` equals the official relax_HCE
(docs/conventions.md, "Evaluation") - checked here - except when a relaxed error region covers the whole image (empty GT
with a full prediction, or the reverse), where the official code counts 0 and pysodmetrics 1.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dissam.metrics import image_metrics

from test_metrics import assert_close, pysod_hce, reference_five

pytest.importorskip("py_sod_metrics")

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected_hce(pred: np.ndarray, gt: np.ndarray) -> float:
    g, p = gt > 128, pred > 128
    if (not g.any() and p.all()) or (g.all() and not p.any()):
        return 0.0  # the official count (pysodmetrics says 1 here; tested in test_metrics.py)
    return pysod_hce(pred, gt)


def check(pred: np.ndarray, gt: np.ndarray) -> None:
    ours = image_metrics(pred, gt)
    assert_close(ours, reference_five(pred, gt))
    assert ours["HCE"] == expected_hce(pred, gt)


shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_random_maps(data, shape):
    pred = data.draw(arrays(np.uint8, shape))
    gt = data.draw(arrays(np.uint8, shape, elements=st.sampled_from([0, 255])))
    check(pred, gt)


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_random_grey_gt(data, shape):
    """A GT with any grey levels: binarised at > 128 (128 itself is background)."""
    pred = data.draw(arrays(np.uint8, shape, elements=st.sampled_from([0, 1, 127, 128, 129, 254, 255])))
    gt = data.draw(arrays(np.uint8, shape, elements=st.integers(120, 136)))
    check(pred, gt)


def _scene(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    gt = np.zeros((h, w), np.uint8)
    if kind == "full":
        gt[:] = 255
    elif kind == "lines":
        for _ in range(rng.integers(1, 5)):
            cv2.line(gt, tuple(int(v) for v in rng.integers(0, [w, h])), tuple(int(v) for v in rng.integers(0, [w, h])),
                     255, int(rng.integers(1, 4)))
    elif kind == "blobs":
        for _ in range(rng.integers(1, 4)):
            cv2.circle(gt, tuple(int(v) for v in rng.integers(0, [w, h])), int(rng.integers(1, 20)), 255,
                       int(rng.choice([-1, 1, 2])))
    elif kind == "grid":
        gt[::int(rng.integers(3, 8)), :] = 255
        gt[:, ::int(rng.integers(3, 8))] = 255
    return gt  # "empty": all zeros


def _prediction(rng: np.random.Generator, gt: np.ndarray, kind: str) -> np.ndarray:
    if kind == "constant":
        return np.full(gt.shape, rng.integers(0, 256), np.uint8)
    if kind == "exact":
        return gt.copy()
    if kind == "inverse":
        return 255 - gt
    if kind == "blurred":
        return cv2.GaussianBlur(gt, (0, 0), float(rng.uniform(0.5, 3.0)))
    if kind == "shifted":
        return np.roll(gt, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    if kind == "noisy":
        soft = cv2.GaussianBlur(gt, (0, 0), 1.0).astype(int) + rng.integers(-80, 80, gt.shape)
        return np.clip(soft, 0, 255).astype(np.uint8)
    return cv2.erode(gt, np.ones((3, 3), np.uint8))  # "eroded": thin parts lost


@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1), h=st.integers(2, 96), w=st.integers(2, 96),
       scene=st.sampled_from(["empty", "full", "lines", "blobs", "grid"]),
       pred_kind=st.sampled_from(["constant", "exact", "inverse", "blurred", "shifted", "noisy", "eroded"]))
def test_structured_scenes(seed, h, w, scene, pred_kind):
    rng = np.random.default_rng(seed)
    gt = _scene(rng, h, w, scene)
    check(_prediction(rng, gt, pred_kind), gt)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_thin_structures_at_larger_size(seed):
    """DIS-like: thin branching lines and rings around a solid body, a soft imperfect prediction."""
    rng = np.random.default_rng(seed)
    h, w = 160, 200
    gt = np.zeros((h, w), np.uint8)
    cv2.ellipse(gt, (100, 80), (int(rng.integers(10, 40)), int(rng.integers(10, 30))), 0, 0, 360, 255, -1)
    for _ in range(6):
        cv2.line(gt, (100, 80), tuple(int(v) for v in rng.integers(0, [w, h])), 255, int(rng.integers(1, 3)))
    cv2.circle(gt, tuple(int(v) for v in rng.integers(20, [w - 20, h - 20])), int(rng.integers(5, 20)), 255, 1)
    pred = cv2.GaussianBlur(gt, (0, 0), float(rng.uniform(0.7, 2.5)))
    pred = np.roll(pred, int(rng.integers(-2, 3)), axis=1)
    pred[rng.random(gt.shape) < 0.002] = 255
    check(pred, gt)


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_float_input_equals_its_png_quantisation(data, shape):
    pred = data.draw(arrays(np.float64, shape, elements=st.floats(0, 1)))
    gt = data.draw(arrays(bool, shape))
    ours, quantised = image_metrics(pred, gt), image_metrics(np.round(pred * 255).astype(np.uint8), gt)
    assert_close(ours, quantised, tol=0.0)
    assert ours["HCE"] == quantised["HCE"]
