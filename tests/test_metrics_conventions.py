"""The two maxF and the two E-measure conventions of DISMetrics, against hand-computed values and pysodmetrics.

Default (every table): maxF = max over thresholds of the mean per-image F curve, meanE = mean E curve.
Other (``other_conventions``): maxF (P/R-mean) = max of the F of the mean precision and recall curves,
adpE = mean per-image E at the adaptive threshold min(2 * mean, 1)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dissam.metrics import OTHER_CONVENTIONS, DISMetrics

REF = Path(__file__).resolve().parent / "reference" / "metrics"
NAMES = [r["name"] for r in json.loads((REF / "expected.json").read_text())["per_image"]]

# Two 2x2 images whose maps have two levels, so that every threshold 1..255 cuts them the same way.
PAIRS = [(np.array([[255, 0], [0, 0]], np.uint8), np.array([[255, 255], [0, 0]], np.uint8)),
         (np.array([[255, 255], [255, 0]], np.uint8), np.array([[255, 0], [0, 0]], np.uint8))]


def _metrics(pairs) -> DISMetrics:
    metrics = DISMetrics()
    for pred, gt in pairs:
        metrics.step(pred, gt)
    return metrics


def test_the_two_maxf_conventions_by_hand():
    """Thresholds 1..255: image A has P = 1, R = 1/2; image B P = 1/3, R = 1. Threshold 0: A P = 1/2, R = 1;
    B P = 1/4, R = 1. F = 1.3 P R / (0.3 P + R)."""
    metrics = _metrics(PAIRS)
    f_a, f_b = 1.3 * 0.5 / (0.3 + 0.5), 1.3 / 3 / (0.1 + 1)  # per-image F above threshold 0
    assert metrics.results()["maxF"] == pytest.approx((f_a + f_b) / 2, abs=1e-15)  # 0.6032
    p, r = (1 + 1 / 3) / 2, (0.5 + 1) / 2  # mean precision and recall above threshold 0
    assert metrics.other_conventions()["maxF (P/R-mean)"] == pytest.approx(1.3 * p * r / (0.3 * p + r), abs=1e-15)
    assert metrics.other_conventions()["maxF (P/R-mean)"] == pytest.approx(13 / 19, abs=1e-15)  # not 0.6032


def test_adaptive_e_by_hand():
    """Prediction levels 0, 10, 40, 100, 220, 255 (mean 625/1530 after min-max): threshold 0.817, so 220 and
    255 are foreground. Pred/GT foreground pairs: 2 (fg, fg), 1 (bg, fg), 3 (bg, bg); means 1/3 and 1/2.
    Aligned terms: (fg, fg) 24/25, (bg, fg) -12/13, (bg, bg) 12/13; enhanced = (align + 1)^2 / 4."""
    pred = np.array([[0, 40, 255], [100, 220, 10]], np.uint8)
    gt = np.array([[0, 0, 255], [0, 255, 255]], np.uint8)
    metrics = _metrics([(pred, gt)])
    enhanced_sum = 2 * (49 / 25) ** 2 / 4 + (1 / 13) ** 2 / 4 + 3 * (25 / 13) ** 2 / 4
    assert metrics.other_conventions()["adpE"] == pytest.approx(enhanced_sum / 5, abs=1e-12)
    assert metrics.results()["meanE"] != pytest.approx(enhanced_sum / 5, abs=1e-3)  # a different measure


def test_other_conventions_match_pysodmetrics_on_the_reference_pairs():
    pysod = pytest.importorskip("py_sod_metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pysodmetrics announces Fmeasure's successor
        fm = pysod.Fmeasure()
    em, metrics = pysod.Emeasure(), DISMetrics()
    for name in NAMES:
        pred = cv2.imread(str(REF / f"{name}_pred.png"), cv2.IMREAD_GRAYSCALE)
        gt = cv2.imread(str(REF / f"{name}_gt.png"), cv2.IMREAD_GRAYSCALE)
        fm.step(pred, gt)
        em.step(pred, gt)
        metrics.step(pred, gt, name)
    pr = fm.get_results()["pr"]
    f_of_means = 1.3 * pr["p"] * pr["r"] / (0.3 * pr["p"] + pr["r"])
    other = metrics.other_conventions()
    assert set(other) == set(OTHER_CONVENTIONS)
    assert other["maxF (P/R-mean)"] == pytest.approx(float(np.max(f_of_means)), abs=1e-12)
    assert other["adpE"] == pytest.approx(float(em.get_results()["em"]["adp"]), abs=1e-12)
    assert metrics.results()["maxF"] == pytest.approx(float(fm.get_results()["fm"]["curve"].max()), abs=1e-12)
