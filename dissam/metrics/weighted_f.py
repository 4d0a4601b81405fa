"""Weighted F-measure (Margolin et al., CVPR 2014) with pysodmetrics 1.6.2's conventions (beta = 1).

The reference runs a full Euclidean feature transform (nearest foreground pixel of every background
pixel) and a 7x7 Gaussian over the whole image. Only two things of that transform matter:
- the distance of each background pixel (its importance weight ``B``), taken here from OpenCV's exact
  (Felzenszwalb) distance transform; squared distances are integers, recovered exactly from it;
- the error at the nearest foreground pixel, for background pixels that the 7x7 filter reaches from
  the foreground (within 3 pixels, Chebyshev). Those are found in a 9x9 window, ties broken as the
  reference's transform (scipy's) breaks them: smallest column, then smallest row. Checked against scipy.
The Gaussian (separable) runs with a zero border, as ``scipy.ndimage.convolve(mode='constant')``, on the
foreground's bounding box only. Per-pixel errors come from one table lookup on the histogram's code.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

EPS = np.spacing(1.0)
_REACH = 3  # the 7x7 filter reaches 3 pixels
_MAX_D = 300.0  # 2 - exp(log(0.5) / 5 * d) == 2.0 exactly in float64 beyond this distance


def gaussian_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """The 1-D factor of MATLAB ``fspecial('gaussian', [size size], sigma)`` (outer(k, k) is that kernel;
    for sigma 5 no tap is small enough to be zeroed by fspecial)."""
    half = (size - 1) / 2
    x = np.arange(-half, half + 1)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


@lru_cache(maxsize=1)
def _importance_table() -> np.ndarray:
    """``B`` of a background pixel as a function of its integer squared distance d^2 <= 300^2."""
    d = np.sqrt(np.arange(int(_MAX_D ** 2) + 1, dtype=np.float64))
    return 2 - np.exp(np.log(0.5) / 5 * d)


@lru_cache(maxsize=1)
def _window_offsets() -> dict[int, list[tuple[int, int]]]:
    """(dy, dx) offsets up to squared distance 18 (the farthest pixel of a 7x7 window) grouped by squared
    distance, each group in (dx, dy) order: the first foreground hit is the reference's nearest pixel."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for d2, dx, dy in sorted((dy * dy + dx * dx, dx, dy) for dy in range(-4, 5) for dx in range(-4, 5)
                             if 0 < dy * dy + dx * dx <= 2 * _REACH ** 2):
        groups.setdefault(d2, []).append((dy, dx))
    return groups


def _nearest_foreground(gt: np.ndarray, band: np.ndarray, sq_dist: np.ndarray) -> np.ndarray:
    """Flat index (into ``gt``) of the nearest foreground pixel of every ``band`` pixel (row-major order),
    given the exact squared distances: only offsets at that distance are tried."""
    h, w = gt.shape
    pad = 4
    wp = w + 2 * pad
    padded = np.zeros((h + 2 * pad, wp), dtype=bool)
    padded[pad:-pad, pad:-pad] = gt
    flat = padded.ravel()
    rows, cols = np.nonzero(band)
    pos = (rows + pad) * wp + cols + pad
    d2 = sq_dist[rows, cols]
    found = np.full(pos.size, -1, dtype=np.int64)
    for dist2, offsets in _window_offsets().items():
        todo = np.flatnonzero(d2 == dist2)
        for dy, dx in offsets:
            if todo.size == 0:
                break
            hit = flat[pos[todo] + dy * wp + dx]
            idx = todo[hit]
            found[idx] = (rows[idx] + dy) * w + cols[idx] + dx
            todo = todo[~hit]
    if (found < 0).any():  # cannot happen with an exact distance transform
        raise RuntimeError("weighted F: inconsistent distance transform")
    return found


def _error_tables(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|pred - gt| and the same with foreground entries zeroed, indexed by the 11-bit histogram code."""
    err = np.concatenate([values, np.abs(values - 1.0)])  # code & 511 = value | gt << 8
    err_bg = np.concatenate([values, np.zeros(256)])
    return np.tile(err, 4), np.tile(err_bg, 4)


def weighted_fmeasure(pred: np.ndarray, gt: np.ndarray, values: np.ndarray, code: np.ndarray | None = None,
                      beta: float = 1.0) -> float:
    """wF of a uint8 prediction (normalised through ``values``, the float value of each level) and bool GT.

    ``code`` is :attr:`PixelStats.code` when at hand (saves a pass); any value | gt << 8 code works."""
    n_fg = int(np.count_nonzero(gt))
    if n_fg == 0:
        return 0.0
    gt_u8 = gt.view(np.uint8)
    if code is None:
        code = pred.astype(np.uint16) | (gt_u8.astype(np.uint16) << 8)
    err_table, err_bg_table = _error_tables(values)
    ys, xs = np.flatnonzero(gt.any(axis=1)), np.flatnonzero(gt.any(axis=0))
    box = (slice(max(ys[0] - _REACH, 0), min(ys[-1] + _REACH + 1, gt.shape[0])),
           slice(max(xs[0] - _REACH, 0), min(xs[-1] + _REACH + 1, gt.shape[1])))
    # --- background: error times importance B(distance to the foreground) ---
    # Only pixels with an error count: the distance transform runs on the box holding them and the
    # foreground (exact there, since every foreground pixel is inside).
    err_bg = err_bg_table[code]
    nz = err_bg != 0
    rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
    if rows.size:
        outer = (slice(min(rows[0], box[0].start), max(rows[-1] + 1, box[0].stop)),
                 slice(min(cols[0], box[1].start), max(cols[-1] + 1, box[1].stop)))
    else:
        outer = box
    dist = cv2.distanceTransform(np.bitwise_xor(gt_u8[outer], 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    np.minimum(dist, _MAX_D, out=dist)
    np.multiply(dist, dist, out=dist)  # float32 d^2 is within 0.02 of the integer for d <= 300
    sq = np.rint(dist).astype(np.intp)
    fp_w = float(np.dot(err_bg[outer].ravel(), _importance_table()[sq].ravel()))
    # --- foreground: min(error, Gaussian of the error field that copies edge errors outwards) ---
    inner = (slice(box[0].start - outer[0].start, box[0].stop - outer[0].start),
             slice(box[1].start - outer[1].start, box[1].stop - outer[1].start))
    g = gt[box]
    err = err_table[code[box]]
    kernel = np.ones((2 * _REACH + 1, 2 * _REACH + 1), np.uint8)
    band = cv2.dilate(g.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool) & ~g
    err_t = err.copy()
    if band.any():
        err_t[band] = err.ravel()[_nearest_foreground(g, band, sq[inner])]
    k1 = gaussian_1d()
    blurred = cv2.sepFilter2D(err_t, cv2.CV_64F, k1, k1, borderType=cv2.BORDER_CONSTANT)
    e_fg, ea_fg = err[g], blurred[g]
    sum_fg = float(np.where(ea_fg < e_fg, ea_fg, e_fg).sum())
    tp_w = n_fg - sum_fg
    recall = 1 - sum_fg / n_fg
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))
