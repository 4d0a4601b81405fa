"""F-measure curve, E-measure curve, MAE and S-measure of one image, all from one joint histogram.

Conventions are pysodmetrics 1.6.2's defaults (normalize=True): the prediction is divided by 255 and
min-max scaled (unless constant), the GT is ``gt > 128``; F and E use 256 thresholds on
``uint8(pred * 255)`` with beta^2 = 0.3. Because a uint8 prediction has only 256 values, every pixel-wise
quantity is a function of (value, GT bit, quadrant of the S-measure split): one ``bincount`` of the image
replaces the per-metric passes over it. Values agree with pysodmetrics to ~1e-15; the curves are exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = np.spacing(1.0)  # the epsilon of the MATLAB-derived formulas
BETA2 = 0.3
_VALUES = np.arange(256, dtype=np.float64) / 255.0  # v / 255 as float64, as im2double gives


@dataclass
class PixelStats:
    """What one pass over an image gives: the normalised value of each uint8 level, its threshold bin,
    and the joint histogram ``hist[quadrant, gt, value]`` (quadrants of the S-measure centroid split)."""

    values: np.ndarray  # float64[256]: normalised prediction value of each uint8 level
    bins: np.ndarray  # int64[256]: uint8(values * 255), the threshold bin of each level
    hist: np.ndarray  # int64[4, 2, 256]
    shape: tuple[int, int]
    split: tuple[int, int]  # (cy, cx) as the S-measure uses them (already +1, MATLAB style)
    code: np.ndarray | None = None  # uint16 [H, W]: value | gt << 8 | quadrant << 9, reused by wF

    @property
    def totals(self) -> np.ndarray:
        """``int64[2, 256]``: pixel counts per (gt bit, value) over the whole image."""
        return self.hist.sum(axis=0)


def normalised_levels(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised value and threshold bin of each uint8 level of ``pred`` (min-max scaled unless constant).

    The float operations are the reference's, done on the 256 levels instead of on every pixel, so the
    results are bit-identical."""
    lo, hi = int(pred.min()), int(pred.max())
    values = _VALUES.copy()
    if hi != lo:
        vmin, vmax = _VALUES[lo], _VALUES[hi]
        values = (values - vmin) / (vmax - vmin)
    # Levels absent from the image may fall outside [0, 1]; clipping them only silences the cast.
    bins = np.clip(values * 255, 0, 255).astype(np.uint8).astype(np.int64)
    return values, bins


def centroid_split(gt: np.ndarray) -> tuple[int, int]:
    """The S-measure's split point: the rounded foreground centroid (half to even, as numpy rounds), +1.

    Row/column index sums are exact integers, so the float mean equals the reference's."""
    h, w = gt.shape
    count = int(np.count_nonzero(gt))
    if count == 0:
        cy, cx = np.round(h / 2), np.round(w / 2)
    else:
        rows = np.count_nonzero(gt, axis=1)
        cols = np.count_nonzero(gt, axis=0)
        cy = np.round(int(rows @ np.arange(h, dtype=np.int64)) / count)
        cx = np.round(int(cols @ np.arange(w, dtype=np.int64)) / count)
    return int(cy) + 1, int(cx) + 1


def pixel_stats(pred: np.ndarray, gt: np.ndarray) -> PixelStats:
    """One joint histogram of (quadrant, gt, uint8 value) for a uint8 ``pred`` and bool ``gt``."""
    values, bins = normalised_levels(pred)
    cy, cx = centroid_split(gt)
    code = pred.astype(np.uint16)
    code |= gt.view(np.uint8).astype(np.uint16) << 8
    code[:, cx:] |= 512
    code[cy:, :] |= 1024
    hist = np.bincount(code.ravel(), minlength=2048).reshape(4, 2, 256)
    return PixelStats(values, bins, hist, gt.shape, (cy, cx), code)


# ----------------------------------------------------------------------------- F-measure
def _thresholded_counts(stats: PixelStats) -> tuple[np.ndarray, np.ndarray]:
    """Foreground-GT and background-GT pixel counts at or above each threshold, thresholds 255 down to 0."""
    totals = stats.totals
    fg = np.bincount(stats.bins, weights=totals[1], minlength=256).astype(np.int64)
    bg = np.bincount(stats.bins, weights=totals[0], minlength=256).astype(np.int64)
    return np.cumsum(fg[::-1]), np.cumsum(bg[::-1])


def f_curves(stats: PixelStats, beta2: float = BETA2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F) at thresholds 255, 254, ..., 0 (the reference's order): pixel >= threshold."""
    tps, fps = _thresholded_counts(stats)
    ps = tps + fps
    ps[ps == 0] = 1  # the numerator is 0 there too
    n_fg = max(int(stats.totals[1].sum()), 1)
    precision = tps / ps
    recall = tps / n_fg
    numerator = (1 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1, beta2 * precision + recall)
    return precision, recall, numerator / denominator


# ----------------------------------------------------------------------------- E-measure
def _enhanced_sum(fg_fg, fg_bg, n_fg: int, size: int):
    """Sum of the enhanced-alignment matrix of a binarised prediction, from its pixel counts (foreground
    prediction on foreground GT ``fg_fg``, on background GT ``fg_bg``); scalars or arrays of thresholds."""
    pred_fg = fg_fg + fg_bg
    pred_bg = size - pred_fg
    if n_fg == 0:
        return pred_bg
    if n_fg == size:
        return pred_fg
    bg_fg = n_fg - fg_fg
    bg_bg = pred_bg - bg_fg
    mean_pred = pred_fg / size
    mean_gt = n_fg / size
    parts = ((fg_fg, 1 - mean_pred, 1 - mean_gt), (fg_bg, 1 - mean_pred, 0 - mean_gt),
             (bg_fg, 0 - mean_pred, 1 - mean_gt), (bg_bg, 0 - mean_pred, 0 - mean_gt))
    rows = np.empty((4, np.size(fg_fg)), dtype=np.float64)
    for i, (numel, dp, dg) in enumerate(parts):
        align = 2 * (dp * dg) / (dp ** 2 + dg ** 2 + EPS)
        rows[i] = (align + 1) ** 2 / 4 * numel
    return rows.sum(axis=0)


def e_curve(stats: PixelStats) -> np.ndarray:
    """Enhanced-alignment measure at thresholds 255 down to 0 (256 values)."""
    fg_fg, fg_bg = _thresholded_counts(stats)
    size = stats.shape[0] * stats.shape[1]
    n_fg = int(stats.totals[1].sum())
    return _enhanced_sum(fg_fg, fg_bg, n_fg, size) / (size - 1 + EPS)


def adaptive_e(stats: PixelStats) -> float:
    """Adaptive E-measure: E of the prediction binarised at ``min(2 * mean, 1)`` of its normalised values
    (pixel >= threshold), the E-measure of the DIS-SAM authors' evaluation and pysodmetrics' ``adp``."""
    totals = stats.totals
    size = stats.shape[0] * stats.shape[1]
    threshold = min(2 * float(totals.sum(axis=0) @ stats.values) / size, 1.0)
    foreground = stats.values >= threshold
    fg_fg, fg_bg = int(totals[1][foreground].sum()), int(totals[0][foreground].sum())
    n_fg = int(totals[1].sum())
    return float(np.sum(_enhanced_sum(fg_fg, fg_bg, n_fg, size)) / (size - 1 + EPS))


def f_of_mean_curves(precision: np.ndarray, recall: np.ndarray, beta2: float = BETA2) -> np.ndarray:
    """F curve of data-set-mean precision and recall curves, ``(1 + b2) P R / (b2 P + R)`` (0 where P = R = 0):
    the maxF of IS-Net's validation and of the DIS-SAM authors' ``saliency_toolbox``."""
    numerator = (1 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1, beta2 * precision + recall)
    return numerator / denominator


# ----------------------------------------------------------------------------- MAE
def mae(stats: PixelStats) -> float:
    """Mean absolute error between the normalised prediction and the binary GT."""
    bg, fg = stats.totals
    size = stats.shape[0] * stats.shape[1]
    return float((bg @ stats.values + fg @ (1.0 - stats.values)) / size)


# ----------------------------------------------------------------------------- S-measure
def _object_score(counts: np.ndarray, values: np.ndarray) -> float:
    """2*mean / (mean^2 + 1 + std + eps) of a region given as counts per level (std with ddof=1)."""
    n = int(counts.sum())
    mean = float(counts @ values) / n
    std = float(np.sqrt(counts @ (values - mean) ** 2 / (n - 1))) if n > 1 else 0.0
    return 2 * mean / (mean ** 2 + 1 + std + EPS)


def _reference_mean_of_constant(value: float, shape: tuple[int, int], rows: slice, cols: slice) -> float:
    """numpy's mean of a constant block cut from a C-contiguous ``shape`` array, summed as numpy sums it.

    A block of constant prediction and constant GT scores 1 or 0 in the reference depending on whether
    this mean rounds back to the constant exactly, so the rare case is recomputed the reference's way."""
    return float(np.mean(np.full(shape, value)[rows, cols]))


def _ssim(hist: np.ndarray, values: np.ndarray, shape: tuple[int, int], rows: slice, cols: slice) -> float:
    """The S-measure's region SSIM of one quadrant, from its (gt, value) histogram."""
    n = int(hist.sum())
    if n == 0:  # an empty quadrant: the reference takes the mean of nothing, which is NaN
        return float("nan")
    n_fg = int(hist[1].sum())
    y = n_fg / n
    counts = hist.sum(axis=0)
    x = float(counts @ values) / n
    present = np.flatnonzero(counts)
    constant_gt = n_fg in (0, n)
    if constant_gt and present.size == 1:
        x = _reference_mean_of_constant(float(values[present[0]]), shape, rows, cols)
    dx = values - x
    sigma_x = float(counts @ dx ** 2) / (n - 1 + EPS)
    sigma_y = (n_fg * (1 - y) ** 2 + (n - n_fg) * y ** 2) / (n - 1 + EPS)
    sigma_xy = 0.0 if constant_gt else float((hist[1] @ dx) * (1 - y) - (hist[0] @ dx) * y) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x ** 2 + y ** 2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def s_measure(stats: PixelStats, alpha: float = 0.5) -> float:
    """Structure measure: alpha * object score + (1 - alpha) * region score (clipped at 0)."""
    bg, fg = stats.totals
    values = stats.values
    size = stats.shape[0] * stats.shape[1]
    y = fg.sum() / size
    if y == 0:
        return float(1 - (bg @ values) / size)
    if y == 1:
        return float((fg @ values) / size)
    obj = _object_score(fg, values) * y + _object_score(bg, 1 - values) * (1 - y)
    h, w = stats.shape
    cy, cx = stats.split
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    quads = ((w_lt, slice(0, cy), slice(0, cx)), (w_rt, slice(0, cy), slice(cx, w)),
             (w_lb, slice(cy, h), slice(0, cx)), (w_rb, slice(cy, h), slice(cx, w)))
    region = 0.0
    for q, (weight, rows, cols) in enumerate(quads):
        region = region + _ssim(stats.hist[q], values, stats.shape, rows, cols) * weight
    score = obj * alpha + region * (1 - alpha)
    return float("nan") if np.isnan(score) else float(max(0.0, score))  # NaN stays NaN, as np.maximum keeps it
