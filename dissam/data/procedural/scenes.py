"""Procedural DIS-like data: scenes rendered directly at the working resolution, written in DIS5K layout.

What makes the refiner learn: every fine structure is >= 3 px wide where the network sees it (no
resizing between generation and training); each object's colour is chosen far from the ring of
background right around it, so a person sees every structure the GT marks; clutter and distractor lines
as thin as the objects' (some in an object's own colour) fill the rest of the image, so neither thinness
nor colour alone gives the answer.

Object mix of ``dis`` scenes (per object, :data:`MIX`; :func:`family_weights`): 45% solid bodies with
fine parts (:data:`~.shapes.FINE_PART_FAMILIES`: animals with legs and antennae, vessels with handle
rings, shapes with punched holes, spiky bodies, solid parts joined by thin poles), 20% smooth solids
(:data:`~.shapes.SMOOTH_FAMILIES`) and 35% thin frames (:data:`~.shapes.FRAME_FAMILIES`: trees, grids,
chains, thin-legged furniture, perforated plates, stroke patterns). Why these shares: DIS5K is mostly
photographs of everyday solid things (animals, plants, furniture, tools, vehicles, containers) whose
hard part is a few fine parts on a solid body; wire-like frames (fences, towers, nets, bicycles, chairs)
are a large minority and plain smooth solids a smaller one. The shares are a judgement from that
description, not a count. They are also what the refiner needs: trained on frames only (generator
version 1) it learned that objects are thin and returned the outline of stage 1's correct solid blob;
with about two thirds of the objects solid, keeping a blob's inside is the common case, while the thin
parts of most objects (which GrabCut misses) keep thin-structure recovery half of the task.

Appearance of ``dis`` scenes: backgrounds cropped from photographs bundled with scikit-image
(:mod:`.textures`; never the evaluation's "real photo" images) or synthetic palettes and gradients;
soft cast shadows (never in the GT); objects lit like solids (a shading ramp, photo-texture surface
detail, brighter or darker inside thick parts, sometimes two colours) in muted or vivid colours; uneven
multiplicative illumination; blur, sensor noise, sometimes a JPEG pass at quality 50-90, and JPEG
(quality 90) when written.

DIS5K-size images (``generate_dataset(..., image_wh=(W, H))``): each scene is rendered at the network
size as always, then upscaled to ``W`` x ``H`` (:func:`upscale_scene`), so the files have DIS5K's pixel
count (3000 x 2500 = 7.5 MP in ``dissam check``) while the content, and every default generation, stays
what it was, byte for byte. Used to measure the cost of the real loader, stage-1 cache and evaluation at
DIS5K size, not to train on.

Scenes (``render_scene``'s ``family``): ``dis`` (training/validation: 1-3 objects of the mix above,
complexity uniform in [0, 1]), ``dis-te1`` .. ``dis-te4`` (complexity in quarters [0, .25] .. [.75, 1]
and the mix tilted along :data:`COMPLEXITY_ORDER`, :func:`te_family_weights`: TE1 mostly smooth solids
and solids with fine parts, TE4 mostly frames, as DIS5K's TE sets grow in structural complexity; the four
together keep about the training mix), and the shifted zero-shot families ``coift`` (mid-size objects
with fine parts on smooth gradients), ``hrsod`` (large smooth salient objects) and ``thin`` (one centred
thin object on a plain background), which keep their synthetic look. A family name (``tree``,
``critter``, ...) gives a ``dis`` scene of that family only.
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..enrichment import connected_components, label_components
from .shapes import FAMILIES, FINE_PART_FAMILIES, FRAME_FAMILIES, SMOOTH_FAMILIES, UPRIGHT, blob, render_shape
from ..splits import DIS5K_SPLITS, TEST_SPLITS, TRAIN_SPLIT, VAL_SPLIT, ZERO_SHOT_SETS
from .textures import load_textures, photo_background, texture_detail, texture_source_id

GENERATOR_VERSION = 2


class DataConfig(Protocol):
    """What a procedural data set is made of (a dataclass; :class:`dissam.repro.config.DataConfig` is
    one): scene ``size`` (px), image counts per split, ``seed`` and the zero-shot sets to stand in for."""

    size: int
    n_train: int
    n_val: int
    n_test: int
    n_zero_shot: int
    seed: int
    zero_shot_sets: tuple[str, ...]
SCENES = ("dis", "dis-te1", "dis-te2", "dis-te3", "dis-te4", "coift", "hrsod", "thin")
ZERO_SHOT_SCENES = dict(zip(ZERO_SHOT_SETS, ("coift", "hrsod", "thin")))
SPLIT_SCENES = {TRAIN_SPLIT: "dis", VAL_SPLIT: "dis", **{s: f"dis-te{k}" for k, s in enumerate(TEST_SPLITS, 1)}}
MULTI_OBJECT_P = 0.45  # share of dis scenes with 2-3 disjoint objects
# Share of each object group in dis scenes (per object; why: module docstring).
MIX = {"fine": 0.45, "smooth": 0.20, "frames": 0.35}
_GROUPS = {"fine": FINE_PART_FAMILIES, "smooth": SMOOTH_FAMILIES, "frames": FRAME_FAMILIES}
# Families from simplest to most complex outline (mean contour length / sqrt(area) at 192 px, measured:
# 3.9 7.3 8.4 8.9 10.5 11.6 12.6 13.2 19.0 21.1 26.6 27.6). DIS-TE1 leans to the first, DIS-TE4 to the
# last; DIS-TR and DIS-VD draw them by MIX.
COMPLEXITY_ORDER = ("smooth", "gadget", "vessel", "perforated", "spiky", "holes", "critter", "tree", "chain",
                    "legged", "grid", "strokes")
# DIS-TE k weighs family f by MIX times exp(TE_TILT * (k - 2.5) * z_f), z from -1 (simplest) to 1: TE1's
# weights fall e^3 = 20-fold from the simplest to the most complex family, TE4's rise as much.
TE_TILT = 1.0


def family_weights() -> dict[str, float]:
    """Probability of each family for one object of a ``dis`` scene: a group's share of :data:`MIX`,
    split evenly among the group's families."""
    return {f: MIX[g] / len(fams) for g, fams in _GROUPS.items() for f in fams}


def te_family_weights(k: int) -> dict[str, float]:
    """Family probabilities of DIS-TE``k``: the ``dis`` mix tilted towards simple (k=1) or complex (k=4)
    outlines along :data:`COMPLEXITY_ORDER`; the four TE sets together keep roughly the training mix."""
    base = family_weights()
    z = np.linspace(-1, 1, len(COMPLEXITY_ORDER))
    w = np.array([base[f] for f in COMPLEXITY_ORDER]) * np.exp(TE_TILT * (k - 2.5) * z)
    return dict(zip(COMPLEXITY_ORDER, (w / w.sum()).tolist()))


# ------------------------------------------------------------------ backgrounds
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _field(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth random field in [0, 1], ``[S, S, channels]``."""
    small = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(size, size, channels), 0, 1)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = _colour(rng), _colour(rng)
    th = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    t = np.clip(0.5 + (xx * np.cos(th) + yy * np.sin(th)), 0, 1)[..., None]
    return (a * (1 - t) + b * t).astype(np.float32)


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """float32 ``[S, S, 3]`` in 0..255: ``plain``, ``gradient`` or ``textured`` (palette fields + texture)."""
    if kind == "plain":
        return np.ones((size, size, 3), np.float32) * _colour(rng) + 6 * (_field(rng, size, 6) - 0.5)
    if kind == "gradient":
        return _gradient(rng, size) + 8 * (_field(rng, size, 4) - 0.5)
    bg = _gradient(rng, size)
    for _ in range(rng.integers(1, 4)):  # palette patches blended by smooth fields
        w = _field(rng, size, int(rng.integers(3, 9)))
        w = np.clip((w - rng.uniform(0.4, 0.6)) * rng.uniform(3, 12) + 0.5, 0, 1)
        bg = bg * (1 - w) + _colour(rng) * w
    amp = rng.uniform(6, 30)
    if rng.random() < 0.5:  # mid-frequency texture: stripes or fine noise
        yy, xx = np.mgrid[0:size, 0:size]
        th, f = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
        tex = np.sin(f * (xx * np.cos(th) + yy * np.sin(th)))[..., None]
    else:
        tex = 2 * _field(rng, size, int(rng.integers(size // 8, size // 3 + 2))) - 1
    return (bg + amp * tex).astype(np.float32)


def _clutter_mask(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """One distractor: a straight or curved line as thin as the objects' strokes, or a blob."""
    m = np.zeros((size, size), np.uint8)
    w = int(rng.choice([3, 3, 5, 7] if size >= 128 else [3, 3, 5]))
    if kind == "line":
        p = (rng.uniform(-0.2, 1.2, (2, 2)) * size * 16).astype(np.int32)
        cv2.line(m, tuple(p[0]), tuple(p[1]), 255, w - 1, cv2.LINE_8, 4)
    elif kind == "curve":
        pts = rng.uniform(-0.1, 1.1, (4, 2)) * size
        t = np.linspace(0, 1, 40)[:, None]
        b = ((1 - t) ** 3 * pts[0] + 3 * (1 - t) ** 2 * t * pts[1] + 3 * (1 - t) * t ** 2 * pts[2] + t ** 3 * pts[3])
        cv2.polylines(m, [(b * 16).astype(np.int32)], False, 255, w - 1, cv2.LINE_8, 4)
    else:
        c = tuple(int(v) for v in rng.uniform(0, size, 2))
        ax = tuple(int(v) for v in rng.uniform(0.03, 0.15, 2) * size)
        cv2.ellipse(m, c, ax, rng.uniform(0, 180), 0, 360, 255, -1)
    return m


# ---------------------------------------------------------------------- objects
def _regions(rng: np.random.Generator, size: int, n: int, lo: float, hi: float, gap: int) -> list[tuple]:
    """``n`` disjoint pixel boxes ``gap`` px apart: one object is ``lo``-``hi`` of S wide and high, and 2-3
    objects share the image (a half each, or a half and two quarters)."""
    if n == 1:
        w, h = rng.uniform(lo, hi) * size, rng.uniform(lo, hi) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        return [(x0, y0, x0 + w, y0 + h)]
    vertical = rng.random() < 0.5
    cut = rng.uniform(0.35, 0.65) * size
    cells = [(0, 0, cut, size), (cut, 0, size, size)]
    if n == 3:  # one half, the other half in two quarters
        cut2 = rng.uniform(0.35, 0.65) * size
        cells = [cells[0], (cut, 0, size, cut2), (cut, cut2, size, size)]
    boxes = []
    for x0, y0, x1, y1 in cells:
        shrink = rng.uniform(0.0, 0.15, 4) * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
        box = (x0 + gap / 2 + shrink[0], y0 + gap / 2 + shrink[1], x1 - gap / 2 - shrink[2], y1 - gap / 2 - shrink[3])
        boxes.append(box if vertical else (box[1], box[0], box[3], box[2]))
    return boxes


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)


def _pick_colour(rng: np.random.Generator, ring_rgb: np.ndarray, n: int = 48, good: float = 70.0,
                 natural: bool = False) -> np.ndarray:
    """An object colour far (CIELAB, 5th percentile) from its ring of background; random among the good.
    ``natural``: first try candidates of random, often lower, saturation (the muted colours of photographs),
    and fall back to vivid ones when none of those is far enough."""
    ring = _lab(ring_rgb)[:: max(1, len(ring_rgb) // 400)]
    if natural:
        cands = rng.uniform(0, 255, (n, 3))
        grey = cands.mean(1, keepdims=True)
        cands = grey + (cands - grey) * rng.uniform(0.2, 1.0, (n, 1))
        score = np.percentile(np.linalg.norm(_lab(cands)[:, None, :] - ring[None], axis=2), 5, axis=1)
        ok = np.flatnonzero(score >= good)
        if ok.size:
            return cands[rng.choice(ok)]
    cands = rng.uniform(0, 255, (n, 3))
    d = np.linalg.norm(_lab(cands)[:, None, :] - ring[None], axis=2)
    score = np.percentile(d, 5, axis=1)
    ok = np.flatnonzero(score >= good)
    return cands[rng.choice(ok)] if ok.size else cands[np.argmax(score)]


def _scene_params(family: str) -> dict[str, Any]:
    dis = dict(c=(0.0, 1.0), multi=MULTI_OBJECT_P, bg="photo", clutter=True, size=(0.55, 0.95), weights=None)
    if family in FAMILIES:
        return {**dis, "families": [family]}
    if family == "dis":
        w = family_weights()
        return {**dis, "families": list(w), "weights": list(w.values())}
    if family in ("dis-te1", "dis-te2", "dis-te3", "dis-te4"):
        k = int(family[-1])
        w = te_family_weights(k)
        return {**dis, "families": list(w), "c": ((k - 1) / 4, k / 4), "weights": list(w.values())}
    if family == "coift":
        return dict(families=["legged", "tree", "chain", "grid"], c=(0.3, 0.9), multi=0.0, bg="gradient",
                    clutter=False, size=(0.45, 0.7))
    if family == "hrsod":
        return dict(families=["blob"], c=(0.0, 1.0), multi=0.25, bg="textured", clutter=True, size=(0.6, 0.9))
    if family == "thin":
        return dict(families=["tree", "grid", "chain", "strokes", "legged"], c=(0.4, 1.0), multi=0.0, bg="plain",
                    clutter=False, size=(0.7, 0.9), centred=True)
    raise ValueError(f"unknown scene family {family!r}; use one of {SCENES + tuple(FAMILIES)}")


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _far_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_de: float = 45.0) -> np.ndarray:
    """A random colour at least ``min_de`` (CIELAB) from every colour in ``avoid`` (best of 12 tries)."""
    cands = rng.uniform(0, 255, (12, 3))
    if not avoid:
        return cands[0]
    d = np.linalg.norm(_lab(cands)[:, None] - _lab(np.array(avoid))[None], axis=2).min(1)
    ok = np.flatnonzero(d >= min_de)
    return cands[ok[0]] if ok.size else cands[np.argmax(d)]


def _place_objects(rng: np.random.Generator, size: int, p: dict[str, Any], gap: int) -> list[np.ndarray]:
    n = 1 if rng.random() >= p["multi"] else int(rng.choice([2, 3], p=[0.7, 0.3]))
    if p.get("centred"):
        s = rng.uniform(*p["size"]) * size
        regions = [((size - s) / 2, (size - s) / 2, (size + s) / 2, (size + s) / 2)]
    else:
        regions = _regions(rng, size, n, *p["size"], gap=gap)
    objects: list[np.ndarray] = []
    for box in regions:
        fam = str(rng.choice(p["families"], p=p.get("weights")))
        builder = blob if fam == "blob" else FAMILIES[fam]
        px = min(box[2] - box[0], box[3] - box[1])
        angle = rng.normal(0, 8) if fam in UPRIGHT else rng.uniform(-180, 180)
        m = render_shape(builder(rng, px, rng.uniform(*p["c"])), size, box, angle)
        if m.any():
            objects.append(m)
    return objects


def _boxes_mask(size: int, masks: list[np.ndarray], pad: int) -> np.ndarray:
    """True inside the (padded) tight box of each mask."""
    out = np.zeros((size, size), bool)
    for m in masks:
        ys, xs = np.nonzero(m)
        out[max(0, ys.min() - pad):ys.max() + pad + 1, max(0, xs.min() - pad):xs.max() + pad + 1] = True
    return out


def _add_clutter(rng: np.random.Generator, img: np.ndarray, gt: np.ndarray, objects: list[np.ndarray],
                 colours: list[np.ndarray], count: int, ring_r: int) -> None:
    """Distractors, never inside the ring around an object. Near an object their colour differs from its
    colour (so no distractor seems to continue an object); blobs stay out of the object boxes; strokes in an
    object's own colour appear only outside the whole GT's box."""
    size = gt.shape[0]
    keep_out = cv2.dilate(gt, _disk(ring_r + 1)) > 0
    near = cv2.dilate(gt, _disk(4 * ring_r)) > 0
    in_boxes = _boxes_mask(size, objects, ring_r)
    for _ in range(count):
        kind = str(rng.choice(["line", "line", "curve", "blob"]))
        m = (_clutter_mask(rng, size, kind) > 0) & ~keep_out
        if kind == "blob":
            m &= ~in_boxes
        col = _far_colour(rng, colours) if (m & near).any() else _colour(rng)
        img[m] = col + rng.normal(0, 4, 3)
    if objects and rng.random() < 0.5:
        allowed = ~_boxes_mask(size, [gt], 3 * ring_r)
        for _ in range(int(rng.integers(1, 3))):
            m = (_clutter_mask(rng, size, str(rng.choice(["line", "curve"]))) > 0) & allowed
            img[m] = colours[int(rng.integers(len(colours)))]


def _paint(rng: np.random.Generator, img: np.ndarray, m: np.ndarray, col: np.ndarray, amp: float,
           second: np.ndarray | None = None) -> None:
    """Paint an object: its colour, a linear shading ramp across it, fine noise; optionally a second colour
    blended in by a smooth field (textured large objects)."""
    size = m.shape[0]
    ys, xs = np.nonzero(m)
    th = rng.uniform(0, 2 * np.pi)
    t = xs * np.cos(th) + ys * np.sin(th)
    t = (t - t.min()) / max(1.0, t.max() - t.min()) * 2 - 1
    pix = col + amp * t[:, None]
    if second is not None:
        w = _field(rng, size, int(rng.integers(3, 7)))[ys, xs]
        w = np.clip((w - 0.5) * 4 + 0.5, 0, 1)
        pix = pix * (1 - w) + (second + amp * t[:, None]) * w
    img[ys, xs] = pix + rng.normal(0, 3, pix.shape)


# ------------------------------------------------------------ photographic look
def _cast_shadow(rng: np.random.Generator, img: np.ndarray, gt: np.ndarray) -> None:
    """Darken the background under a soft, offset copy of the GT (a cast shadow; never part of the GT)."""
    size = gt.shape[0]
    dx, dy = rng.uniform(-1, 1, 2) * size / 24
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    shadow = cv2.warpAffine(gt.astype(np.float32) / 255, shift, (size, size))
    shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1.0, 3.0) * size / 96)
    img *= (1 - rng.uniform(0.25, 0.5) * shadow)[..., None]


def _paint_solid(rng: np.random.Generator, img: np.ndarray, m: np.ndarray, col: np.ndarray,
                 second: np.ndarray | None) -> None:
    """Paint an object like a lit solid: its colour with a shading ramp, surface detail from a photo
    texture, brighter or darker towards the inside of thick parts (thin parts keep the chosen colour),
    and sometimes a second colour in smooth patches."""
    size = m.shape[0]
    ys, xs = np.nonzero(m)
    th = rng.uniform(0, 2 * np.pi)
    t = xs * np.cos(th) + ys * np.sin(th)
    t = ((t - t.min()) / max(1.0, t.max() - t.min()) * 2 - 1)[:, None]
    pix = col + rng.uniform(4, 18) * t
    if second is not None:
        w = _field(rng, size, int(rng.integers(3, 7)))[ys, xs]
        w = np.clip((w - 0.5) * 4 + 0.5, 0, 1)
        pix = pix * (1 - w) + (second + rng.uniform(4, 18) * t) * w
    if rng.random() < 0.75:
        pix = pix + rng.uniform(4, 16) * texture_detail(rng, size)[ys, xs][:, None]
    depth = cv2.distanceTransform(m, cv2.DIST_L2, 3)[ys, xs]
    shade = 1 + rng.uniform(-0.15, 0.2) * (1 - np.exp(-depth / rng.uniform(3, 12)))
    img[ys, xs] = pix * shade[:, None] + rng.normal(0, 2, pix.shape)


def _lighting(rng: np.random.Generator, size: int) -> np.ndarray:
    """Multiplicative illumination ``[S, S, 1]``: a linear fall-off plus a soft low-frequency field."""
    th = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    ramp = (xx * np.cos(th) + yy * np.sin(th)).astype(np.float32)
    light = 1 + rng.uniform(0, 0.35) * ramp + rng.uniform(0, 0.25) * (_field(rng, size, 3)[..., 0] - 0.5)
    return light[..., None] * rng.uniform(0.85, 1.1)


def _finish(rng: np.random.Generator, img: np.ndarray, jpeg_p: float) -> np.ndarray:
    """Camera effects: blur, sensor noise and (sometimes) a stronger JPEG pass; uint8 RGB."""
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
    img += rng.normal(0, rng.uniform(1.5, 5.0), img.shape).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < jpeg_p:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91)),
                                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def _render_photo(rng: np.random.Generator, size: int, objects: list[np.ndarray], gt: np.ndarray,
                  p: dict[str, Any], ring_r: int) -> np.ndarray:
    """The photographic look of ``dis`` scenes: photo-texture or synthetic background, cast shadows, clutter,
    lit textured objects, uneven illumination, camera blur, noise and JPEG. Returns the uint8 image."""
    bg_kind = str(rng.choice(["photo", "textured", "gradient", "plain"], p=[0.55, 0.25, 0.12, 0.08]))
    img = photo_background(rng, size) if bg_kind == "photo" else _background(rng, size, bg_kind)
    if rng.random() < 0.4:
        _cast_shadow(rng, img, gt)
    colours, seconds = [], []
    for m in objects:  # each object's colour is far from the background right around it
        ring = (cv2.dilate(m, _disk(ring_r)) > 0) & (gt == 0)
        colours.append(_pick_colour(rng, img[ring], natural=True))
        seconds.append(_pick_colour(rng, img[ring], natural=True) if rng.random() < 0.25 else None)
    if p["clutter"]:
        _add_clutter(rng, img, gt, objects, colours, int(rng.integers(1, 3 + round(7 * p["c"][1]))), ring_r)
    for m, col, sec in zip(objects, colours, seconds):
        _paint_solid(rng, img, m, col, sec)
    img *= _lighting(rng, size)
    return _finish(rng, img, jpeg_p=0.35)


def render_scene(rng: np.random.Generator, size: int, family: str) -> tuple[np.ndarray, np.ndarray]:
    """One scene at ``size`` x ``size``: uint8 RGB image and uint8 GT (0/255). Deterministic given ``rng``."""
    p = _scene_params(family)
    ring_r = max(3, round(size / 48))
    objects: list[np.ndarray] = []
    while not objects:  # an object too small to keep a 3 px part is dropped; a scene has at least one
        objects = _place_objects(rng, size, p, gap=2 * ring_r + 4)
    gt = np.zeros((size, size), np.uint8)
    for m in objects:
        gt |= m
    render = _render_photo if p["bg"] == "photo" else _render_synthetic
    return render(rng, size, objects, gt, p, ring_r), gt


def _render_synthetic(rng: np.random.Generator, size: int, objects: list[np.ndarray], gt: np.ndarray,
                      p: dict[str, Any], ring_r: int) -> np.ndarray:
    """The synthetic look of the zero-shot families (unchanged since generator version 1: the same scenes,
    byte for byte): palette or gradient background, flat-coloured objects, blur and noise."""
    hrsod = p["families"] == ["blob"]
    img = _background(rng, size, p["bg"])
    colours, seconds = [], []
    for m in objects:  # each object's colour is far from the background right around it
        ring = (cv2.dilate(m, _disk(ring_r)) > 0) & (gt == 0)
        colours.append(_pick_colour(rng, img[ring]))
        seconds.append(_pick_colour(rng, img[ring]) if hrsod else None)
    if p["clutter"]:
        _add_clutter(rng, img, gt, objects, colours, int(rng.integers(2, 4 + round(10 * p["c"][1]))), ring_r)
    for m, col, sec in zip(objects, colours, seconds):
        _paint(rng, img, m, col, rng.uniform(5, 30 if hrsod else 14), sec)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.6))
    img += rng.normal(0, rng.uniform(1.5, 4.0), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def solid_core_fraction(gt: np.ndarray) -> float:
    """Share of the largest GT component's area in parts at least about S/12 px thick (what an opening
    with a disk of radius S/24 keeps): near 1 for solid objects, near 0 for thin frames."""
    labels, order, _ = label_components(gt)
    if not order:
        return 0.0
    comp = (labels == order[0]).astype(np.uint8)
    core = cv2.morphologyEx(comp, cv2.MORPH_OPEN, _disk(max(2, round(gt.shape[0] / 24))))
    return float(core.sum() / comp.sum())


# ------------------------------------------------------------------ data sets
def split_plan(cfg: DataConfig) -> dict[str, tuple[str, int]]:
    """Split folder -> (scene family, image count) for a config."""
    plan = {s: (SPLIT_SCENES[s], n) for s, n in zip(DIS5K_SPLITS, [cfg.n_train, cfg.n_val] + [cfg.n_test] * 4)}
    for name in cfg.zero_shot_sets:
        if name not in ZERO_SHOT_SCENES:
            raise ValueError(f"no procedural family stands in for zero-shot set {name!r}; "
                             f"known: {', '.join(ZERO_SHOT_SCENES)}")
        plan[name] = (ZERO_SHOT_SCENES[name], cfg.n_zero_shot)
    return plan


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-scene generator from (seed, split, index): results do not depend on worker count or order."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def stem_for(split: str, index: int) -> str:
    return f"{split.lower()}-{index:05d}"


def upscale_scene(image: np.ndarray, gt: np.ndarray, image_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A scene at ``image_wh`` = (W, H): the image resized bilinearly (uint8 ``[H, W, 3]``), the GT resized
    bilinearly and thresholded at 128 (uint8 0/255 ``[H, W]``), so its components stay those of the scene."""
    width, height = (int(v) for v in image_wh)
    big = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(gt, (width, height), interpolation=cv2.INTER_LINEAR)
    return big, np.where(mask >= 128, 255, 0).astype(np.uint8)


def _write_one(task: tuple) -> int:
    root, split, family, index, seed, size, image_wh = task
    image, gt = render_scene(scene_rng(seed, split, index), size, family)
    if image_wh is not None:
        image, gt = upscale_scene(image, gt, image_wh)
    stem = stem_for(split, index)
    cv2.imwrite(str(Path(root) / split / "im" / f"{stem}.jpg"), image[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    cv2.imwrite(str(Path(root) / split / "gt" / f"{stem}.png"), gt)
    return len(connected_components(gt))


def _config_key(cfg: DataConfig, image_wh: tuple[int, int] | None = None) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("root", None)
    d["zero_shot_sets"] = list(d["zero_shot_sets"])
    if image_wh is not None:  # absent by default: the manifests of network-size data are unchanged
        d["image_wh"] = [int(v) for v in image_wh]
    return {"generator": GENERATOR_VERSION, "textures": texture_source_id(), **d}


def _complete(root: Path, plan: dict[str, tuple[str, int]]) -> bool:
    for split, (_, n) in plan.items():
        for sub, ext in (("im", "jpg"), ("gt", "png")):
            if any(not (root / split / sub / f"{stem_for(split, i)}.{ext}").is_file() for i in range(n)):
                return False
    return True


def generate_dataset(root: Path, cfg: DataConfig, progress: bool = True, workers: int | None = None,
                     image_wh: tuple[int, int] | None = None) -> dict:
    """Write every split of ``cfg`` under ``root`` (DIS5K layout) and ``root/dataset.json``; returns its summary.

    ``image_wh`` = (W, H): scenes rendered at ``cfg.size`` are written at W x H (:func:`upscale_scene`;
    DIS5K size, e.g. (3000, 2500)); None (default) writes them at ``cfg.size``, as always.
    Idempotent: with a matching ``dataset.json`` and all files present nothing is redone (``reused`` True).
    """
    root = Path(root)
    plan = split_plan(cfg)
    manifest = root / "dataset.json"
    image_wh = None if image_wh is None else (int(image_wh[0]), int(image_wh[1]))
    key = _config_key(cfg, image_wh)
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("config") == key and _complete(root, plan):
            return {**old, "reused": True}
    t0 = time.perf_counter()
    tasks = []
    for split, (family, n) in plan.items():
        for sub in ("im", "gt"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
            for f in (root / split / sub).glob(f"{split.lower()}-*.*"):  # our own leftovers of a bigger config
                if int(f.stem.rsplit("-", 1)[-1]) >= n:
                    f.unlink()
        tasks += [(str(root), split, family, i, cfg.seed, cfg.size, image_wh) for i in range(n)]
    workers = workers if workers is not None else (2 if len(tasks) > 60 else 1)
    load_textures()  # once, before the workers fork: they share it
    it: Any
    if workers > 1:
        pool = get_context("fork").Pool(workers)
        it = pool.imap(_write_one, tasks, chunksize=8)
    else:
        pool, it = None, map(_write_one, tasks)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, total=len(tasks), desc="procedural data")
    comps = list(it)
    if pool is not None:
        pool.close()
        pool.join()
    splits, k = {}, 0
    for split, (family, n) in plan.items():
        c = comps[k:k + n]
        k += n
        hist = {str(v): c.count(v) for v in sorted(set(c))}
        splits[split] = {"family": family, "images": n, "components_hist": hist,
                         "multi_object_fraction": round(sum(v > 1 for v in c) / max(1, n), 4)}
    summary = {"config": key, "splits": splits, "seconds": round(time.perf_counter() - t0, 2), "reused": False}
    manifest.write_text(json.dumps(summary, indent=1))
    return summary
