"""Every figure: the paper's Figures 1-5, the data, stage-1 and training figures, the real-photo figure,
Table III as a plot and a zero-shot figure, regenerated from real intermediate outputs.

Two levels. Drawing functions take arrays (``overlay``, ``grid``, ``enrichment_figure``,
``qualitative_grid``, ``pipeline_figure``, ``multi_box_figure``, ``training_curves``, ``sample_grid``,
``photos_figure``, ``ablation_bars``). Profile functions (``figure_one`` ... ``figure_five``,
``stage1_examples``, ``training_figure``, ``real_photos``, ``ablation_plot``, ``zero_shot_figure``) pick
the examples from a profile's data, runs and predictions (:mod:`dissam.runs`) and write the PNG into
``profile.figures_dir``. Every function returns a matplotlib Figure (no pyplot state; matplotlib loads on
first use) and saves it when given a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np
import pandas as pd

from . import runs, stages
from .config import Profile
from .data.enrichment import Component, enrich_mask
from .data.folders import list_pairs, read_image, read_mask
from .data.prompts import Box, box_channel, box_from_mask
from .data.splits import TRAIN_SPLIT, VAL_SPLIT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60)], np.float32)


# ----------------------------------------------------------------------------- images
def overlay(image: np.ndarray, mask: np.ndarray | None, colour: Sequence[float] | None = (230, 25, 75),
            alpha: float = 0.55, dim: float = 1.0) -> np.ndarray:
    """What ``mask > 127`` marks on ``image`` (uint8 RGB): pixels outside it scaled by ``dim``, pixels
    inside blended as ``(1 - alpha) * image + alpha * colour`` (``colour`` None: kept as they are)."""
    rgb = image.astype(np.float32)
    out = rgb * dim
    if mask is not None:
        sel = mask > 127
        out[sel] = rgb[sel] if colour is None else (1 - alpha) * rgb[sel] + alpha * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def cutout(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8: the image with ``alpha`` (a 0..255 mask or probability map) as its alpha channel."""
    return np.dstack([image, alpha.astype(np.uint8)])


def on_checkerboard(rgba: np.ndarray, cell: int = 12) -> np.ndarray:
    """An RGBA cut-out composited over a grey checkerboard, to show where it is transparent."""
    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 200, 150).astype(np.float32)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * a + board * (1 - a)).astype(np.uint8)


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


def grid(rows: list[list[tuple[np.ndarray, str]]], path: str | Path | None = None,
         column_titles: Sequence[str] | None = None, cell: float = 2.0) -> "Figure":
    """A plain image grid: ``rows`` of (image, caption) panels (grayscale masks or RGB)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = _figure((cell * n_cols, cell * n_rows + 0.3))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                image, caption = row[c]
                title = (column_titles[c] + "\n" if column_titles and r == 0 else "") + caption
                _show(axes[r, c], image, title, cmap="gray" if image.ndim == 2 else None)
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
    """Loss terms against iterations, and validation maxF / MAE against training minutes
    (``reference``: e.g. stage 1's own maxF/MAE, drawn as dashed lines)."""
    fig = _figure((10, 3.2))
    ax_loss, ax_f, ax_mae = fig.subplots(1, 3)
    its = [h["iteration"] for h in history]
    for term in ("total", "bce", "iou", "feature"):
        values = [h.get(term) for h in history]
        if any(v is not None for v in values):
            ax_loss.plot(its, _smooth([v or 0.0 for v in values]), label=term, lw=1)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_title("training losses (smoothed)", fontsize=9)
    ax_loss.legend(fontsize=7)
    val = [h for h in history if "val_maxF" in h]
    minutes = [h["seconds"] / 60 for h in val]
    for ax, key in ((ax_f, "maxF"), (ax_mae, "MAE")):
        ax.plot(minutes, [h[f"val_{key}"] for h in val], "o-", ms=3, label="refined (val)")
        if reference and key in reference:
            ax.axhline(reference[key], ls="--", c="gray", label="stage 1 alone")
        ax.set_xlabel("training minutes")
        ax.set_title(f"validation {key}", fontsize=9)
        ax.legend(fontsize=7)
    return _finish(fig, path, title)


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(np.pad(v, (window - 1, 0), mode="edge"), kernel, mode="valid")


def sample_grid(root: str | Path, split: str, n: int = 12, path: str | Path | None = None,
                with_grabcut: bool = True, iters: int = 3) -> "Figure":
    """``n`` images of ``root/split``: image | GT | GrabCut from the box (with IoU); each mask is shown by
    darkening everything outside it. The box is the tight box of the whole GT."""
    from .coarse import build_coarse

    pairs = list_pairs(Path(root) / split)[:n]
    grabcut = build_coarse("grabcut", iters=iters)  # the stage-1 segmenter itself: the grid shows what training sees
    cols = 3 if with_grabcut else 2
    fig = _figure((2.4 * cols, 2.4 * len(pairs)))
    axes = fig.subplots(len(pairs), cols, squeeze=False)
    for row, pair in zip(axes, pairs):
        image, gt = pair.load()
        box = box_from_mask(gt)
        panels = [(image, pair.stem, None), (overlay(image, gt, None, dim=0.22), "GT", box)]
        if with_grabcut:
            gc = grabcut(image, box)
            inter, union = np.logical_and(gc > 127, gt > 127).sum(), np.logical_or(gc > 127, gt > 127).sum()
            panels.append((overlay(image, gc, None, dim=0.22), f"GrabCut IoU {inter / max(union, 1):.2f}", box))
        for ax, (im, title, b) in zip(row, panels):
            _show(ax, im, title, b)
    return _finish(fig, path)


def photos_figure(results: list[dict], path: str | Path | None = None) -> "Figure":
    """image with its box | stage 1 | refined | cut-out (refined mask as alpha), one row per photo
    (``results`` of :func:`dissam.real_photos.run_photos`)."""
    rows = []
    for r in results:
        x0, y0, x1, y1 = (int(v) for v in r["box"])
        shown = cv2.rectangle(r["image"].copy(), (x0, y0), (x1 - 1, y1 - 1), (255, 220, 0), 3)
        rows.append([(shown, r["photo"].name), (r["coarse"], ""), (r["mask"], ""),
                     (on_checkerboard(cutout(r["image"], r["mask"])), "")])
    return grid(rows, path, column_titles=["photo + box", "stage 1", "refined", "cut-out"], cell=2.6)


def ablation_bars(ours: pd.DataFrame, paper: pd.DataFrame, path: str | Path | None = None,
                  ours_label: str = "ours", title: str = "") -> "Figure":
    """Table III as a plot: maxF and HCE (log scale) of each (enrichment, box, mask) row, the paper's bar
    beside ours. ``ours``: Table III's long rows (method, enrichment, box, mask, metrics); ``paper``:
    :func:`dissam.tables.paper_rows` of Table III, matched to ours by their check marks."""
    from .tables import ablation_flags

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
    folder = stages.split_dir(profile, split)
    return read_image(next((folder / "im").glob(f"{stem}.*"))), read_mask(folder / "gt" / f"{stem}.png")


def pick_examples(profile: Profile, split: str, n: int, method: str = runs.MAIN) -> list[str]:
    """The ``n`` images where the method improves most on stage 1 (by MAE): where the effect is visible."""
    ours, base = runs.predictions(profile, method, split), runs.predictions(profile, runs.STAGE1, split)
    gain = []
    for pair in list_pairs(stages.split_dir(profile, split)):
        gt = read_mask(pair.gt_path).astype(np.float32) / 255
        err = lambda p: np.abs(p.astype(np.float32) / 255 - gt).mean()  # noqa: E731
        gain.append((err(base[pair.stem]) - err(ours[pair.stem]), pair.stem))
    return [stem for _, stem in sorted(gain, reverse=True)[:n]]


def _hce(pred: np.ndarray, gt: np.ndarray) -> float:
    from .metrics import DISMetrics

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
    """``model``, else the profile's main refiner with its stage 1, as users run it (``DisSam.from_profile``)."""
    if model is not None:
        return model
    from .predictor import DisSam

    return DisSam.from_profile(profile)


# ----------------------------------------------------------------------------- the figures of a profile
def figure_one(profile: Profile, model: Any = None) -> "Figure":
    """Fig. 1 on the validation image where the refiner helps most."""
    model = _model(profile, model)
    image, gt = _image_and_gt(profile, VAL_SPLIT, pick_examples(profile, VAL_SPLIT, 1)[0])
    pred = model.predict(image, box_from_mask(gt))
    return pipeline_figure(image, pred.box, pred.coarse, pred.prob, gt, profile.figures_dir / "fig1_pipeline.png")


def figure_two(profile: Profile, split: str = TRAIN_SPLIT) -> "Figure":
    """Fig. 2 on the training image with the most components (ties: the first)."""
    best, best_parts = None, []
    for pair in list_pairs(stages.split_dir(profile, split))[:200]:
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
    for pair in list_pairs(stages.split_dir(profile, VAL_SPLIT)):
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
    methods = {a.label: a.name for a in runs.ABLATIONS}
    return method_grid(profile, items, methods, profile.figures_dir / "fig5_ablation.png")


def stage1_examples(profile: Profile, split: str = VAL_SPLIT, n: int = 6) -> "Figure":
    """Image | stage-1 mask | GT, for the first ``n`` images of a split."""
    preds = runs.stage1_predictions(profile, split)
    rows = []
    for pair in list_pairs(stages.split_dir(profile, split))[:n]:
        image, gt = pair.load()
        rows.append([(image, pair.stem), (preds[pair.stem], ""), (gt, "")])
    return grid(rows, profile.figures_dir / "stage1_examples.png",
                column_titles=["image", runs.stage1_label(profile), "GT"])


def training_figure(profile: Profile, history: list[dict]) -> "Figure":
    """The main run's training curves, with stage 1's validation maxF / MAE as the reference lines."""
    from .evaluate import evaluate_method

    summary = evaluate_method(profile, runs.STAGE1, VAL_SPLIT)
    return training_curves(history, profile.figures_dir / "training_curves.png",
                           reference={"maxF": summary["maxF"], "MAE": summary["MAE"]},
                           title=f"main refiner, {runs.describe(profile)}")


def real_photos(profile: Profile, model: Any = None) -> tuple[pd.DataFrame, "Figure"]:
    """Stage 1 | refined | cut-out on real photographs (scikit-image's), with the share of stage 1's
    interior the refiner keeps (``real_photos.csv`` beside ``real_photos.png``)."""
    from .real_photos import run_photos

    results, table = run_photos(_model(profile, model))
    figure = photos_figure(results, profile.figures_dir / "real_photos.png")
    table.to_csv(profile.figures_dir / "real_photos.csv", index=False, float_format="%.1f")
    return table, figure


def ablation_plot(profile: Profile, ours: pd.DataFrame) -> "Figure":
    """Table III as a plot (``ours``: :func:`dissam.tables.table_three`'s long rows), paper beside ours."""
    from .tables import paper_rows

    return ablation_bars(ours, paper_rows("III"), profile.figures_dir / "table3_ablation.png",
                         ours_label=f"ours ({profile.name})", title=f"Table III as a plot: {runs.describe(profile)}")


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
