"""The paper's figures, regenerated from real intermediate outputs, plus training curves.

Fig. 1 pipeline, Fig. 2 enrichment, Fig. 3 / Fig. 5 qualitative grids, Fig. 4 several boxes on one
image. Every function returns a matplotlib Figure (no pyplot state) and saves it when given a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .data.enrichment import Component
from .data.prompts import Box

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60)], np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, colour: Sequence[float] = (230, 25, 75), alpha: float = 0.55) -> np.ndarray:
    """``mask > 127`` tinted over ``image`` (uint8 RGB)."""
    out = image.astype(np.float32).copy()
    sel = mask > 127
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _show(ax, image: np.ndarray, title: str = "", box: Box | None = None, cmap: str | None = None) -> None:
    ax.imshow(image, cmap=cmap, vmin=0, vmax=255 if image.dtype == np.uint8 else 1, interpolation="nearest")
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.2))
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def enrichment_figure(image: np.ndarray, gt: np.ndarray, components: list[Component],
                      path: str | Path | None = None, max_parts: int = 5) -> Figure:
    """Fig. 2: one GT split into its connected components, each a training sample with its own box."""
    parts = components[:max_parts]
    fig = Figure(figsize=(2.3 * (2 + len(parts)), 2.6))
    axes = fig.subplots(1, 2 + len(parts), squeeze=False)[0]
    _show(axes[0], image, "image")
    _show(axes[1], gt, f"GT ({len(components)} components)", cmap="gray")
    for ax, comp in zip(axes[2:], parts):
        colour = PALETTE[comp.index % len(PALETTE)] if comp.index >= 0 else PALETTE[0]
        _show(ax, overlay(image, comp.mask.astype(np.uint8) * 255, colour), f"sample {comp.index + 1}", comp.box)
    fig.suptitle("GT enrichment: one (image, component, box) sample per connected component", fontsize=9)
    return _save(fig, path)


def grid(rows: list[list[tuple[np.ndarray, str]]], path: str | Path | None = None,
         column_titles: Sequence[str] | None = None, cell: float = 2.0) -> Figure:
    """A plain image grid: ``rows`` of (image, caption) panels (grayscale masks or RGB)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(cell * n_cols, cell * n_rows + 0.3))
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


def qualitative_grid(images: list[np.ndarray], columns: dict[str, list[np.ndarray]], gts: list[np.ndarray],
                     path: str | Path | None = None, scores: dict[str, list[float]] | None = None) -> Figure:
    """Fig. 3 / Fig. 5: image | one column per method | GT, masks as grayscale (HCE under each, if given)."""
    rows = []
    for i, image in enumerate(images):
        row = [(image, "")]
        for name, masks in columns.items():
            caption = f"HCE {scores[name][i]:.0f}" if scores and name in scores else ""
            row.append((masks[i], caption))
        row.append((gts[i], ""))
        rows.append(row)
    return grid(rows, path, column_titles=["image", *columns, "GT"])


def pipeline_figure(image: np.ndarray, box: Box, coarse: np.ndarray, prob: np.ndarray, gt: np.ndarray | None,
                    path: str | Path | None = None) -> Figure:
    """Fig. 1: (image, box) -> stage-1 coarse mask -> 5-channel refiner input -> refined mask."""
    from .data.prompts import box_channel

    box_img = box_channel(box, *image.shape[:2])
    panels = [(image, "image + box prompt", box), (coarse, "stage 1: coarse mask", None),
              (box_img, "filled box channel", None), (prob, "stage 2: refined", None)]
    if gt is not None:
        panels.append((gt, "ground truth", None))
    fig = Figure(figsize=(2.4 * len(panels), 2.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (im, title, b) in zip(axes, panels):
        _show(ax, im, title, b, cmap="gray" if im.ndim == 2 else None)
    fig.suptitle("DIS-SAM: stage 1 (frozen, box-prompted) -> IS-Net refiner on concat(RGB, mask, box)", fontsize=9)
    return _save(fig, path)


def multi_box_figure(image: np.ndarray, boxes: list[Box], coarse: list[np.ndarray], refined: list[np.ndarray],
                     path: str | Path | None = None) -> Figure:
    """Fig. 4: one image, several boxes; the refined mask follows each box."""
    fig = Figure(figsize=(2.4 * len(boxes), 5.0))
    axes = fig.subplots(2, len(boxes), squeeze=False)
    for i, (box, c, r) in enumerate(zip(boxes, coarse, refined)):
        colour = PALETTE[i % len(PALETTE)]
        _show(axes[0, i], overlay(image, c, colour), f"box {i + 1}: stage 1", box)
        _show(axes[1, i], overlay(image, r, colour), f"box {i + 1}: refined", box)
    return _save(fig, path)


def training_curves(history: list[dict[str, float]], path: str | Path | None = None,
                    reference: dict[str, float] | None = None, title: str = "") -> Figure:
    """Loss terms against iterations, and validation maxF / MAE against training minutes
    (``reference``: e.g. stage 1's own maxF/MAE, drawn as dashed lines)."""
    fig = Figure(figsize=(10, 3.2))
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
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(np.pad(v, (window - 1, 0), mode="edge"), kernel, mode="valid")
