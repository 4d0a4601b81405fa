"""Structure families of procedural DIS-like objects, drawn as binary masks at the working resolution.

Each family builder records drawing operations in a local frame of about ``[-1, 1]^2`` (a :class:`Shape`);
:func:`render_shape` (:mod:`.drawing`, re-exported here) rotates it, fits it into a pixel box and draws it.
Stroke widths are absolute pixels and odd (3, 5, 7...): every fine part is at least ``MIN_WIDTH`` px wide
where the network sees it, and a 3x3 opening afterwards removes any thinner sliver that overlapping
operations could leave.
Builders take ``(rng, px, c)``: the object's expected size in pixels (to keep gaps open) and a
complexity in [0, 1] (more branches, bars, links, legs and holes as it grows).

Three groups (:data:`FAMILIES` holds them all): thin frames here (:data:`FRAME_FAMILIES`: trees, grids,
chains, thin-legged furniture, perforated plates, stroke patterns), and in :mod:`.solids` solid bodies
with fine parts (:data:`FINE_PART_FAMILIES`: animals with legs and antennae, vessels with handle rings,
shapes with punched holes, spiky bodies, solid parts joined by thin ones) and smooth solids
(:data:`SMOOTH_FAMILIES`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .drawing import MIN_WIDTH, Shape, render_shape  # noqa: F401  (re-exported)
from .drawing import catmull_rom as _curve
from .drawing import fit_count as _count
from .drawing import odd as _odd
from .drawing import stroke_width as _width
from .solids import critter, gadget, perforated, smooth, spiky, vessel


# --------------------------------------------------------------------- families
def tree(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Branching tree: trunk, forks 2-3 ways, twigs 3 px wide."""
    sh = Shape()
    depth = 2 + int(round(3 * c * rng.uniform(0.7, 1.0)))
    unit = px / 2

    def grow(p, ang, length, w, d):
        q = p + length * np.array([np.cos(ang), np.sin(ang)])
        mid = (p + q) / 2 + rng.normal(0, 0.08 * length, 2)
        sh.line([p, mid, q], w)
        if d == 0 or length * unit < 3 * MIN_WIDTH + 3:
            return
        k = rng.choice([2, 3], p=[0.6, 0.4])
        spread = rng.uniform(0.5, 0.9)
        for i in range(k):
            a = ang + spread * (i - (k - 1) / 2) / max(1, (k - 1) / 2) + rng.normal(0, 0.12)
            start = q if rng.random() < 0.7 else p + rng.uniform(0.5, 0.9) * (q - p)
            grow(start, a, length * rng.uniform(0.6, 0.78), _odd(w * 0.7), d - 1)

    grow(np.array([0.0, 1.0]), -np.pi / 2 + rng.normal(0, 0.1), rng.uniform(0.5, 0.7), _odd(px * rng.uniform(0.04, 0.07)), depth)
    return sh


def grid(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Wire grids, fences, diamond lattices and pylons."""
    sh, kind = Shape(), rng.choice(["wire", "fence", "lattice", "pylon"])
    w = _width(rng, 3, 3 if c > 0.5 else 5)
    a = rng.uniform(0.5, 1.0)
    if kind == "wire":
        sh.line([[-1, -a], [1, -a], [1, a], [-1, a]], _odd(w + 2), closed=True)
        nx = _count(px, 2, w + 6, 2 + 8 * c)
        ny = _count(px, 2 * a, w + 6, 1 + 6 * c)
        for x in np.linspace(-1, 1, nx + 2)[1:-1]:
            sh.line([[x, -a], [x, a]], w)
        for y in np.linspace(-a, a, ny + 2)[1:-1]:
            sh.line([[-1, y], [1, y]], w)
    elif kind == "fence":
        n = _count(px, 2, 3 * w + 6, 3 + 6 * c)
        pw = _odd(w + 2)
        for x in np.linspace(-1, 1, n + 1):
            top = -a - rng.uniform(0, 0.1)
            sh.fill([[x - pw / px, a], [x - pw / px, top], [x, top - 0.12], [x + pw / px, top], [x + pw / px, a]])
        for y in np.linspace(-a * 0.7, a * 0.7, 2 + int(c > 0.6)):
            sh.line([[-1, y], [1, y]], w)
    elif kind == "lattice":
        sh.line([[-1, -a], [1, -a], [1, a], [-1, a]], _odd(w + 2), closed=True)
        n = _count(px, 2 + 2 * a, w + 7, 3 + 10 * c)
        for k in np.linspace(-1 - a, 1 + a, n + 2)[1:-1]:
            for sgn in (1, -1):  # lines y = sgn*(x - k), clipped to the frame
                xs = np.clip(np.array([k - a * sgn, k + a * sgn]), -1, 1)
                sh.line(np.stack([xs, sgn * (xs - k)], 1), w)
    else:
        levels = 2 + int(round(4 * c))
        ys = np.linspace(1, -1, levels + 1)
        half = lambda y: 0.15 + 0.45 * (y + 1) / 2  # noqa: E731
        sh.line([[-half(1), 1], [-half(-1), -1]], _odd(w + 2))
        sh.line([[half(1), 1], [half(-1), -1]], _odd(w + 2))
        for y0, y1 in zip(ys[:-1], ys[1:]):
            sh.line([[-half(y1), y1], [half(y1), y1]], w)
            if c > 0.3:
                sh.line([[-half(y0), y0], [half(y1), y1]], w)
                sh.line([[half(y0), y0], [-half(y1), y1]], w)
        arm = rng.uniform(0.5, 0.9)
        sh.line([[-arm, -0.75], [arm, -0.75]], w)
        if c > 0.5:
            sh.line([[-arm * 0.7, -0.45], [arm * 0.7, -0.45]], w)
    return sh


def chain(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Chains of links, interlinked rings, spoked wheels and bicycles."""
    sh, kind = Shape(), rng.choice(["chain", "rings", "wheel", "bicycle"] if c > 0.4 else ["chain", "rings", "wheel"])
    w = _width(rng, 3, 5)
    if kind == "chain":
        ctrl = np.array([[-1, rng.uniform(-0.6, 0.6)], [0, rng.uniform(-0.8, 0.8)], [1, rng.uniform(-0.6, 0.6)]])
        path = _curve(ctrl, 40)
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        arc = np.concatenate([[0], np.cumsum(seg)])
        n = _count(px, arc[-1], 4 * w + 8, 4 + 8 * c)
        link = arc[-1] / n
        for i in range(n):
            s = (i + 0.5) * link
            p = np.array([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])])
            j = min(np.searchsorted(arc, s), len(seg))
            t = path[j] - path[j - 1]
            ang = np.degrees(np.arctan2(t[1], t[0]))
            if i % 2 == 0:
                sh.ellipse(p, (link * 0.68, link * 0.36), ang, w)
            else:
                d = np.array([np.cos(np.radians(ang)), np.sin(np.radians(ang))]) * link * 0.62
                sh.line([p - d, p + d], _odd(w + 2))
    elif kind == "rings":
        k = 2 + int(round(3 * c))
        r = 1.0 / (0.8 * k + 0.2)
        for i in range(k):
            sh.ellipse([-1 + r + i * 1.6 * r, (i % 2) * r * 0.8], (r, r), 0, w)
    else:
        wheels = [(0.0, 0.0, 1.0)] if kind == "wheel" else [(-1.0, 0.3, 0.55), (1.0, 0.3, 0.55)]
        for cx, cy, r in wheels:
            sh.ellipse([cx, cy], (r, r), 0, _odd(w + 2))
            sh.ellipse([cx, cy], (r * 0.12, r * 0.12), 0, -1)
            n = _count(px, 2 * np.pi * r, w + 8, 5 + 19 * c)
            for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 1):
                sh.line([[cx, cy], [cx + r * np.cos(a), cy + r * np.sin(a)]], MIN_WIDTH)
        if kind == "bicycle":
            seat, bar, crank = [-0.35, -0.4], [0.75, -0.55], [-0.05, 0.35]
            sh.line([[-1, 0.3], crank, seat, [-1, 0.3]], w, closed=False)
            sh.line([seat, [0.6, -0.4], crank], w)
            sh.line([[1, 0.3], bar], w)
            sh.line([[bar[0] - 0.15, bar[1] - 0.1], [bar[0] + 0.15, bar[1]]], w)
            sh.line([[seat[0] - 0.15, seat[1] - 0.08], [seat[0] + 0.12, seat[1] - 0.08]], _odd(w + 2))
    return sh


def legged(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Thin-legged objects: insects and spiders (top view), chairs and stools."""
    sh, kind = Shape(), rng.choice(["insect", "chair", "stool"])
    w = _width(rng, 3, 3 if c > 0.5 else 5)
    if kind == "insect":
        pairs = 3 if rng.random() < 0.6 else 4
        sh.ellipse([0.35, 0], (0.42, 0.2), 0, -1)
        sh.ellipse([-0.15, 0], (0.17, 0.13), 0, -1)
        sh.ellipse([-0.42, 0], (0.1, 0.1), 0, -1)
        for side in (-1, 1):
            for i in range(pairs):
                x0 = -0.25 + 0.18 * i
                knee = [x0 + rng.uniform(-0.3, 0.3), side * rng.uniform(0.35, 0.55)]
                pts = [[x0, 0], knee, [knee[0] + rng.uniform(-0.35, 0.35), side * rng.uniform(0.75, 1.0)]]
                if c > 0.5:
                    pts.append([pts[-1][0] + rng.uniform(-0.2, 0.2), pts[-1][1] + side * 0.12])
                sh.line(pts, w)
            sh.line(_curve(np.array([[-0.5, side * 0.05], [-0.75, side * 0.25], [-0.95, side * rng.uniform(0.3, 0.6)]])), MIN_WIDTH)
    elif kind == "chair":
        d = rng.uniform(0.15, 0.3)  # depth offset of the back legs
        sh.fill([[-0.6, 0.0], [0.5, 0.0], [0.5 + d, -0.15], [-0.6 + d, -0.15]])
        for x, y0 in [(-0.55, 0.0), (0.45, 0.0), (-0.55 + d, -0.15), (0.45 + d, -0.15)]:
            sh.line([[x, y0], [x + rng.uniform(-0.05, 0.05), 1.0 - (0.1 if y0 < 0 else 0)]], w)
        top = -rng.uniform(0.8, 1.0)
        sh.line([[-0.6 + d, -0.15], [-0.6 + d, top]], w)
        sh.line([[0.5 + d, -0.15], [0.5 + d, top]], w)
        sh.line([[-0.6 + d, top], [0.5 + d, top]], _odd(w + 2))
        for x in np.linspace(-0.6 + d, 0.5 + d, _count(px, 1.1, w + 6, 2 + 5 * c) + 2)[1:-1]:
            sh.line([[x, top], [x, -0.15]], w)
        if c > 0.4:
            sh.line([[-0.55, 0.6], [0.45, 0.6]], MIN_WIDTH)
    else:
        legs = 3 + int(c > 0.5)
        sh.ellipse([0, -0.8], (0.55, 0.14), 0, -1)
        feet = np.linspace(-0.9, 0.9, legs)
        for f in feet:
            sh.line([[f * 0.45, -0.75], [f, 1.0]], w)
        if c > 0.3:
            y = 0.3
            sh.line([[f * (0.45 + 0.55 * (y + 0.75) / 1.75), y] for f in feet], MIN_WIDTH)
    return sh


def holes(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Solid objects with holes: perforated plates, gears, keys, knots."""
    sh, kind = Shape(), rng.choice(["plate", "gear", "key", "knot"])
    if kind == "plate":
        a = rng.uniform(0.5, 1.0)
        sh.fill([[-1, -a], [1, -a], [1, a], [-1, a]])
        r = max(3.0, px * rng.uniform(0.02, 0.05)) / (px / 2)
        pitch = 2 * r + 7 / (px / 2)
        nx = int(max(1, min(2 + 8 * c, (2 - 2 * pitch / 2) / pitch)))
        ny = int(max(1, min(1 + 6 * c, (2 * a - pitch) / pitch)))
        for x in (np.arange(nx) - (nx - 1) / 2) * pitch:
            for y in (np.arange(ny) - (ny - 1) / 2) * pitch:
                sh.ellipse([x, y], (r, r), 0, -1, value=0)
    elif kind == "gear":
        teeth = 8 + int(12 * c)
        for k in range(teeth):
            a = 2 * np.pi * k / teeth
            d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            sh.fill([0.7 * d - 0.09 * n, 1.0 * d - 0.06 * n, 1.0 * d + 0.06 * n, 0.7 * d + 0.09 * n])
        sh.ellipse([0, 0], (0.8, 0.8), 0, -1)
        sh.ellipse([0, 0], (0.15, 0.15), 0, -1, value=0)
        for k in range(3 + int(4 * c)):
            a = 2 * np.pi * k / (3 + int(4 * c))
            sh.ellipse([0.48 * np.cos(a), 0.48 * np.sin(a)], (0.14, 0.14), 0, -1, value=0)
    elif kind == "key":
        sh.ellipse([-0.65, 0], (0.35, 0.3), 0, -1)
        sh.ellipse([-0.65, 0], (0.15, 0.12), 0, -1, value=0)
        sh.fill([[-0.35, -0.07], [1.0, -0.07], [1.0, 0.07], [-0.35, 0.07]])
        for x in np.linspace(0.3, 0.95, 2 + int(4 * c)):
            sh.fill([[x - 0.05, 0.05], [x + 0.05, 0.05], [x + 0.05, 0.05 + rng.uniform(0.1, 0.25)], [x - 0.05, 0.05 + 0.1]])
    else:
        a, b = rng.choice([(1, 2), (3, 2), (2, 3), (3, 4), (5, 4)][: 2 + int(3 * c)])
        t = np.linspace(0, 2 * np.pi, 200)
        sh.line(np.stack([np.sin(a * t + np.pi / 2 * rng.random()), np.sin(b * t)], 1), _width(rng, 5, 7), closed=True)
    return sh


def strokes(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Stroke and lattice patterns: scribbles, spirals, spider webs, glyph rows, honeycombs."""
    sh, kind = Shape(), rng.choice(["scribble", "spiral", "web", "glyphs", "honeycomb"])
    w = _width(rng, 3, 3 if c > 0.5 else 5)
    if kind == "scribble":
        sh.line(_curve(rng.uniform(-1, 1, (4 + int(8 * c), 2))), w)
    elif kind == "spiral":
        turns = 1.5 + 2.5 * c
        gap = (w + 5) / (px / 2)
        turns = min(turns, 1.0 / gap)
        t = np.linspace(0, 2 * np.pi * turns, int(80 * turns))
        r = t / (2 * np.pi * turns)
        sh.line(np.stack([r * np.cos(t), r * np.sin(t)], 1), w)
    elif kind == "web":
        n = 6 + int(8 * c)
        angles = np.sort(np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.normal(0, 0.1, n))
        radii = np.linspace(0.2, 1.0, _count(px, 0.8, w + 6, 3 + 6 * c) + 1)
        for a in angles:
            sh.line([[0, 0], [np.cos(a), np.sin(a)]], MIN_WIDTH)
        for r in radii:
            rr = r * rng.uniform(0.9, 1.0, n)
            sh.line(np.stack([rr * np.cos(angles), rr * np.sin(angles)], 1), MIN_WIDTH, closed=True)
    elif kind == "glyphs":
        n = 2 + int(5 * c)
        for i in range(n):
            x0 = -1 + 2 * i / n
            cell = 2 / n
            for _ in range(rng.integers(2, 4)):
                p = rng.uniform([x0, -0.5], [x0 + cell * 0.85, 0.5], (3, 2))
                sh.line(_curve(p, 6), w)
    else:
        sh.ellipse([0, 0], (1, 1), 0, -1)
        cell = max(w + 8, px * rng.uniform(0.08, 0.16) / (1 + c)) / (px / 2)
        r = cell / 2 - (w + 1) / px
        for row, y in enumerate(np.arange(-1, 1 + cell, cell * 0.87)):
            for x in np.arange(-1, 1 + cell, cell) + (row % 2) * cell / 2:
                if np.hypot(x, y) < 1 - cell * 0.6:
                    hexa = [[x + r * np.cos(a), y + r * np.sin(a)] for a in np.arange(6) * np.pi / 3 + np.pi / 6]
                    sh.fill(hexa, value=0)
    return sh


def blob(rng: np.random.Generator, px: float, c: float) -> Shape:
    """Large smooth salient objects (zero-shot HRSOD family): a smooth closed outline, maybe a handle or hole."""
    sh = Shape()
    t = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 5):
        r += rng.uniform(0, 0.25 / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    sh.fill(np.stack([r * np.cos(t), r * rng.uniform(0.6, 1.0) * np.sin(t)], 1))
    if rng.random() < 0.4:
        sh.ellipse([0.9, 0], (0.45, 0.35), 0, _odd(px * 0.05))
    if rng.random() < 0.3 * (1 + c):
        sh.ellipse(rng.uniform(-0.3, 0.3, 2), (0.18, 0.12), rng.uniform(0, 180), -1, value=0)
    return sh


Builder = Callable[[np.random.Generator, float, float], Shape]
FRAME_FAMILIES: dict[str, Builder] = {
    "tree": tree, "grid": grid, "chain": chain, "legged": legged, "holes": holes, "strokes": strokes,
}
FINE_PART_FAMILIES: dict[str, Builder] = {
    "critter": critter, "vessel": vessel, "perforated": perforated, "spiky": spiky, "gadget": gadget,
}
SMOOTH_FAMILIES: dict[str, Builder] = {"smooth": smooth}
FAMILIES: dict[str, Builder] = {**FRAME_FAMILIES, **FINE_PART_FAMILIES, **SMOOTH_FAMILIES}
UPRIGHT = {"tree", "legged", "critter", "vessel", "gadget", "smooth"}  # rotated only a little: they have a natural up
