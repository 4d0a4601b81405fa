"""Solid procedural objects: bodies with fine parts, and smooth solids (see :mod:`.shapes` for the frames).

Most DIS5K objects are solid things (animals, vessels, tools, plants, signs) whose difficulty lies in a
few fine parts attached to a solid body. Each builder here draws a filled body in the local unit frame
(:class:`~.drawing.Shape`) and adds its fine parts as strokes >= 3 px wide (absolute pixels) that start
inside the body, so the object stays one connected component; holes and slits are erased at least 3 px
wide. Builders take ``(rng, px, c)``: the object's size in pixels and a complexity in [0, 1] (more
legs, spines, holes, ribs as it grows).
"""
from __future__ import annotations

import numpy as np

from .drawing import MIN_WIDTH, Shape, catmull_rom, fit_count, odd, stroke_width


# ----------------------------------------------------------------------- outlines
def blob_outline(rng: np.random.Generator, wobble: float = 0.2, aspect: tuple[float, float] = (0.6, 1.0),
                 n: int = 96) -> np.ndarray:
    """A smooth random closed outline (radius from harmonics 2-4), ``[n, 2]`` within ``[-1, 1]^2``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 5):
        r += rng.uniform(0, wobble / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    pts = np.stack([r * np.cos(t), r * rng.uniform(*aspect) * np.sin(t)], 1)
    return pts / np.abs(pts).max()


def superellipse(a: float, b: float, p: float, centre: tuple[float, float] = (0.0, 0.0), n: int = 96) -> np.ndarray:
    """Outline of ``|x/a|^p + |y/b|^p = 1`` (p=2 an ellipse, larger p a rounded rectangle)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([a * np.sign(c) * np.abs(c) ** (2 / p), b * np.sign(s) * np.abs(s) ** (2 / p)], 1) + centre


def lathe(ys: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """A symmetric outline (bottles, vases) through half-widths at heights ``ys``, smoothed by a spline."""
    right = catmull_rom(np.stack([half_widths, ys], 1), 8)
    return np.vstack([right, right[::-1] * [-1, 1]])


def _inside_super(x: float, y: float, a: float, b: float, p: float) -> bool:
    return abs(x / a) ** p + abs(y / b) ** p < 1


def _dir(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


# ------------------------------------------------------------------------ animals
def _beetle(sh: Shape, rng: np.random.Generator, c: float, w: int) -> None:
    """Top view: abdomen, pronotum and head, three jointed leg pairs, antennae, maybe a wing slit."""
    bw, bh = rng.uniform(0.28, 0.4), rng.uniform(0.42, 0.55)
    sh.ellipse([0, 0.25], (bw, bh), 0, -1)
    sh.ellipse([0, -0.3], (bw * 0.72, 0.17), 0, -1)
    sh.ellipse([0, -0.52], (bw * 0.45, 0.12), 0, -1)
    for side in (-1, 1):
        for i, y in enumerate((-0.3, 0.0, 0.3)):
            knee = [side * rng.uniform(0.5, 0.65), y + (i - 1) * 0.15 + rng.uniform(-0.15, 0.1)]
            foot = [side * rng.uniform(0.75, 0.98), knee[1] + (i - 1) * rng.uniform(0.15, 0.35)]
            pts = [[side * 0.1, y], knee, foot]
            if c > 0.4:
                pts.append([foot[0] + side * 0.05, foot[1] + (i - 1) * 0.12])
            sh.line(pts, w)
        tip = [side * rng.uniform(0.3, 0.55), -rng.uniform(0.95, 1.05)]
        sh.line(catmull_rom(np.array([[side * 0.05, -0.58], [side * 0.18, -0.8], tip])), MIN_WIDTH)
    if c > 0.5:
        sh.line([[0, 0.25 + bh + 0.05], [0, 0.05]], MIN_WIDTH, value=0)


def _spider(sh: Shape, rng: np.random.Generator, c: float, w: int) -> None:
    """Top view: abdomen and cephalothorax, four bent leg pairs, palps when complex."""
    sh.ellipse([0, 0.35], (0.3, rng.uniform(0.3, 0.4)), 0, -1)
    sh.ellipse([0, -0.15], (0.2, 0.2), 0, -1)
    for side in (-1, 1):
        for i, a in enumerate(np.radians([-55, -20, 15, 50]) + rng.normal(0, 0.08, 4)):
            base = np.array([side * 0.08, -0.15 + 0.05 * (i - 1.5)])
            d = _dir(a) * [side, 1]
            knee = base + 0.5 * d + [0, -rng.uniform(0.1, 0.25)]
            tip = base + rng.uniform(0.85, 1.0) * _dir(a + side * rng.uniform(0.1, 0.3)) * [side, 1]
            sh.line([base, knee, tip], w)
        if c > 0.5:
            sh.line([[side * 0.05, -0.3], [side * 0.12, -0.5], [side * 0.08, -0.6]], MIN_WIDTH)


def _quadruped(sh: Shape, rng: np.random.Generator, px: float, c: float) -> None:
    """Side view: body, neck and head, ears, four jointed legs, a thin tail, antlers when complex."""
    lw = odd(px * rng.uniform(0.03, 0.05))
    sh.ellipse([0, -0.15], (0.55, rng.uniform(0.18, 0.26)), 0, -1)
    sh.fill([[0.3, -0.3], [0.55, -0.62], [0.75, -0.55], [0.55, -0.05]])
    sh.ellipse([0.72, -0.6], (0.19, 0.11), 20, -1)
    sh.fill([[0.58, -0.66], [0.62, -0.85], [0.68, -0.68]])
    for x in (-0.42, -0.3, 0.32, 0.44):
        dx = rng.uniform(-0.08, 0.08)
        sh.line([[x, -0.1], [x + dx, 0.45], [x + dx + rng.uniform(-0.05, 0.05), 1.0]], lw)
    sh.line(catmull_rom(np.array([[-0.5, -0.22], [-0.78, -0.05], [-0.9, rng.uniform(0.1, 0.4)]])), MIN_WIDTH)
    if c > 0.5:
        for side in (-0.06, 0.06):
            base = np.array([0.7 + side, -0.68])
            top = base + [side * 3, -0.3]
            sh.line([base, top], MIN_WIDTH)
            sh.line([base + 0.5 * (top - base), base + 0.5 * (top - base) + [0.15, -0.08]], MIN_WIDTH)


def _bird(sh: Shape, rng: np.random.Generator, c: float) -> None:
    """Side view: body, head and beak, a tail fan, thin legs with toes, a crest when complex."""
    sh.ellipse([-0.05, -0.05], (0.45, rng.uniform(0.24, 0.3)), -15, -1)
    sh.ellipse([0.42, -0.42], (0.17, 0.16), 0, -1)
    sh.fill([[0.15, -0.2], [0.32, -0.5], [0.52, -0.36], [0.35, -0.02]])  # neck
    sh.fill([[0.56, -0.48], [0.56 + rng.uniform(0.2, 0.35), -0.42], [0.56, -0.36]])
    sh.fill([[-0.35, -0.05], [-0.95, -rng.uniform(0.2, 0.4)], [-1.0, -0.1], [-0.35, 0.12]])
    for x in (-0.05, 0.12):
        foot = np.array([x + rng.uniform(-0.05, 0.05), 0.85])
        sh.line([[x, 0.1], foot], MIN_WIDTH)
        for dx in (-0.12, 0.0, 0.14):
            sh.line([foot, foot + [dx, 0.1]], MIN_WIDTH)
    if c > 0.5:
        for a in np.radians([-120, -100, -80]):
            sh.line([[0.42, -0.5], [0.42, -0.5] + 0.25 * _dir(a)], MIN_WIDTH)


def critter(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Animals: a solid body with thin legs, antennae and tails (beetles, spiders, quadrupeds, birds)."""
    sh, kind = Shape(), rng.choice(["beetle", "spider", "quadruped", "bird"])
    w = stroke_width(rng, 3, 3 if c > 0.5 else 5)
    if kind == "beetle":
        _beetle(sh, rng, c, w)
    elif kind == "spider":
        _spider(sh, rng, c, w)
    elif kind == "quadruped":
        _quadruped(sh, rng, px, c)
    else:
        _bird(sh, rng, c)
    return sh


# ------------------------------------------------------------------------ vessels
def _basket_holes(sh: Shape, px: float, c: float, a: float, b: float) -> None:
    """Rows of square weave holes inside the lower half-ellipse ``a`` x ``b``."""
    unit = px / 2
    hs = max(2.0, px * 0.02) / unit
    pitch = 2 * hs + 5 / unit
    rows = int(max(1, min(1 + 3 * c, 0.6 * b / pitch)))
    for y in 0.15 + np.arange(rows) * pitch:
        half = a * np.sqrt(max(0.0, 1 - (y / b) ** 2)) - pitch
        for x in np.arange(-half, half + 1e-9, pitch):
            sh.fill([[x - hs, y - hs], [x + hs, y - hs], [x + hs, y + hs], [x - hs, y + hs]], value=0)


def vessel(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid containers with handles: mugs, teapots, bags and baskets (a handle ring keeps its hole)."""
    sh, kind = Shape(), rng.choice(["mug", "teapot", "bag", "basket"])
    hw = odd(px * rng.uniform(0.03, 0.055))
    if kind == "mug":
        a, b = rng.uniform(0.45, 0.6), rng.uniform(0.6, 0.8)
        sh.fill(superellipse(a, b, rng.uniform(4, 8), (-0.25, 0.1)))
        sh.ellipse([-0.25 + a, 0.05], (rng.uniform(0.22, 0.32), rng.uniform(0.25, 0.4)), 0, hw)
        if c > 0.5:
            sh.ellipse([-0.2, 0.1 + b], (a * 1.5, 0.07), 0, -1)
    elif kind == "teapot":
        sh.ellipse([0, 0.3], (0.55, 0.42), 0, -1)
        sh.ellipse([0, -0.1], (0.3, 0.1), 0, -1)
        sh.ellipse([0, -0.24], (0.07, 0.07), 0, -1)
        sh.fill([[0.4, 0.15], [0.42, 0.5], [0.72, 0.1], [0.98, -0.22], [0.9, -0.28], [0.68, -0.06]])
        sh.ellipse([-0.62, 0.25], (0.26, 0.28), 0, hw)
        if c > 0.6:
            sh.line([[0, -0.3], [0, -0.45]], MIN_WIDTH)
    elif kind == "bag":
        top = rng.uniform(-0.2, 0.0)
        sh.fill([[-0.7, top], [0.7, top], [0.85, 1], [-0.85, 1]])
        for dx in ([0.0] if c <= 0.5 else [-0.08, 0.08]):
            sh.ellipse([dx, top], (0.4, 0.7), 0, hw)
        if c > 0.6:
            sh.ellipse([0, top + 0.25], (0.07, 0.07), 0, -1, value=0)
    else:
        a, b = 0.85, rng.uniform(0.6, 0.8)
        t = np.linspace(0, np.pi, 48)
        sh.fill(np.stack([a * np.cos(t), b * np.sin(t)], 1))
        sh.ellipse([0, 0], (0.65, min(0.9, b * 1.3)), 0, hw)
        if c > 0.3:
            _basket_holes(sh, px, c, a, b)
    return sh


# -------------------------------------------------------------------- perforated
def _scatter_holes(rng: np.random.Generator, px: float, a: float, b: float, p: float, n: int,
                   r_range: tuple[float, float]) -> list[tuple[float, float, float]]:
    """Up to ``n`` non-overlapping round holes (x, y, r) inside the superellipse, >= 4 px apart and in."""
    unit = px / 2
    gap = 4 / unit
    holes: list[tuple[float, float, float]] = []
    for _ in range(12 * n):
        if len(holes) >= n:
            break
        r = max(2.0 / unit, rng.uniform(*r_range))
        x, y = rng.uniform(-a, a), rng.uniform(-b, b)
        k = 1 - (r + gap) / min(a, b)
        if k <= 0 or not _inside_super(x / k, y / k, a, b, p):
            continue
        if all(np.hypot(x - hx, y - hy) > r + hr + gap for hx, hy, hr in holes):
            holes.append((x, y, r))
    return holes


def perforated(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid shapes with punched holes: colanders, cheese, buttons, slotted plates."""
    sh, kind = Shape(), rng.choice(["colander", "cheese", "button", "slotted"])
    a, b, p = rng.uniform(0.7, 1.0), rng.uniform(0.5, 1.0), rng.uniform(2, 5)
    sh.fill(superellipse(a, b, p))
    unit = px / 2
    if kind == "slotted":
        sw = stroke_width(rng, 3, 7)
        n = int(max(1, min(2 + 6 * c, 1.4 * b * unit / (sw + 5))))
        for y in np.linspace(-0.7 * b, 0.7 * b, n):
            half = a * max(0.0, 1 - abs(y / b) ** p) ** (1 / p) - (sw + 6) / unit
            if half > sw / unit:
                sh.line([[-half, y], [half, y]], sw, value=0)
        return sh
    if kind == "button":
        holes = [(0.3 * min(a, b) * np.cos(t), 0.3 * min(a, b) * np.sin(t), 0.12 * min(a, b))
                 for t in np.linspace(0, 2 * np.pi, int(rng.choice([2, 4])), endpoint=False) + rng.uniform(0, 3)]
    elif kind == "colander":
        r = max(2.0, px * rng.uniform(0.02, 0.035)) / unit
        holes = _scatter_holes(rng, px, a, b, p, int(6 + 30 * c), (r, r))
    else:
        holes = _scatter_holes(rng, px, a, b, p, int(3 + 10 * c), (0.05, 0.25))
    for x, y, r in holes:
        sh.ellipse([x, y], (r, r), 0, -1, value=0)
    return sh


# ------------------------------------------------------------------------- spiky
def _spines(sh: Shape, path: np.ndarray, half: float, length: float, n: int) -> None:
    """``n`` short 3-px spines out of both sides of a thick stroke along ``path`` (``half`` its half-width)."""
    seg = np.diff(path, axis=0)
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(seg, axis=1))])
    for k, s in enumerate(np.linspace(0.1, 0.95, n) * arc[-1]):
        j = min(int(np.searchsorted(arc, s, side="right")) - 1, len(seg) - 1)
        p = path[j] + seg[j] * (s - arc[j]) / max(1e-9, arc[j + 1] - arc[j])
        nrm = np.array([-seg[j][1], seg[j][0]]) / max(1e-9, np.linalg.norm(seg[j])) * (1 if k % 2 else -1)
        sh.line([p + nrm * half * 0.5, p + nrm * (half + length)], MIN_WIDTH)


def _cactus(sh: Shape, rng: np.random.Generator, px: float, c: float) -> None:
    unit = px / 2
    tw = odd(px * rng.uniform(0.12, 0.18))
    trunk = np.array([[0, 1.0], [0, -0.85]])
    paths = [trunk]
    for side in rng.choice([-1, 1], int(rng.integers(1, 3)), replace=False):
        y0 = rng.uniform(-0.1, 0.4)
        paths.append(np.array([[0, y0], [side * 0.5, y0], [side * 0.5, y0 - rng.uniform(0.3, 0.55)]]))
    for i, path in enumerate(paths):
        sh.line(path, tw if i == 0 else odd(tw * 0.75))
        n = fit_count(px, np.linalg.norm(np.diff(path, axis=0), axis=1).sum(), 7, 3 + 12 * c)
        _spines(sh, path, (tw if i == 0 else tw * 0.75) / 2 / unit, rng.uniform(4, 9) / unit, n)


def _leaf(sh: Shape, rng: np.random.Generator, px: float, c: float) -> None:
    t = np.linspace(0, 1, 41)
    half = rng.uniform(0.35, 0.5) * np.sin(np.pi * t) ** 0.8
    teeth = int(6 + 14 * c)
    half *= 1 + 0.12 * ((t * teeth) % 1) * (c > 0.3)
    ys = -1 + 1.8 * t
    sh.fill(np.vstack([np.stack([half, ys], 1), np.stack([-half, ys], 1)[::-1]]))
    sh.line([[0, 0.5], [0.04, 1.0]], stroke_width(rng, 3, 5))
    if c > 0.5 and px >= 110:  # veins (3-px slits) only where the leaf is wide enough to keep both sides
        sh.line([[0, 0.6], [0, -0.75]], MIN_WIDTH, value=0)
        for y in np.linspace(-0.6, 0.45, 4):
            reach = 0.5 * min(np.interp(y, ys, half), np.interp(y - 0.15, ys, half))
            for side in (-1, 1):
                sh.line([[0, y], [side * reach, y - 0.15]], MIN_WIDTH, value=0)


def spiky(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid bodies with spikes: urchins (radial spines), suns (tapered rays), cacti, serrated leaves."""
    sh, kind = Shape(), rng.choice(["urchin", "sun", "cactus", "leaf"])
    if kind in ("urchin", "sun"):
        r0 = rng.uniform(0.4, 0.58)
        sh.ellipse([0, 0], (r0, r0 * rng.uniform(0.8, 1.0)), 0, -1)
        n = fit_count(px, 2 * np.pi * r0, 7 if kind == "urchin" else 12, (10 if kind == "urchin" else 8) + 24 * c)
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 1):
            tip = rng.uniform(0.8, 1.0) * _dir(a)
            if kind == "urchin":
                sh.line([0.6 * r0 * _dir(a), tip], MIN_WIDTH)
            else:
                sh.fill([0.7 * r0 * _dir(a - 0.15), tip, 0.7 * r0 * _dir(a + 0.15)])
    elif kind == "cactus":
        _cactus(sh, rng, px, c)
    else:
        _leaf(sh, rng, px, c)
    return sh


# ------------------------------------------------------------------------ gadgets
def _lamp(sh: Shape, rng: np.random.Generator, w: int) -> None:
    sh.ellipse([0, 0.92], (0.4, 0.08), 0, -1)
    elbow, end = [rng.uniform(0.2, 0.45), rng.uniform(0.0, 0.3)], [rng.uniform(-0.3, 0.0), -0.45]
    sh.line([[0, 0.9], elbow, end], w)
    sh.ellipse(elbow, (0.05, 0.05), 0, -1)
    a = np.radians(rng.uniform(-50, -10))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shade = np.array([[-0.16, -0.15], [0.16, -0.15], [0.42, 0.3], [-0.42, 0.3]]) @ rot.T + end
    sh.fill(shade)


def _umbrella(sh: Shape, rng: np.random.Generator, c: float, w: int) -> None:
    ribs = 4 + int(round(4 * c))
    xs = np.linspace(-1, 1, ribs + 1)
    top = [[np.cos(t), -0.3 + 0.6 * np.sin(t)] for t in np.linspace(np.pi, 2 * np.pi, 40)]
    bottom = []
    for x0, x1 in zip(xs[::-1][:-1], xs[::-1][1:]):  # scallops from right to left, bowing up
        for u in np.linspace(0, 1, 8, endpoint=False):
            bottom.append([x0 + (x1 - x0) * u, -0.3 - 0.08 * np.sin(np.pi * u)])
    sh.fill(np.array(top + bottom))
    for x in xs:
        sh.line([[x * 0.97, -0.33], [x * 0.97, -0.22]], MIN_WIDTH)
    sh.line([[0, -0.98], [0, 0.75]], w)
    sh.line(catmull_rom(np.array([[0, 0.75], [0, 0.95], [-0.15, 1.0], [-0.25, 0.88]])), w)


def _sign(sh: Shape, rng: np.random.Generator, px: float, c: float) -> None:
    corners = int(rng.choice([3, 4, 8, 32]))
    t = np.linspace(0, 2 * np.pi, corners, endpoint=False) + (np.pi / corners if corners in (4, 8) else -np.pi / 2)
    sh.fill(np.stack([0.5 * np.cos(t), -0.5 + 0.45 * np.sin(t)], 1))
    sh.line([[0, -0.5], [0, 1.0]], odd(px * rng.uniform(0.025, 0.045)))
    if c > 0.5:
        sh.fill([[0.0, 0.05], [0.55, 0.05], [0.65, 0.15], [0.55, 0.25], [0.0, 0.25]])
    if c > 0.7:
        sh.line([[-0.25, 1.0], [0.25, 1.0]], stroke_width(rng, 3, 5))


def _guitar(sh: Shape, rng: np.random.Generator, px: float) -> None:
    """Two bouts with a sound hole, a neck, a head with 3-px tuning pegs."""
    sh.ellipse([0, 0.55], (0.45, rng.uniform(0.36, 0.44)), 0, -1)
    sh.ellipse([0, 0.05], (rng.uniform(0.3, 0.36), 0.3), 0, -1)
    sh.ellipse([0, 0.28], (0.12, 0.12), 0, -1, value=0)
    sh.line([[0, 0.0], [0, -0.8]], odd(px * rng.uniform(0.05, 0.07)))
    sh.fill([[-0.09, -0.78], [0.09, -0.78], [0.1, -1.0], [-0.1, -1.0]])
    for y in np.linspace(-0.84, -0.96, 3):
        sh.line([[-0.05, y], [-0.2, y]], MIN_WIDTH)
        sh.line([[0.05, y], [0.2, y]], MIN_WIDTH)


def gadget(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid parts joined by thin ones: desk lamps, umbrellas, signs on poles, guitars."""
    sh, kind = Shape(), rng.choice(["lamp", "umbrella", "sign", "guitar"])
    w = odd(px * rng.uniform(0.02, 0.035))
    if kind == "lamp":
        _lamp(sh, rng, w)
    elif kind == "umbrella":
        _umbrella(sh, rng, c, w)
    elif kind == "sign":
        _sign(sh, rng, px, c)
    else:
        _guitar(sh, rng, px)
    return sh


# ------------------------------------------------------------------------- smooth
def smooth(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid objects with smooth outlines and no fine parts: pebbles, rounded boxes, bottles, vases, fruit."""
    sh, kind = Shape(), rng.choice(["pebble", "rounded", "bottle", "vase", "fruit"])
    if kind == "pebble":
        sh.fill(blob_outline(rng, 0.1 + 0.3 * c))
    elif kind == "rounded":
        sh.fill(superellipse(rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), rng.uniform(2.5, 8)))
    elif kind == "bottle":
        nk, bw = rng.uniform(0.1, 0.16), rng.uniform(0.3, 0.45)
        sh.fill(lathe(np.array([-1, -0.95, -0.6, -0.3, 0.85, 1.0]), np.array([nk * 1.2, nk, nk, bw, bw, bw * 0.9])))
    elif kind == "vase":
        sh.fill(lathe(np.linspace(-1, 1, 5), np.concatenate([[rng.uniform(0.2, 0.35)], rng.uniform(0.15, 0.5, 3),
                                                              [rng.uniform(0.2, 0.35)]])))
    else:
        r = rng.uniform(0.45, 0.6)
        sh.ellipse([0, 0.3], (r, r * rng.uniform(0.85, 1.0)), 0, -1)
        sh.ellipse([0, -0.25], (r * 0.65, r * 0.7), 0, -1)
    return sh
