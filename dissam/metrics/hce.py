"""Human Correction Efforts (HCE, Qin et al., ECCV 2022), as the official ``relax_HCE`` computes it.

Conventions (official DIS evaluation): prediction and GT are binarised at ``> 128`` of their raw uint8
values (no min-max scaling); the GT skeleton is ``skimage.morphology.skeletonize(gt > 128)``; relax = 5,
epsilon = 2.0; the data-set value is the mean over images. The counts follow the official steps:
relaxed false-positive / false-negative regions, their contours (OpenCV, RETR_TREE, CHAIN_APPROX_NONE),
the contour points that need a human (next to the region a correction meets, each pixel once, in
contour order), the runs of such points (the last run of a contour joined with the reversed first run
when they touch), one polygon per run (``cv2.approxPolyDP``) and one click per region that needs no
boundary edit. The per-point Python loop of the official code is vectorised here; the result is the same.
:func:`hce_regions` returns what is counted (the relaxed regions and the points, as (x, y) pixels);
:func:`hce` is their number.

Edge case, as the official code does it: a relaxed region covering the whole image (an empty GT with a
full prediction, or the reverse) counts no independent region. pysodmetrics counts one there.

The skeleton is the costly part (it depends on the GT only): :class:`SkeletonCache` keeps skeletons in
memory by GT content and, optionally, on disk.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # skimage disk(1)
_SKELETONISER = f"skimage-{importlib.metadata.version('scikit-image')}-skeletonize-zhang"


def gt_skeleton(gt: np.ndarray) -> np.ndarray:
    """Zhang-Suen skeleton (skimage) of a bool GT, computed on its bounding box (same result, less work)."""
    from skimage.morphology import skeletonize  # imported here: only a cache miss needs it

    rows, cols = np.flatnonzero(gt.any(axis=1)), np.flatnonzero(gt.any(axis=0))
    out = np.zeros(gt.shape, dtype=bool)
    if rows.size:
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        out[box] = skeletonize(gt[box])
    return out


class SkeletonCache:
    """GT skeletons by GT content: an in-memory LRU (bounded in bytes) and an optional folder of ``.npy``
    files (flat indices of skeleton pixels; atomic writes, so concurrent evaluations can share it)."""

    def __init__(self, directory: str | Path | None = None, max_bytes: int = 256 * 2 ** 20):
        self.directory = Path(directory) if directory is not None else None
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(gt: np.ndarray) -> str:
        """Hash of the GT's shape and pixels, and of the skeletoniser's version (no stale disk entries)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(_SKELETONISER.encode())
        h.update(np.asarray(gt.shape, dtype=np.int64).tobytes())
        h.update(np.packbits(gt).tobytes())
        return h.hexdigest()

    def get(self, gt: np.ndarray) -> np.ndarray:
        """The skeleton of bool ``gt``, computed at most once per GT content."""
        key = self.key(gt)
        with self._lock:
            flat = self._items.get(key)
            if flat is not None:
                self._items.move_to_end(key)
        if flat is None:
            flat = self._load(key, gt.size)
            if flat is None:
                self.misses += 1
                flat = np.flatnonzero(gt_skeleton(gt)).astype(np.int64)
                self._save(key, flat)
            else:
                self.hits += 1
            self._remember(key, flat)
        else:
            self.hits += 1
        out = np.zeros(gt.size, dtype=bool)
        out[flat] = True
        return out.reshape(gt.shape)

    def _remember(self, key: str, flat: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = flat
            self._bytes += flat.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.npy"

    def _load(self, key: str, size: int) -> np.ndarray | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            flat = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable entry: recomputed and rewritten
        if flat.ndim != 1 or (flat.size and (flat.min() < 0 or flat.max() >= size)):
            return None
        return flat.astype(np.int64)

    def _save(self, key: str, flat: np.ndarray) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, flat.astype(np.int32 if not flat.size or flat.max() < 2 ** 31 else np.int64))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


_DEFAULT_CACHE = SkeletonCache()


def default_skeleton_cache() -> SkeletonCache:
    """The process-wide in-memory cache (shared by every :class:`~dissam.metrics.DISMetrics` without a
    cache folder), so evaluating several methods on one data set skeletonises each GT once."""
    return _DEFAULT_CACHE


# ----------------------------------------------------------------------------- the measure
def _boundary_points(contours: tuple, condition: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Runs of contour points that need a human edit, and the flat indices of all such points."""
    if not contours:
        return [], np.empty(0, dtype=np.int64)
    lengths = np.array([len(c) for c in contours])
    pts = np.concatenate(contours).reshape(-1, 2)  # (x, y)
    flat = pts[:, 1].astype(np.int64) * condition.shape[1] + pts[:, 0]
    first = np.zeros(flat.size, dtype=bool)
    first[np.unique(flat, return_index=True)[1]] = True  # each pixel counts once, at its first visit
    keep = condition.ravel()[flat] & first
    runs: list[np.ndarray] = []
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for c in range(len(contours)):
        k = keep[starts[c]:starts[c + 1]]
        if not k.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], k.view(np.int8), [0]])))
        seg = [pts[starts[c] + a:starts[c] + b] for a, b in zip(edges[::2], edges[1::2])]
        if len(seg) > 1:
            first_pt, last_pt = seg[0][0], seg[-1][-1]
            dx, dy = abs(int(first_pt[0]) - int(last_pt[0])), abs(int(first_pt[1]) - int(last_pt[1]))
            if max(dx, dy) == 1:  # the runs touch: close the loop through the contour's start
                seg[-1] = np.concatenate([seg[-1], seg[0][::-1]])
                del seg[0]
        runs.extend(seg)
    return runs, flat[keep]


def correction_points(region: np.ndarray, other: np.ndarray, epsilon: float = 2.0) -> np.ndarray:
    """The clicks that fix ``region`` (bool ``[H, W]``), as ``int64 [n, 2]`` (x, y) pixel positions: the
    polygon vertices (Douglas-Peucker, ``epsilon``) of each run of its boundary next to ``other``, then one
    pixel (the first in raster order) of each 8-connected part of ``region`` that no such run touches,
    fixed by one click. A region covering the whole image has no part of the latter kind (the official
    count has no background label then)."""
    none = np.zeros((0, 2), np.int64)
    if not region.any():
        return none
    u8 = region.view(np.uint8)
    contours, _ = cv2.findContours(u8, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    near = cv2.dilate(other.view(np.uint8), _CROSS).astype(bool)
    runs, touched = _boundary_points(contours, near)
    found = [run if len(run) <= 2 else cv2.approxPolyDP(run.reshape(-1, 1, 2).astype(np.int32), epsilon, False)
             for run in runs]
    if not region.all():
        n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(u8, connectivity=8)
        free = np.setdiff1d(np.arange(1, n_labels), labels.ravel()[touched])
        tops, lefts, widths = (stats[free, k] for k in (cv2.CC_STAT_TOP, cv2.CC_STAT_LEFT, cv2.CC_STAT_WIDTH))
        # The first pixel of a part in raster order lies in the top row of its bounding box.
        xs = [left + int(np.argmax(labels[top, left:left + width] == label))
              for label, top, left, width in zip(free, tops, lefts, widths)]
        found.append(np.stack([np.asarray(xs, np.int64), tops.astype(np.int64)], 1))
    found = [np.asarray(f, np.int64).reshape(-1, 2) for f in found]
    return np.concatenate(found) if found else none


def relaxed_errors(p: np.ndarray, g: np.ndarray, skeleton: np.ndarray, relax: int = 5
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The errors HCE counts, from bool prediction ``p``, GT ``g`` and its skeleton: (true positives,
    relaxed false positives, relaxed false negatives). An error survives only if it reaches more than
    ``relax`` px away from every edge (thinner ones are tolerated); a missed skeleton pixel always
    does, since a human would have to draw it."""
    tp = g & p
    fp = p & ~g
    fn = g & ~p
    eroded = cv2.erode((g | p).view(np.uint8), _CROSS, iterations=relax).view(bool)
    fp_r = fp & eroded
    not_g, not_p = (~g).view(np.uint8), (~p).view(np.uint8)
    for _ in range(relax):
        fp_r = (cv2.dilate(fp_r.view(np.uint8), _CROSS) & not_g).view(bool)
    fp_r &= fp
    fn_r = fn & eroded
    for _ in range(relax):
        fn_r = (cv2.dilate(fn_r.view(np.uint8), _CROSS) & not_p).view(bool)
    fn_r &= fn
    fn_r |= skeleton & ~tp  # skeleton pixels the prediction misses must be drawn
    return tp, fp_r, fn_r


@dataclass(frozen=True)
class HCERegions:
    """What HCE counts on one image: the relaxed false-positive and false-negative regions (bool
    ``[H, W]``; the GT skeleton's missed pixels are part of ``fn``) and the clicks that fix each side
    (:func:`correction_points`, ``int64 [n, 2]`` as (x, y)). The image's HCE is their number."""

    fp: np.ndarray
    fn: np.ndarray
    fp_points: np.ndarray
    fn_points: np.ndarray

    @property
    def hce(self) -> int:
        return len(self.fp_points) + len(self.fn_points)


def hce_regions(pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray | None = None,
                relax: int = 5, epsilon: float = 2.0) -> HCERegions:
    """The regions and points HCE counts, for a raw uint8 prediction and a uint8 or bool GT (both
    binarised at > 128 if uint8). ``hce_regions(pred, gt).hce`` is :func:`hce`; ``skeleton``: the GT's,
    when already known (:class:`SkeletonCache`)."""
    p = pred > 128 if pred.dtype != bool else pred
    g = gt > 128 if gt.dtype != bool else gt
    tp, fp_r, fn_r = relaxed_errors(p, g, gt_skeleton(g) if skeleton is None else skeleton, relax)
    return HCERegions(fp_r, fn_r, correction_points(fp_r, tp | fn_r, epsilon),
                      correction_points(fn_r, ~(tp | fp_r | fn_r), epsilon))


def hce(pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray | None = None,
        relax: int = 5, epsilon: float = 2.0) -> int:
    """HCE of a raw uint8 prediction against a uint8 or bool GT (both binarised at > 128 if uint8): the
    number of points :func:`hce_regions` finds."""
    return hce_regions(pred, gt, skeleton, relax, epsilon).hce
