"""Drawing of procedural objects: a :class:`Shape` records operations in a local unit frame and
:func:`render_shape` draws it as a binary mask in a pixel box, with every part at least ``MIN_WIDTH`` px wide.

Stroke widths are absolute pixels and odd (3, 5, 7...); a 3x3 closing and opening after drawing remove
any gap or part thinner than 3 px that overlapping operations could leave, so the GT is exactly what a
person (and the network) can see at the working resolution.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_WIDTH = 3
_SHIFT = 4  # cv2 sub-pixel bits
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


class Shape:
    """Drawing operations in a local unit frame; value 255 paints, 0 erases (holes)."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def line(self, pts, width: int, closed: bool = False, value: int = 255) -> None:
        self.ops.append(("poly", np.asarray(pts, float).reshape(-1, 2), int(width), closed, value))

    def fill(self, pts, value: int = 255) -> None:
        self.ops.append(("fill", np.asarray(pts, float).reshape(-1, 2), 0, False, value))

    def ellipse(self, center, axes, angle: float = 0.0, width: int = -1, value: int = 255) -> None:
        """``width`` -1 fills; ``angle`` in degrees."""
        self.ops.append(("ellipse", np.asarray(center, float), width, (float(axes[0]), float(axes[1]), angle), value))

    def extent_points(self) -> np.ndarray:
        pts = []
        for kind, p, _, extra, value in self.ops:
            if value == 0:
                continue
            if kind == "ellipse":
                r = max(extra[0], extra[1])
                pts.append(p + np.array([[-r, -r], [r, r], [-r, r], [r, -r]]))
            else:
                pts.append(p)
        return np.concatenate(pts)


def odd(v: float) -> int:
    """The odd integer >= ``MIN_WIDTH`` nearest above ``v``: a stroke width in px."""
    n = max(MIN_WIDTH, int(round(v)))
    return n if n % 2 else n + 1


def stroke_width(rng: np.random.Generator, lo: int = 3, hi: int = 5) -> int:
    """A random odd stroke width in [lo, hi] px."""
    return odd(rng.integers(lo, hi + 1))


def _rot(pts: np.ndarray, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ r.T


def render_shape(shape: Shape, size: int, box: tuple[float, float, float, float], angle: float = 0.0) -> np.ndarray:
    """Draw ``shape`` rotated by ``angle`` degrees, scaled to fit ``box`` (x0, y0, x1, y1 px): uint8 0/255."""
    ext = _rot(shape.extent_points(), angle)
    lo, hi = ext.min(0), ext.max(0)
    margin = max(op[2] for op in shape.ops) / 2 + 1
    bw, bh = box[2] - box[0] - 2 * margin, box[3] - box[1] - 2 * margin
    s = max(1e-3, min(bw / max(hi[0] - lo[0], 1e-6), bh / max(hi[1] - lo[1], 1e-6)))
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) - s * (lo + hi) / 2
    mask = np.zeros((size, size), np.uint8)

    def px(p: np.ndarray) -> np.ndarray:
        return np.round((_rot(p.reshape(-1, 2), angle) * s + centre) * (1 << _SHIFT)).astype(np.int32)

    for kind, p, width, extra, value in shape.ops:
        if kind == "poly":
            cv2.polylines(mask, [px(p)], extra, value, max(1, width - 1), cv2.LINE_8, _SHIFT)
        elif kind == "fill":
            cv2.fillPoly(mask, [px(p)], value, cv2.LINE_8, _SHIFT)
        else:
            ax = (int(round(extra[0] * s * (1 << _SHIFT))), int(round(extra[1] * s * (1 << _SHIFT))))
            c = tuple(int(v) for v in px(p)[0])
            cv2.ellipse(mask, c, ax, extra[2] + angle, 0, 360, value, -1 if width < 0 else max(1, width - 1),
                        cv2.LINE_8, _SHIFT)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CROSS)  # no hole or gap narrower than 3 px ...
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _CROSS)  # ... and no part thinner than 3 px
    core = cv2.erode(mask, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    for i in range(1, n):  # specks, and pieces with no 3x3 block anywhere, are no structure anyone would mark
        if stats[i, cv2.CC_STAT_AREA] < 12 or not core[labels == i].any():
            mask[labels == i] = 0
    return mask


def catmull_rom(pts: np.ndarray, n: int = 12) -> np.ndarray:
    """Catmull-Rom spline through ``pts`` (open), ``n`` samples per segment."""
    p = np.vstack([pts[0], pts, pts[-1]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.vstack(out + [pts[-1:]])


def fit_count(px: float, span: float, pitch_px: float, want: float) -> int:
    """How many evenly spaced parts fit ``span`` units of an object ``px`` wide with ``pitch_px`` apart."""
    return int(max(1, min(want, span * px / 2 / pitch_px)))
