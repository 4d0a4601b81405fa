"""Every figure: the paper's Figures 1-5, the data, stage-1 and training figures, the real-photo figure,
Table III as a plot and a zero-shot figure, regenerated from real intermediate outputs.

Two levels. Drawing functions take arrays (``grid``, ``enrichment_figure``,
``qualitative_grid``, ``pipeline_figure``, ``multi_box_figure``, ``training_curves``, ``sample_grid``,
``photos_figure``, ``ablation_bars``, and ``changes_figure`` with the tables beside it, ``change_table`` and
``soft_map_table``; the pixel-level ``overlay``, ``cutout`` and ``on_checkerboard`` are
:mod:`dissam.outputs`', re-exported here). Profile functions (``figure_one`` ... ``figure_five``,
``figure_one_changes``, ``stage1_examples``, ``training_figure``, ``real_photos``, ``ablation_plot``, ``zero_shot_figure``) pick
the examples from a profile's data, runs and predictions (:mod:`dissam.repro.runs`) and write the PNG into
``profile.figures_dir``. Every function returns a matplotlib Figure (no pyplot state; matplotlib loads on
first use) and saves it when given a path.

The last section draws one example of a step, computed by a notebook's own cells (``components_figure``,
``input_panels``, ``feature_pairs_figure``, ``score_curves_figure``, ``hce_figure``): one GT's components,
one sample's input channels, the feature pairs of the feature loss, one image's F/E curves and the points
HCE counts (:func:`dissam.metrics.hce.hce_regions`). They take arrays and write no file.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np
import pandas as pd

from ..data.enrichment import Component, enrich_mask, label_components
from ..data.folders import list_pairs
from ..data.images import read_image, read_mask
from ..data.prompts import Box, box_channel, box_from_mask
from ..data.splits import TRAIN_SPLIT, VAL_SPLIT
from ..metrics import DISMetrics, ImageResult
from ..metrics.hce import HCERegions
from ..outputs import BOX_COLOUR, box_edges, cutout, on_checkerboard, overlay
from . import runs, stages
from .config import Profile, split_dir
from .evaluate import evaluate_method
from .real_photos import run_photos
from .tables import ablation_flags, paper_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60)], np.float32)


# ----------------------------------------------------------------------------- drawing
def _figure(figsize: tuple[float, float]) -> "Figure":
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    return Figure(figsize=figsize)


def _save(fig: "Figure", path: str | Path | None) -> "Figure":
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _finish(fig: "Figure", path: str | Path | None, title: str = "") -> "Figure":
    """A figure of plots: its title, a tight layout, saved to ``path`` when given."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _show(ax, image: np.ndarray, title: str = "", box: Box | None = None, cmap: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(image, cmap=cmap, vmin=0, vmax=255 if image.dtype == np.uint8 else 1, interpolation="nearest")
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.2))
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def grid(rows: list[list[tuple]], path: str | Path | None = None,
         column_titles: Sequence[str] | None = None, cell: float = 2.0) -> "Figure":
    """A plain image grid: ``rows`` of (image, caption) or (image, caption, box) panels (grayscale masks
    or RGB; a box (x0, y0, x1, y1) is drawn as a yellow rectangle)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = _figure((cell * n_cols, cell * n_rows + 0.3))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                image, caption, *box = row[c]
                title = (column_titles[c] + "\n" if column_titles and r == 0 else "") + caption
                _show(axes[r, c], image, title, box[0] if box else None, cmap="gray" if image.ndim == 2 else None)
            else:
                axes[r, c].set_axis_off()
    return _save(fig, path)


def enrichment_figure(image: np.ndarray, gt: np.ndarray, components: list[Component],
                      path: str | Path | None = None, max_parts: int = 5) -> "Figure":
    """Fig. 2: one GT split into its connected components, each a training sample with its own box."""
    parts = components[:max_parts]
    fig = _figure((2.3 * (2 + len(parts)), 2.6))
    axes = fig.subplots(1, 2 + len(parts), squeeze=False)[0]
    _show(axes[0], image, "image")
    _show(axes[1], gt, f"GT ({len(components)} components)", cmap="gray")
    for ax, comp in zip(axes[2:], parts):
        colour = PALETTE[comp.index % len(PALETTE)] if comp.index >= 0 else PALETTE[0]
        _show(ax, overlay(image, comp.mask.astype(np.uint8) * 255, colour), f"sample {comp.index + 1}", comp.box)
    fig.suptitle("GT enrichment: one (image, component, box) sample per connected component", fontsize=9)
    return _save(fig, path)


def qualitative_grid(images: list[np.ndarray], columns: dict[str, list[np.ndarray]], gts: list[np.ndarray],
                     path: str | Path | None = None, scores: dict[str, list[float]] | None = None,
                     labels: Sequence[str] | None = None) -> "Figure":
    """Fig. 3 / Fig. 5: image | one column per method | GT, masks as grayscale (HCE under each, if given;
    ``labels`` under the images)."""
    rows = []
    for i, image in enumerate(images):
        row = [(image, labels[i] if labels else "")]
        for name, masks in columns.items():
            caption = f"HCE {scores[name][i]:.0f}" if scores and name in scores else ""
            row.append((masks[i], caption))
        row.append((gts[i], ""))
        rows.append(row)
    return grid(rows, path, column_titles=["image", *columns, "GT"])


def pipeline_figure(image: np.ndarray, box: Box, coarse: np.ndarray, prob: np.ndarray, gt: np.ndarray | None,
                    path: str | Path | None = None) -> "Figure":
    """Fig. 1: (image, box) -> stage-1 coarse mask -> 5-channel refiner input -> refined mask."""
    box_img = box_channel(box, *image.shape[:2])
    panels = [(image, "image + box prompt", box), (coarse, "stage 1: coarse mask", None),
              (box_img, "filled box channel", None), (prob, "stage 2: refined", None)]
    if gt is not None:
        panels.append((gt, "ground truth", None))
    fig = _figure((2.4 * len(panels), 2.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (im, title, b) in zip(axes, panels):
        _show(ax, im, title, b, cmap="gray" if im.ndim == 2 else None)
    fig.suptitle("DIS-SAM: stage 1 (frozen, box-prompted) -> IS-Net refiner on concat(RGB, mask, box)", fontsize=9)
    return _save(fig, path)


GREY = (0.1, 0.9)  # a refined probability in this open interval is "grey": neither object nor background
# Where the refined mask differs from stage 1's, judged against the GT: name -> colour of the change panel.
CHANGE_COLOURS = {"added, right": (60, 200, 75), "added, wrong": (230, 25, 75),
                  "removed, right": (0, 130, 200), "removed, wrong": (245, 165, 0)}


def refinement_changes(coarse: np.ndarray, mask: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """bool ``[H, W]`` maps of where the refined ``mask`` differs from stage 1's ``coarse`` mask (both
    uint8, foreground > 127), named as :data:`CHANGE_COLOURS`: "added" pixels are the refined mask's
    only, "removed" stage 1's only; "right" when the change agrees with ``gt`` (> 127), else "wrong"."""
    before, after, truth = np.asarray(coarse) > 127, np.asarray(mask) > 127, np.asarray(gt) > 127
    added, removed = after & ~before, before & ~after
    return {"added, right": added & truth, "added, wrong": added & ~truth,
            "removed, right": removed & ~truth, "removed, wrong": removed & truth}


def change_table(coarse: np.ndarray, mask: np.ndarray, gt: np.ndarray) -> pd.DataFrame:
    """Pixel counts of :func:`refinement_changes`, one row per kind of change, and each as a share (%) of
    the GT's foreground (how much of the object the refiner corrected or broke)."""
    changes = refinement_changes(coarse, mask, gt)
    object_px = max(int((np.asarray(gt) > 127).sum()), 1)
    counts = [int(m.sum()) for m in changes.values()]
    return pd.DataFrame({"change": list(changes), "pixels": counts,
                         "% of the object": [round(100 * c / object_px, 1) for c in counts]})


def structure_regions(gt: np.ndarray, thin_px: int = 5, band_px: int = 2) -> dict[str, np.ndarray]:
    """bool ``[H, W]`` regions of a GT (> 127): "thin parts" (object pixels that an opening with a
    ``thin_px`` x ``thin_px`` ellipse removes: wires, legs, twigs narrower than about ``thin_px`` pixels,
    and the tips of sharp corners),
    "outline" (within ``band_px`` pixels of the GT's outline, thin parts excluded) and "elsewhere"
    (solid interior and plain background)."""
    inside = (np.asarray(gt) > 127).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thin_px, thin_px))
    thin = inside.astype(bool) & ~cv2.morphologyEx(inside, cv2.MORPH_OPEN, kernel).astype(bool)
    square = np.ones((2 * band_px + 1, 2 * band_px + 1), np.uint8)
    band = (cv2.dilate(inside, square) > 0) & ~(cv2.erode(inside, square) > 0) & ~thin
    return {"thin parts": thin, "outline": band, "elsewhere": ~(thin | band)}


def soft_map_table(prob: np.ndarray, gt: np.ndarray, grey: tuple[float, float] = GREY) -> pd.DataFrame:
    """Where a refined probability map (uint8 0..255) is grey (strictly inside ``grey``, as probabilities):
    per region of :func:`structure_regions`, its pixels, the share (%) of them that are grey and their
    mean probability."""
    p = np.asarray(prob, np.float32) / 255.0
    is_grey = (p > grey[0]) & (p < grey[1])
    rows = []
    for name, region in structure_regions(gt).items():
        n = int(region.sum())
        rows.append({"region": name, "pixels": n,
                     "% grey": round(100 * float(is_grey[region].mean()), 1) if n else 0.0,
                     "mean prob": round(float(p[region].mean()), 3) if n else float("nan")})
    return pd.DataFrame(rows)


def changes_figure(image: np.ndarray, coarse: np.ndarray, prob: np.ndarray, mask: np.ndarray, gt: np.ndarray,
                   path: str | Path | None = None) -> "Figure":
    """Where refined and stage 1 differ, for masks that look alike side by side: stage 1 | the refined map
    (soft, as the network gives it) | |refined - stage 1| (the soft difference, 0..1) | the changes of
    :func:`refinement_changes` painted on the dimmed image (colours of :data:`CHANGE_COLOURS`) | GT."""
    from matplotlib.patches import Patch

    diff = np.abs(np.asarray(prob, np.float32) - np.asarray(coarse, np.float32)) / 255.0
    painted = overlay(image, None, dim=0.35).astype(np.float32)
    for name, where in refinement_changes(coarse, mask, gt).items():
        painted[where] = CHANGE_COLOURS[name]
    fig = _figure((12.5, 3.1))
    axes = fig.subplots(1, 5)
    _show(axes[0], coarse, "stage 1: coarse mask", cmap="gray")
    _show(axes[1], prob, "refined (soft map)", cmap="gray")
    axes[2].imshow(diff, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    axes[2].set_title("|refined - stage 1|", fontsize=8)
    axes[2].set_axis_off()
    _show(axes[3], painted.astype(np.uint8), "changes against the GT")
    _show(axes[4], gt, "ground truth", cmap="gray")
    handles = [Patch(color=np.array(c) / 255, label=name) for name, c in CHANGE_COLOURS.items()]
    axes[3].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2, fontsize=7,
                   frameon=False, handlelength=1.2, columnspacing=0.8)
    fig.suptitle("Fig. 1's example: what the refiner changed in stage 1's mask", fontsize=9)
    return _save(fig, path)


def multi_box_figure(image: np.ndarray, boxes: list[Box], coarse: list[np.ndarray], refined: list[np.ndarray],
                     path: str | Path | None = None) -> "Figure":
    """Fig. 4: one image, several boxes; the refined mask follows each box."""
    fig = _figure((2.4 * len(boxes), 5.0))
    axes = fig.subplots(2, len(boxes), squeeze=False)
    for i, (box, c, r) in enumerate(zip(boxes, coarse, refined)):
        colour = PALETTE[i % len(PALETTE)]
        _show(axes[0, i], overlay(image, c, colour), f"box {i + 1}: stage 1", box)
        _show(axes[1, i], overlay(image, r, colour), f"box {i + 1}: refined", box)
    return _save(fig, path)


def training_curves(history: list[dict[str, float]], path: str | Path | None = None,
                    reference: dict[str, float] | None = None, title: str = "") -> "Figure":
    """Loss terms (smoothed), validation maxF and validation MAE, each against training iterations
    (``history``: a run's records, ``iteration`` and the loss terms each, ``val_maxF``/``val_MAE`` where
    it was validated); ``reference``: e.g. stage 1's own maxF/MAE, drawn as dashed lines."""
    fig = _figure((10, 3.2))
    ax_loss, ax_f, ax_mae = fig.subplots(1, 3)
    its = [h["iteration"] for h in history]
    for term in ("total", "bce", "iou", "feature"):
        values = [h.get(term) for h in history]
        if any(v is not None for v in values):
            ax_loss.plot(its, _smooth([v or 0.0 for v in values]), label=term, lw=1)
    ax_loss.set_yscale("log")
    ax_loss.set_title("training losses (smoothed)", fontsize=9)
    ax_loss.legend(fontsize=7)
    val = [h for h in history if "val_maxF" in h]
    for ax, key in ((ax_f, "maxF"), (ax_mae, "MAE")):
        ax.plot([h["iteration"] for h in val], [h[f"val_{key}"] for h in val], "o-", ms=3, label="refined (val)")
        if reference and key in reference:
            ax.axhline(reference[key], ls="--", c="gray", label="stage 1 alone")
        ax.set_title(f"validation {key}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in (ax_loss, ax_f, ax_mae):
        ax.set_xlabel("iteration")
        ax.set_xlim(0, max(its, default=1))
    return _finish(fig, path, title)


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(np.pad(v, (window - 1, 0), mode="edge"), kernel, mode="valid")


def sample_grid(root: str | Path, split: str, n: int = 12, path: str | Path | None = None,
                segmenter: Any = None) -> "Figure":
    """``n`` images of ``root/split``: image | GT | ``segmenter``'s mask from the box (with IoU; the
    profile's stage 1, :func:`dissam.repro.stages.build_stage1`, shows what training sees; None: no
    third column); each mask is shown by darkening everything outside it. The box is the tight box of
    the whole GT."""
    pairs = list_pairs(Path(root) / split)[:n]
    cols = 3 if segmenter is not None else 2
    fig = _figure((2.4 * cols, 2.4 * len(pairs)))
    axes = fig.subplots(len(pairs), cols, squeeze=False)
    for row, pair in zip(axes, pairs):
        image, gt = pair.load()
        box = box_from_mask(gt)
        panels = [(image, pair.stem, None), (overlay(image, gt, None, dim=0.22), "GT", box)]
        if segmenter is not None:
            coarse = segmenter(image, box)
            inter = np.logical_and(coarse > 127, gt > 127).sum()
            union = np.logical_or(coarse > 127, gt > 127).sum()
            panels.append((overlay(image, coarse, None, dim=0.22), f"stage 1 IoU {inter / max(union, 1):.2f}", box))
        for ax, (im, title, b) in zip(row, panels):
            _show(ax, im, title, b)
    return _finish(fig, path)


def photos_figure(results: list[dict], path: str | Path | None = None) -> "Figure":
    """One row per photo (``results`` of :func:`dissam.repro.real_photos.run_photos`): the photo with its
    box, then for each stage 1 its mask and the refined mask, the published IS-Net on the whole image
    when there, and the cut-out (refined mask as alpha) of the last stage 1."""
    rows, titles = [], ["photo + box"]
    for r in results:
        shown = r["image"].copy()
        preds = r["predictions"]
        shown[box_edges(shown.shape[:2], next(iter(preds.values())).box, 3)] = BOX_COLOUR
        row = [(shown, r["photo"].name)]
        for label, pred in preds.items():
            row += [(pred.coarse, ""), (pred.mask, "")]
        if r["whole"] is not None:
            row.append((r["whole"], ""))
        row.append((on_checkerboard(cutout(r["image"], pred.mask)), ""))
        rows.append(row)
    labels = list(results[0]["predictions"]) if results else []
    for label in labels:
        titles += [label, f"refined ({label})"]
    if results and results[0]["whole"] is not None:
        titles.append("IS-Net, whole image")
    titles.append(f"cut-out, refined ({labels[-1]})" if labels else "cut-out")
    return grid(rows, path, column_titles=titles, cell=2.3)


def ablation_bars(ours: pd.DataFrame, paper: pd.DataFrame, path: str | Path | None = None,
                  ours_label: str = "ours", title: str = "") -> "Figure":
    """Table III as a plot: maxF and HCE (log scale) of each (enrichment, box, mask) row, the paper's bar
    beside ours. ``ours``: Table III's long rows (method, enrichment, box, mask, metrics); ``paper``:
    :func:`dissam.repro.tables.paper_rows` of Table III, matched to ours by their check marks."""
    key = lambda flags: (bool(flags["enrichment"]), bool(flags["box"]), bool(flags["mask"]))  # noqa: E731
    by_flags = {key(ablation_flags(row["method"])): row for _, row in paper.iterrows()}
    matched = [by_flags.get(key(row)) for _, row in ours.iterrows()]
    fig = _figure((10, 3.4))
    x, width = np.arange(len(ours)), 0.38
    for ax, metric in zip(fig.subplots(1, 2), ("maxF", "HCE")):
        paper_values = [np.nan if row is None else row[metric] for row in matched]
        ax.bar(x - width / 2, paper_values, width, label="paper (DIS5K)", color="#999999")
        ax.bar(x + width / 2, ours[metric], width, label=ours_label, color="#1f77b4")
        ax.set_xticks(x, [_wrap(m) for m in ours["method"]], fontsize=7)
        if metric == "HCE":
            ax.set_yscale("log")
            ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the legend above the bars
        else:
            ax.set_ylim(0, 1.2)
        ax.set_title(f"{metric} {'↑' if metric == 'maxF' else '↓ (log scale)'} on {VAL_SPLIT}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncols=2)
    return _finish(fig, path, title)


def _wrap(label: str, width: int = 14) -> str:
    """A row label broken into lines of about ``width`` characters, for tick labels."""
    import textwrap

    return "\n".join(textwrap.wrap(label, width)) or label


# ----------------------------------------------------------------------------- examples of a profile
def _image_and_gt(profile: Profile, split: str, stem: str) -> tuple[np.ndarray, np.ndarray]:
    folder = split_dir(profile, split)
    return read_image(next((folder / "im").glob(f"{stem}.*")), exif_orientation=False), read_mask(folder / "gt" / f"{stem}.png")


def pick_examples(profile: Profile, split: str, n: int, method: str = runs.MAIN) -> list[str]:
    """The ``n`` images where the method improves most on stage 1 (by MAE): where the effect is visible."""
    ours, base = runs.predictions(profile, method, split), runs.predictions(profile, runs.STAGE1, split)
    gain = []
    for pair in list_pairs(split_dir(profile, split)):
        gt = read_mask(pair.gt_path).astype(np.float32) / 255
        err = lambda p: np.abs(p.astype(np.float32) / 255 - gt).mean()  # noqa: E731
        gain.append((err(base[pair.stem]) - err(ours[pair.stem]), pair.stem))
    return [stem for _, stem in sorted(gain, reverse=True)[:n]]


def _hce(pred: np.ndarray, gt: np.ndarray) -> float:
    m = DISMetrics()
    m.step(pred, gt)
    return m.results()["HCE"]


def method_grid(profile: Profile, items: list[tuple[str, str]], methods: dict[str, str],
                path: str | Path | None = None, labels: Sequence[str] | None = None) -> "Figure":
    """Fig. 3 / Fig. 5: image | each method's mask (HCE under it) | GT, one row per (split, stem) of ``items``."""
    loaded = [_image_and_gt(profile, split, stem) for split, stem in items]
    preds: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # one read of a split per method, not per image
    columns = {}
    for label, method in methods.items():
        for split in dict.fromkeys(split for split, _ in items):
            preds[method, split] = runs.predictions(profile, method, split)
        columns[label] = [preds[method, split][stem] for split, stem in items]
    gts = [gt for _, gt in loaded]
    scores = {label: [_hce(p, gt) for p, gt in zip(columns[label], gts)] for label in methods}
    return qualitative_grid([image for image, _ in loaded], columns, gts, path, scores, labels)


def _model(profile: Profile, model: Any):
    """``model``, else the profile's main refiner with its stage 1, as users run it."""
    return model if model is not None else stages.profile_predictor(profile)


# ----------------------------------------------------------------------------- the figures of a profile
def figure_one_example(profile: Profile, model: Any = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """(image, GT, :class:`dissam.predictor.Prediction` for the GT's box) of Fig. 1: the validation image
    where the refiner helps most."""
    image, gt = _image_and_gt(profile, VAL_SPLIT, pick_examples(profile, VAL_SPLIT, 1)[0])
    return image, gt, _model(profile, model).predict(image, box_from_mask(gt))


def figure_one(profile: Profile, model: Any = None) -> "Figure":
    """Fig. 1 on the validation image where the refiner helps most."""
    image, gt, pred = figure_one_example(profile, model)
    return pipeline_figure(image, pred.box, pred.coarse, pred.prob, gt, profile.figures_dir / "fig1_pipeline.png")


def figure_one_changes(profile: Profile, model: Any = None) -> tuple[pd.DataFrame, pd.DataFrame, "Figure"]:
    """Fig. 1's example read closely: where its refined map is grey (:func:`soft_map_table`), what the
    refiner changed in stage 1's mask (:func:`change_table`) and the change panel (:func:`changes_figure`,
    ``fig1_changes.png``)."""
    image, gt, pred = figure_one_example(profile, model)
    figure = changes_figure(image, pred.coarse, pred.prob, pred.mask, gt, profile.figures_dir / "fig1_changes.png")
    return soft_map_table(pred.prob, gt), change_table(pred.coarse, pred.mask, gt), figure


def figure_two(profile: Profile, split: str = TRAIN_SPLIT) -> "Figure":
    """Fig. 2 on the training image with the most components (ties: the first)."""
    best, best_parts = None, []
    for pair in list_pairs(split_dir(profile, split))[:200]:
        parts = enrich_mask(read_mask(pair.gt_path), profile.variant.enrichment)
        if len(parts) > len(best_parts):
            best, best_parts = pair, parts
    image, gt = best.load()
    return enrichment_figure(image, gt, best_parts, profile.figures_dir / "fig2_enrichment.png")


def figure_three(profile: Profile, n: int = 4) -> "Figure":
    """Fig. 3: stage 1, IS-Net and DIS-SAM on the validation images where DIS-SAM helps most."""
    methods = {runs.stage1_label(profile): runs.STAGE1, "IS-Net": runs.isnet_row(profile)[1], "DIS-SAM": runs.MAIN}
    items = [(VAL_SPLIT, stem) for stem in pick_examples(profile, VAL_SPLIT, n)]
    return method_grid(profile, items, methods, profile.figures_dir / "fig3_qualitative.png")


def figure_four(profile: Profile, model: Any = None, max_boxes: int = 4) -> "Figure":
    """Fig. 4: a multi-object validation image, one box per object, then one around all of them."""
    model = _model(profile, model)
    best, parts = None, []
    for pair in list_pairs(split_dir(profile, VAL_SPLIT)):
        gt = read_mask(pair.gt_path)
        min_area = 0.01 * gt.size  # whole objects, not specks
        comps = [c for c in enrich_mask(gt) if c.mask.sum() >= min_area]
        if len(comps) > len(parts):
            best, parts = pair, comps
    image, gt = best.load()
    boxes = [c.box for c in parts[:max_boxes - 1]] + [box_from_mask(gt)]
    preds = [model.predict(image, b) for b in boxes]
    return multi_box_figure(image, boxes, [p.coarse for p in preds], [p.mask for p in preds],
                            profile.figures_dir / "fig4_boxes.png")


def figure_five(profile: Profile, n: int = 3) -> "Figure":
    """Fig. 5: the five Table III runs on the validation images where the box+mask+enrichment run helps most."""
    items = [(VAL_SPLIT, stem) for stem in pick_examples(profile, VAL_SPLIT, n, method=runs.DISSAM_SHORT_RUN)]
    methods = dict(runs.ablation_row(profile, a) for a in runs.ABLATIONS)  # row 1: published IS-Net when given
    return method_grid(profile, items, methods, profile.figures_dir / "fig5_ablation.png")


def stage1_examples(profile: Profile, split: str = VAL_SPLIT, n: int = 6) -> "Figure":
    """Image | stage-1 mask | GT, for the first ``n`` images of a split."""
    preds = runs.stage1_predictions(profile, split)
    rows = []
    for pair in list_pairs(split_dir(profile, split))[:n]:
        image, gt = pair.load()
        rows.append([(image, pair.stem), (preds[pair.stem], ""), (gt, "")])
    return grid(rows, profile.figures_dir / "stage1_examples.png",
                column_titles=["image", runs.stage1_label(profile), "GT"])


def training_figure(profile: Profile, history: list[dict]) -> "Figure":
    """The main run's training curves, with stage 1's validation maxF / MAE as the reference lines."""
    summary = evaluate_method(profile, runs.STAGE1, VAL_SPLIT)
    return training_curves(history, profile.figures_dir / "training_curves.png",
                           reference={"maxF": summary["maxF"], "MAE": summary["MAE"]},
                           title=f"main refiner, {runs.describe(profile, with_numerics=False)}")


def real_photos(profile: Profile, model: Any = None) -> tuple[pd.DataFrame, "Figure"]:
    """Stage 1 | refined for GrabCut and the IS-Net crop, the published IS-Net alone, and a cut-out on real
    photographs (scikit-image's), with each mask's area outside the box and the share of its stage 1's
    interior each refined mask keeps (``real_photos.csv`` beside ``real_photos.png``). The IS-Net columns
    need the published weights (``dissam weights isnet``); without them the figure has GrabCut's alone."""
    crop, whole = published_isnet_models(profile)
    results, table = run_photos(_model(profile, model), crop_stage1=crop, isnet=whole)
    figure = photos_figure(results, profile.figures_dir / "real_photos.png")
    table.to_csv(profile.figures_dir / "real_photos.csv", index=False, float_format="%.1f")
    return table, figure


def published_isnet_models(profile: Profile) -> tuple[Any, Any]:
    """(IS-Net crop stage 1, published IS-Net on whole images) on the profile's device, both from the
    general-use weights (:func:`dissam.repro.runs.general_isnet_weights`), or (None, None) without them.
    The whole-image model is the crop's own (the same weights at the same 1024 px input), loaded once."""
    weights = runs.general_isnet_weights(profile)
    if weights is None:
        print("real photos without the published IS-Net: its weights are not in the cache (`dissam weights isnet`)")
        return None, None
    device = str(profile.torch_device())
    crop = stages.build_stage1(profile, device=device, kind="isnet", checkpoint=weights)
    return crop, crop.isnet


def ablation_plot(profile: Profile, ours: pd.DataFrame) -> "Figure":
    """Table III as a plot (``ours``: :func:`dissam.repro.tables.table_three`'s long rows), paper beside ours."""
    title = f"Table III as a plot: {runs.describe(profile, with_numerics=False)}"
    return ablation_bars(ours, paper_rows("III"), profile.figures_dir / "table3_ablation.png",
                         ours_label=f"ours ({profile.name})", title=title)


def zero_shot_figure(profile: Profile, n: int = 2) -> "Figure | None":
    """Image | stage 1 | DIS-SAM | GT on each zero-shot set: the ``n`` images of each where DIS-SAM helps
    most (None when the data root has none of the sets)."""
    splits = stages.available_splits(profile, profile.data.zero_shot_sets)
    if not splits:
        return None
    items = [(split, stem) for split in splits for stem in pick_examples(profile, split, n)]
    methods = {runs.stage1_label(profile): runs.STAGE1, "DIS-SAM": runs.MAIN}
    return method_grid(profile, items, methods, profile.figures_dir / "zero_shot.png",
                       labels=[split for split, _ in items])


def figure_index(profile: Profile) -> pd.DataFrame:
    """Every figure and table written for the profile."""
    files = sorted(p for p in profile.figures_dir.glob("*") if p.suffix in (".png", ".md", ".csv"))
    return pd.DataFrame({"file": [p.name for p in files], "bytes": [p.stat().st_size for p in files]})


# ----------------------------------------------------------------------------- drawings of one example
# The notebooks compute each step on one example in their own cells (against the method floor); these
# draw what they computed. They take arrays, pick nothing from a profile and write no file.
def components_figure(image: np.ndarray, gt: np.ndarray, rule: str = "filtered") -> "Figure":
    """Image | GT with each 8-connected component in its own colour and its tight box, numbered largest
    first (as :func:`dissam.data.enrichment.connected_components` orders them); the title counts one
    image -> its samples under ``rule``."""
    from matplotlib.patches import Rectangle

    labels, order, _ = label_components(gt)
    coloured = (gt[..., None] > 128) * np.full(3, 60, np.uint8)  # components too small to see stay grey
    for k, label in enumerate(order):
        coloured[labels == label] = PALETTE[k % len(PALETTE)]
    fig = _figure((5.2, 2.9))
    ax_image, ax_gt = fig.subplots(1, 2)
    _show(ax_image, image, "image")
    _show(ax_gt, coloured.astype(np.uint8), f"GT: {len(order)} connected components")
    for k, label in enumerate(order):
        x0, y0, x1, y1 = box_from_mask(labels == label)
        ax_gt.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1,
                                  ec=PALETTE[k % len(PALETTE)] / 255))
        ax_gt.text(x0, y0 - 1, str(k + 1), color="white", fontsize=6)
    n = len(enrich_mask(gt, rule))
    return _finish(fig, None, f"GT enrichment ({rule}): 1 image -> {n} training sample{'s' * (n != 1)}")


INPUT_CHANNELS = ("R", "G", "B", "stage-1 mask", "filled box")


def input_panels(x: Any, title: str = "") -> "Figure":
    """The refiner's input (``[5, S, S]`` or ``[3, S, S]``) as one panel per channel, made readable: the
    RGB channels are stored as value/255 - 0.5, so they are shown + 0.5 (in [0, 1]); mask and box as stored."""
    x = np.asarray(x, dtype=np.float32)
    fig = _figure((2.2 * len(x), 2.6))
    for c, ax in enumerate(fig.subplots(1, len(x), squeeze=False)[0]):
        shown, name = (x[c] + 0.5, f"{INPUT_CHANNELS[c]} (+0.5)") if c < 3 else (x[c], INPUT_CHANNELS[c])
        _show(ax, shown, f"channel {c}: {name}", cmap="gray")
    return _finish(fig, None, title)


def feature_pairs_figure(features: Sequence[Any], gt_features: Sequence[Any], sample: int = 0,
                         title: str = "") -> "Figure":
    """The six (GT encoder, refiner) feature pairs the feature loss compares, for one sample of a batch:
    each map is the channel mean, a pair shares its colour scale; each column's title is that pair's
    MSE over the whole batch (the feature term is their sum)."""
    import torch
    import torch.nn.functional as F

    fig = _figure((2.0 * len(features), 5.0))
    axes = fig.subplots(2, len(features), squeeze=False)
    for i, (f, g) in enumerate(zip(features, gt_features)):
        f, g = torch.as_tensor(f).detach().float().cpu(), torch.as_tensor(g).detach().float().cpu()
        mse = float(F.mse_loss(f, g))
        maps = [t[sample].mean(0).numpy() for t in (g, f)]
        lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
        for row, (m, who) in enumerate(zip(maps, ("GT encoder", "refiner"))):
            axes[row, i].imshow(m, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            axes[row, i].set_title(f"{who} {i + 1} ({m.shape[0]} px)" + (f"\nMSE {mse:.3g}" if row == 0 else ""),
                                   fontsize=7)
            axes[row, i].set_axis_off()
    return _finish(fig, None, title)


def score_curves_figure(result: ImageResult, title: str = "") -> "Figure":
    """One image's curves over the 256 thresholds, as :meth:`dissam.metrics.DISMetrics.measure` returns
    them (``result``): precision, recall and F (beta^2 = 0.3) with its maximum (the image's maxF) marked;
    the E-measure with its mean (meanE); and precision against recall."""
    curves = {k: v[::-1] for k, v in result.curves.items()}  # stored for thresholds 255..0; drawn 0..255
    t = np.arange(256)
    best = int(np.argmax(curves["F"]))
    fig = _figure((10, 3.0))
    ax_f, ax_e, ax_pr = fig.subplots(1, 3)
    for key in ("precision", "recall", "F"):
        ax_f.plot(t, curves[key], label=key, lw=1.5 if key == "F" else 1)
    ax_f.plot([best], [curves["F"][best]], "ko", ms=5, label=f"maxF {result.values['maxF']:.3f} at {best}")
    ax_e.plot(t, curves["E"], lw=1.5, label="E")
    ax_e.axhline(result.values["meanE"], ls="--", c="gray", label=f"meanE {result.values['meanE']:.3f}")
    ax_pr.plot(curves["recall"], curves["precision"], lw=1)
    ax_pr.plot([curves["recall"][best]], [curves["precision"][best]], "ko", ms=5)
    for ax, name, x in ((ax_f, "F-curve", "threshold"), (ax_e, "E-curve", "threshold"), (ax_pr, "PR", "recall")):
        ax.set_xlabel(x, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        if ax is not ax_pr:
            ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, None, title)


def hce_figure(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, regions: HCERegions, title: str = "") -> "Figure":
    """Image | prediction against GT (white: right, red: false positive, blue: false negative) | the
    relaxed regions HCE keeps (:func:`dissam.metrics.hce.hce_regions`) with the points it counts
    (x: false-positive side, o: false-negative side)."""
    p, g = pred > 128, gt > 128
    errors = np.zeros((*g.shape, 3), np.uint8)
    errors[p & g], errors[p & ~g], errors[g & ~p] = 255, (230, 25, 75), (0, 130, 200)
    relaxed = np.full((*g.shape, 3), 40, np.uint8)
    relaxed[g] = 110
    relaxed[regions.fp], relaxed[regions.fn] = (230, 25, 75), (0, 130, 200)
    fig = _figure((8.4, 3.0))
    axes = fig.subplots(1, 3)
    _show(axes[0], image, "image")
    _show(axes[1], errors, "prediction vs GT")
    _show(axes[2], relaxed, f"HCE {regions.hce} = {len(regions.fp_points)} FP + {len(regions.fn_points)} FN points")
    for pts, marker, colour in ((regions.fp_points, "x", "#ffdd00"), (regions.fn_points, "o", "#00ff88")):
        axes[2].scatter(pts[:, 0], pts[:, 1], marker=marker, s=10, c=colour, linewidths=0.8)
    return _finish(fig, None, title)
